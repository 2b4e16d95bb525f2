import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { DatabaseReadOnlyError } from "../../src/db/errors.ts";
import type { Service } from "../../src/service.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type FollowingService, startFollowingService } from "../helpers/fixture.ts";
import { createUser, expectJson, expectProblem, type UserJson } from "../helpers/http.ts";
import {
  etcdctlPut,
  expectMaintenance,
  getHealth,
  getStats,
  maintenanceProblem,
  put,
  READ_ONLY_DETAIL,
} from "../helpers/maintenance.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { jsonBody } from "../helpers/service.ts";
import { PATIENCE_MS, TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/database-service";
const GLOBAL_KEY = "/maintenance/global";
const RETRY_AFTER_SECONDS = 45;
const POOL_MAX = 6;
const MAINTENANCE_POOL_MAX = 2;
const BYPASS_TOKEN = "operator-bypass-0123456789";

let fixture: FollowingService;
let etcd: TestEtcd;
let database: TestDatabase;
let service: Service;
let alice: UserJson;

beforeAll(async () => {
  fixture = await startFollowingService({
    prefix: "mmodes",
    key: KEY,
    env: {
      RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
      DB_POOL_MAX: String(POOL_MAX),
      DB_MAINTENANCE_POOL_MAX: String(MAINTENANCE_POOL_MAX),
      MAINTENANCE_BYPASS_TOKEN: BYPASS_TOKEN,
      DRAIN_TIMEOUT_MS: "2000",
    },
  });
  ({ etcd, database, service } = fixture);
  alice = await createUser(service.app, "Alice", "alice@example.com");
});
afterAll(() => fixture?.stop());

beforeEach(async () => {
  await remove(GLOBAL_KEY);
  await remove(KEY);
});

/** Waits until the service read `key` at `revision` (or later) and finished the transition it started. */
async function seen(key: string, revision: number): Promise<void> {
  expect(await service.maintenance.observed(key, revision, PATIENCE_MS)).toBe(true);
  await service.maintenance.settled();
}

/** Writes `value` to `key` and waits until the service acted on it; resolves with the revision. */
async function write(key: string, value: string | object): Promise<number> {
  const revision = await put(etcd, key, typeof value === "string" ? value : JSON.stringify(value));
  await seen(key, revision);
  return revision;
}

/** Deletes `key` and waits until the service acted on it. */
async function remove(key: string): Promise<number> {
  const response = await etcd.client.delete().key(key).exec();
  const revision = Number(response.header.revision);
  // Deleting an absent key leaves no event to observe; the state is already off for it.
  if (Number(response.deleted) > 0) await seen(key, revision);
  await service.maintenance.settled();
  return revision;
}

/** `SHOW default_transaction_read_only` through the service's own pool. */
async function sessionReadOnly(): Promise<string> {
  const rows = await service.db.run(
    (sql) => sql<{ default_transaction_read_only: string }[]>`SHOW default_transaction_read_only`,
  );
  return rows[0]?.default_transaction_read_only ?? "?";
}

const request = (path: string, init: RequestInit = {}) => service.app.request(path, init);
const bypass = (init: RequestInit = {}, token = BYPASS_TOKEN): RequestInit => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), "X-Maintenance-Bypass": token },
});

describe("each mode through the service key", () => {
  test('{"mode":"full"}: every /users operation answers 503, the pool shrinks, sessions stay writable', async () => {
    await write(KEY, { mode: "full", reason: "disk swap", retry_after: 90 });
    await expectMaintenance(await request("/users"), "/users", 90, "disk swap");
    await expectMaintenance(await request(`/users/${alice.id}`), `/users/${alice.id}`, 90, "disk swap");
    await expectMaintenance(
      await request("/users", jsonBody("POST", { name: "B", email: "b@example.com" })),
      "/users",
      90,
      "disk swap",
    );
    expect(service.maintenance.status()).toMatchObject({ enabled: true, mode: "full", phase: "maintenance" });
    expect(service.db.stats()).toMatchObject({ max: MAINTENANCE_POOL_MAX, readOnly: false });
    expect(await sessionReadOnly()).toBe("off");
  });

  test('{"enabled":true} is full maintenance and {"enabled":false} is off', async () => {
    await write(KEY, { enabled: true });
    expect(service.maintenance.status().mode).toBe("full");
    await expectMaintenance(await request("/users"), "/users", RETRY_AFTER_SECONDS);
    await write(KEY, { enabled: false });
    expect(service.maintenance.status().mode).toBe("off");
    expect((await request("/users")).status).toBe(200);
  });

  test('{"mode":"off"}: everything served, the full pool restored', async () => {
    await write(KEY, { mode: "read-only" });
    await write(KEY, { mode: "off" });
    expect(service.maintenance.status()).toMatchObject({ enabled: false, mode: "off", phase: "serving" });
    expect(service.db.stats()).toMatchObject({ max: POOL_MAX, readOnly: false });
    expect(await expectJson<UserJson>(await request(`/users/${alice.id}`), 200)).toEqual(alice);
    const created = await createUser(service.app, "Off", "off@example.com");
    expect((await request(`/users/${created.id}`, { method: "DELETE" })).status).toBe(204);
  });
});

