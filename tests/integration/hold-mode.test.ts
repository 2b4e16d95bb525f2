import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { type Answer, type HoldRun, runThroughMaintenance } from "../helpers/hold-load.ts";
import { PROBLEM_TYPE_PREFIX } from "../helpers/http.ts";
import { applied, etcdctlPut, sourceStatus, startMaintenanceService } from "../helpers/maintenance.ts";
import { percentile } from "../helpers/percentile.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/hold-test";
const HOLD_MAX = 32;
const MAINTENANCE_MS = 2000;
const RETRY_AFTER_SECONDS = 60;

let etcd: TestEtcd;
let database: TestDatabase;
let service: Service;

beforeAll(async () => {
  etcd = await TestEtcd.start();
  database = await createTestDatabase("hold");
  await etcdctlPut(etcd, KEY, "false");
  service = await startMaintenanceService(database.url, etcd.endpoint, KEY, {
    DB_POOL_MAX: "10",
    DB_MAINTENANCE_POOL_MAX: "1",
    MAINTENANCE_HOLD_MAX: String(HOLD_MAX),
    RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
  });
  await waitFor("the source to connect", () => sourceStatus(service) === "connected");
});
afterAll(async () => {
  await service?.stop();
  await etcd?.stop();
  await database?.drop();
});

/** `clients` clients through a 2 s maintenance turned on with `etcdctl put` of `{"mode":"full","hold_ms":5000}`. */
function throughMaintenance(clients: number, tag: string): Promise<HoldRun> {
  return runThroughMaintenance({
    app: service.app,
    clients,
    tag,
    maintenanceMs: MAINTENANCE_MS,
    turnOn: async () => applied(service, await etcdctlPut(etcd, KEY, '{"mode":"full","hold_ms":5000}')),
    turnOff: async () => applied(service, await etcdctlPut(etcd, KEY, "false")),
  });
}

/** Asserts every write answered 201 is in the table exactly once, and no write answered otherwise is. */
async function expectWritesExactlyOnce(answers: Answer[], tag: string) {
  const rows = await database.sql<{ id: number; email: string }[]>`
    SELECT id, email FROM users WHERE email LIKE ${`${tag}-%`} ORDER BY id`;
  const acknowledged = answers.filter((a) => a.method === "POST" && a.status === 201);
  expect(rows.map((r) => ({ id: r.id, email: r.email })).sort((a, b) => a.id - b.id)).toEqual(
    acknowledged.map((a) => ({ id: a.id as number, email: a.email as string })).sort((a, b) => a.id - b.id),
  );
}

/** Latency percentiles of `answers`, for the test's output: reported, never asserted. */
function report(name: string, run: HoldRun) {
  const all = run.answers.map((a) => a.ms);
  const held = run.answers.filter((a) => a.heldMs !== null).map((a) => a.ms);
  const ms = (values: number[], p: number) => percentile(values, p).toFixed(0);
  console.info(
    `${name}: maintenance ${run.maintenanceMs.toFixed(0)} ms; ${all.length} requests p50 ${ms(all, 50)} ms, ` +
      `p99 ${ms(all, 99)} ms, max ${ms(all, 100)} ms; ${held.length} held p50 ${ms(held, 50)} ms, p99 ${ms(held, 99)} ms`,
  );
}

describe("hold mode through a 2 s maintenance", () => {
  test("32 clients reading and writing get no answer but 2xx, and every acknowledged write is in the table exactly once", async () => {
    const before = { ...service.gate.holdOutcomes };
    const run = await throughMaintenance(32, "all-held");
    report("32 clients", run);
    const failures = run.answers.filter((a) => a.status >= 300);
    expect(failures).toEqual([]);
    const held = run.answers.filter((a) => a.heldMs !== null);
    expect(held.length).toBeGreaterThan(0);
    expect(service.gate.holdOutcomes).toEqual({ ...before, released: before.released + held.length });
    await expectWritesExactlyOnce(run.answers, "all-held");
    expect(service.gate.held).toBe(0);
  });

  test(`with more clients than MAINTENANCE_HOLD_MAX (${HOLD_MAX}) the overflow gets the 503 with Retry-After, and nothing else changes`, async () => {
    const before = { ...service.gate.holdOutcomes };
    const run = await throughMaintenance(HOLD_MAX + 16, "overflow");
    report(`${HOLD_MAX + 16} clients`, run);
    const refused = run.answers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThan(0);
    for (const answer of refused) {
      expect(answer).toMatchObject({
        type: `${PROBLEM_TYPE_PREFIX}maintenance`,
        retryAfter: String(RETRY_AFTER_SECONDS),
        heldMs: null,
      });
    }
    expect(run.answers.filter((a) => a.status !== 503 && a.status >= 300)).toEqual([]);
    const held = run.answers.filter((a) => a.heldMs !== null);
    expect(service.gate.holdOutcomes).toEqual({
      released: before.released + held.length,
      timed_out: before.timed_out,
      overflow: before.overflow + refused.length,
      client_gone: before.client_gone,
    });
    await expectWritesExactlyOnce(run.answers, "overflow");
    const metrics = await (await service.app.request("/metrics")).text();
    expect(metrics).toContain("\nmaintenance_held_requests 0\n");
    for (const [outcome, count] of Object.entries(service.gate.holdOutcomes)) {
      expect(metrics).toContain(`\nmaintenance_hold_outcomes_total{outcome="${outcome}"} ${count}\n`);
    }
    const stats = (await (await service.app.request("/stats")).json()) as { http: unknown };
    expect(stats.http).toEqual({ in_flight: 0, held: 0, hold_outcomes: service.gate.holdOutcomes });
  });
});
