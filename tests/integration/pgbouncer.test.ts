/**
 * The service behind PgBouncer in transaction pooling (`DB_POOLER=pgbouncer`),
 * with the stock configuration but for `pool_mode = transaction`: the users
 * API, maintenance toggles and read-only mode, and PostgreSQL's timeouts.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { DbHolder } from "../../src/db/db-holder.ts";
import { parseDatabaseUrl } from "../../src/db/dsn.ts";
import { DatabaseReadOnlyError, DatabaseUnavailableError, errorCode } from "../../src/db/errors.ts";
import { silentLogger } from "../../src/logger.ts";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { createUser, expectJson, expectProblem, type UserJson } from "../helpers/http.ts";
import { applied, expectMaintenance, put, READ_ONLY_DETAIL, startMaintenanceService } from "../helpers/maintenance.ts";
import { TestPgBouncer } from "../helpers/pgbouncer.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/pgbouncer-test";
const POOL_MAX = 4;
const MAINTENANCE_POOL_MAX = 1;
const QUERY_TIMEOUT_MS = 2000;
const RETRY_AFTER_SECONDS = 60;
const BYPASS_TOKEN = "operator-bypass-0123456789";

let etcd: TestEtcd;
let database: TestDatabase;
let bouncer: TestPgBouncer;
let service: Service;

beforeAll(async () => {
  [etcd, database, bouncer] = await Promise.all([
    TestEtcd.start(),
    createTestDatabase("pgbouncer"),
    TestPgBouncer.start(),
  ]);
  // What the README asks of the database behind PgBouncer: reads outside a transaction carry no SET LOCAL.
  await database.sql.unsafe(`ALTER DATABASE "${database.name}" SET statement_timeout = ${QUERY_TIMEOUT_MS}`);
  await put(etcd, KEY, "false");
  service = await startMaintenanceService(bouncer.url(database.name), etcd.endpoint, KEY, {
    DB_POOLER: "pgbouncer",
    DB_POOL_MAX: String(POOL_MAX),
    DB_MAINTENANCE_POOL_MAX: String(MAINTENANCE_POOL_MAX),
    DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
    RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
    MAINTENANCE_BYPASS_TOKEN: BYPASS_TOKEN,
    DRAIN_TIMEOUT_MS: "5000",
  });
});
afterAll(async () => {
  await service?.stop();
  await bouncer?.stop();
  await etcd?.stop();
  await database?.drop();
});

const request = (path: string, init?: RequestInit) => service.app.request(path, init);
/** Writes the maintenance key and waits until the service has acted on it. */
const maintenance = async (value: string) => applied(service, await put(etcd, KEY, value));
/** One setting as a write transaction (`idempotent: false`) or a read sees it, through the service's pool. */
const show = async (setting: string, idempotent: boolean) => {
  const rows = await service.db.run(
    (sql) => sql<Record<string, string>[]>`SELECT current_setting(${setting}) AS value`,
    {
      idempotent,
    },
  );
  return rows[0]?.value;
};

test("without DB_POOLER=pgbouncer, PgBouncer refuses the connection: it knows no statement_timeout startup parameter", async () => {
  const db = new DbHolder(parseDatabaseUrl(bouncer.url(database.name)), {
    max: 1,
    connectTimeoutMs: 2000,
    idleTimeoutSeconds: 5,
    queryTimeoutMs: 5000,
    instanceId: "no-pooler",
    logger: silentLogger,
  });
  try {
    const error = await db.ping(5000).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(String((error?.cause as Error | undefined)?.message)).toContain("unsupported startup parameter");
  } finally {
    await db.close(0);
  }
});