describe('{"mode":"read-only"}', () => {
  test("the router serves GET and HEAD and refuses POST, PUT and DELETE with 503 and Retry-After", async () => {
    await write(KEY, { mode: "read-only" });
    expect(await expectJson<UserJson[]>(await request("/users"), 200)).toContainEqual(alice);
    expect(await expectJson<UserJson>(await request(`/users/${alice.id}`), 200)).toEqual(alice);
    const head = await request("/users", { method: "HEAD" });
    expect(head.status).toBe(200);

    const refused: [string, RequestInit][] = [
      ["/users", jsonBody("POST", { name: "Bob", email: "bob@example.com" })],
      [`/users/${alice.id}`, jsonBody("PUT", { name: "Alice", email: "alice2@example.com" })],
      [`/users/${alice.id}`, { method: "DELETE" }],
    ];
    for (const [path, init] of refused) {
      await expectMaintenance(await request(path, init), path, RETRY_AFTER_SECONDS, READ_ONLY_DETAIL);
    }
    expect(service.maintenance.status()).toMatchObject({ enabled: true, mode: "read-only", phase: "maintenance" });
    expect(await expectJson<UserJson>(await request(`/users/${alice.id}`), 200)).toEqual(alice);
  });

  test("PostgreSQL refuses writes too: the pool's sessions are read-only until maintenance ends", async () => {
    expect(await sessionReadOnly()).toBe("off");
    await write(KEY, { mode: "read-only" });
    expect(service.db.stats()).toMatchObject({ max: MAINTENANCE_POOL_MAX, readOnly: true });
    expect(await sessionReadOnly()).toBe("on");

    // Straight through the DbHolder, past the gate: PostgreSQL itself says no (SQLSTATE 25006).
    const insert = service.db.run(
      (sql) => sql`INSERT INTO users (name, email) VALUES (${"Direct"}, ${"direct@example.com"})`,
    );
    expect(insert).rejects.toBeInstanceOf(DatabaseReadOnlyError);
    await insert.catch(() => {});

    // With the bypass token the gate lets the write through; PostgreSQL refuses it: a read-only 503.
    const response = await request("/users", bypass(jsonBody("POST", { name: "Bypass", email: "bypass@example.com" })));
    expect(response.headers.get("x-maintenance-bypassed")).toBe("true");
    expect(response.headers.get("retry-after")).toBe("5");
    await expectProblem(response, {
      status: 503,
      type: "read-only",
      title: "Service Unavailable",
      detail:
        "The service is read-only during maintenance. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
      instance: "/users",
    });
    const [count] = await database.sql<
      { n: number }[]
    >`SELECT count(*)::int AS n FROM users WHERE email LIKE 'bypass%' OR email LIKE 'direct%'`;
    expect(count?.n).toBe(0);

    await remove(KEY);
    expect(service.db.stats()).toMatchObject({ max: POOL_MAX, readOnly: false });
    expect(await sessionReadOnly()).toBe("off");
    const written = await service.db.run(
      (sql) =>
        sql<{ id: number }[]>`INSERT INTO users (name, email) VALUES (${"After"}, ${"after@example.com"}) RETURNING id`,
    );
    await service.db.run((sql) => sql`DELETE FROM users WHERE id = ${written[0]?.id ?? 0}`);
  });
});

