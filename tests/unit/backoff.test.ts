import { describe, expect, test } from "bun:test";
import { RetryBackoff } from "../../src/util/backoff.ts";

/** The waits of `count` failures in a row. */
const failures = (backoff: RetryBackoff, count: number) => Array.from({ length: count }, () => backoff.failed());

describe("RetryBackoff", () => {
  test("waits firstMs after a first failure, twice as long after each further one, never beyond maxMs", () => {
    const backoff = new RetryBackoff({ firstMs: 500, maxMs: 10_000 });
    expect(failures(backoff, 8)).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    expect(backoff.failures).toBe(8);
  });

  test("a cap that is not a doubling of the first wait is reached exactly", () => {
    expect(failures(new RetryBackoff({ firstMs: 200, maxMs: 2000 }), 6)).toEqual([200, 400, 800, 1600, 2000, 2000]);
  });

  test("a success starts over: the next failure waits firstMs again", () => {
    const backoff = new RetryBackoff({ firstMs: 200, maxMs: 2000 });
    failures(backoff, 3);
    backoff.succeeded();
    expect(backoff.failures).toBe(0);
    expect(failures(backoff, 2)).toEqual([200, 400]);
    expect(backoff.failures).toBe(2);
  });

  test("a long outage stays at maxMs (no overflow to Infinity or NaN)", () => {
    const waits = failures(new RetryBackoff({ firstMs: 100, maxMs: 2000 }), 2000);
    expect(waits.at(-1)).toBe(2000);
    expect(waits.every((ms) => Number.isFinite(ms) && ms <= 2000)).toBe(true);
  });
});
