import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type FollowingService, startFollowingService } from "../helpers/fixture.ts";
import { createUser, expectJson, PROBLEM_TYPE_PREFIX, type UserJson } from "../helpers/http.ts";
import {
  applied,
  expectMaintenance,
  getStats,
  inMaintenance,
  put,
  putDeliveredByWatch,
} from "../helpers/maintenance.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/toggles-test";
const POOL_MAX = 10;
const MAINTENANCE_POOL_MAX = 1;
const RETRY_AFTER_SECONDS = 60;

let fixture: FollowingService;
let etcd: TestEtcd;
let service: Service;
let alice: UserJson;

beforeAll(async () => {
  fixture = await startFollowingService({
    prefix: "mtoggles",
    key: KEY,
    initial: "false",
    env: {
      DB_POOL_MAX: String(POOL_MAX),
      DB_MAINTENANCE_POOL_MAX: String(MAINTENANCE_POOL_MAX),
      DRAIN_TIMEOUT_MS: "5000",
    },
  });
  ({ etcd, service } = fixture);
  alice = await createUser(service.app, "Alice", "alice@example.com");
});
afterAll(() => fixture?.stop());

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
  test("each of 20 writes of true, delivered by the watch, closes the gate, and each write of false opens it again", async () => {
    for (let i = 0; i < 20; i++) {
      await putDeliveredByWatch(etcd, service, KEY, "true");
      await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);

      await putDeliveredByWatch(etcd, service, KEY, "false");
      expect(await expectJson<UserJson[]>(await service.app.request("/users"), 200)).toEqual([alice]);
    }
  });
});
