import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Service, startService } from "../../src/service.ts";
import { freePort } from "../helpers/free-port.ts";
import { createUser, expectJson, expectProblem, type UserJson } from "../helpers/http.ts";
import { captureLogs } from "../helpers/logs.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, testConfig } from "../helpers/service.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";

/** Longest a request may take to be refused while the database is unreachable. */
const BOUND_MS = 3000;

/** Sends a request and returns the response with how long it took. */
async function timed(service: Service, path: string, init?: RequestInit) {
  const started = performance.now();
  const response = await service.app.request(path, init);
  return { response, ms: performance.now() - started };
}

/** Asserts the text of a 5xx body names no internal detail (driver errors, addresses, ports). */
function expectNoInternals(text: string, port: number) {
  for (const leak of ["ECONNREFUSED", "CONNECTION_", "127.0.0.1", String(port), "postgres", "Error", "stack"]) {
    expect(text).not.toContain(leak);
  }
}

const databaseUnavailable = (instance: string) => ({
  status: 503,
  type: "database-unavailable",
  title: "Service Unavailable",
  detail:
    "The database is not reachable right now. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
  instance,
});

describe("a service whose database never answered", () => {
  let service: Service;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    // Not awaiting schemaApplied: with nothing listening it would retry forever.
    service = startService(testConfig(`postgres://postgres@127.0.0.1:${port}/nowhere`), captureLogs());
  });
  afterAll(async () => {
    await service.stop();
  });

  const schemaNotReady = (instance: string) => ({
    status: 503,
    type: "database-unavailable",
    title: "Service Unavailable",
    detail:
      "The database schema is not ready yet. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
    instance,
  });

  const requests: [string, string, () => RequestInit][] = [
    ["GET", "/users", () => ({ method: "GET" })],
    ["POST", "/users", () => jsonBody("POST", { name: "Alice", email: "alice@example.com" })],
    ["GET", "/users/1", () => ({ method: "GET" })],
    ["PUT", "/users/1", () => jsonBody("PUT", { name: "Alice", email: "alice@example.com" })],
    ["DELETE", "/users/1", () => ({ method: "DELETE" })],
  ];
  for (const [method, path, init] of requests) {
    test(`${method} ${path} answers 503 problem with Retry-After, quickly, and without internal details`, async () => {
      const { response, ms } = await timed(service, path, init());
      expect(ms).toBeLessThan(BOUND_MS);
      expect(response.headers.get("retry-after")).toBe("5");
      const text = await response.clone().text();
      expectNoInternals(text, port);
      await expectProblem(response, schemaNotReady(path));
    });
  }

  test("GET /health answers 503 unhealthy with the database down and the schema pending", async () => {
    const { response, ms } = await timed(service, "/health");
    expect(ms).toBeLessThan(BOUND_MS);
    expect(response.status).toBe(503);
    expect(response.headers.get("content-type")).toBe("application/json");
    const body = await response.json();
    expect(body).toMatchObject({
      status: "unhealthy",
      maintenance: false,
      checks: { database: { status: "down", detail: "database unreachable" }, schema: { status: "pending" } },
    });
    expectNoInternals(JSON.stringify(body), port);
  });

  test("GET /health/live answers 200 alive", async () => {
    const response = await service.app.request("/health/live");
    expect(await expectJson(response, 200)).toEqual({ status: "alive" });
  });
});

describe("a service that loses its database and gets it back", () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let service: Service;
  const logs = captureLogs();

  beforeAll(async () => {
    database = await createTestDatabase("dbdown");
    const through = await proxyDatabase(database.url);
    proxy = through.proxy;
    service = startService(testConfig(through.url), logs);
    await service.schemaApplied;
  });
  afterAll(async () => {
    await proxy.restore();
    await service.stop();
    await proxy.close();
    await database.drop();
  });

  test("while cut off, /users answers 503 fast and /health 503; once back, the very first GET /users answers 200", async () => {
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    await proxy.cut();

    const list = await timed(service, "/users");
    expect(list.ms).toBeLessThan(BOUND_MS);
    expect(list.response.headers.get("retry-after")).toBe("5");
    expectNoInternals(await list.response.clone().text(), proxy.port);
    await expectProblem(list.response, databaseUnavailable("/users"));

    const create = await timed(service, "/users", jsonBody("POST", { name: "Bob", email: "bob@example.com" }));
    expect(create.ms).toBeLessThan(BOUND_MS);
    expect(create.response.headers.get("retry-after")).toBe("5");
    await expectProblem(create.response, databaseUnavailable("/users"));

    const one = await timed(service, `/users/${alice.id}`);
    expect(one.ms).toBeLessThan(BOUND_MS);
    await expectProblem(one.response, databaseUnavailable(`/users/${alice.id}`));

    const health = await timed(service, "/health");
    expect(health.ms).toBeLessThan(BOUND_MS);
    expect(health.response.status).toBe(503);
    expect(await health.response.json()).toMatchObject({
      status: "unhealthy",
      checks: { database: { status: "down" }, schema: { status: "ready" } },
    });
    expect((await service.app.request("/health/live")).status).toBe(200);

    await proxy.restore();
    const again = await timed(service, "/users");
    expect(again.ms).toBeLessThan(BOUND_MS);
    expect(await expectJson<UserJson[]>(again.response, 200)).toEqual([alice]);
    expect((await service.app.request("/health")).status).toBe(200);
    const bob = await createUser(service.app, "Bob", "bob@example.com");
    expect(await expectJson<UserJson>(await service.app.request(`/users/${bob.id}`), 200)).toEqual(bob);
  });

  test("a read right after every pooled connection was closed under the service is retried once and answers 200", async () => {
    const carol = await createUser(service.app, "Carol", "carol@example.com");
    // Warm the pool: the connection that served this read stays open and idle.
    expect((await service.app.request(`/users/${carol.id}`)).status).toBe(200);
    const retriesBefore = logs.events("db.retry_after_stale_connection").length;

    // Like a PostgreSQL restart: every open connection dies, and the server is back before the next query.
    void proxy.cut();
    await proxy.restore();

    const response = await service.app.request(`/users/${carol.id}`);
    expect(await expectJson<UserJson>(response, 200)).toEqual(carol);
    const retries = logs.events("db.retry_after_stale_connection").slice(retriesBefore);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ code: "CONNECTION_CLOSED" });
  });

  test("while cut off, 503 bodies carry the request id and no driver message", async () => {
    await proxy.cut();
    try {
      const response = await service.app.request("/users", { headers: { "X-Request-Id": "down-check-1" } });
      const text = await response.clone().text();
      expectNoInternals(text, proxy.port);
      expect(response.headers.get("x-request-id")).toBe("down-check-1");
      await expectProblem(response, databaseUnavailable("/users"));
      const warnings = logs.events("db.unavailable").filter((line) => line.request_id === "down-check-1");
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.error).toContain("ECONNREFUSED");
    } finally {
      await proxy.restore();
    }
  });
});
