import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type EtcdAndDatabase, startEtcdAndDatabase } from "../helpers/fixture.ts";
import { createUser, expectJson, expectProblem, ISO_DATE_TIME, type UserJson } from "../helpers/http.ts";
import {
  applied,
  connectionsOf,
  etcdctlPut,
  expectMaintenance,
  getHealth,
  getStats,
  put,
  startMaintenanceService,
} from "../helpers/maintenance.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { jsonBody } from "../helpers/service.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const RETRY_AFTER_SECONDS = 42;

let fixture: EtcdAndDatabase;
let etcd: TestEtcd;
let database: TestDatabase;

beforeAll(async () => {
  fixture = await startEtcdAndDatabase("mcontract");
  ({ etcd, database } = fixture);
});
afterAll(() => fixture?.stop());

describe("in maintenance", () => {
  const KEY = "/maintenance/contract-test";
  let service: Service;
  let alice: UserJson;
  let enteredAt: number;

  beforeAll(async () => {
    await put(etcd, KEY, "false");
    service = await startMaintenanceService(database.url, etcd.endpoint, KEY, {
      RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
      DB_POOL_MAX: "10",
      DB_MAINTENANCE_POOL_MAX: "1",
    });
    alice = await createUser(service.app, "Alice", "alice@example.com");
    enteredAt = Date.now();
    await applied(service, await etcdctlPut(etcd, KEY, "true"));
    // PostgreSQL lets the old client's backends go a moment after they are closed.
    await waitFor(
      "one open connection",
      async () => (await connectionsOf(database.sql, service.db.applicationNamePrefix)).length <= 1,
    );
  });
  afterAll(async () => {
    await service?.stop();
  });

  const userRoutes: [string, string, () => RequestInit][] = [
    ["GET", "/users", () => ({ method: "GET" })],
    ["POST", "/users", () => jsonBody("POST", { name: "Bob", email: "bob@example.com" })],
    ["GET", "/users/{id}", () => ({ method: "GET" })],
    ["PUT", "/users/{id}", () => jsonBody("PUT", { name: "Alicia", email: "alicia@example.com" })],
    ["DELETE", "/users/{id}", () => ({ method: "DELETE" })],
  ];
  for (const [method, route, init] of userRoutes) {
    test(`${method} ${route} answers 503 problem+json with Retry-After: RETRY_AFTER_SECONDS`, async () => {
      const path = route.replace("{id}", String(alice.id));
      const response = await service.app.request(path, init());
      expect(response.status).toBe(503);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      await expectMaintenance(response, path, RETRY_AFTER_SECONDS);
    });
  }

  test("the 503 body is exactly the maintenance problem, with the request id of the X-Request-Id header", async () => {
    const response = await service.app.request("/users", { headers: { "X-Request-Id": "maintenance-check-1" } });
    expect(response.headers.get("x-request-id")).toBe("maintenance-check-1");
    expect(await response.json()).toEqual({
      type: "urn:problem:database-service:maintenance",
      title: "Service Unavailable",
      status: 503,
      detail: "The service is in maintenance. Please retry later.",
      instance: "/users",
      request_id: "maintenance-check-1",
    });
  });

  test("requests that would fail validation get the maintenance 503 too: the gate answers first", async () => {
    for (const [path, init] of [
      ["/users", jsonBody("POST", { name: "" })],
      ["/users/abc", { method: "GET" }],
      ["/users?limit=0", { method: "GET" }],
      [`/users/${alice.id}`, { method: "PUT", headers: { "content-type": "text/plain" }, body: "x" }],
    ] as const) {
      await expectMaintenance(await service.app.request(path, init), path.split("?")[0] ?? path, RETRY_AFTER_SECONDS);
    }
  });

  test("refused writes change nothing in the database", async () => {
    const rows = await database.sql`SELECT id, name, email FROM users ORDER BY id`;
    expect([...rows]).toEqual([{ id: alice.id, name: "Alice", email: "alice@example.com" }]);
  });

  test("GET /health answers 200 maintenance with since, the database and the source", async () => {
    const response = await service.app.request("/health");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const body = await response.json();
    expect(body).toEqual({
      status: "maintenance",
      maintenance: true,
      mode: "full",
      key: KEY,
      reason: null,
      since: expect.stringMatching(ISO_DATE_TIME),
      retry_after_seconds: RETRY_AFTER_SECONDS,
      held_requests: 0,
      upcoming_window: null,
      rejected: null,
      checks: {
        database: { status: "up", latency_ms: expect.any(Number) },
        schema: { status: "ready" },
        maintenance_source: {
          kind: "etcd",
          status: "connected",
          last_confirmed_at: expect.stringMatching(ISO_DATE_TIME),
          stale_seconds: null,
          last_error: null,
        },
      },
      timestamp: expect.stringMatching(ISO_DATE_TIME),
    });
    const since = Date.parse(body.since);
    expect(since).toBeGreaterThanOrEqual(enteredAt);
    expect(since).toBeLessThanOrEqual(Date.now());
  });

  test("GET /health/live answers 200 alive", async () => {
    expect(await expectJson(await service.app.request("/health/live"), 200)).toEqual({ status: "alive" });
  });

  test("GET /stats answers 200 with maintenance on and the maintenance pool's numbers", async () => {
    const response = await service.app.request("/stats");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const stats = await expectJson<Awaited<ReturnType<typeof getStats>>>(response, 200);
    expect(stats).toMatchObject({
      maintenance: true,
      maintenance_status: {
        enabled: true,
        phase: "maintenance",
        reason: null,
        retry_after_seconds: RETRY_AFTER_SECONDS,
        key: KEY,
        source: { kind: "etcd", status: "connected" },
        rejected: null,
      },
      database: {
        generation: 2,
        max: 1,
        application_name: `${service.db.applicationNamePrefix}2`,
        // The connection asking is the one connection of the maintenance pool.
        open_connections: 1,
      },
      http: { in_flight: 0, held: 0 },
    });
    // Queries in flight: at most the fleet acknowledgement's own count of connections, running beside this one.
    expect(stats.database.in_flight).toBeLessThanOrEqual(1);
  });

  test("GET /openapi.json answers 200 with the document", async () => {
    const document = await expectJson<{ openapi: string; paths: Record<string, unknown> }>(
      await service.app.request("/openapi.json"),
      200,
    );
    expect(document.openapi).toBe("3.1.0");
    expect(Object.keys(document.paths)).toContain("/users");
  });

  test("GET /docs answers 200 with the Swagger UI page", async () => {
    const response = await service.app.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/html");
    expect(await response.text()).toContain("swagger");
  });

  test("an unknown route still answers 404, not the maintenance 503", async () => {
    await expectProblem(await service.app.request("/nowhere"), {
      status: 404,
      type: "not-found",
      title: "Not Found",
      detail: "No route for GET /nowhere.",
      instance: "/nowhere",
    });
  });

  test("after maintenance ends, the user is unchanged and writes work again", async () => {
    await applied(service, await etcdctlPut(etcd, KEY, "false"));
    expect(await expectJson<UserJson>(await service.app.request(`/users/${alice.id}`), 200)).toEqual(alice);
    const bob = await createUser(service.app, "Bob", "bob@example.com");
    expect(await expectJson<UserJson[]>(await service.app.request("/users"), 200)).toEqual([alice, bob]);
  });
});

