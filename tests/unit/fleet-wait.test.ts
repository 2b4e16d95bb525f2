import { describe, expect, test } from "bun:test";
import { type FleetStore, type WaitOptions, waitForFleet } from "../../src/cli/fleet-wait.ts";
import type { Output } from "../../src/cli/output.ts";
import { EtcdCallError } from "../../src/cli/store.ts";
import type { HistoryReset } from "../../src/maintenance/etcd-history.ts";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";
import { drainedAcknowledgement, entryOf } from "../helpers/acknowledgement.ts";
import { waitFor } from "../helpers/wait.ts";

const KEY = "/maintenance/unit";
/** Longer than any test runs: a wait that ends did so because of what the test did, not a timer. */
const NEVER_MS = 60_000;

const ack = (instance: string, fields: Partial<Acknowledgement> = {}) =>
  drainedAcknowledgement({ instance, ...fields });

/**
 * The acknowledgements in a store the test changes, as the CLI's store answers them:
 * `change` tells the watch, as etcd would; `readings` counts the reads.
 */
function fakeStore(acks: Acknowledgement[]) {
  const state = {
    acks,
    storeRevision: 20,
    readings: 0,
    failure: null as EtcdCallError | null,
    watches: [] as { from: number; ended: boolean; closed: boolean; onChange: () => void }[],
  };
  const store: FleetStore = {
    historyReset: null as HistoryReset | null,
    instances: async () => {
      state.readings++;
      if (state.failure) throw state.failure;
      return { entries: state.acks.map(entryOf), storeRevision: state.storeRevision };
    },
    watchInstances: (_key, from, onChange) => {
      const watch = {
        from,
        ended: false,
        closed: false,
        onChange,
        close: async () => {
          watch.closed = true;
        },
      };
      state.watches.push(watch);
      return watch;
    },
    read: async (key) => ({ key, value: "false", revision: 3, lease: null, storeRevision: 3 }),
  };
  const change = (next: Acknowledgement[]) => {
    state.acks = next;
    state.storeRevision++;
    for (const watch of state.watches) if (!watch.ended) watch.onChange();
  };
  return { store, state, change };
}

function captureOutput(): Output & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

const waitOn = (timeoutMs = NEVER_MS): WaitOptions => ({
  serviceKey: KEY,
  writtenKey: KEY,
  target: { goal: "on", field: "revision", revision: 10 },
  timeoutMs,
});

