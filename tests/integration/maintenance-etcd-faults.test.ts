import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { freePort } from "../helpers/free-port.ts";
import { createUser, expectJson, ISO_DATE_TIME, type UserJson } from "../helpers/http.ts";
import { captureLogs } from "../helpers/logs.ts";
import {
  etcdctlPut,
  expectMaintenance,
  getHealth,
  getStats,
  inMaintenance,
  put,
  putDeliveredByWatch,
  START_CLOSED_DETAIL,
  sourceStatus,
  startMaintenanceService,
} from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const RETRY_AFTER_SECONDS = 60;

let etcd: TestEtcd;
let database: TestDatabase;
let alice: UserJson;
/** What a test started, stopped after it even when it fails. */
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  etcd = await TestEtcd.start();
  database = await createTestDatabase("mfaults");
  // Schema and a user for every test, whatever state a test's own service starts in.
  const seed = await startMaintenanceService(database.url, etcd.endpoint, "/maintenance/faults-seed");
  alice = await createUser(seed.app, "Alice", "alice@example.com");
  await seed.stop();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await etcd?.stop();
  await database?.drop();
});

async function start(endpoints: string, key: string, env: Record<string, string> = {}, logger = captureLogs()) {
  const service = await startMaintenanceService(database.url, endpoints, key, env, logger);
  cleanups.push(() => service.stop());
  return service;
}

async function startEtcd(port?: number): Promise<TestEtcd> {
  const started = await TestEtcd.start(port);
  cleanups.push(() => started.stop());
  return started;
}

async function proxyTo(target: TestEtcd): Promise<TcpProxy> {
  const proxy = await startTcpProxy("127.0.0.1", target.clientPort);
  cleanups.push(() => proxy.close());
  return proxy;
}

/** GET /users/{alice} answers 200 with Alice. */
async function expectServing(service: Service) {
  expect(await expectJson<UserJson>(await service.app.request(`/users/${alice.id}`), 200)).toEqual(alice);
}

describe("etcd killed while the service runs", () => {
  test("the service keeps serving, reports the source unavailable with a growing staleness, and follows etcd again once it is back", async () => {
    const key = "/maintenance/faults-kill";
    await put(etcd, key, "false");
    const service = await start(etcd.endpoint, key);
    await waitFor("the source to connect", () => sourceStatus(service) === "connected");
    await expectServing(service);
    let restarted = false;
    cleanups.push(async () => {
      if (!restarted) await etcd.resume();
    });

    await etcd.kill();
    await waitFor("the source to be reported unavailable", () => sourceStatus(service) === "unavailable");
    await expectServing(service);

    const first = await getHealth(service.app);
    // Read before toMatchObject: Bun's toMatchObject replaces matched values with the matchers.
    const firstStale = first.body.checks.maintenance_source.stale_seconds ?? -1;
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      status: "healthy",
      maintenance: false,
      checks: {
        database: { status: "up" },
        maintenance_source: {
          kind: "etcd",
          status: "unavailable",
          last_confirmed_at: expect.stringMatching(ISO_DATE_TIME),
          stale_seconds: expect.any(Number),
          last_error: expect.any(String),
        },
      },
    });
    await waitFor(
      "the staleness to grow by a second",
      async () => ((await getStats(service.app)).maintenance_status.source.stale_seconds ?? -1) >= firstStale + 1,
    );
    const stats = await getStats(service.app);
    expect(stats.maintenance).toBe(false);
    expect(stats.maintenance_status.source.status).toBe("unavailable");
    expect(stats.maintenance_status.source.stale_seconds).toBeGreaterThan(firstStale);
    await expectServing(service);

    await etcd.resume();
    restarted = true;
    await waitFor("the source to reconnect", () => sourceStatus(service) === "connected");
    expect((await getHealth(service.app)).body.checks.maintenance_source).toMatchObject({
      status: "connected",
      stale_seconds: null,
      last_error: null,
    });

    await putDeliveredByWatch(etcd, service, key, "true");
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
  });
});

