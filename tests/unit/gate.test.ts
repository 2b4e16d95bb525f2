import { describe, expect, test } from "bun:test";
import { Gate } from "../../src/maintenance/gate.ts";
import { FakeClock } from "../helpers/fake-clock.ts";
import { gatedApp } from "../helpers/gated-app.ts";

function setup() {
  const clock = new FakeClock();
  const gate = new Gate(null, clock);
  const { admit: admitOne } = gatedApp(gate);
  return { clock, gate, admitOne };
}

/** Settles `promise` into a value the test can look at without awaiting it. */
function watch<T>(promise: Promise<T>): { done: boolean; value: T | undefined } {
  const state: { done: boolean; value: T | undefined } = { done: false, value: undefined };
  void promise.then((value) => Object.assign(state, { done: true, value }));
  return state;
}

describe("Gate.drain", () => {
  test("answers true at once when nothing runs", async () => {
    const { gate } = setup();
    expect(await gate.drain(1000, new AbortController().signal)).toBe(true);
  });

  test("answers true when the last admitted request ends, and leaves no timer behind", async () => {
    const { clock, gate, admitOne } = setup();
    const request = await admitOne();
    const drain = watch(gate.drain(1000, new AbortController().signal));
    await clock.advance(999);
    expect(drain.done).toBe(false);
    request.release();
    await request.response;
    await clock.advance(0);
    expect(drain).toEqual({ done: true, value: true });
    expect(clock.pending).toBe(0);
  });

  test("answers false at its timeout, to the millisecond, while a request still runs", async () => {
    const { clock, gate, admitOne } = setup();
    const request = await admitOne();
    const drain = watch(gate.drain(1000, new AbortController().signal));
    await clock.advance(999);
    expect(drain.done).toBe(false);
    await clock.advance(1);
    expect(drain).toEqual({ done: true, value: false });
    expect(gate.inFlight).toBe(1);
    request.release();
    await request.response;
  });

  test("answers false as soon as it is interrupted", async () => {
    const { clock, gate, admitOne } = setup();
    const request = await admitOne();
    const interrupt = new AbortController();
    const drain = gate.drain(1000, interrupt.signal);
    interrupt.abort();
    expect(await drain).toBe(false);
    expect(clock.pending).toBe(0);
    request.release();
    await request.response;
  });
});