describe("the users API through PgBouncer", () => {
  test("create, read, list, replace and delete a user", async () => {
    const alice = await createUser(service.app, "Alice", "alice@pgbouncer.example");
    expect(await expectJson<UserJson>(await request(`/users/${alice.id}`), 200)).toEqual(alice);
    expect(await expectJson<UserJson[]>(await request("/users"), 200)).toContainEqual(alice);
    const replaced = await expectJson<UserJson>(
      await request(`/users/${alice.id}`, jsonBody("PUT", { name: "Alice B", email: "alice.b@pgbouncer.example" })),
      200,
    );
    expect(replaced).toMatchObject({ id: alice.id, name: "Alice B", email: "alice.b@pgbouncer.example" });
    expect((await request(`/users/${alice.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await request(`/users/${alice.id}`)).status).toBe(404);
  });

  test("a taken email answers 409: PostgreSQL's unique violation comes through", async () => {
    await createUser(service.app, "Bob", "bob@pgbouncer.example");
    await expectProblem(await request("/users", jsonBody("POST", { name: "Bob 2", email: "BOB@pgbouncer.example" })), {
      status: 409,
      type: "email-taken",
      title: "Conflict",
      detail: "A user with email BOB@pgbouncer.example already exists.",
      instance: "/users",
      errors: [{ field: "body.email", message: "email is already taken" }],
    });
  });

  test("the same statements on every connection at once never meet a missing prepared statement", async () => {
    const carol = await createUser(service.app, "Carol", "carol@pgbouncer.example");
    const responses = await Promise.all(
      Array.from({ length: 10 * POOL_MAX }, (_, i) =>
        i % 2 === 0
          ? request(`/users/${carol.id}`)
          : request(`/users/${carol.id}`, jsonBody("PUT", { name: "Carol", email: "carol@pgbouncer.example" })),
      ),
    );
    expect(responses.map((response) => response.status)).toEqual(responses.map(() => 200));
  });
});

describe("maintenance through PgBouncer", () => {
  test("full maintenance answers 503 and shrinks the pool; off restores it and serves again", async () => {
    await maintenance("true");
    await expectMaintenance(await request("/users"), "/users", RETRY_AFTER_SECONDS);
    expect(service.db.stats()).toMatchObject({ max: MAINTENANCE_POOL_MAX, readOnly: false });

    await maintenance("false");
    expect(service.db.stats()).toMatchObject({ max: POOL_MAX, readOnly: false });
    expect((await request("/users")).status).toBe(200);
  });

  test("read-only mode: reads are served, and PostgreSQL refuses a write that gets past the gate (25006)", async () => {
    const dave = await createUser(service.app, "Dave", "dave@pgbouncer.example");
    await maintenance(JSON.stringify({ mode: "read-only" }));
    expect(service.db.stats()).toMatchObject({ max: MAINTENANCE_POOL_MAX, readOnly: true });
    expect(await expectJson<UserJson>(await request(`/users/${dave.id}`), 200)).toEqual(dave);
    await expectMaintenance(
      await request("/users", jsonBody("POST", { name: "Eve", email: "eve@pgbouncer.example" })),
      "/users",
      RETRY_AFTER_SECONDS,
      READ_ONLY_DETAIL,
    );
    expect(await show("transaction_read_only", false)).toBe("on");

    // Straight through the DbHolder, past the gate.
    const direct = await service.db
      .run((sql) => sql`INSERT INTO users (name, email) VALUES (${"Direct"}, ${"direct@pgbouncer.example"})`)
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(direct).toBeInstanceOf(DatabaseReadOnlyError);
    expect(errorCode((direct as Error).cause)).toBe("25006");

    // With the bypass token the gate lets the write through; PostgreSQL refuses it: a read-only 503.
    const bypassed = await request("/users", {
      ...jsonBody("POST", { name: "Bypass", email: "bypass@pgbouncer.example" }),
      headers: { "content-type": "application/json", "X-Maintenance-Bypass": BYPASS_TOKEN },
    });
    expect(bypassed.headers.get("x-maintenance-bypassed")).toBe("true");
    expect(bypassed.headers.get("retry-after")).toBe("5");
    await expectProblem(bypassed, {
      status: 503,
      type: "read-only",
      title: "Service Unavailable",
      detail:
        "The service is read-only during maintenance. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
      instance: "/users",
    });
    const [written] = await database.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM users WHERE email IN ('direct@pgbouncer.example', 'bypass@pgbouncer.example')`;
    expect(written?.n).toBe(0);

    // Read-only was the transactions', not the shared server connections': writes work again at once.
    await maintenance("false");
    expect(await show("transaction_read_only", false)).toBe("off");
    const frank = await createUser(service.app, "Frank", "frank@pgbouncer.example");
    expect((await request(`/users/${frank.id}`, { method: "DELETE" })).status).toBe(204);
  });
});

describe("PostgreSQL's timeouts through PgBouncer", () => {
  test("a write transaction sets its own timeouts; a read has the database's, and nothing of the write's", async () => {
    expect(await show("statement_timeout", false)).toBe(`${QUERY_TIMEOUT_MS / 1000}s`);
    expect(await show("idle_in_transaction_session_timeout", false)).toBe(`${QUERY_TIMEOUT_MS / 1000}s`);
    expect(await show("statement_timeout", true)).toBe(`${QUERY_TIMEOUT_MS / 1000}s`);
    expect(await show("idle_in_transaction_session_timeout", true)).toBe("0");
  });

  for (const [kind, idempotent] of [
    ["a write", false],
    ["a read", true],
  ] as const) {
    test(`${kind} past statement_timeout is cancelled by PostgreSQL (57014): a 503 before the service's own deadline`, async () => {
      const error = await service.db
        .run((sql) => sql`SELECT pg_sleep(60)`, { idempotent, timeoutMs: 60_000 })
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(DatabaseUnavailableError);
      expect(errorCode((error as Error).cause)).toBe("57014");
    });
  }
});