describe("a change made while the service could not reach etcd", () => {
  test("applies once the link is back, and the watch delivers the next one", async () => {
    const key = "/maintenance/faults-partition";
    await put(etcd, key, "false");
    const proxy = await proxyTo(etcd);
    const service = await start(`127.0.0.1:${proxy.port}`, key);
    await waitFor("the source to connect", () => sourceStatus(service) === "connected");

    await proxy.cut();
    await waitFor("the source to be reported unavailable", () => sourceStatus(service) === "unavailable");
    await etcdctlPut(etcd, key, "true");
    // Fail-static: the service cannot see the change yet and keeps serving.
    await expectServing(service);

    await proxy.restore();
    await waitFor("maintenance to apply", () => inMaintenance(service));
    await service.maintenance.settled();
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    expect(sourceStatus(service)).toBe("connected");
    await putDeliveredByWatch(etcd, service, key, "false");
    await expectServing(service);
  });
});

describe("a watch cancelled by compaction", () => {
  test("is rebuilt from a fresh GET and the service follows later writes", async () => {
    const key = "/maintenance/faults-compaction";
    await put(etcd, key, "false");
    const proxy = await proxyTo(etcd);
    const logs = captureLogs();
    // Default timings: the periodic resync (30 s) cannot be what delivers the later writes.
    const service = await start(`127.0.0.1:${proxy.port}`, key, {}, logs);
    await waitFor("the source to connect", () => sourceStatus(service) === "connected");

    await proxy.cut();
    await waitFor("the source to be reported unavailable", () => sourceStatus(service) === "unavailable");
    await put(etcd, key, "true");
    await put(etcd, key, "false");
    await put(etcd, key, "maybe");
    const last = await put(etcd, key, "true");
    // Everything before `last` is gone: the watch cannot resume where it stopped.
    expect(await etcd.etcdctl("compact", String(last))).toBe(`compacted revision ${last}\n`);

    await proxy.restore();
    await waitFor("maintenance to apply", () => inMaintenance(service));
    await waitFor("the watch cancellation", () => logs.events("etcd.watch_cancelled").length > 0);
    expect(logs.events("etcd.watch_cancelled")[0]?.error).toContain("Watcher canceled");

    // Delivered by the rebuilt watch, not by the periodic re-read.
    await putDeliveredByWatch(etcd, service, key, "false");
    await expectServing(service);
    await putDeliveredByWatch(etcd, service, key, "true");
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    expect(sourceStatus(service)).toBe("connected");
  });
});

describe("a watch cancelled by compaction while the other key's watch lives on", () => {
  test("is rebuilt without an error escaping the etcd client, and the service follows both keys", async () => {
    const key = "/maintenance/faults-compaction-one";
    const globalKey = "/maintenance/faults-compaction-one-global";
    await put(etcd, key, "false");
    await put(etcd, globalKey, "false");
    const proxy = await proxyTo(etcd);
    const logs = captureLogs();
    const service = await start(`127.0.0.1:${proxy.port}`, key, { MAINTENANCE_GLOBAL_KEY: globalKey }, logs);
    await waitFor("both keys to be read", () =>
      service.maintenance.status().keys.every((k) => k.source.status === "connected" && k.revision !== null),
    );

    // The fleet key's watch sees newer revisions than the service key's watch...
    let globalRevision = 0;
    for (let i = 0; i < 3; i++) globalRevision = await put(etcd, globalKey, "false");
    await waitFor(
      "the fleet key's watch to see its last write",
      () => service.maintenance.status().keys[1]?.revision === globalRevision,
    );
    await proxy.cut();
    await waitFor("the source to be reported unavailable", () => sourceStatus(service) === "unavailable");
    await put(etcd, key, "true");
    // ...so compacting up to the fleet key's last write cancels only the service key's watch on reconnect.
    await etcd.etcdctl("compact", String(globalRevision));

    await proxy.restore();
    await waitFor("maintenance to apply", () => inMaintenance(service));
    await waitFor("the watch cancellation", () => logs.events("etcd.watch_cancelled").length > 0);
    expect(logs.events("etcd.watch_cancelled")).toHaveLength(1);

    await putDeliveredByWatch(etcd, service, key, "false");
    await expectServing(service);
    await putDeliveredByWatch(etcd, service, globalKey, "true");
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    await putDeliveredByWatch(etcd, service, globalKey, "false");
    await expectServing(service);
  });
});

