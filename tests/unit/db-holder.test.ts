import { beforeEach, describe, expect, test } from "bun:test";
import type { ClientOptions, Sql } from "../../src/db/client-options.ts";
import { DbHolder, type DbHolderOptions } from "../../src/db/db-holder.ts";
import { parseDatabaseUrl } from "../../src/db/dsn.ts";
import { DatabaseUnavailableError, WriteOutcomeUnknownError } from "../../src/db/errors.ts";
import { silentLogger } from "../../src/logger.ts";
import { FakeClock } from "../helpers/fake-clock.ts";

/** A statement the fake client was sent, answered when the test says (or at once, from `answers`). */
interface SentStatement {
  text: string;
  cancelled: boolean;
  answer(value: unknown): void;
  fail(error: unknown): void;
}

type Outcome = { value: unknown } | { error: unknown };

/**
 * Stands in for a postgres.js client: records what it is sent, in order, and
 * answers each statement as the test says. `query(text)` stands in for a
 * tagged query (cancellable, like postgres.js's); `begin` and `unsafe` run a
 * transaction as postgres.js does: BEGIN, the work, then COMMIT or ROLLBACK.
 */
class FakeClient {
  /** Every statement in the order sent, BEGIN/COMMIT/ROLLBACK included. */
  readonly log: string[] = [];
  readonly sent: SentStatement[] = [];
  /** Outcomes given before the statement is sent: it is answered at once. */
  readonly answers = new Map<string, Outcome>();
  /** Transactions begun, settled once they committed or rolled back. */
  readonly transactions: Promise<unknown>[] = [];
  /** When set, a COMMIT is sent and never answered. */
  holdCommit = false;
  ended = false;

  constructor(readonly options: ClientOptions) {}

  query(text: string): Promise<unknown> & { cancel(): void } {
    this.log.push(text);
    let answer!: (value: unknown) => void;
    let fail!: (error: unknown) => void;
    const promise = new Promise((resolve, reject) => {
      answer = resolve;
      fail = reject;
    });
    const statement: SentStatement = { text, cancelled: false, answer, fail };
    this.sent.push(statement);
    const given = this.answers.get(text);
    if (given && "value" in given) answer(given.value);
    else if (given) fail(given.error);
    return Object.assign(promise, {
      cancel() {
        statement.cancelled = true;
        fail(Object.assign(new Error("canceling statement due to user request"), { code: "57014", severity: "ERROR" }));
      },
    });
  }

  /** The statement sent as `text` (the last one, if several). */
  statement(text: string): SentStatement {
    const found = this.sent.findLast((s) => s.text === text);
    if (!found) throw new Error(`"${text}" was not sent; sent: ${this.log.join(" | ")}`);
    return found;
  }

  begin(mode: string, work: (tx: FakeClient) => Promise<unknown>): Promise<unknown> {
    this.log.push(`begin ${mode}`.trim());
    const transaction = (async () => {
      let result: unknown;
      try {
        result = await work(this);
      } catch (error) {
        this.log.push("rollback");
        throw error;
      }
      this.log.push("commit");
      if (this.holdCommit) await new Promise(() => {});
      return result;
    })();
    this.transactions.push(transaction.catch(() => {}));
    return transaction;
  }

  unsafe(text: string): { execute(): Promise<unknown> } {
    this.log.push(text);
    return { execute: async () => [] };
  }

  async end(): Promise<void> {
    this.ended = true;
  }
}

/** The fake behind the `sql` a holder hands to work. */
const fake = (sql: Sql) => sql as unknown as FakeClient;

const OPTIONS: DbHolderOptions = {
  max: 10,
  connectTimeoutMs: 1000,
  idleTimeoutSeconds: 30,
  queryTimeoutMs: 1000,
  instanceId: "unit",
  logger: silentLogger,
};
const TARGET = parseDatabaseUrl("postgres://app@db.internal:5432/app");
/** Longer than any test: a wait this long fails the test by its own timeout. */
const NEVER_MS = 600_000;

let clock: FakeClock;
let clients: FakeClient[];

function holder(options: Partial<DbHolderOptions> = {}): DbHolder {
  return new DbHolder(
    TARGET,
    { ...OPTIONS, ...options },
    {
      clock,
      createClient: (clientOptions) => {
        const client = new FakeClient(clientOptions);
        clients.push(client);
        return client as unknown as Sql;
      },
    },
  );
}

