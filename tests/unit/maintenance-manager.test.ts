import { describe, expect, test } from "bun:test";
import type { PoolShape } from "../../src/db/db-holder.ts";
import { silentLogger } from "../../src/logger.ts";
import { Gate, HELD_HEADER, WINDOW_HEADER } from "../../src/maintenance/gate.ts";
import { MaintenanceManager, type ManagerSettings, type PoolResizer } from "../../src/maintenance/manager.ts";
import type { MaintenanceSource, Observation } from "../../src/maintenance/source.ts";
import type { SourceStatus } from "../../src/maintenance/status.ts";
import { FakeClock } from "../helpers/fake-clock.ts";
import { gatedApp } from "../helpers/gated-app.ts";

/** A source whose readings the test writes. */
class FakeSource implements MaintenanceSource {
  private listener: ((o: Observation) => void) | undefined;
  revision = 0;
  closed = false;
  start(listener: (o: Observation) => void) {
    this.listener = listener;
  }
  /** Writes `value` (null: deletes the key); returns its revision. */
  write(value: string | null): number {
    this.listener?.({ value, revision: ++this.revision });
    return this.revision;
  }
  status(): SourceStatus {
    return { kind: "memory", status: "connected", lastConfirmedAt: null, staleSeconds: null, lastError: null };
  }
  async close() {
    this.closed = true;
  }
}

/**
 * A pool that records each reconnect with what the gate did at that moment. The swap is at
 * once; the old client retires at once, or when the test calls `retire()` if `holdRetirement`.
 */
class FakePool implements PoolResizer {
  calls: { max: number; readOnly: boolean; gate: string; inFlight: number }[] = [];
  private retirements: ((drained: boolean) => void)[] = [];
  constructor(
    private readonly gate: Gate,
    private readonly holdRetirement = false,
  ) {}
  reconnect(shape: PoolShape): Promise<boolean> {
    this.calls.push({ ...shape, gate: this.gate.mode, inFlight: this.gate.inFlight });
    if (!this.holdRetirement) return Promise.resolve(true);
    return new Promise((resolve) => this.retirements.push(resolve));
  }
  /** Ends the retirements held so far. */
  retire(drained = true) {
    for (const resolve of this.retirements.splice(0)) resolve(drained);
  }
}

const KEY = "/maintenance/test";
const FLEET_KEY = "/maintenance/fleet";
const settings: ManagerSettings = {
  poolMax: 10,
  maintenancePoolMax: 1,
  drainTimeoutMs: 2000,
  retryAfterSeconds: 60,
  holdMs: 0,
  startPolicy: "open",
};
const SHRUNK = { max: 1, readOnly: false };
const READ_ONLY = { max: 1, readOnly: true };
const RESTORED = { max: 10, readOnly: false };

function setup(options: { settings?: Partial<ManagerSettings>; holdRetirement?: boolean; fleetKey?: boolean } = {}) {
  const clock = new FakeClock();
  const gate = new Gate(null, clock);
  const pool = new FakePool(gate, options.holdRetirement);
  const source = new FakeSource();
  const fleet = new FakeSource();
  const manager = new MaintenanceManager(
    { ...settings, ...options.settings },
    gate,
    pool,
    [{ key: KEY, source }, ...(options.fleetKey ? [{ key: FLEET_KEY, source: fleet }] : [])],
    silentLogger,
    clock,
  );
  manager.start();
  const { app, admit } = gatedApp(gate);
  return { clock, gate, pool, source, fleet, manager, app, admit };
}