describe("the service key and the fleet key", () => {
  test("global full + service read-only → full, caused by /maintenance/global", async () => {
    await write(KEY, { mode: "read-only" });
    const revision = await write(GLOBAL_KEY, { mode: "full", reason: "fleet-wide" });
    await expectMaintenance(await request("/users"), "/users", RETRY_AFTER_SECONDS, "fleet-wide");
    const health = await getHealth(service.app);
    expect(health).toMatchObject({
      status: 200,
      body: { status: "maintenance", mode: "full", key: GLOBAL_KEY, reason: "fleet-wide" },
    });
    expect(service.maintenance.status().revision).toBe(revision);
    expect(service.maintenance.status().keys.map((k) => [k.key, k.mode])).toEqual([
      [KEY, "read-only"],
      [GLOBAL_KEY, "full"],
    ]);

    // The fleet key lifted: the service key's read-only remains.
    await remove(GLOBAL_KEY);
    expect((await getHealth(service.app)).body).toMatchObject({ mode: "read-only", key: KEY });
    expect((await request("/users")).status).toBe(200);
  });

  test("service full + global off → full, caused by the service key", async () => {
    await write(GLOBAL_KEY, "false");
    const revision = await write(KEY, { mode: "full", reason: "service only" });
    expect((await getHealth(service.app)).body).toMatchObject({ mode: "full", key: KEY, reason: "service only" });
    expect(service.maintenance.status().revision).toBe(revision);
    await expectMaintenance(await request("/users"), "/users", RETRY_AFTER_SECONDS, "service only");
  });

  test("both off → off", async () => {
    await write(GLOBAL_KEY, { mode: "off" });
    await write(KEY, "off");
    expect((await getHealth(service.app)).body).toMatchObject({
      status: "healthy",
      maintenance: false,
      mode: "off",
      key: KEY,
    });
    expect((await request("/users")).status).toBe(200);
  });
});

/**
 * Sends `path` and, with the answer, the bounds of what a Retry-After counting down to `end`
 * can say: the service reads its clock somewhere between sending and receiving.
 */
async function countdownTo(end: Date, path: string) {
  const secondsLeftAt = (at: number) => Math.max(0, Math.ceil((end.getTime() - at) / 1000));
  const sent = Date.now();
  const response = await request(path);
  return { response, most: secondsLeftAt(sent), least: secondsLeftAt(Date.now()) };
}

