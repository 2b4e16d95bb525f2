import { describe, expect, test } from "bun:test";
import type { RunOptions } from "../../src/db/db-holder.ts";
import { type KeySweeperDeps, SWEEP_BATCH, startKeySweeper } from "../../src/idempotency/key-sweeper.ts";
import { FakeClock } from "../helpers/fake-clock.ts";
import { captureLogs } from "../helpers/logs.ts";

/**
 * A DbHolder stand-in whose runs answer, in turn, the deleted counts (or errors) queued in `answers`,
 * after asking the run's admission as the real one does; `runs` counts the runs admitted.
 */
function fakeDb(answers: (number | Error)[]) {
  const db = {
    runs: 0,
    async run<T>(_work: unknown, options: RunOptions = {}): Promise<T> {
      options.admission?.admitWrite();
      db.runs++;
      const answer = answers.shift() ?? 0;
      if (answer instanceof Error) throw answer;
      return answer as T;
    },
  };
  return db;
}

function sweeper(db: ReturnType<typeof fakeDb>, overrides: Partial<KeySweeperDeps> = {}) {
  const clock = new FakeClock();
  const logs = captureLogs();
  const gate = { closed: false };
  const schema = { ready: true };
  const sweeping = startKeySweeper({ db, schema, gate, logger: logs, ttlSeconds: 3600, clock, ...overrides });
  return { clock, logs, gate, schema, sweeping };
}

describe("startKeySweeper", () => {
  test("sweeps once a minute when the TTL is longer, and every TTL when it is shorter", async () => {
    const hourly = fakeDb([]);
    const { clock, sweeping } = sweeper(hourly);
    await clock.advance(59_999);
    expect(hourly.runs).toBe(0);
    await clock.advance(1);
    expect(hourly.runs).toBe(1);
    await clock.advance(60_000);
    expect(hourly.runs).toBe(2);
    await sweeping.stop();

    const short = fakeDb([]);
    const fast = sweeper(short, { ttlSeconds: 2 });
    await fast.clock.advance(6000);
    expect(short.runs).toBe(3);
    await fast.sweeping.stop();
  });

  test("a full batch is followed at once by another, until one deletes fewer; the total is logged", async () => {
    const db = fakeDb([SWEEP_BATCH, SWEEP_BATCH, 7]);
    const { clock, logs, sweeping } = sweeper(db);
    await clock.advance(60_000);
    expect(db.runs).toBe(3);
    expect(logs.events("idempotency.keys_swept")).toEqual([
      expect.objectContaining({ level: "debug", deleted: 2 * SWEEP_BATCH + 7 }),
    ]);
    await sweeping.stop();
  });

  test("no sweep runs while the gate is closed or before the schema is migrated, and nothing is logged", async () => {
    const db = fakeDb([]);
    const { clock, logs, gate, schema, sweeping } = sweeper(db);
    gate.closed = true;
    await clock.advance(60_000);
    schema.ready = false;
    gate.closed = false;
    await clock.advance(60_000);
    expect(db.runs).toBe(0);
    schema.ready = true;
    await clock.advance(60_000);
    expect(db.runs).toBe(1);
    expect(logs.lines.filter((line) => line.level !== "debug")).toEqual([]);
    await sweeping.stop();
  });

  test("a failed sweep is logged as a warning and the next one runs on time", async () => {
    const db = fakeDb([Object.assign(new Error("connection refused"), { code: "ECONNREFUSED" }), 0]);
    const { clock, logs, sweeping } = sweeper(db);
    await clock.advance(60_000);
    expect(logs.events("idempotency.sweep_failed")).toEqual([expect.objectContaining({ level: "warn" })]);
    await clock.advance(60_000);
    expect(db.runs).toBe(2);
    await sweeping.stop();
  });

  test("after stop no sweep is scheduled", async () => {
    const db = fakeDb([]);
    const { clock, sweeping } = sweeper(db);
    await sweeping.stop();
    await clock.advance(600_000);
    expect(db.runs).toBe(0);
    expect(clock.pending).toBe(0);
  });
});
