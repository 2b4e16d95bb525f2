import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import postgres from "postgres";
import type { Service } from "../../src/service.ts";
import { createUser, type ExpectedProblem, expectJson, expectProblem, type UserJson } from "../helpers/http.ts";
import { type CapturedLogger, captureLogs } from "../helpers/logs.ts";
import { lockUsersTable, type TableLock, waitForLockWaiters } from "../helpers/maintenance.ts";
import { createTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const databaseUnavailable = (instance: string): ExpectedProblem => ({
  status: 503,
  type: "database-unavailable",
  title: "Service Unavailable",
  detail:
    "The database is not reachable right now. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
  instance,
});

/** Asserts a 503 database-unavailable problem with Retry-After. */
async function expectUnavailable(response: Response, instance: string): Promise<void> {
  await expectProblem(response, databaseUnavailable(instance));
  expect(response.headers.get("retry-after")).toBe("5");
}

/**
 * Asserts the request `requestId` left exactly one log line beside its access
 * log line: a `db.unavailable` warning naming the SQLSTATE, without a stack.
 */
function expectOneUnavailableLine(logs: CapturedLogger, requestId: string, code: string): void {
  const lines = logs.lines.filter((line) => line.request_id === requestId && line.event !== "http.request");
  expect(lines).toEqual([
    expect.objectContaining({ level: "warn", event: "db.unavailable", code, request_id: requestId }),
  ]);
  expect(lines[0]).not.toHaveProperty("stack");
}

const withId = (requestId: string, init: RequestInit = {}): RequestInit => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), "X-Request-Id": requestId },
});

/** Superuser statements the tests use to break things. */
/**
 * Every /users operation on `user` answers the 503 problem (the list and a create each with
 * one log line naming `code`), nothing is logged as unhandled, and /health answers 503.
 */
async function expectAllUnavailable(
  service: Service,
  logs: CapturedLogger,
  user: UserJson,
  requestIdPrefix: string,
  code: string,
): Promise<void> {
  const { app } = service;
  await expectUnavailable(await app.request("/users", withId(`${requestIdPrefix}-list`)), "/users");
  expectOneUnavailableLine(logs, `${requestIdPrefix}-list`, code);
  const create = await app.request(
    "/users",
    withId(`${requestIdPrefix}-create`, jsonBody("POST", { name: "Bob", email: "bob@example.com" })),
  );
  await expectUnavailable(create, "/users");
  expectOneUnavailableLine(logs, `${requestIdPrefix}-create`, code);
  const path = `/users/${user.id}`;
  await expectUnavailable(await app.request(path), path);
  await expectUnavailable(await app.request(path, jsonBody("PUT", { name: "A", email: "a@example.com" })), path);
  await expectUnavailable(await app.request(path, { method: "DELETE" }), path);
  expect(logs.events("http.unhandled_error")).toEqual([]);

  const health = await app.request("/health");
  expect(health.status).toBe(503);
  expect(await health.json()).toMatchObject({ status: "unhealthy", checks: { database: { status: "down" } } });
}

const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
afterAll(() => admin.end({ timeout: 1 }));