describe("windows", () => {
  test("a window ahead is announced: served, with its Maintenance-Window and upcoming_window", async () => {
    const start = new Date(Date.now() + 3_600_000);
    const end = new Date(start.getTime() + 3_600_000);
    await write(KEY, { mode: "full", start: start.toISOString(), end: end.toISOString() });

    const before = await request("/users");
    expect(before.status).toBe(200);
    expect(before.headers.get("maintenance-window")).toBe(`${start.toISOString()}/${end.toISOString()}`);
    expect((await getHealth(service.app)).body).toMatchObject({
      mode: "off",
      upcoming_window: { start: start.toISOString(), end: end.toISOString() },
    });
  });

  test("a window enters and leaves on the instance's clock, without further writes, not before its boundaries", async () => {
    const start = new Date(Date.now() + 1000);
    const end = new Date(start.getTime() + 3000);
    const revision = await write(KEY, { mode: "full", start: start.toISOString(), end: end.toISOString() });

    // Inside: 503, Retry-After counting down to the end.
    let inside: Awaited<ReturnType<typeof countdownTo>> | undefined;
    await waitFor("the window to begin", async () => {
      inside = await countdownTo(end, "/users");
      return inside.response.status === 503;
    });
    expect(Date.now()).toBeGreaterThanOrEqual(start.getTime());
    const { response, least, most } = inside as NonNullable<typeof inside>;
    const retryAfter = Number(response.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(least);
    expect(retryAfter).toBeLessThanOrEqual(most);
    await expectProblem(response, maintenanceProblem("/users"));

    // After: served again.
    await waitFor("the window to end", async () => (await request("/users")).status === 200);
    expect(Date.now()).toBeGreaterThanOrEqual(end.getTime());
    await service.maintenance.settled();
    expect(service.maintenance.status()).toMatchObject({ enabled: false, mode: "off", upcomingWindow: null });
    expect((await request("/users")).headers.get("maintenance-window")).toBeNull();
    // Entered and left by the window: the transitions name the one write.
    const [left, entered] = (await getStats(service.app)).maintenance_status.transitions;
    expect([entered, left]).toMatchObject([
      { kind: "enter", key: KEY, revision: String(revision), mode: "full" },
      { kind: "leave", key: KEY, revision: String(revision), mode: "off" },
    ]);

    const { kvs } = await etcd.client.get(KEY).exec();
    expect(Number(kvs[0]?.mod_revision)).toBe(revision);
  });

  test("a window already open: Retry-After counts down to its end, not retry_after", async () => {
    const end = new Date(Date.now() + 30_000);
    await write(KEY, {
      mode: "full",
      retry_after: 600,
      start: new Date(Date.now() - 10_000).toISOString(),
      end: end.toISOString(),
    });
    const { response, least, most } = await countdownTo(end, "/users");
    expect(response.status).toBe(503);
    const retryAfter = Number(response.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(least);
    expect(retryAfter).toBeLessThanOrEqual(most);
    expect(most).toBeLessThanOrEqual(30);
    const sent = Date.now();
    const health = (await getHealth(service.app)).body.retry_after_seconds;
    expect(health).toBeLessThanOrEqual(Math.ceil((end.getTime() - sent) / 1000));
  });
});

describe("the operator bypass", () => {
  test("no token → 503, a wrong token → 503, the right token → 200 with X-Maintenance-Bypassed", async () => {
    await write(KEY, { mode: "full" });
    const none = await request(`/users/${alice.id}`);
    await expectMaintenance(none, `/users/${alice.id}`, RETRY_AFTER_SECONDS);
    expect(none.headers.get("x-maintenance-bypassed")).toBeNull();

    for (const wrong of ["wrong-token-0123456789", `${BYPASS_TOKEN}x`, BYPASS_TOKEN.slice(0, -1), ""]) {
      const response = await request(`/users/${alice.id}`, bypass({}, wrong));
      await expectMaintenance(response, `/users/${alice.id}`, RETRY_AFTER_SECONDS);
      expect(response.headers.get("x-maintenance-bypassed")).toBeNull();
    }

    const right = await request(`/users/${alice.id}`, bypass());
    expect(right.headers.get("x-maintenance-bypassed")).toBe("true");
    expect(await expectJson<UserJson>(right, 200)).toEqual(alice);
  });

  test("out of maintenance the bypass header changes nothing", async () => {
    const response = await request(`/users/${alice.id}`, bypass());
    expect(response.status).toBe(200);
    expect(response.headers.get("x-maintenance-bypassed")).toBeNull();
  });
});

test("`etcdctl lease grant 2` + `put --lease` true: on, then off when the lease expires, not before", async () => {
  // The lease runs from its grant.
  const granting = performance.now();
  const granted = await etcd.etcdctl("lease", "grant", "2");
  const lease = /^lease ([0-9a-f]+) granted/.exec(granted)?.[1];
  if (!lease) throw new Error(`unexpected etcdctl output: ${granted}`);
  await seen(KEY, await etcdctlPut(etcd, KEY, "true", `--lease=${lease}`));
  expect(service.maintenance.status()).toMatchObject({ enabled: true, mode: "full" });
  await expectMaintenance(await request("/users"), "/users", RETRY_AFTER_SECONDS);

  await waitFor("the lease to expire", () => !service.maintenance.status().enabled);
  // Off because the lease ran out, not at once (with a margin for etcd's lease clock).
  expect(performance.now() - granting).toBeGreaterThan(1500);
  await service.maintenance.settled();
  expect((await request("/users")).status).toBe(200);
  expect(service.db.stats().max).toBe(POOL_MAX);
});

test("/stats lists the latest transitions newest first, at most 20", async () => {
  const revisions: number[] = [];
  for (let i = 0; i < 11; i++) {
    revisions.push(await write(KEY, { mode: i % 2 === 0 ? "full" : "read-only", reason: `step ${i}` }));
    revisions.push(await write(KEY, "false"));
  }
  const enter = await write(KEY, { mode: "full", reason: "first" });
  const update = await write(KEY, { mode: "full", reason: "second" });
  const leave = await write(KEY, "false");

  const { transitions } = (await getStats(service.app)).maintenance_status as unknown as {
    transitions: {
      kind: string;
      key: string;
      revision: string;
      mode: string;
      reason: string | null;
      drain_ms: number;
    }[];
  };
  expect(transitions).toHaveLength(20);
  expect(
    transitions.slice(0, 4).map(({ kind, key, revision, mode, reason }) => ({ kind, key, revision, mode, reason })),
  ).toEqual([
    { kind: "leave", key: KEY, revision: String(leave), mode: "off", reason: null },
    { kind: "update", key: KEY, revision: String(update), mode: "full", reason: "second" },
    { kind: "enter", key: KEY, revision: String(enter), mode: "full", reason: "first" },
    { kind: "leave", key: KEY, revision: String(revisions.at(-1)), mode: "off", reason: null },
  ]);
  for (const transition of transitions) {
    expect(transition.drain_ms).toBeGreaterThanOrEqual(0);
    expect(Number.isInteger(transition.drain_ms)).toBe(true);
  }
  // Newest first: revisions never increase down the list.
  const listed = transitions.map((t) => Number(t.revision));
  expect(listed).toEqual([...listed].sort((a, b) => b - a));
});