/** The error `promise` rejects with (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    (value) => ({ resolved: value }),
    (error: unknown) => ({ error }),
  );
  if (!("error" in outcome)) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.resolved)}`);
  return outcome.error as Error;
}

const connectionRefused = () => Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });

beforeEach(() => {
  clock = new FakeClock();
  clients = [];
});

describe("building and closing", () => {
  test("a new holder builds one lazy client of the configured shape, sends nothing and arms no timer", () => {
    const db = holder();
    expect(clients).toHaveLength(1);
    expect(clients[0]?.options.max).toBe(10);
    expect(clients[0]?.log).toEqual([]);
    expect(clock.pending).toBe(0);
    expect(db.shape).toEqual({ max: 10, readOnly: false });
  });

  test("the deadline sweep starts with the first run and stops on close; a closed holder arms no timer again", async () => {
    const db = holder();
    const client = clients[0] as FakeClient;
    client.answers.set("select 1", { value: [1] });
    expect(await db.run((sql) => fake(sql).query("select 1"), { idempotent: true })).toEqual([1]);
    expect(clock.pending).toBe(1);
    await clock.advance(1000);
    expect(clock.pending).toBe(1);

    await db.close(0);
    expect(clock.pending).toBe(0);
    expect(client.ended).toBe(true);
    await db.run((sql) => fake(sql).query("select 1"), { idempotent: true });
    expect(clock.pending).toBe(0);
  });

  test("close lets running work finish within its timeout", async () => {
    const db = holder();
    const read = db.run((sql) => fake(sql).query("select slow"), { idempotent: true });
    const closing = db.close(NEVER_MS);
    expect(clients[0]?.ended).toBe(false);
    clients[0]?.statement("select slow").answer("done");
    expect(await read).toBe("done");
    await closing;
    expect(clients[0]?.ended).toBe(true);
  });

  test("close cuts work still running at its timeout: the caller gets a 503", async () => {
    const db = holder();
    const read = rejection(db.run((sql) => fake(sql).query("select stuck"), { idempotent: true }));
    await db.close(0);
    expect(clients[0]?.ended).toBe(true);
    const error = await read;
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(error.message).toBe("database client ended");
  });
});

describe("reconnect", () => {
  test("new work goes to the new client at once; the old one ends after its running work", async () => {
    const db = holder();
    const old = clients[0] as FakeClient;
    const running = db.run((sql) => fake(sql).query("select old"), { idempotent: true });
    const swapped = db.reconnect({ max: 1, readOnly: true }, NEVER_MS);

    expect(clients).toHaveLength(2);
    const next = clients[1] as FakeClient;
    expect(next.options.max).toBe(1);
    expect(next.options.connection).toMatchObject({ default_transaction_read_only: "on" });
    expect(db.stats()).toMatchObject({ generation: 2, max: 1, readOnly: true });
    next.answers.set("select new", { value: "new" });
    expect(await db.run((sql) => fake(sql).query("select new"), { idempotent: true })).toBe("new");
    expect(next.log).toEqual(["select new"]);
    expect(old.ended).toBe(false);
    expect(db.inFlight).toBe(1);

    old.statement("select old").answer("old");
    expect(await running).toBe("old");
    expect(await swapped).toBe(true);
    expect(old.ended).toBe(true);
    expect(db.inFlight).toBe(0);
  });

  test("close during a swap's drain cuts it: the swap resolves (not drained) instead of waiting out its timeout", async () => {
    const db = holder();
    const running = rejection(db.run((sql) => fake(sql).query("select old"), { idempotent: true }));
    const swapped = db.reconnect({ max: 1, readOnly: false }, NEVER_MS);
    await db.close(0);
    expect(await swapped).toBe(false);
    expect(await running).toBeInstanceOf(DatabaseUnavailableError);
    expect(clients.map((client) => client.ended)).toEqual([true, true]);
  });

  test("a write on a read-only client begins READ ONLY", async () => {
    const db = holder();
    await db.reconnect({ max: 1, readOnly: true }, 0);
    const client = clients[1] as FakeClient;
    client.answers.set("insert", { value: [] });
    await db.run((sql) => fake(sql).query("insert"));
    expect(client.log).toEqual(["begin read only", "insert", "commit"]);
  });
});

describe("deadlines", () => {
  test("a read past its deadline is given up with a 503 and cancelled", async () => {
    const db = holder();
    const read = rejection(db.run((sql) => fake(sql).query("select slow"), { idempotent: true, timeoutMs: 1000 }));
    await clock.advance(999);
    expect(clients[0]?.statement("select slow").cancelled).toBe(false);
    await clock.advance(1);
    const error = await read;
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(error.message).toBe("database did not answer in time");
    expect(clients[0]?.statement("select slow").cancelled).toBe(true);
  });

  test("a write given up before its COMMIT rolls back, even when its statement is answered afterwards", async () => {
    const db = holder();
    const client = clients[0] as FakeClient;
    const write = rejection(db.run((sql) => fake(sql).query("insert"), { timeoutMs: 1000 }));
    await clock.advance(1000);
    const error = await write;
    expect(error).toBeInstanceOf(DatabaseUnavailableError);

    client.statement("insert").answer([]);
    await Promise.all(client.transactions);
    expect(client.log).toEqual(["begin", "insert", "rollback"]);
  });

  test("a write whose COMMIT is not answered by its deadline has an unknown outcome", async () => {
    const db = holder();
    const client = clients[0] as FakeClient;
    client.holdCommit = true;
    client.answers.set("insert", { value: [] });
    const write = rejection(db.run((sql) => fake(sql).query("insert"), { timeoutMs: 1000 }));
    await clock.advance(1000);
    expect(await write).toBeInstanceOf(WriteOutcomeUnknownError);
    expect(client.log).toEqual(["begin", "insert", "commit"]);
  });

  test("a write answered in time commits", async () => {
    const db = holder();
    const client = clients[0] as FakeClient;
    client.answers.set("insert", { value: [{ id: 1 }] });
    expect(await db.run((sql) => fake(sql).query("insert"))).toEqual([{ id: 1 }]);
    expect(client.log).toEqual(["begin", "insert", "commit"]);
  });
});

describe("failed connections", () => {
  test("a client whose connections failed is replaced by one of the same shape, at most once a second", async () => {
    const db = holder();
    const failing = clients[0] as FakeClient;
    failing.answers.set("select 1", { error: connectionRefused() });
    const error = await rejection(db.run((sql) => fake(sql).query("select 1"), { idempotent: true }));
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(clients).toHaveLength(1);

    await clock.advance(1000);
    expect(clients).toHaveLength(2);
    expect(clients[1]?.options.max).toBe(10);
    expect(failing.ended).toBe(true);
    expect(db.stats().generation).toBe(2);
    clients[1]?.answers.set("select 1", { value: "back" });
    expect(await db.run((sql) => fake(sql).query("select 1"), { idempotent: true })).toBe("back");
  });

  test("a client that answered a query since its failure is kept", async () => {
    const db = holder();
    const client = clients[0] as FakeClient;
    client.answers.set("select fails", { error: connectionRefused() });
    client.answers.set("select works", { value: "ok" });
    await rejection(db.run((sql) => fake(sql).query("select fails"), { idempotent: true }));
    await clock.advance(1);
    await db.run((sql) => fake(sql).query("select works"), { idempotent: true });
    await clock.advance(2000);
    expect(clients).toHaveLength(1);
    expect(client.ended).toBe(false);
  });

  test("work that meets a connection closed under it runs once more", async () => {
    const db = holder();
    const client = clients[0] as FakeClient;
    client.answers.set("attempt 1", { error: Object.assign(new Error("closed"), { code: "CONNECTION_CLOSED" }) });
    client.answers.set("attempt 2", { value: "ok" });
    let attempts = 0;
    expect(await db.run((sql) => fake(sql).query(`attempt ${++attempts}`), { idempotent: true })).toBe("ok");
    expect(attempts).toBe(2);
  });

  test("a connection closed twice is a 503", async () => {
    const db = holder();
    const closed = () => ({ error: Object.assign(new Error("closed"), { code: "CONNECTION_CLOSED" }) });
    clients[0]?.answers.set("attempt 1", closed());
    clients[0]?.answers.set("attempt 2", closed());
    let attempts = 0;
    const error = await rejection(db.run((sql) => fake(sql).query(`attempt ${++attempts}`), { idempotent: true }));
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect(attempts).toBe(2);
  });
});

describe("behind PgBouncer", () => {
  test("each write sets its timeouts for its own transaction, ahead of its work", async () => {
    const db = holder({ pooler: "pgbouncer" });
    const client = clients[0] as FakeClient;
    client.answers.set("insert", { value: [] });
    await db.run((sql) => fake(sql).query("insert"));
    expect(client.log).toEqual([
      "begin",
      "SET LOCAL statement_timeout = 1000; SET LOCAL idle_in_transaction_session_timeout = 1000",
      "insert",
      "commit",
    ]);
  });

  test("a read is sent as it is", async () => {
    const db = holder({ pooler: "pgbouncer" });
    const client = clients[0] as FakeClient;
    client.answers.set("select", { value: [] });
    await db.run((sql) => fake(sql).query("select"), { idempotent: true });
    expect(client.log).toEqual(["select"]);
  });
});
