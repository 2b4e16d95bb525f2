import { AsyncLocalStorage } from "node:async_hooks";
import { handleWhen, type IPolicy, type IRetryContext, isBrokenCircuitError, retry } from "cockatiel";
import { GRPCDeadlineExceededError, isRecoverableError } from "etcd3";

/** The list each failed attempt's error goes to, when the caller opened one. */
const failedAttempts = new AsyncLocalStorage<unknown[]>();

/**
 * etcd3's default global policy (retry a recoverable error, up to 3 more attempts, each on the next
 * host whose breaker lets it through), also pushing each failed attempt's error onto the list of
 * the caller's {@link recordingAttempts}.
 * etcd3 gives its caller only the last attempt's error, and calls `execute` once per call,
 * synchronously from the call, so the caller's list is looked up there
 * (https://github.com/microsoft/etcd3/blob/master/src/connection-pool.ts `exec`).
 */
export function attemptRecordingRetry(): IPolicy<IRetryContext> {
  const retrying = retry(handleWhen(isRecoverableError), { maxAttempts: 3 });
  return {
    _altReturn: retrying._altReturn,
    onSuccess: retrying.onSuccess,
    onFailure: retrying.onFailure,
    execute(attempt, signal) {
      const failures = failedAttempts.getStore();
      if (failures === undefined) return retrying.execute(attempt, signal);
      return retrying.execute(async (context) => {
        try {
          return await attempt(context);
        } catch (error) {
          failures.push(error);
          throw error;
        }
      }, signal);
    },
  };
}

/**
 * Runs `call`, pushing onto `failures` the error of every failed attempt of the etcd calls it makes
 * through a client whose global policy is {@link attemptRecordingRetry}.
 */
export function recordingAttempts<T>(failures: unknown[], call: () => Promise<T>): Promise<T> {
  return failedAttempts.run(failures, call);
}

/**
 * Whether a failed attempt certainly never reached etcd: refused by every host's open circuit
 * breaker, no connection to send it on (grpc-js says "No connection established"), or a deadline
 * passed before a connection was picked for it (grpc-js says "Waiting for LB pick":
 * https://github.com/grpc/grpc-node/blob/master/packages/grpc-js/src/load-balancing-call.ts `getDeadlineInfo`). A deadline passed or a connection dropped
 * with the call on it (UNAVAILABLE too) leaves a write's outcome unknown.
 */
export function neverSent(error: unknown): boolean {
  if (isBrokenCircuitError(error)) return true;
  if (!(error instanceof Error)) return false;
  return (
    error.message.includes("No connection established") ||
    (error instanceof GRPCDeadlineExceededError && error.message.includes("Waiting for LB pick"))
  );
}
