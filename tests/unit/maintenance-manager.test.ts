import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import type { PoolShape } from "../../src/db/db-holder.ts";
import { silentLogger } from "../../src/logger.ts";
import { Gate } from "../../src/maintenance/gate.ts";
import { MaintenanceManager, type ManagerSettings, type PoolResizer } from "../../src/maintenance/manager.ts";
import type { MaintenanceSource, Observation } from "../../src/maintenance/source.ts";
import type { SourceStatus } from "../../src/maintenance/status.ts";

/** A source whose readings the test writes. */
class FakeSource implements MaintenanceSource {
  private listener: ((o: Observation) => void) | undefined;
  private revision = 0;
  closed = false;
  start(listener: (o: Observation) => void) {
    this.listener = listener;
  }
  write(value: string | null) {
    this.listener?.({ value, revision: ++this.revision });
  }
  status(): SourceStatus {
    return { kind: "memory", status: "connected", last_confirmed_at: null, stale_seconds: null, last_error: null };
  }
  async close() {
    this.closed = true;
  }
}

/** A pool that records reconnects; each swaps at once and retires the old client in `delayMs`. */
class FakePool implements PoolResizer {
  shape = { max: 10, readOnly: false };
  calls: { max: number; gateClosed: boolean; inFlightAtCall: number }[] = [];
  constructor(
    private readonly gate: Gate,
    private readonly delayMs = 0,
  ) {}
  async reconnect(shape: PoolShape) {
    this.calls.push({ max: shape.max, gateClosed: this.gate.closed, inFlightAtCall: this.gate.inFlight });
    this.shape = shape;
    await Bun.sleep(this.delayMs);
    return true;
  }
}

const KEY = "/maintenance/test";
const settings: ManagerSettings = {
  poolMax: 10,
  maintenancePoolMax: 1,
  drainTimeoutMs: 2000,
  retryAfterSeconds: 60,
  startPolicy: "open",
};

function setup(overrides: Partial<ManagerSettings> = {}, poolDelayMs = 0) {
  const gate = new Gate();
  const pool = new FakePool(gate, poolDelayMs);
  const source = new FakeSource();
  const manager = new MaintenanceManager(
    { ...settings, ...overrides },
    gate,
    pool,
    [{ key: KEY, source }],
    silentLogger,
  );
  manager.start();
  // An app whose one route runs until the test releases it.
  const releases: (() => void)[] = [];
  const app = new Hono()
    .use(gate.middleware())
    .get("/slow", async (c) => {
      await new Promise<void>((resolve) => releases.push(resolve));
      return c.text("done");
    })
    .onError((error) => new Response(error.message, { status: (error as { status?: number }).status ?? 500 }));
  return { gate, pool, source, manager, app, releases };
}

