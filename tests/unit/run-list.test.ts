import { describe, expect, test } from "bun:test";
import { PendingRun } from "../../src/db/pending-run.ts";
import { RunList } from "../../src/db/run-list.ts";

const NEVER = new Promise<never>(() => {});
const run = () => new PendingRun(() => NEVER, 0);

describe("RunList", () => {
  test("keeps each run once, whichever leaves first", () => {
    const list = new RunList();
    const [a, b, c, d] = [run(), run(), run(), run()];
    for (const r of [a, b, c, d]) list.add(r);
    list.delete(b);
    expect(list.size).toBe(3);
    expect(new Set(list.snapshot())).toEqual(new Set([a, c, d]));
    list.delete(d);
    list.delete(a);
    expect(list.snapshot()).toEqual([c]);
    list.delete(c);
    expect(list.size).toBe(0);
  });

  test("deleting a run that is not in the list, or twice, changes nothing", () => {
    const list = new RunList();
    const [a, b, outsider] = [run(), run(), run()];
    list.add(a);
    list.delete(a);
    list.add(b);
    list.delete(a);
    list.delete(outsider);
    expect(list.snapshot()).toEqual([b]);
  });

  test("a snapshot stays whole while runs leave the list", () => {
    const list = new RunList();
    const runs = [run(), run(), run()];
    for (const r of runs) list.add(r);
    const seen = [];
    for (const r of list.snapshot()) {
      seen.push(r);
      list.delete(r);
    }
    expect(seen).toEqual(runs);
    expect(list.size).toBe(0);
  });
});