describe("GET /health with PostgreSQL unreachable", () => {
  const KEY = "/maintenance/contract-dbdown-test";
  let proxy: TcpProxy;
  let service: Service;

  beforeAll(async () => {
    await put(etcd, KEY, "false");
    const through = await proxyDatabase(database.url);
    proxy = through.proxy;
    service = await startMaintenanceService(through.url, etcd.endpoint, KEY, {
      RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
    });
  });
  afterAll(async () => {
    await proxy?.restore();
    await service?.stop();
    await proxy?.close();
  });

  test("outside maintenance it answers 503 unhealthy", async () => {
    await proxy.cut();
    try {
      const health = await getHealth(service.app);
      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({
        status: "unhealthy",
        maintenance: false,
        checks: { database: { status: "down", detail: "database unreachable" } },
      });
    } finally {
      await proxy.restore();
    }
    await waitFor("the database to be back", async () => (await getHealth(service.app)).status === 200);
  });

  test("in maintenance it answers 200 maintenance with the database down; live and stats answer, users get the maintenance 503", async () => {
    await applied(service, await put(etcd, KEY, "true"));
    await proxy.cut();
    try {
      const health = await getHealth(service.app);
      expect(health.status).toBe(200);
      expect(health.body).toMatchObject({
        status: "maintenance",
        maintenance: true,
        since: expect.stringMatching(ISO_DATE_TIME),
        checks: {
          database: { status: "down", detail: "database unreachable" },
          maintenance_source: { status: "connected" },
        },
      });
      expect(await expectJson(await service.app.request("/health/live"), 200)).toEqual({ status: "alive" });
      const stats = await getStats(service.app);
      expect(stats.maintenance).toBe(true);
      expect(stats.database.open_connections).toBeNull();
      await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
    } finally {
      await proxy.restore();
    }
    await waitFor(
      "the database check to be up again",
      async () => (await getHealth(service.app)).body.checks.database.status === "up",
    );
  });
});
