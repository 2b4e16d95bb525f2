import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { type Service, startService } from "../../src/service.ts";
import { freePort } from "../helpers/free-port.ts";
import { createUser, expectJson, expectProblem, type UserJson } from "../helpers/http.ts";
import { captureLogs } from "../helpers/logs.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, testConfig } from "../helpers/service.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

/**
 * Far beyond any wait of these tests: a refusal comes from the refused connection
 * (or the missing schema), never from waiting out a deadline.
 */
const NEVER_MS = "600000";

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
    service = startService(
      testConfig(`postgres://postgres@127.0.0.1:${port}/nowhere`, {
        DB_CONNECT_TIMEOUT_MS: NEVER_MS,
        DB_QUERY_TIMEOUT_MS: NEVER_MS,
      }),
      captureLogs(),
    );
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
    test(`${method} ${path} answers 503 problem with Retry-After, without waiting for the database, and without internal details`, async () => {
      const response = await service.app.request(path, init());
      expect(response.headers.get("retry-after")).toBe("5");
      const text = await response.clone().text();
      expectNoInternals(text, port);
      await expectProblem(response, schemaNotReady(path));
    });
  }

  test("GET /health answers 503 unhealthy with the database down and the schema pending", async () => {
    const response = await service.app.request("/health");
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
    service = startService(
      testConfig(through.url, { DB_CONNECT_TIMEOUT_MS: NEVER_MS, DB_QUERY_TIMEOUT_MS: NEVER_MS }),
      logs,
    );
    await service.schemaApplied;
  });
  afterAll(async () => {
    await proxy.restore();
    await service.stop();
    await proxy.close();
    await database.drop();
  });

  test("while cut off, /users answers 503 from the refused connection and /health 503; once back, the very first GET /users answers 200", async () => {
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    await proxy.cut();
    /** The request, asserted refused because the connection was: its warning names ECONNREFUSED. */
    const refused = async (path: string, init: RequestInit = {}) => {
      const requestId = `cut-${path}-${init.method ?? "GET"}`;
      const response = await service.app.request(path, {
        ...init,
        headers: { ...init.headers, "X-Request-Id": requestId },
      });
      const warnings = logs.events("db.unavailable").filter((line) => line.request_id === requestId);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.error).toContain("ECONNREFUSED");
      return response;
    };

    const list = await refused("/users");
    expect(list.headers.get("retry-after")).toBe("5");
    expectNoInternals(await list.clone().text(), proxy.port);
    await expectProblem(list, databaseUnavailable("/users"));

    const create = await refused("/users", jsonBody("POST", { name: "Bob", email: "bob@example.com" }));
    expect(create.headers.get("retry-after")).toBe("5");
    await expectProblem(create, databaseUnavailable("/users"));

    const one = await refused(`/users/${alice.id}`);
    await expectProblem(one, databaseUnavailable(`/users/${alice.id}`));

    const health = await service.app.request("/health");
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({
      status: "unhealthy",
      checks: { database: { status: "down" }, schema: { status: "ready" } },
    });
    expect((await service.app.request("/health/live")).status).toBe(200);

    await proxy.restore();
    expect(await expectJson<UserJson[]>(await service.app.request("/users"), 200)).toEqual([alice]);
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
