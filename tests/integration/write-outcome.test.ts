import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createUser, expectProblem } from "../helpers/http.ts";
import { captureLogs } from "../helpers/logs.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

/** The setting. */
const QUERY_TIMEOUT_MS = 3000;

let database: TestDatabase;
let proxy: TcpProxy;
let service: Service;
const logs = captureLogs();

beforeAll(async () => {
  database = await createTestDatabase("outcome");
  const through = await proxyDatabase(database.url);
  proxy = through.proxy;
  service = await startTestService(
    through.url,
    {
      DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
      // Longer than a query may take: a connection being opened behind the partition is still
      // being opened at the deadline, rather than failing first.
      DB_CONNECT_TIMEOUT_MS: "20000",
      // Room for each write to open a connection of its own behind the partition.
      DB_POOL_MAX: "4",
      // No etcd: nothing but these tests' requests uses the pool.
      ETCD_ENDPOINTS: "memory",
    },
    logs,
  );
  // Makes COMMIT slow for users named "slow commit": the partition can then start while a COMMIT
  // is in flight, as it may at any moment in production.
  await database.sql`
    CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.name = 'slow commit' THEN PERFORM pg_sleep(1); END IF;
      RETURN NULL;
    END $$`;
  await database.sql`
    CREATE CONSTRAINT TRIGGER users_slow_commit AFTER INSERT ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`;
});
afterEach(() => proxy.heal());
afterAll(async () => {
  proxy.heal();
  await service?.stop();
  await proxy?.close();
  await database?.drop();
});

/** Every email in the table, by id. */
const emails = async () =>
  (await database.sql<{ email: string }[]>`SELECT email FROM users ORDER BY id`).map((row) => row.email);

/**
 * Heals the partition and waits until PostgreSQL has closed every connection open behind it (the
 * service ends a client whose queries timed out). PostgreSQL reads a connection's bytes in order
 * before its end, so by then it has acted on every statement the partition held back.
 */
async function healAndSettle(): Promise<void> {
  const settled = proxy.settled();
  proxy.heal();
  await settled;
}

const databaseUnavailable = (instance: string) => ({
  status: 503,
  type: "database-unavailable",
  title: "Service Unavailable",
  detail:
    "The database is not reachable right now. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
  instance,
});

describe("writes behind a network partition", () => {
  test("POST, PUT and DELETE sent behind a partition answer 503 and none is applied once the network heals", async () => {
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    const bob = await createUser(service.app, "Bob", "bob@example.com");
    // The pool keeps the one connection these requests used: one write is sent on it (and held),
    // the others open connections of their own, whose start is held too.
    proxy.partition();
    const requests: [string, Response | Promise<Response>][] = [
      ["/users", service.app.request("/users", jsonBody("POST", { name: "Carol", email: "carol@example.com" }))],
      [
        `/users/${alice.id}`,
        service.app.request(`/users/${alice.id}`, jsonBody("PUT", { name: "Al", email: "al@example.com" })),
      ],
      [`/users/${bob.id}`, service.app.request(`/users/${bob.id}`, { method: "DELETE" })],
    ];
    for (const [instance, response] of requests) {
      const answer = await response;
      expect(answer.headers.get("retry-after")).toBe("5");
      await expectProblem(answer, databaseUnavailable(instance));
    }

    await healAndSettle();
    const after = await emails();
    console.info(`[write-outcome] rows after the heal: ${JSON.stringify(after)}`);
    expect(after).toEqual(["alice@example.com", "bob@example.com"]);
  });

  test("a POST whose COMMIT is in flight when the partition starts answers 504 outcome-unknown", async () => {
    const prefix = service.db.applicationNamePrefix;
    const response = service.app.request(
      "/users",
      jsonBody("POST", { name: "slow commit", email: "dave@example.com" }),
    );
    await waitFor(
      "the COMMIT to be running",
      async () =>
        (
          await database.sql`
            SELECT 1 FROM pg_stat_activity
            WHERE starts_with(application_name, ${prefix}) AND wait_event = 'PgSleep'`
        ).length > 0,
    );
    proxy.partition();

    const answer = await response;
    expect(answer.headers.get("retry-after")).toBeNull();
    await expectProblem(answer, {
      status: 504,
      type: "outcome-unknown",
      title: "Gateway Timeout",
      detail:
        "The database did not confirm the write in time: it may or may not have been applied. Retry it with the same Idempotency-Key to have it applied exactly once.",
      instance: "/users",
    });

    expect(logs.events("db.write_outcome_unknown")).toEqual([
      expect.objectContaining({
        level: "warn",
        method: "POST",
        path: "/users",
        request_id: answer.headers.get("x-request-id"),
      }),
    ]);

    await healAndSettle();
    // The COMMIT went through; only its answer was lost: exactly the case a 504 reports.
    const committed = (await emails()).includes("dave@example.com");
    console.info(`[write-outcome] the write answered 504 committed: ${committed}`);
    expect(committed).toBe(true);
  });

  test("a write right after every pooled connection was closed under the service is retried once and answers 201", async () => {
    await createUser(service.app, "Frank", "frank@example.com");
    const retriesBefore = logs.events("db.retry_after_stale_connection").length;
    // Like a PostgreSQL restart: every open connection dies, and the server is back before the next write.
    void proxy.cut();
    await proxy.restore();

    const grace = await createUser(service.app, "Grace", "grace@example.com");
    expect(grace.email).toBe("grace@example.com");
    expect((await emails()).filter((email) => email === "grace@example.com")).toHaveLength(1);
    expect(logs.events("db.retry_after_stale_connection").slice(retriesBefore)).toHaveLength(1);
  });
});