describe("etcd down when the service starts", () => {
  test("with the open start policy, /users serves, the source is reported unavailable, and maintenance applies once etcd answers", async () => {
    const key = "/maintenance/faults-late";
    const port = await freePort();
    const service = await start(`127.0.0.1:${port}`, key);
    await expectServing(service);
    await waitFor("the source to be reported unavailable", () => sourceStatus(service) === "unavailable");
    const health = await getHealth(service.app);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({
      status: "healthy",
      maintenance: false,
      checks: {
        maintenance_source: {
          kind: "etcd",
          status: "unavailable",
          last_confirmed_at: null,
          stale_seconds: null,
          last_error: expect.any(String),
        },
      },
    });
    expect((await getStats(service.app)).maintenance_status.source.status).toBe("unavailable");

    const late = await startEtcd(port);
    await put(late, key, "true");
    await waitFor("maintenance to apply", () => inMaintenance(service));
    await service.maintenance.settled();
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    expect(sourceStatus(service)).toBe("connected");
    await putDeliveredByWatch(late, service, key, "false");
    await expectServing(service);
  });

  /** An etcd whose key already holds `value`, killed: it answers with that value once resumed. */
  async function etcdHolding(key: string, value: string): Promise<TestEtcd> {
    const held = await startEtcd();
    await put(held, key, value);
    await held.kill();
    return held;
  }

  test("with the closed start policy, /users answers 503 until etcd answers false, then serves", async () => {
    const key = "/maintenance/faults-closed-false";
    const held = await etcdHolding(key, "false");
    const service = await start(held.endpoint, key, { MAINTENANCE_START_POLICY: "closed" });

    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS, START_CLOSED_DETAIL);
    await waitFor("the source to be reported unavailable", () => sourceStatus(service) === "unavailable");
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS, START_CLOSED_DETAIL);
    const health = await getHealth(service.app);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({
      status: "maintenance",
      maintenance: true,
      reason: START_CLOSED_DETAIL,
      checks: { maintenance_source: { status: "unavailable" } },
    });

    await held.resume();
    await waitFor("the gate to open", () => !inMaintenance(service));
    await service.maintenance.settled();
    await expectServing(service);
    expect((await getHealth(service.app)).body).toMatchObject({ status: "healthy", maintenance: false });
  });

  test("with the closed start policy, etcd answering true keeps maintenance on, with the default detail and the maintenance pool", async () => {
    const key = "/maintenance/faults-closed-true";
    const held = await etcdHolding(key, "true");
    const service = await start(held.endpoint, key, {
      MAINTENANCE_START_POLICY: "closed",
      DB_POOL_MAX: "10",
      DB_MAINTENANCE_POOL_MAX: "1",
    });
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS, START_CLOSED_DETAIL);

    // The gate must never open on the way.
    let opened = false;
    const watching = setInterval(() => {
      if (!inMaintenance(service)) opened = true;
    }, 1);
    try {
      await held.resume();
      await waitFor("the source to connect", () => sourceStatus(service) === "connected");
      await waitFor("the value to be read", () => service.maintenance.status().revision !== null);
      await service.maintenance.settled();
    } finally {
      clearInterval(watching);
    }
    expect(opened).toBe(false);
    await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    const stats = await getStats(service.app);
    expect(stats.maintenance_status).toMatchObject({ enabled: true, phase: "maintenance", reason: null });
    expect(stats.database.max).toBe(1);
  });
});