/** Ends every session of `role`, as an operator would, and waits until they are gone. */
async function terminateSessions(role: string): Promise<void> {
  const sessions = () => admin`SELECT pid FROM pg_stat_activity WHERE usename = ${role}`;
  await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${role}`;
  await waitFor(`the sessions of ${role} to end`, async () => (await sessions()).length === 0);
}

/** An in-process service on `url` with an in-process maintenance key. */
const start = (url: string, env: Record<string, string> = {}, logs?: CapturedLogger) =>
  startTestService(url, { ETCD_ENDPOINTS: "memory", ...env }, logs);

describe("PostgreSQL refuses the service's login (SQLSTATE 28000)", () => {
  const role = `dbfaults_${Math.random().toString(36).slice(2, 10)}`;
  let database: TestDatabase;
  let service: Service;
  const logs = captureLogs();

  beforeAll(async () => {
    database = await createTestDatabase("dbfaults_login");
    // A password, for a server that asks for one (the embedded PostgreSQL of the test setup); trust ignores it.
    await admin.unsafe(`CREATE ROLE "${role}" LOGIN PASSWORD '${role}'`);
    await admin.unsafe(`ALTER DATABASE "${database.name}" OWNER TO "${role}"`);
    const url = new URL(database.url);
    url.username = role;
    url.password = role;
    service = await start(url.toString(), {}, logs);
  });
  afterAll(async () => {
    await service?.stop();
    await database?.drop();
    await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
  });

  test("with its role disabled, every /users request answers 503 with one log line, /health 503; enabled again, 200", async () => {
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    await admin.unsafe(`ALTER ROLE "${role}" NOLOGIN`);
    await terminateSessions(role);

    await expectAllUnavailable(service, logs, alice, "login", "28000");

    await admin.unsafe(`ALTER ROLE "${role}" LOGIN`);
    expect(await expectJson<UserJson[]>(await service.app.request("/users"), 200)).toEqual([alice]);
  });
});

describe("the service's database is dropped (SQLSTATE 3D000)", () => {
  let database: TestDatabase;
  let service: Service;
  const logs = captureLogs();

  beforeAll(async () => {
    database = await createTestDatabase("dbfaults_dropped");
    service = await start(database.url, {}, logs);
  });
  afterAll(async () => {
    await service?.stop();
    await database?.drop();
  });

  test("every /users request answers 503 with one log line, and /health 503", async () => {
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    await database.sql.end({ timeout: 1 });
    await admin.unsafe(`DROP DATABASE "${database.name}" WITH (FORCE)`);

    await expectAllUnavailable(service, logs, alice, "dropped", "3D000");
  });
});

describe("statements cancelled by PostgreSQL (SQLSTATE 57014)", () => {
  let database: TestDatabase;
  /** With a 1 s query timeout, and so a 1 s statement_timeout. */
  let hasty: Service;
  /** With the default query timeout (15 s), longer than these tests. */
  let patient: Service;
  let lock: TableLock | undefined;
  const logs = captureLogs();

  beforeAll(async () => {
    database = await createTestDatabase("dbfaults_cancel");
    hasty = await start(database.url, { DB_QUERY_TIMEOUT_MS: "1000" });
    patient = await start(database.url, {}, logs);
  });
  afterEach(async () => {
    await lock?.release();
    lock = undefined;
  });
  afterAll(async () => {
    await hasty?.stop();
    await patient?.stop();
    await database?.drop();
  });

  const emails = async () =>
    (await database.sql<{ email: string }[]>`SELECT email FROM users ORDER BY id`).map((r) => r.email);

  test("past DB_QUERY_TIMEOUT_MS behind a table lock, reads and writes answer 503 and no write is applied", async () => {
    const service = hasty;
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    lock = await lockUsersTable(database.url);
    // Several at once: each is a race between statement_timeout and the service's own deadline; all must be 503.
    const requests: [string, Promise<Response>][] = [
      ["/users", Promise.resolve(service.app.request("/users"))],
      [
        "/users",
        Promise.resolve(service.app.request("/users", jsonBody("POST", { name: "Bob", email: "bob@example.com" }))),
      ],
      [`/users/${alice.id}`, Promise.resolve(service.app.request(`/users/${alice.id}`))],
      [
        `/users/${alice.id}`,
        Promise.resolve(
          service.app.request(`/users/${alice.id}`, jsonBody("PUT", { name: "Al", email: "al@example.com" })),
        ),
      ],
      [`/users/${alice.id}`, Promise.resolve(service.app.request(`/users/${alice.id}`, { method: "DELETE" }))],
    ];
    for (const [instance, response] of requests) await expectUnavailable(await response, instance);
    await lock.release();
    lock = undefined;

    expect(await emails()).toEqual(["alice@example.com"]);
    expect((await service.app.request("/health")).status).toBe(200);
  });

  test("a statement an operator cancels (pg_cancel_backend) answers 503 with one log line, and a cancelled write is not applied", async () => {
    const service = patient;
    lock = await lockUsersTable(database.url);
    const prefix = service.db.applicationNamePrefix;
    // Longer than the test: only the operator's cancel ends these statements.
    const list = service.app.request("/users", withId("cancel-list"));
    const create = service.app.request(
      "/users",
      withId("cancel-create", jsonBody("POST", { name: "Carol", email: "carol@example.com" })),
    );
    await waitForLockWaiters(database.sql, prefix, 2);
    await database.sql`
      SELECT pg_cancel_backend(pid) FROM pg_stat_activity
      WHERE starts_with(application_name, ${prefix}) AND wait_event_type = 'Lock'`;

    await expectUnavailable(await list, "/users");
    expectOneUnavailableLine(logs, "cancel-list", "57014");
    await expectUnavailable(await create, "/users");
    expectOneUnavailableLine(logs, "cancel-create", "57014");
    await lock.release();
    lock = undefined;
    expect(await emails()).not.toContain("carol@example.com");
  });
});
