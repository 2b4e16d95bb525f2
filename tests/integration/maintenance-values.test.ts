import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type FollowingService, startFollowingService } from "../helpers/fixture.ts";
import { createUser, expectJson, ISO_DATE_TIME, type UserJson } from "../helpers/http.ts";
import {
  applied,
  etcdctlDel,
  etcdctlPut,
  expectMaintenance,
  getHealth,
  getStats,
  inMaintenance,
  put,
} from "../helpers/maintenance.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/values-test";
const RETRY_AFTER_SECONDS = 30;
const POOL_MAX = 10;
const MAINTENANCE_POOL_MAX = 1;

let fixture: FollowingService;
let etcd: TestEtcd;
let service: Service;
let alice: UserJson;

beforeAll(async () => {
  fixture = await startFollowingService({
    prefix: "mvalues",
    key: KEY,
    initial: "false",
    env: {
      RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
      DB_POOL_MAX: String(POOL_MAX),
      DB_MAINTENANCE_POOL_MAX: String(MAINTENANCE_POOL_MAX),
    },
  });
  ({ etcd, service } = fixture);
  alice = await createUser(service.app, "Alice", "alice@example.com");
});
afterAll(() => fixture?.stop());

/** Writes `value` and waits until the service has applied it. */
async function set(value: string): Promise<number> {
  const revision = await put(etcd, KEY, value);
  await applied(service, revision);
  return revision;
}

/** Writes `value`, which the service must reject, and waits until it has. */
async function setRejected(value: string): Promise<number> {
  const revision = await put(etcd, KEY, value);
  await waitFor(
    `the rejection of ${JSON.stringify(value)}`,
    () => service.maintenance.status().rejected?.revision === revision,
  );
  await service.maintenance.settled();
  return revision;
}

/** Asserts users routes answer the maintenance 503 and the pool is the maintenance one. */
async function expectOn(detail?: string, retryAfter = RETRY_AFTER_SECONDS) {
  await expectMaintenance(await service.app.request("/users"), "/users", retryAfter, detail);
  expect(inMaintenance(service)).toBe(true);
  expect(service.db.stats().max).toBe(MAINTENANCE_POOL_MAX);
  expect(service.maintenance.status().phase).toBe("maintenance");
}

/** Asserts users routes serve and the pool is the normal one. */
async function expectOff() {
  expect(await expectJson<UserJson>(await service.app.request(`/users/${alice.id}`), 200)).toEqual(alice);
  expect(inMaintenance(service)).toBe(false);
  expect(service.db.stats().max).toBe(POOL_MAX);
  expect(service.maintenance.status().phase).toBe("serving");
}

describe("an operator using etcdctl", () => {
  beforeEach(async () => {
    await set("false");
  });

  test("`etcdctl put <key> true` turns maintenance on and `etcdctl put <key> false` turns it off", async () => {
    await applied(service, await etcdctlPut(etcd, KEY, "true"));
    await expectOn();
    const health = await getHealth(service.app);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: "maintenance", maintenance: true, reason: null });

    await applied(service, await etcdctlPut(etcd, KEY, "false"));
    await expectOff();
    expect(await getHealth(service.app)).toMatchObject({
      status: 200,
      body: { status: "healthy", maintenance: false, reason: null, since: null },
    });
  });

  test("`etcdctl del <key>` turns maintenance off", async () => {
    await applied(service, await etcdctlPut(etcd, KEY, "true"));
    await expectOn();
    await applied(service, await etcdctlDel(etcd, KEY));
    await expectOff();
  });

  test("a value written with a 2 s lease turns maintenance on, and off when the lease expires, not before", async () => {
    // The lease runs from its grant.
    const granting = performance.now();
    const granted = await etcd.etcdctl("lease", "grant", "2");
    const lease = /^lease ([0-9a-f]+) granted/.exec(granted)?.[1];
    if (!lease) throw new Error(`unexpected etcdctl output: ${granted}`);
    await applied(service, await etcdctlPut(etcd, KEY, "true", `--lease=${lease}`));
    await expectOn();

    await waitFor("the lease to expire and maintenance to end", () => !inMaintenance(service));
    const offAfterMs = performance.now() - granting;
    await service.maintenance.settled();
    await expectOff();
    // Off because the lease ran out, not at once.
    expect(offAfterMs).toBeGreaterThan(1500);
    expect(await etcd.etcdctl("get", KEY)).toBe("");
  });
});