describe("MaintenanceManager", () => {
  test("entering closes the gate at once, then shrinks the pool", async () => {
    const { gate, pool, source, manager } = setup();
    source.write("true");
    expect(gate.closed).toBe(true);
    await manager.settled();
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 0 }]);
    expect(manager.status()).toMatchObject({ enabled: true, phase: "maintenance", retryAfterSeconds: 60 });
  });

  test("the pool shrinks only after admitted requests finish", async () => {
    const { gate, pool, source, manager, app, admit } = setup();
    const request = await admit();
    expect(gate.inFlight).toBe(1);
    source.write("on");
    expect(manager.status().phase).toBe("entering");
    expect(manager.stableAndDrained).toBe(false);
    expect((await app.request("/slow")).status).toBe(503);
    expect(pool.calls).toEqual([]);
    request.release();
    expect((await request.response).status).toBe(200);
    await manager.settled();
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 0 }]);
    expect(manager.stableAndDrained).toBe(true);
  });

  test("a request that outlives the drain timeout holds the pool for exactly the timeout", async () => {
    const { clock, pool, source, manager, admit } = setup({ settings: { drainTimeoutMs: 100 } });
    const request = await admit();
    source.write("true");
    await clock.advance(99);
    expect(pool.calls).toEqual([]);
    await clock.advance(1);
    await manager.settled();
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 1 }]);
    expect(manager.status().transitions[0]).toMatchObject({ kind: "enter", drained: false, drainMs: 100, ms: 100 });
    expect(manager.stableAndDrained).toBe(false);
    request.release();
    await request.response;
  });

  test("leaving restores the pool while the gate is still closed, then opens it", async () => {
    const { gate, pool, source, manager } = setup();
    source.write("true");
    await manager.settled();
    source.write("false");
    await manager.settled();
    expect(pool.calls.at(-1)).toEqual({ ...RESTORED, gate: "full", inFlight: 0 });
    expect(gate.closed).toBe(false);
    expect(manager.status()).toMatchObject({ enabled: false, phase: "serving", since: null, reason: null });
    expect(manager.status().transitions.map((t) => t.kind)).toEqual(["leave", "enter"]);
  });

  test("a burst of toggles during a step coalesces: the loop heads for the last value only", async () => {
    const { clock, gate, pool, source, manager } = setup({ holdRetirement: true });
    source.write("true");
    // Let the loop run as far as it can: it waits for the large client to retire.
    await clock.advance(0);
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 0 }]);
    for (let i = 0; i < 50; i++) source.write(i % 2 === 0 ? "false" : "true");
    source.write('{"mode":"read-only"}');
    pool.retire();
    // The next step heads for read-only: a read-only client, whose predecessor retires too.
    await clock.advance(0);
    pool.retire();
    await manager.settled();
    expect(pool.calls).toEqual([
      { ...SHRUNK, gate: "full", inFlight: 0 },
      { ...READ_ONLY, gate: "full", inFlight: 0 },
    ]);
    expect(gate.mode).toBe("read-only");
    expect(manager.status()).toMatchObject({ mode: "read-only", phase: "maintenance", revision: 52 });
    // One transition, from off to where the burst ended.
    expect(manager.status().transitions).toMatchObject([{ kind: "enter", fromMode: "off", mode: "read-only" }]);
  });

  test("an unknown value keeps the current state and is reported", async () => {
    const { clock, gate, pool, source, manager } = setup();
    source.write("true");
    await manager.settled();
    await clock.advance(1234);
    source.write("perhaps");
    await manager.settled();
    expect(gate.closed).toBe(true);
    expect(pool.calls).toHaveLength(1);
    expect(manager.status().rejected).toEqual({ key: KEY, value: "perhaps", revision: 2, at: new Date(clock.now()) });
    expect(manager.status().revision).toBe(1);
    expect(manager.observedThrough(KEY)).toBe(2);
    source.write("false");
    await manager.settled();
    expect(manager.status().rejected).toBeNull();
  });

  test("a new reason while in maintenance updates the 503 without touching the pool", async () => {
    const { pool, source, manager, app } = setup();
    source.write("true");
    await manager.settled();
    source.write('{"enabled":true,"reason":"disk upgrade","retry_after":120}');
    expect(manager.status().phase).toBe("maintenance");
    await manager.settled();
    expect(pool.calls).toHaveLength(1);
    const response = await app.request("/slow");
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("120");
    expect(((await response.json()) as { detail: string }).detail).toBe("disk upgrade");
    expect(manager.status()).toMatchObject({ reason: "disk upgrade", retryAfterSeconds: 120 });
    expect(manager.status().transitions.map((t) => t.kind)).toEqual(["update", "enter"]);
  });

  test("false arriving while draining into read-only reopens the gate without touching the pool", async () => {
    const { gate, pool, source, manager, admit } = setup();
    const request = await admit();
    source.write('{"mode":"read-only"}');
    expect(gate.mode).toBe("read-only");
    source.write("false");
    await manager.settled();
    expect(pool.calls).toEqual([]);
    expect(gate.closed).toBe(false);
    expect(manager.status()).toMatchObject({ phase: "serving", since: null });
    expect(manager.status().transitions).toMatchObject([{ kind: "abandon", fromMode: "off", mode: "off" }]);
    request.release();
    await request.response;
  });

  test("a drain cut short by a new reason goes on with the time left of the same timeout", async () => {
    const { clock, pool, source, manager, admit } = setup({ settings: { drainTimeoutMs: 1000 } });
    const request = await admit();
    source.write("true");
    await clock.advance(400);
    source.write('{"mode":"full","reason":"longer than planned"}');
    await clock.advance(599);
    expect(pool.calls).toEqual([]);
    await clock.advance(1);
    await manager.settled();
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 1 }]);
    expect(manager.status().transitions[0]).toMatchObject({ kind: "enter", drainMs: 1000, drained: false });
    request.release();
    await request.response;
  });

  test("the old client's retirement is waited for into maintenance, not out of it", async () => {
    const { clock, pool, source, manager } = setup({ holdRetirement: true });
    source.write("true");
    await clock.advance(0);
    expect(manager.stableAndDrained).toBe(false);
    pool.retire(false);
    await manager.settled();
    expect(manager.status().transitions[0]).toMatchObject({ kind: "enter", drained: false });
    source.write("false");
    // Out of maintenance, the new client serves at once: nothing waits for the small one.
    await manager.settled();
    expect(manager.status()).toMatchObject({ enabled: false, phase: "serving" });
    expect(manager.stableAndDrained).toBe(true);
    pool.retire();
  });

  test("the most restrictive key wins, and names itself as the cause", async () => {
    const { gate, source, fleet, manager } = setup({ fleetKey: true });
    source.write('{"mode":"read-only","reason":"service"}');
    const revision = fleet.write('{"mode":"full","reason":"fleet"}');
    await manager.settled();
    expect(gate.current).toMatchObject({ mode: "full", detail: "fleet" });
    expect(manager.status()).toMatchObject({ mode: "full", key: FLEET_KEY, revision, reason: "fleet" });
    expect(manager.status().keys.map((k) => [k.key, k.mode])).toEqual([
      [KEY, "read-only"],
      [FLEET_KEY, "full"],
    ]);
    fleet.write(null);
    await manager.settled();
    expect(manager.status()).toMatchObject({ mode: "read-only", key: KEY, reason: "service" });
  });

  test("under the closed start policy the gate is closed until a key answers", async () => {
    const { gate, source, manager } = setup({ settings: { startPolicy: "closed" } });
    expect(gate.closed).toBe(true);
    expect(manager.status().reason).toContain("not known yet");
    source.write("garbage");
    expect(gate.closed).toBe(true);
    source.write(null);
    await manager.settled();
    expect(gate.closed).toBe(false);
  });

  test("hold_ms holds refused requests, not in flight: the pool shrinks under them and is restored before they run", async () => {
    const { clock, gate, pool, source, manager, admit } = setup();
    source.write('{"mode":"full","hold_ms":5000}');
    await manager.settled();
    const held = admit();
    await clock.advance(0);
    expect(gate.held).toBe(1);
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 0 }]);
    const heldWhenRestored: number[] = [];
    const reconnect = pool.reconnect.bind(pool);
    pool.reconnect = (shape) => {
      heldWhenRestored.push(gate.held);
      return reconnect(shape);
    };
    await clock.advance(2000);
    source.write("false");
    await manager.settled();
    expect(heldWhenRestored).toEqual([1]);
    const request = await held;
    request.release();
    const response = await request.response;
    expect(response.status).toBe(200);
    expect(response.headers.get(HELD_HEADER)).toBe("2000");
  });

  test("MAINTENANCE_HOLD_MS is the default hold; a value's hold_ms overrides it, and 0 turns it off", async () => {
    const { gate, source, manager } = setup({ settings: { holdMs: 1500 } });
    source.write("true");
    await manager.settled();
    expect(gate.current.holdMs).toBe(1500);
    source.write('{"mode":"full","hold_ms":0}');
    await manager.settled();
    expect(gate.current.holdMs).toBe(0);
    expect(manager.status().transitions.map((t) => t.kind)).toEqual(["update", "enter"]);
  });

  test("close() cuts a drain short and closes the source", async () => {
    const { source, manager, admit } = setup({ settings: { drainTimeoutMs: 60_000 } });
    const request = await admit();
    source.write("true");
    // The clock never moves: only the cut can end the drain.
    await manager.close();
    expect(source.closed).toBe(true);
    request.release();
    await request.response;
  });
});

