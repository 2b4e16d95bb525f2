import { readFileSync } from "node:fs";
import type { IBackoff } from "cockatiel";
import { ConsecutiveBreaker, circuitBreaker, ExponentialBackoff, handleWhen, isBrokenCircuitError } from "cockatiel";
import { Etcd3, GRPCDeadlineExceededError, GRPCUnavailableError, type IOptions, isRecoverableError } from "etcd3";
import type { EtcdConfig } from "../config.ts";
import { attemptRecordingRetry } from "./etcd-attempts.ts";

/** Deadline of every unary etcd call; etcd3 sets none by default. */
export const ETCD_CALL_TIMEOUT_MS = 5000;

/**
 * An etcd3 client set up to notice failures and recover fast:
 * - gRPC keepalive, because a silently dead TCP flow otherwise stalls a watch
 *   forever (microsoft/etcd3#72);
 * - a deadline on unary calls (none by default);
 * - per-host circuit breakers that retry after 1 s and a watch backoff capped
 *   at 2 s, instead of 5 s and 30 s, so a returning etcd is used within seconds;
 * - etcd3's own retries, each failed attempt's error recorded for a caller who
 *   asks (etcd-attempts.ts);
 * - TLS with the configured CA, and user/password auth, when set.
 */
export function createEtcdClient(etcd: EtcdConfig): Etcd3 {
  const options: IOptions = {
    hosts: etcd.endpoints,
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    grpcOptions: {
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.keepalive_permit_without_calls": 1,
    },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
    faultHandling: {
      host: () =>
        circuitBreaker(handleWhen(isRecoverableError), {
          halfOpenAfter: 1000,
          breaker: new ConsecutiveBreaker(3),
        }),
      global: attemptRecordingRetry(),
      // etcd3 types this as a backoff but calls .next() on it first, as on a factory (its own default).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as unknown as IBackoff<unknown>,
    },
  };
  if (etcd.username !== undefined && etcd.password !== undefined) {
    options.auth = { username: etcd.username, password: etcd.password };
  }
  if (etcd.caFile !== undefined || etcd.certFile !== undefined) {
    options.credentials = {
      // Without a CA file, grpc's createSsl() falls back to the system's roots.
      rootCertificate: (etcd.caFile !== undefined ? readFileSync(etcd.caFile) : undefined) as Buffer,
      ...(etcd.certFile !== undefined && { certChain: readFileSync(etcd.certFile) }),
      ...(etcd.keyFile !== undefined && { privateKey: readFileSync(etcd.keyFile) }),
    };
  }
  return new Etcd3(options);
}

/**
 * Whether an etcd call failed for want of an answer (etcd down, unreachable, too slow), as opposed
 * to an answer refusing it (auth, permissions). A call made while every host's circuit breaker is
 * open fails with cockatiel's BrokenCircuitError, not a gRPC error (etcd3 connection-pool.js).
 */
export function isEtcdUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    isRecoverableError(error) ||
    isBrokenCircuitError(error) ||
    error instanceof GRPCUnavailableError ||
    error instanceof GRPCDeadlineExceededError
  );
}