describe("words", () => {
  const onWords = [
    "true",
    "1",
    "yes",
    "on",
    "enabled",
    "maintenance",
    "TRUE",
    " Yes ",
    "On\n",
    "\tEnabled ",
    "MAINTENANCE",
  ];
  for (const word of onWords) {
    test(`${JSON.stringify(word)} turns maintenance on with the default detail and Retry-After`, async () => {
      await set("false");
      await set(word);
      await expectOn();
    });
  }

  const offWords = ["false", "0", "no", "off", "disabled", "", "FALSE", " No ", "Off\n", "\tDISABLED "];
  for (const word of offWords) {
    test(`${JSON.stringify(word)} turns maintenance off`, async () => {
      await set("true");
      await expectOn();
      await set(word);
      await expectOff();
    });
  }

  test("deleting the key turns maintenance off", async () => {
    await set("true");
    const response = await etcd.client.delete().key(KEY).exec();
    await applied(service, Number(response.header.revision));
    await expectOff();
  });
});

describe("JSON values", () => {
  beforeEach(async () => {
    await set("false");
  });

  test('{"enabled":true,"reason":"disk upgrade","retry_after":120} answers 503 with that detail and Retry-After: 120', async () => {
    const before = Date.now();
    await set('{"enabled":true,"reason":"disk upgrade","retry_after":120}');
    await expectOn("disk upgrade", 120);
    for (const [method, path] of [
      ["GET", `/users/${alice.id}`],
      ["DELETE", `/users/${alice.id}`],
    ] as const) {
      await expectMaintenance(await service.app.request(path, { method }), path, 120, "disk upgrade");
    }

    const health = await getHealth(service.app);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({
      status: "maintenance",
      maintenance: true,
      reason: "disk upgrade",
      retry_after_seconds: 120,
      rejected: null,
    });
    expect(health.body.since).toMatch(ISO_DATE_TIME);
    expect(Date.parse(health.body.since ?? "")).toBeGreaterThanOrEqual(before);
    const stats = await getStats(service.app);
    expect(stats.maintenance_status).toMatchObject({
      enabled: true,
      phase: "maintenance",
      reason: "disk upgrade",
      retry_after_seconds: 120,
    });
  });

  test('{"enabled":false} turns maintenance off', async () => {
    await set('{"enabled":true,"reason":"disk upgrade","retry_after":120}');
    await expectOn("disk upgrade", 120);
    await set('{"enabled":false}');
    await expectOff();
  });

  test('{"enabled":true} alone uses the default detail and RETRY_AFTER_SECONDS', async () => {
    await set('{"enabled":true}');
    await expectOn();
  });

  test("a new reason while in maintenance changes the 503 without leaving maintenance or rebuilding the pool", async () => {
    await set("true");
    const before = await getStats(service.app);
    const since = before.maintenance_status.since;
    await set('{"enabled":true,"reason":"reindexing","retry_after":5}');
    await expectOn("reindexing", 5);
    const after = await getStats(service.app);
    expect(after.database.generation).toBe(before.database.generation);
    expect(after.maintenance_status.since).toBe(since);
  });
});

describe("values that are not understood", () => {
  const garbage = [
    "maybe",
    "2",
    "tru",
    "[true]",
    "{not json",
    '{"enabled":"yes"}',
    '{"enabled":true,"extra":1}',
    '{"enabled":true,"retry_after":-1}',
    '{"reason":"no enabled"}',
  ];

  for (const value of garbage) {
    test(`${JSON.stringify(value)} outside maintenance changes nothing and is reported with its revision in /stats and /health`, async () => {
      await set("false");
      const generation = service.db.stats().generation;
      const revision = await setRejected(value);
      await expectOff();
      expect(service.db.stats().generation).toBe(generation);

      const stats = await getStats(service.app);
      expect(stats.maintenance).toBe(false);
      expect(stats.maintenance_status.rejected).toEqual({
        key: KEY,
        value,
        revision: String(revision),
        at: expect.stringMatching(ISO_DATE_TIME),
      });
      const health = await getHealth(service.app);
      expect(health.status).toBe(200);
      expect(health.body.status).toBe("healthy");
      expect(health.body.rejected).toEqual(stats.maintenance_status.rejected);
    });
  }

  test("in maintenance, every value not understood keeps maintenance on, and is reported", async () => {
    await set('{"enabled":true,"reason":"disk upgrade","retry_after":120}');
    const generation = service.db.stats().generation;
    for (const value of garbage) {
      const revision = await setRejected(value);
      await expectOn("disk upgrade", 120);
      expect(service.db.stats().generation).toBe(generation);
      const health = await getHealth(service.app);
      expect(health.status).toBe(200);
      expect(health.body).toMatchObject({
        status: "maintenance",
        reason: "disk upgrade",
        rejected: { value, revision: String(revision) },
      });
    }
  });

  test("the next value understood clears the report", async () => {
    await set("false");
    await setRejected("maybe");
    expect((await getStats(service.app)).maintenance_status.rejected).not.toBeNull();
    await set("true");
    await expectOn();
    expect((await getStats(service.app)).maintenance_status.rejected).toBeNull();
    expect((await getHealth(service.app)).body.rejected).toBeNull();
  });
});
