import { describe, expect, test } from "bun:test";
import { sleep, within } from "../../src/util/sleep.ts";

/** A promise that never settles unless the test settles it. */
function pending<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every promise chain that can move on do so. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("within", () => {
  test("resolves with the promise's value when it settles first", async () => {
    expect(await within(Promise.resolve("answer"), 60_000, "late")).toBe("answer");
  });

  test("resolves with the fallback when the promise has not settled in time", async () => {
    const late = Symbol("late");
    expect(await within(pending<string>().promise, 1, late)).toBe(late);
  });

  test("rejects with the promise's error when it rejects first", async () => {
    await expect(within(Promise.reject(new Error("refused")), 60_000, "late")).rejects.toThrow("refused");
  });

  test("a promise that rejects after the timeout is not left as an unhandled rejection", async () => {
    const slow = pending<string>();
    expect(await within(slow.promise, 1, "late")).toBe("late");
    const unhandled: unknown[] = [];
    const listener = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", listener);
    try {
      slow.reject(new Error("too late"));
      await settle();
    } finally {
      process.off("unhandledRejection", listener);
    }
    expect(unhandled).toEqual([]);
  });
});

describe("sleep", () => {
  /** Whether `promise` has resolved once every chain that can move on did. */
  const resolvedNow = async (promise: Promise<void>) => {
    let resolved = false;
    void promise.then(() => {
      resolved = true;
    });
    await settle();
    return resolved;
  };

  test("resolves at once when its signal is already aborted", async () => {
    const stopping = new AbortController();
    stopping.abort();
    expect(await resolvedNow(sleep(60_000, stopping.signal))).toBe(true);
  });

  test("resolves when its signal aborts during the wait, not before", async () => {
    const stopping = new AbortController();
    const sleeping = sleep(60_000, stopping.signal);
    expect(await resolvedNow(sleeping)).toBe(false);
    stopping.abort();
    expect(await resolvedNow(sleeping)).toBe(true);
  });
});
