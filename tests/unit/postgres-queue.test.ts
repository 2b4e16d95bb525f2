/**
 * postgres.js's internal queue, as patched by patches/postgres+3.4.9.patch (applied by
 * `npm ci`'s postinstall). Upstream, a queue that never empties keeps every shifted slot, and
 * `remove()` scans them all: postgres.js moves each connection between such queues on every
 * query, so under sustained load each query costs more than the one before (throughput fell
 * to a third within a minute, see bench/RESULTS.md).
 */
import { afterEach, describe, expect, test } from "bun:test";
// @ts-expect-error: an internal module of postgres.js, without types.
import UntypedQueue from "../../node_modules/postgres/src/queue.js";

interface Queue<T> {
  readonly length: number;
  push(x: T): T;
  shift(): T | undefined;
  remove(x: T): T | null;
}
const Queue = UntypedQueue as <T>() => Queue<T>;

/** How many array slots the next `indexOf` calls look at. */
function countScannedSlots(): { scanned: () => number; restore: () => void } {
  const original = Array.prototype.indexOf;
  let scanned = 0;
  Array.prototype.indexOf = function (this: unknown[], value: unknown, from?: number) {
    scanned += this.length - Math.max(0, from ?? 0);
    return original.call(this, value, from);
  };
  return { scanned: () => scanned, restore: () => (Array.prototype.indexOf = original) };
}

/** A queue that has seen `cycles` push/shift pairs without ever emptying, as a busy pool's queues do. */
function busyQueue(cycles: number): Queue<number> {
  const queue = Queue<number>();
  queue.push(-2);
  queue.push(-1);
  for (let i = 0; i < cycles; i++) {
    queue.push(i);
    queue.shift();
  }
  return queue;
}

describe("postgres.js queue (patched)", () => {
  let restore = () => {};
  afterEach(() => restore());

  test("remove() looks at the live entries only, however many went through a queue that never emptied", () => {
    const queue = busyQueue(200_000);
    const counter = countScannedSlots();
    restore = counter.restore;
    expect(queue.remove(-99)).toBeNull();
    counter.restore();
    // Unpatched, this scans all 200,002 slots ever pushed.
    expect(counter.scanned()).toBeLessThan(4096);
  });

  test("stays first in, first out across compaction, and remove() still finds live entries", () => {
    const queue = busyQueue(5000);
    expect(queue.length).toBe(2);
    for (let i = 5000; i < 5010; i++) queue.push(i);
    expect(queue.remove(5003)).toBe(5003);
    expect(queue.remove(5003)).toBeNull();
    const drained: (number | undefined)[] = [];
    while (queue.length > 0) drained.push(queue.shift());
    expect(drained).toEqual([4998, 4999, 5000, 5001, 5002, 5004, 5005, 5006, 5007, 5008, 5009]);
  });
});
