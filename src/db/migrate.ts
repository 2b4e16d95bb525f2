import { describeError, type Logger } from "../logger.ts";
import { RetryBackoff } from "../util/backoff.ts";
import { sleep } from "../util/sleep.ts";
import type { DbHolder, Sql } from "./db-holder.ts";

/** One versioned schema change, applied once, in order. */
interface Migration {
  version: number;
  name: string;
  up: (sql: Sql) => Promise<unknown>;
}

/** The schema, as a list of changes. Append; never edit an applied one. */
const migrations: Migration[] = [
  {
    version: 1,
    name: "create users",
    // Exactly the table of the service's original README.
    up: (sql) => sql`
      CREATE TABLE IF NOT EXISTS users (
        id SERIAL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        email VARCHAR(255) UNIQUE NOT NULL,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
      )`,
  },
  {
    version: 2,
    name: "unique email ignoring case",
    up: (sql) => sql`CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_key ON users (lower(email))`,
  },
  {
    version: 3,
    name: "idempotency keys",
    // A write's answer under its Idempotency-Key, bound to its request; see src/idempotency/.
    up: async (sql) => {
      await sql`
        CREATE TABLE IF NOT EXISTS idempotency_keys (
          key TEXT PRIMARY KEY,
          method TEXT NOT NULL,
          path TEXT NOT NULL,
          fingerprint TEXT NOT NULL,
          status SMALLINT NOT NULL,
          headers JSONB NOT NULL,
          body TEXT,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          expires_at TIMESTAMPTZ NOT NULL
        )`;
      await sql`CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at)`;
    },
  },
];

/** Longest the whole migration step may take. */
const MIGRATION_TIMEOUT_MS = 30 * 60_000;

/** Waits between failed migrations: 0.5 s, doubling, up to 10 s. */
const RETRY_BACKOFF = { firstMs: 500, maxMs: 10_000 };

/** Arbitrary constant naming our advisory lock ("dbsvc" in hex). */
const MIGRATION_LOCK_ID = 0x6462737663;

/**
 * Applies every migration not yet recorded in `schema_migrations`, in one
 * transaction under an advisory lock, so instances starting together apply
 * each change exactly once. Returns the versions it applied.
 */
export async function migrate(db: DbHolder): Promise<number[]> {
  // A write: DbHolder.run applies it in one transaction.
  return db.run(
    async (tx) => {
      // Schema changes may take longer than a request's query timeout.
      await tx`SET LOCAL statement_timeout = 0`;
      await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`;
      await tx`
        CREATE TABLE IF NOT EXISTS schema_migrations (
          version INTEGER PRIMARY KEY,
          name TEXT NOT NULL,
          applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )`;
      const rows = await tx<{ version: number }[]>`SELECT version FROM schema_migrations`;
      const applied = new Set(rows.map((row) => row.version));
      const done: number[] = [];
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue;
        await migration.up(tx);
        await tx`INSERT INTO schema_migrations (version, name) VALUES (${migration.version}, ${migration.name})`;
        done.push(migration.version);
      }
      return done;
    },
    { timeoutMs: MIGRATION_TIMEOUT_MS },
  );
}

/** Whether the schema has been brought up to date since start. */
export interface SchemaStatus {
  readonly ready: boolean;
}

/**
 * Runs {@link migrate} until it succeeds, backing off between attempts (up to
 * 10 s), so the service can start — and report itself unhealthy — while
 * PostgreSQL is still unreachable. `status.ready` turns true once applied.
 */
export function migrateInBackground(
  db: DbHolder,
  logger: Logger,
  signal: AbortSignal,
): {
  status: SchemaStatus;
  done: Promise<void>;
} {
  const status = { ready: false };
  const done = (async () => {
    const backoff = new RetryBackoff(RETRY_BACKOFF);
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const applied = await migrate(db);
        status.ready = true;
        logger.info("db.migrated", { applied, attempt });
        return;
      } catch (error) {
        const delayMs = backoff.failed();
        logger.error("db.migration_failed", { attempt, retry_in_ms: delayMs, ...describeError(error) });
        await sleep(delayMs, signal);
      }
    }
  })();
  return { status, done };
}