describe("maint --wait", () => {
  test("reads the acknowledgements again when the watch reports a change, and only then", async () => {
    const { store, state, change } = fakeStore([ack("a"), ack("b", { revision: 9, mode: "off", phase: "serving" })]);
    const out = captureOutput();
    const waiting = waitForFleet(store, out, waitOn());
    await waitFor("the watch", () => state.watches.length === 1);
    expect(state.watches[0]?.from).toBe(20);
    expect(state.readings).toBe(1);

    change([ack("a"), ack("b", { revision: 11, drained: false, phase: "entering", in_flight: 1 })]);
    await waitFor("the second reading", () => state.readings === 2);
    change([ack("a"), ack("b", { revision: 11 })]);

    expect(await waiting).toBe(0);
    expect(state.readings).toBe(3);
    expect(out.stderr).toEqual([]);
    expect(out.stdout.at(-1)).toMatch(/^all 2 instances drained after \d/);
    expect(state.watches[0]?.closed).toBe(true);
  });

  test("an instance whose entry is deleted before it drained (its lease expired) is named: exit 1 once the rest drained", async () => {
    const { store, state, change } = fakeStore([ack("a"), ack("dead", { revision: 3 }), ack("b", { revision: 3 })]);
    const out = captureOutput();
    const waiting = waitForFleet(store, out, waitOn());
    await waitFor("the watch", () => state.watches.length === 1);
    change([ack("a"), ack("b", { revision: 3 })]);
    await waitFor("the departure", () =>
      out.stdout.includes("dead: acknowledgement gone before it was drained (its lease expired, or it stopped)"),
    );
    change([ack("a"), ack("b")]);
    expect(await waiting).toBe(1);
    expect(out.stdout.at(-1)).toMatch(/^the other 2 instances drained after /);
    expect(out.stderr).toEqual([
      "maint: 1 instance left before it was drained: dead (last: has not read revision 10 yet (at 3)); an acknowledgement " +
        "goes with its lease when its instance is killed or cut off from etcd (then it may still serve on its last " +
        "state): check them before counting on the fleet",
    ]);
  });

  test("an instance that drained and then left is not missed: exit 0", async () => {
    const { store, state, change } = fakeStore([ack("a"), ack("gone"), ack("b", { revision: 3 })]);
    const out = captureOutput();
    const waiting = waitForFleet(store, out, waitOn());
    await waitFor("the watch", () => state.watches.length === 1);
    change([ack("a"), ack("b", { revision: 3 })]);
    change([ack("a"), ack("b")]);
    expect(await waiting).toBe(0);
    expect(out.stdout.at(-1)).toMatch(/^all 2 instances drained after /);
    expect(out.stderr).toEqual([]);
  });

  test("an instance that left and came back under its name is waited for, not named", async () => {
    const { store, state, change } = fakeStore([ack("b", { revision: 3 }), ack("flaky", { revision: 3 })]);
    const out = captureOutput();
    const waiting = waitForFleet(store, out, waitOn());
    await waitFor("the watch", () => state.watches.length === 1);
    change([ack("b", { revision: 3 })]);
    await waitFor("the departure", () => out.stdout.some((line) => line.startsWith("flaky: acknowledgement gone")));
    change([ack("b", { revision: 3 }), ack("flaky", { revision: 3 })]);
    await waitFor("the return", () => state.readings === 3);
    change([ack("b"), ack("flaky")]);
    expect(await waiting).toBe(0);
    expect(out.stdout.at(-1)).toMatch(/^all 2 instances drained after /);
    expect(out.stderr).toEqual([]);
  });

  test("Ctrl-C detaches: exit 4, saying the write stands and how to follow it; the watch is closed", async () => {
    const { store, state } = fakeStore([ack("a", { revision: 3 })]);
    const out = captureOutput();
    const interrupt = new AbortController();
    const waiting = waitForFleet(store, out, { ...waitOn(), interrupt: interrupt.signal });
    await waitFor("the watch", () => state.watches.length === 1);
    interrupt.abort();
    expect(await waiting).toBe(4);
    expect(out.stderr).toEqual([
      expect.stringMatching(
        new RegExp(
          `^maint: detached after \\S+; nothing is cancelled: ${KEY} stays as written and every instance goes on acting on it$`,
        ),
      ),
      "maint: follow it with `maint status`; the operation lock is released",
    ]);
    expect(state.watches[0]?.closed).toBe(true);
  });

  test("Ctrl-C while a reading hangs detaches at once", async () => {
    const { store } = fakeStore([]);
    const out = captureOutput();
    const interrupt = new AbortController();
    store.instances = () => new Promise(() => {});
    const waiting = waitForFleet(store, out, { ...waitOn(), interrupt: interrupt.signal });
    interrupt.abort();
    expect(await waiting).toBe(4);
  });

  test("a watch etcd cancelled is replaced by one from the next reading's revision", async () => {
    const { store, state, change } = fakeStore([ack("a", { revision: 3 })]);
    const waiting = waitForFleet(store, captureOutput(), waitOn());
    await waitFor("the watch", () => state.watches.length === 1);
    const first = state.watches[0];
    if (!first) throw new Error("no watch");
    first.ended = true;
    state.storeRevision = 30;
    first.onChange();
    await waitFor("a new watch", () => state.watches.length === 2);
    expect(state.watches[1]?.from).toBe(30);
    change([ack("a")]);
    expect(await waiting).toBe(0);
  });

  test("etcd's history went back: exit 1 saying so and what the written key holds now", async () => {
    const { store, state, change } = fakeStore([ack("stuck", { revision: 3 })]);
    const out = captureOutput();
    const waiting = waitForFleet(store, out, waitOn());
    await waitFor("the watch", () => state.watches.length === 1);
    store.historyReset = { revision: 5, seen: 10, cause: "revision" };
    change(state.acks);
    expect(await waiting).toBe(1);
    expect(out.stderr).toEqual([
      "maint: etcd.history_reset: etcd answers at revision 5 after 10 had been seen " +
        "(revision went back: restored from a snapshot or rebuilt); the write at revision 10 may be gone",
      `maint: ${KEY} holds false now: run the command again to write and wait in etcd's new history`,
    ]);
  });

  test("no instance at all: exit 1 at once, nothing confirms the change", async () => {
    const out = captureOutput();
    expect(await waitForFleet(fakeStore([]).store, out, waitOn())).toBe(1);
    expect(out.stderr).toEqual([
      `maint: no instance acknowledges under ${KEY}/instances/: nothing confirms the change ` +
        "(are the instances running, and connected to this etcd?)",
    ]);
  });

  test("a reading that fails is retried; still failing at the timeout, exit 1 with the error", async () => {
    const { store, state } = fakeStore([ack("a")]);
    state.failure = new EtcdCallError("no answer within 5.5 s", true);
    const out = captureOutput();
    expect(await waitForFleet(store, out, waitOn(1500))).toBe(1);
    expect(state.readings).toBeGreaterThanOrEqual(2);
    expect(out.stderr).toEqual([
      "maint: timed out after 1.5s: cannot read the acknowledgements: no answer within 5.5 s",
    ]);
  });

  test("at the timeout, names each instance not there and why", async () => {
    const { store } = fakeStore([ack("a"), ack("b", { drained: false, phase: "entering", in_flight: 2 })]);
    const out = captureOutput();
    expect(await waitForFleet(store, out, waitOn(100))).toBe(1);
    expect(out.stderr).toEqual([
      "maint: timed out after 100ms: 1 of 2 instances not drained: b (not drained (phase entering, 2 in flight))",
    ]);
  });
});