describe("MaintenanceManager windows", () => {
  const START = Date.UTC(2030, 0, 1, 12);
  const END = START + 30 * 60_000;
  const window = JSON.stringify({
    mode: "full",
    reason: "window",
    start: new Date(START).toISOString(),
    end: new Date(END).toISOString(),
  });

  test("a window closes the gate at its start and opens it at its end, to the millisecond", async () => {
    const { clock, gate, pool, source, manager, app } = setup();
    source.write(window);
    await manager.settled();
    expect(gate.closed).toBe(false);
    expect(manager.status().upcomingWindow).toEqual({ start: new Date(START), end: new Date(END) });
    const before = await app.request("/nothing");
    expect(before.headers.get(WINDOW_HEADER)).toBe(`${new Date(START).toISOString()}/${new Date(END).toISOString()}`);

    await clock.advanceTo(START - 1);
    expect(gate.closed).toBe(false);
    await clock.advance(1);
    expect(gate.closed).toBe(true);
    await manager.settled();
    expect(manager.status()).toMatchObject({ mode: "full", reason: "window", since: new Date(START) });
    expect(manager.status().upcomingWindow).toBeNull();
    expect(pool.calls).toEqual([{ ...SHRUNK, gate: "full", inFlight: 0 }]);

    await clock.advanceTo(END - 1);
    expect(gate.closed).toBe(true);
    await clock.advance(1);
    await manager.settled();
    expect(gate.closed).toBe(false);
    expect(pool.calls.at(-1)).toEqual({ ...RESTORED, gate: "full", inFlight: 0 });
    expect(manager.status().transitions.map((t) => [t.kind, t.at])).toEqual([
      ["leave", new Date(END)],
      ["enter", new Date(START)],
    ]);
  });

  test("Retry-After counts down to the window's end, in whole seconds rounded up", async () => {
    const { clock, source, manager, app } = setup();
    source.write(window);
    await clock.advanceTo(START);
    await manager.settled();
    const retryAfter = async () => (await app.request("/slow")).headers.get("retry-after");
    expect(await retryAfter()).toBe("1800");
    expect(manager.status().retryAfterSeconds).toBe(1800);
    await clock.advance(1);
    expect(await retryAfter()).toBe("1800");
    await clock.advanceTo(END - 1001);
    expect(await retryAfter()).toBe("2");
    await clock.advance(1);
    expect(await retryAfter()).toBe("1");
    await clock.advanceTo(END - 1);
    expect(await retryAfter()).toBe("1");
    expect(manager.status().retryAfterSeconds).toBe(1);
  });

  test("a window already begun applies at once; one already over changes nothing", async () => {
    const { clock, gate, source, manager } = setup();
    await clock.advanceTo(START + 1000);
    source.write(window);
    expect(gate.closed).toBe(true);
    await manager.settled();
    source.write(
      JSON.stringify({ mode: "full", start: new Date(START - 2000).toISOString(), end: new Date(START).toISOString() }),
    );
    await manager.settled();
    expect(gate.closed).toBe(false);
    expect(clock.pending).toBe(0);
  });
});