describe("MaintenanceManager", () => {
  test("entering closes the gate first, then shrinks the pool", async () => {
    const { gate, pool, source, manager } = setup();
    source.write("true");
    expect(gate.closed).toBe(true);
    await manager.settled();
    expect(pool.calls).toEqual([{ max: 1, gateClosed: true, inFlightAtCall: 0 }]);
    expect(manager.status()).toMatchObject({ enabled: true, phase: "maintenance", retry_after_seconds: 60 });
  });

  test("the pool shrinks only after admitted requests finish", async () => {
    const { gate, pool, source, manager, app, releases } = setup();
    const running = app.request("/slow");
    await Bun.sleep(10);
    expect(gate.inFlight).toBe(1);
    source.write("on");
    await Bun.sleep(50);
    expect(manager.status().phase).toBe("entering");
    expect(pool.calls).toEqual([]);
    expect((await app.request("/slow")).status).toBe(503);
    releases[0]?.();
    expect((await running).status).toBe(200);
    await manager.settled();
    expect(pool.calls).toEqual([{ max: 1, gateClosed: true, inFlightAtCall: 0 }]);
  });

  test("a request that outlives the drain timeout does not stop the pool from shrinking", async () => {
    const { pool, source, manager, app, releases } = setup({ drainTimeoutMs: 100 });
    const running = app.request("/slow");
    await Bun.sleep(10);
    source.write("true");
    await manager.settled();
    expect(pool.calls).toEqual([{ max: 1, gateClosed: true, inFlightAtCall: 1 }]);
    releases[0]?.();
    await running;
  });

  test("leaving restores the pool before opening the gate", async () => {
    const { gate, pool, source, manager } = setup();
    source.write("true");
    await manager.settled();
    source.write("false");
    await manager.settled();
    // The pool was reconnected while the gate was still closed.
    expect(pool.calls.at(-1)).toEqual({ max: 10, gateClosed: true, inFlightAtCall: 0 });
    expect(gate.closed).toBe(false);
    expect(manager.status()).toMatchObject({ enabled: false, phase: "serving", since: null, reason: null });
  });

  test("50 rapid toggles coalesce into alternating steps and end in the last state", async () => {
    const { gate, pool, source, manager } = setup({}, 5);
    for (let i = 0; i < 50; i++) {
      source.write(i % 2 === 0 ? "true" : "false");
      if (i % 5 === 0) await Bun.sleep(2);
    }
    source.write("true");
    await manager.settled();
    // Every reconnect changed the shape: the loop never repeated or skipped a step.
    expect(pool.calls.every((call, i) => i === 0 || call.max !== pool.calls[i - 1]?.max)).toBe(true);
    expect(pool.calls.length).toBeGreaterThan(1);
    expect(pool.calls.length).toBeLessThan(25);
    expect(gate.closed).toBe(true);
    expect(pool.shape.max).toBe(1);
    expect(manager.status().revision).toBe("51");
  });

  test("an unknown value keeps the current state and is reported", async () => {
    const { gate, pool, source, manager } = setup();
    source.write("true");
    await manager.settled();
    source.write("perhaps");
    await manager.settled();
    expect(gate.closed).toBe(true);
    expect(pool.calls).toHaveLength(1);
    expect(manager.status().rejected).toMatchObject({ value: "perhaps", revision: "2" });
    expect(manager.status().revision).toBe("1");
    source.write("false");
    await manager.settled();
    expect(manager.status().rejected).toBeNull();
  });

  test("a new reason while in maintenance updates the 503 without touching the pool", async () => {
    const { pool, source, manager, app } = setup();
    source.write("true");
    await manager.settled();
    source.write('{"enabled":true,"reason":"disk upgrade","retry_after":120}');
    await manager.settled();
    expect(pool.calls).toHaveLength(1);
    const response = await app.request("/slow");
    expect(response.status).toBe(503);
    expect(await response.text()).toBe("disk upgrade");
    expect(manager.status()).toMatchObject({ reason: "disk upgrade", retry_after_seconds: 120 });
  });

  test("turned off while draining, it reopens without shrinking the pool", async () => {
    const { gate, pool, source, manager, app, releases } = setup();
    const running = app.request("/slow");
    await Bun.sleep(10);
    source.write("true");
    await Bun.sleep(20);
    source.write("false");
    await manager.settled();
    expect(pool.calls).toEqual([]);
    expect(gate.closed).toBe(false);
    releases[0]?.();
    await running;
  });

  test("under the closed start policy the gate is closed until the source answers", async () => {
    const { gate, source, manager } = setup({ startPolicy: "closed" });
    expect(gate.closed).toBe(true);
    expect(manager.status().reason).toContain("not known yet");
    source.write(null);
    await manager.settled();
    expect(gate.closed).toBe(false);
  });

  test("close() cuts a drain short and closes the source", async () => {
    const { source, manager, app, releases } = setup({ drainTimeoutMs: 60_000 });
    const running = app.request("/slow");
    await Bun.sleep(10);
    source.write("true");
    const started = performance.now();
    await manager.close();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(source.closed).toBe(true);
    releases[0]?.();
    await running;
  });
});
