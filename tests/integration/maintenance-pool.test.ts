import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type FollowingService, startFollowingService } from "../helpers/fixture.ts";
import { createUser, expectJson, type UserJson } from "../helpers/http.ts";
import {
  applied,
  connectionsOf,
  expectMaintenance,
  getStats,
  lockUsersTable,
  put,
  type TableLock,
  waitForLockWaiters,
} from "../helpers/maintenance.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/pool-test";
const POOL_MAX = 10;
const MAINTENANCE_POOL_MAX = 1;
const RETRY_AFTER_SECONDS = 60;
/** Rounds of /health and /stats polling during which the pool must stay small. */
const POLL_ROUNDS = 15;

let fixture: FollowingService;
let etcd: TestEtcd;
let database: TestDatabase;
let service: Service;
let alice: UserJson;
let lock: TableLock | undefined;

beforeAll(async () => {
  fixture = await startFollowingService({
    prefix: "mpool",
    key: KEY,
    initial: "false",
    env: {
      DB_POOL_MAX: String(POOL_MAX),
      DB_MAINTENANCE_POOL_MAX: String(MAINTENANCE_POOL_MAX),
      // Far beyond any wait here: no drain ends by timeout.
      DRAIN_TIMEOUT_MS: "600000",
    },
  });
  ({ etcd, database, service } = fixture);
  alice = await createUser(service.app, "Alice", "alice@example.com");
});
beforeEach(async () => {
  await applied(service, await put(etcd, KEY, "false"));
});
afterEach(async () => {
  // A failed test must not leave the table locked for the next one.
  await lock?.release();
  lock = undefined;
});
afterAll(async () => {
  await lock?.release();
  await fixture?.stop();
});

/** This process's connections, by application_name, as PostgreSQL lists them. */
const ours = () => connectionsOf(database.sql, service.db.applicationNamePrefix);

/**
 * Holds the users table locked while `count` GET /users requests are sent at
 * once, waits until the pool has opened `expectedOpen` connections for them,
 * returns those connections' names, then releases the lock and checks every
 * request answered 200.
 */
async function concurrentLoad(count: number, expectedOpen: number): Promise<string[]> {
  lock = await lockUsersTable(database.url);
  const requests = Array.from({ length: count }, () => service.app.request("/users"));
  await waitFor(`${expectedOpen} open connections under load`, async () => (await ours()).length >= expectedOpen);
  const open = await ours();
  await lock.release();
  lock = undefined;
  const responses = await Promise.all(requests);
  for (const response of responses) expect(await expectJson<UserJson[]>(response, 200)).toEqual([alice]);
  return open;
}

describe("the connection pool", () => {
  test("shrinks to DB_MAINTENANCE_POOL_MAX connections in maintenance, stays there while /health and /stats are polled, and grows after", async () => {
    const before = await getStats(service.app);
    expect(before.database.max).toBe(POOL_MAX);
    const firstName = before.database.application_name;
    expect(firstName).toBe(`${service.db.applicationNamePrefix}${before.database.generation}`);

    // Under concurrent load, the normal pool opens up to DB_POOL_MAX connections.
    const loaded = await concurrentLoad(30, POOL_MAX);
    expect(loaded.length).toBeGreaterThan(MAINTENANCE_POOL_MAX);
    expect(loaded.length).toBeLessThanOrEqual(POOL_MAX);
    expect(new Set(loaded)).toEqual(new Set([firstName]));

    await applied(service, await put(etcd, KEY, "true"));
    const during = await getStats(service.app);
    expect(during.maintenance).toBe(true);
    expect(during.database.max).toBe(MAINTENANCE_POOL_MAX);
    expect(during.database.generation).toBe(before.database.generation + 1);
    expect(during.database.application_name).toBe(
      `${service.db.applicationNamePrefix}${before.database.generation + 1}`,
    );
    // PostgreSQL lets the old client's backends go a moment after they are closed.
    await waitFor(
      `at most ${MAINTENANCE_POOL_MAX} open connection`,
      async () => (await ours()).length <= MAINTENANCE_POOL_MAX,
    );

    let most = 0;
    const names = new Set<string>();
    for (let round = 0; round < POLL_ROUNDS; round++) {
      const answers = await Promise.all([
        ...Array.from({ length: 5 }, () => service.app.request("/health")),
        ...Array.from({ length: 5 }, () => service.app.request("/stats")),
      ]);
      for (const answer of answers) expect(answer.status).toBe(200);
      const open = await ours();
      for (const name of open) names.add(name);
      most = Math.max(most, open.length);
    }
    expect(most).toBeLessThanOrEqual(MAINTENANCE_POOL_MAX);
    expect([...names]).toEqual([during.database.application_name]);
    expect((await getStats(service.app)).database.open_connections).toBe(1);

    await applied(service, await put(etcd, KEY, "false"));
    const after = await getStats(service.app);
    expect(after.maintenance).toBe(false);
    expect(after.database.max).toBe(POOL_MAX);
    expect(after.database.generation).toBe(during.database.generation + 1);
    const thirdName = `${service.db.applicationNamePrefix}${during.database.generation + 1}`;
    expect(after.database.application_name).toBe(thirdName);

    const reloaded = await concurrentLoad(30, POOL_MAX);
    expect(reloaded.length).toBeGreaterThan(MAINTENANCE_POOL_MAX);
    expect(new Set(reloaded)).toEqual(new Set([thirdName]));
  });

  test("a request inside a slow query when maintenance begins completes with 200, while new requests get 503 before it ends", async () => {
    const bob = await createUser(service.app, "Bob", "bob@example.com");
    const before = await getStats(service.app);

    lock = await lockUsersTable(database.url);
    let answered = false;
    const blocked = Promise.resolve(service.app.request(`/users/${bob.id}`)).then((response) => {
      answered = true;
      return response;
    });
    await waitForLockWaiters(database.sql, service.db.applicationNamePrefix, 1);

    const revision = await put(etcd, KEY, "true");
    await waitFor("the gate to close", () => Number(service.maintenance.status().revision) >= revision);

    // The gate is closed, the admitted request still runs on the old pool.
    const entering = await getStats(service.app);
    expect(entering).toMatchObject({
      maintenance: true,
      maintenance_status: { enabled: true, phase: "entering" },
      database: { generation: before.database.generation, max: POOL_MAX },
      http: { in_flight: 1 },
    });
    // Refused while the admitted request is still held by the lock: without waiting for the drain.
    for (const path of ["/users", `/users/${bob.id}`, `/users/${alice.id}`]) {
      await expectMaintenance(await service.app.request(path), path, RETRY_AFTER_SECONDS);
    }
    expect(answered).toBe(false);

    await lock.release();
    lock = undefined;
    expect(await expectJson<UserJson>(await blocked, 200)).toEqual(bob);

    await service.maintenance.settled();
    const after = await getStats(service.app);
    expect(after.maintenance_status.phase).toBe("maintenance");
    expect(after.database).toMatchObject({ generation: before.database.generation + 1, max: MAINTENANCE_POOL_MAX });
    expect(after.http.in_flight).toBe(0);
    await waitFor(
      `at most ${MAINTENANCE_POOL_MAX} open connection`,
      async () => (await ours()).length <= MAINTENANCE_POOL_MAX,
    );
    // The drain ended because the request finished, not by timeout.
    const [entered] = (await getStats(service.app)).maintenance_status.transitions;
    expect(entered).toMatchObject({ kind: "enter", from_mode: "off", mode: "full", drained: true });
  });
});