describe("MaintenanceManager waiting for a revision", () => {
  test("observed() resolves when the revision is read, without waiting on the clock", async () => {
    const { source, manager } = setup();
    const seen = manager.observed(KEY, 2, 5000);
    source.write("false");
    source.write("perhaps");
    expect(await seen).toBe(true);
  });

  test("observed() gives up after its timeout", async () => {
    const { clock, manager } = setup();
    const seen = manager.observed(KEY, 1, 5000);
    await clock.advance(5000);
    expect(await seen).toBe(false);
  });

  test("applied() waits for the transition the revision started", async () => {
    const { clock, manager, source, admit } = setup();
    const request = await admit();
    const revision = source.write("true");
    let done = false;
    const applied = manager.applied(KEY, revision, 5000).then((result) => {
      done = true;
      return result;
    });
    await clock.advance(1000);
    expect(done).toBe(false);
    request.release();
    await request.response;
    expect(await applied).toBe(true);
    expect(manager.status().phase).toBe("maintenance");
  });

  test("applied() answers false at its timeout while the drain goes on", async () => {
    const { clock, manager, source, admit } = setup({ settings: { drainTimeoutMs: 10_000 } });
    const request = await admit();
    const applied = manager.applied(KEY, source.write("true"), 5000);
    await clock.advance(5000);
    expect(await applied).toBe(false);
    expect(manager.status().phase).toBe("entering");
    request.release();
    await request.response;
    await manager.settled();
  });
});
