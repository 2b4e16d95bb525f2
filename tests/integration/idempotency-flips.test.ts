import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { PROBLEM_TYPE_PREFIX, type UserJson } from "../helpers/http.ts";
import { applied, etcdctlPut, startMaintenanceService } from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { waitFor } from "../helpers/wait.ts";

// Ten maintenance flips and the database cut off under load, then a table-wide check.
setDefaultTimeout(180_000);

const KEY = "/maintenance/idempotency-flips";
const CLIENTS = 8;
const FLIPS = 10;
/** A client's pause before retrying: its own backoff, as a real client's, not a wait for anything. */
const RETRY_BACKOFF_MS = 20;
/** Users whose name starts so commit slowly (see slow_commit below): the database can be cut off mid-COMMIT. */
const SLOW = "slow commit";

let etcd: TestEtcd;
let database: TestDatabase;
let proxy: TcpProxy;
let service: Service;

beforeAll(async () => {
  etcd = await TestEtcd.start();
  database = await createTestDatabase("idem_flips");
  const through = await proxyDatabase(database.url);
  proxy = through.proxy;
  service = await startMaintenanceService(through.url, etcd.endpoint, KEY, {
    DRAIN_TIMEOUT_MS: "2000",
    DB_QUERY_TIMEOUT_MS: "3000",
    DB_CONNECT_TIMEOUT_MS: "1000",
    MAINTENANCE_GLOBAL_KEY: "",
  });
  // Every change to a user, recorded in its own transaction: a write that committed twice shows twice.
  await database.sql`CREATE TABLE user_effects (op TEXT NOT NULL, user_id INT NOT NULL, name TEXT)`;
  await database.sql`
    CREATE FUNCTION record_effect() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' THEN INSERT INTO user_effects VALUES (TG_OP, OLD.id, OLD.name);
      ELSE INSERT INTO user_effects VALUES (TG_OP, NEW.id, NEW.name); END IF;
      RETURN NULL;
    END $$`;
  await database.sql`
    CREATE TRIGGER users_effects AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION record_effect()`;
  await database.sql`
    CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF starts_with(NEW.name, 'slow commit') THEN PERFORM pg_sleep(0.3); END IF;
      RETURN NULL;
    END $$`;
  await database.sql`
    CREATE CONSTRAINT TRIGGER users_slow_commit AFTER INSERT OR UPDATE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`;
});
afterAll(async () => {
  proxy?.heal();
  await service?.stop();
  await proxy?.close();
  await database?.drop();
  await etcd?.stop();
});

/** One write as a client saw it: every status it got, and the answer it kept. */
interface KeyedWrite {
  key: string;
  method: string;
  statuses: number[];
  /** Problem types of the retried answers (503, 504, 409 in use), in order. */
  retriedTypes: string[];
  final: { status: number; body: string; replayed: boolean };
}

const writes: KeyedWrite[] = [];
/** Answers other than the final one, by problem type; and final answers so far. */
const seen = { finals: 0, byType: new Map<string, number>() };
const count = (type: string) => seen.byType.get(type) ?? 0;

/** Whether a client retries this answer: a 503 or 504, or its own earlier attempt still holding the key. */
function retried(status: number, body: string): string | undefined {
  if (status !== 503 && status !== 504 && status !== 409) return undefined;
  const type = (JSON.parse(body) as { type: string }).type.slice(PROBLEM_TYPE_PREFIX.length);
  return status === 409 && type !== "idempotency-key-in-use" ? undefined : type;
}

