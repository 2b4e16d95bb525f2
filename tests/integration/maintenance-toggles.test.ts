import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { createUser, expectJson, PROBLEM_TYPE_PREFIX, type UserJson } from "../helpers/http.ts";
import {
  applied,
  expectMaintenance,
  getStats,
  inMaintenance,
  put,
  sourceStatus,
  startMaintenanceService,
} from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

// These tests start servers and wait on real I/O; bun's default of 5 s per test and hook is too tight on a loaded machine.
setDefaultTimeout(30_000);

const KEY = "/maintenance/toggles-test";
const POOL_MAX = 10;
const MAINTENANCE_POOL_MAX = 1;
const RETRY_AFTER_SECONDS = 60;
/** Sanity bound from a write of true to the gate refusing, in-process (bench/ measures it properly). */
const PROPAGATION_BOUND_MS = 500;
/**
 * Looser bound for leaving: the pool is replaced before the gate opens, and the
 * first request then opens a fresh PostgreSQL connection.
 */
const LEAVE_BOUND_MS = 2000;

let etcd: TestEtcd;
let database: TestDatabase;
let service: Service;
let alice: UserJson;

beforeAll(async () => {
  etcd = await TestEtcd.start();
  database = await createTestDatabase("mtoggles");
  await put(etcd, KEY, "false");
  service = await startMaintenanceService(database.url, etcd.endpoint, KEY, {
    DB_POOL_MAX: String(POOL_MAX),
    DB_MAINTENANCE_POOL_MAX: String(MAINTENANCE_POOL_MAX),
    DRAIN_TIMEOUT_MS: "5000",
  });
  await waitFor("the source to connect", () => sourceStatus(service) === "connected");
  alice = await createUser(service.app, "Alice", "alice@example.com");
});
afterAll(async () => {
  await service?.stop();
  await etcd?.stop();
  await database?.drop();
});

/**
 * Writes `count` values alternating between true and false, each as soon as
 * the previous write returned, ending on `last`, while clients keep calling
 * GET /users. Resolves with the last write's revision and every status the
 * clients saw.
 */
async function toggle(count: number, last: "true" | "false") {
  const other = last === "true" ? "false" : "true";
  let writing = true;
  const seen: { status: number; type: string | null }[] = [];
  const clients = Array.from({ length: 3 }, async () => {
    while (writing) {
      const response = await service.app.request("/users");
      const body = (await response.json()) as { type?: string };
      seen.push({ status: response.status, type: body.type ?? null });
      // A refused request never leaves the microtask queue: yield so etcd's answers get read.
      await Bun.sleep(1);
    }
  });
  let revision = 0;
  try {
    for (let i = 0; i < count; i++) {
      revision = await put(etcd, KEY, (count - 1 - i) % 2 === 0 ? last : other);
    }
  } finally {
    writing = false;
    await Promise.all(clients);
  }
  return { revision, seen };
}

describe("rapid toggles", () => {
  test("50 writes ending on true leave the service in maintenance with the maintenance pool; 50 more ending on false leave it serving", async () => {
    const on = await toggle(50, "true");
    await applied(service, on.revision);
    expect(inMaintenance(service)).toBe(true);
    expect(service.db.stats().max).toBe(MAINTENANCE_POOL_MAX);
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    expect((await getStats(service.app)).maintenance_status).toMatchObject({
      enabled: true,
      phase: "maintenance",
      revision: String(on.revision),
    });

    const off = await toggle(50, "false");
    await applied(service, off.revision);
    expect(inMaintenance(service)).toBe(false);
    expect(service.db.stats().max).toBe(POOL_MAX);
    expect(await expectJson<UserJson[]>(await service.app.request("/users"), 200)).toEqual([alice]);
    const stats = await getStats(service.app);
    expect(stats.maintenance_status).toMatchObject({
      enabled: false,
      phase: "serving",
      revision: String(off.revision),
    });
    expect(stats.database.max).toBe(POOL_MAX);

    // While the toggles ran, clients got either users or the maintenance 503: nothing else.
    for (const { seen } of [on, off]) {
      expect(seen.length).toBeGreaterThan(0);
      for (const answer of seen) {
        expect(
          answer.status === 200 || (answer.status === 503 && answer.type === `${PROBLEM_TYPE_PREFIX}maintenance`),
        ).toBe(true);
      }
    }
  });
});

describe("propagation", () => {
  test("each of 20 writes of true closes the gate within 500 ms of the write returning, and each write of false opens it again", async () => {
    const closing: number[] = [];
    const opening: number[] = [];
    for (let i = 0; i < 20; i++) {
      await put(etcd, KEY, "true");
      let started = performance.now();
      await waitFor("the gate to close", async () => (await service.app.request("/users")).status === 503);
      closing.push(performance.now() - started);
      await service.maintenance.settled();

      await put(etcd, KEY, "false");
      started = performance.now();
      await waitFor("the gate to open", async () => (await service.app.request("/users")).status === 200);
      opening.push(performance.now() - started);
    }
    expect(Math.max(...closing)).toBeLessThan(PROPAGATION_BOUND_MS);
    expect(Math.max(...opening)).toBeLessThan(LEAVE_BOUND_MS);
  });
});
