import { describe, expect, test } from "bun:test";
import { BrokenCircuitError } from "cockatiel";
import { GRPCDeadlineExceededError, GRPCUnavailableError } from "etcd3";
import { attemptRecordingRetry, neverSent, recordingAttempts } from "../../src/maintenance/etcd-attempts.ts";
import type { KeyClient } from "../../src/maintenance/etcd-key.ts";
import { EtcdWriter, StoreUnavailableError } from "../../src/maintenance/writer.ts";

// Errors as etcd3 casts grpc-js's: "<code> <name>: <details>".
const noConnection = () =>
  new GRPCUnavailableError("14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED");
const waitingForPick = () =>
  new GRPCDeadlineExceededError(
    "4 DEADLINE_EXCEEDED: Deadline exceeded after 5.002s,name resolution: 0.001s,Waiting for LB pick",
  );
const sentAndTimedOut = () =>
  new GRPCDeadlineExceededError(
    "4 DEADLINE_EXCEEDED: Deadline exceeded after 5.001s,LB pick: 0.002s,remote_addr=127.0.0.1:2379",
  );
const dropped = () => new GRPCUnavailableError("14 UNAVAILABLE: Connection dropped");

/** Runs a call through the policy, its attempts failing with `errors` in turn, then succeeding. */
function callFailing(policy: ReturnType<typeof attemptRecordingRetry>, errors: Error[]) {
  let attempts = 0;
  const result = policy.execute(() => {
    const error = errors[attempts++];
    if (error) throw error;
    return "answer";
  });
  return { result, attempts: () => attempts };
}

/** A client whose every call goes through the policy as etcd3's do, its attempts failing with `errors` (all of them). */
function retryingEtcd(errors: Error[]): KeyClient {
  const policy = attemptRecordingRetry();
  const send = () => callFailing(policy, errors).result as Promise<never>;
  return { kv: { range: send, put: send, deleteRange: send }, leaseClient: { leaseGrant: send } };
}

describe("etcd3's retries, each attempt's error recorded", () => {
  test("keeps etcd3's default retries: up to 3 more attempts of a recoverable error, none of another", async () => {
    const policy = attemptRecordingRetry();
    const recovered = callFailing(policy, [noConnection(), dropped()]);
    expect(await recovered.result).toBe("answer");
    expect(recovered.attempts()).toBe(3);

    const failing = callFailing(policy, [noConnection(), dropped(), sentAndTimedOut(), noConnection(), dropped()]);
    expect(await failing.result.catch((e: unknown) => e)).toBeInstanceOf(GRPCUnavailableError);
    expect(failing.attempts()).toBe(4);

    const refused = new Error("etcdserver: permission denied");
    const answered = callFailing(policy, [refused, dropped()]);
    expect(await answered.result.catch((e: unknown) => e)).toBe(refused);
    expect(answered.attempts()).toBe(1);
  });

  test("records every failed attempt of the calls made under recordingAttempts, and only those", async () => {
    const policy = attemptRecordingRetry();
    const first = [noConnection(), sentAndTimedOut()];
    const failures: unknown[] = [];
    expect(await recordingAttempts(failures, () => callFailing(policy, first).result)).toBe("answer");
    expect(failures).toEqual(first);

    const outside = callFailing(policy, [dropped()]);
    expect(await outside.result).toBe("answer");
    expect(failures).toEqual(first);
  });

  test("an attempt never sent: broken circuits, no connection, a deadline before any connection was picked", () => {
    expect(neverSent(new BrokenCircuitError())).toBe(true);
    expect(neverSent(noConnection())).toBe(true);
    expect(neverSent(waitingForPick())).toBe(true);
    expect(neverSent(sentAndTimedOut())).toBe(false);
    expect(neverSent(dropped())).toBe(false);
    expect(neverSent(new Error("etcdserver: permission denied"))).toBe(false);
  });
});

describe("EtcdWriter's outcome from every attempt of a write", () => {
  const outcome = async (errors: Error[], call: (writer: EtcdWriter) => Promise<unknown> = (w) => w.write("true")) => {
    const failure = await call(new EtcdWriter(retryingEtcd(errors), "/maintenance/unit")).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    return (failure as StoreUnavailableError).outcome;
  };

  test("`not-done` when no attempt left, however long they took", async () => {
    expect(await outcome([noConnection(), waitingForPick(), noConnection(), noConnection()])).toBe("not-done");
    expect(await outcome([waitingForPick(), noConnection(), noConnection(), new BrokenCircuitError()])).toBe(
      "not-done",
    );
  });

  test("`unknown` when any attempt may have reached etcd, even if the last one never left", async () => {
    expect(await outcome([sentAndTimedOut(), noConnection(), noConnection(), noConnection()])).toBe("unknown");
    expect(await outcome([noConnection(), dropped(), new BrokenCircuitError()])).toBe("unknown");
    expect(await outcome([noConnection(), sentAndTimedOut(), noConnection(), noConnection()], (w) => w.clear())).toBe(
      "unknown",
    );
  });

  test("a read is `not-done` whatever its attempts", async () => {
    expect(await outcome([sentAndTimedOut(), dropped(), dropped(), dropped()], (w) => w.read())).toBe("not-done");
  });
});