/** Sends the write under `key` until it gets an answer other than a retried one, as the README tells clients to. */
async function writeUntilAnswered(method: string, path: string, key: string, body?: unknown): Promise<KeyedWrite> {
  const write: KeyedWrite = {
    key,
    method,
    statuses: [],
    retriedTypes: [],
    final: { status: 0, body: "", replayed: false },
  };
  for (;;) {
    const response = await service.app.request(path, {
      method,
      headers: { "idempotency-key": key, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    write.statuses.push(response.status);
    const type = retried(response.status, text);
    if (type === undefined) {
      write.final = {
        status: response.status,
        body: text,
        replayed: response.headers.get("idempotent-replayed") === "true",
      };
      writes.push(write);
      seen.finals++;
      return write;
    }
    write.retriedTypes.push(type);
    seen.byType.set(type, count(type) + 1);
    await Bun.sleep(RETRY_BACKOFF_MS);
  }
}

/** A client creating, renaming and (every other one) deleting its own users, each write under its own key. */
async function client(id: number, running: () => boolean): Promise<void> {
  for (let n = 0; running(); n++) {
    const name = id === 0 ? `${SLOW} ${id}-${n}` : `client ${id}-${n}`;
    const email = `c${id}-u${n}@example.com`;
    const created = await writeUntilAnswered("POST", "/users", `post-${id}-${n}`, { name, email });
    if (created.final.status !== 201) return;
    const user = JSON.parse(created.final.body) as UserJson;
    await writeUntilAnswered("PUT", `/users/${user.id}`, `put-${id}-${n}`, { name: `${name} renamed`, email });
    if (n % 2 === 1) await writeUntilAnswered("DELETE", `/users/${user.id}`, `delete-${id}-${n}`);
  }
}

/** Waits until `what` has been seen `more` more times than now. */
async function more(what: () => number, more: number, description: string): Promise<void> {
  const target = what() + more;
  await waitFor(description, () => what() >= target, 30_000);
}

describe("clients retrying every write with the same key through maintenance flips and a database cut off", () => {
  test("every key's write took effect exactly once, and every final answer matches its row", async () => {
    let running = true;
    const clients = Array.from({ length: CLIENTS }, (_, id) => client(id, () => running));

    await more(() => seen.finals, 20, "writes before the first flip");
    for (let flip = 0; flip < FLIPS; flip++) {
      await applied(service, await etcdctlPut(etcd, KEY, "true"));
      await more(() => count("maintenance"), 3, `maintenance 503s in flip ${flip + 1}`);
      await applied(service, await etcdctlPut(etcd, KEY, "false"));
      await more(() => seen.finals, 8, `writes after flip ${flip + 1}`);
    }

    // The database is cut off (a partition: no byte passes either way, as behind a dead link) while a slow
    // COMMIT is in flight: its client gets a 504 at its deadline although the COMMIT goes through, every other
    // write a 503. Statements held by the partition reach PostgreSQL when it heals, as TCP would deliver them.
    const prefix = service.db.applicationNamePrefix;
    await waitFor("a COMMIT in flight", async () => {
      const sleeping = await database.sql`
        SELECT 1 FROM pg_stat_activity WHERE starts_with(application_name, ${prefix}) AND wait_event = 'PgSleep'`;
      return sleeping.length > 0;
    });
    proxy.partition();
    await more(() => count("outcome-unknown"), 1, "the COMMIT in flight to be answered 504");
    await more(() => count("database-unavailable"), 3, "503s while the database is cut off");
    proxy.heal();
    await more(() => seen.finals, 16, "writes after the database came back");

    running = false;
    await Promise.all(clients);

    const retries = [...seen.byType].map(([type, n]) => `${type}: ${n}`).join(", ");
    const replayed = writes.filter((w) => w.final.replayed).length;
    console.info(`[idempotency-flips] ${writes.length} keyed writes; retried answers ${retries}; ${replayed} replayed`);
    expect(count("maintenance")).toBeGreaterThanOrEqual(3 * FLIPS);
    expect(count("database-unavailable")).toBeGreaterThanOrEqual(3);
    // The slow COMMIT cut off was answered 504, and its retry replayed what had committed. (Another write
    // answered 504 may not have committed: its retry executed it, which the effects below check.)
    const unknown = writes.filter((w) => w.retriedTypes.includes("outcome-unknown"));
    expect(unknown.filter((w) => w.final.replayed).length).toBeGreaterThanOrEqual(1);

    // Every write ended with its success: no POST met its own email (a second execution), no PUT or DELETE a 404.
    const expected: Record<string, number> = { POST: 201, PUT: 200, DELETE: 204 };
    expect(writes.filter((w) => w.final.status !== expected[w.method])).toEqual([]);

    // Exactly one effect per key: as many row changes as keyed writes, each write's own once.
    const effects = await database.sql<{ op: string; user_id: number; name: string }[]>`
      SELECT op, user_id, name FROM user_effects`;
    expect(effects.length).toBe(writes.length);
    const stored = await database.sql<{ key: string; status: number; body: string | null }[]>`
      SELECT key, status, body FROM idempotency_keys`;
    const storedByKey = new Map(stored.map((row) => [row.key, row]));
    const usersNow = await database.sql<{ id: number; name: string; email: string }[]>`
      SELECT id, name, email FROM users`;
    const userById = new Map(usersNow.map((user) => [user.id, user]));
    const deleted = new Set(writes.filter((w) => w.method === "DELETE").map((w) => w.key.replace("delete", "put")));

    for (const write of writes) {
      expect(storedByKey.get(write.key)).toEqual({
        key: write.key,
        status: write.final.status,
        body: write.final.body === "" ? null : write.final.body,
      });
      if (write.method === "DELETE") continue;
      const user = JSON.parse(write.final.body) as UserJson;
      const op = write.method === "POST" ? "INSERT" : "UPDATE";
      expect(effects.filter((e) => e.op === op && e.user_id === user.id && e.name === user.name)).toHaveLength(1);
      // The last write of a user still there is what the table holds.
      if (write.method === "PUT" && !deleted.has(write.key)) {
        expect(userById.get(user.id)).toEqual({ id: user.id, name: user.name, email: user.email });
      }
    }
    for (const write of writes.filter((w) => w.method === "DELETE")) {
      const path = write.key.replace("delete", "post");
      const created = JSON.parse(writes.find((w) => w.key === path)?.final.body ?? "{}") as UserJson;
      expect(effects.filter((e) => e.op === "DELETE" && e.user_id === created.id)).toHaveLength(1);
      expect(userById.has(created.id)).toBe(false);
    }
  });
});
