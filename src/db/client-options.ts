import type postgres from "postgres";
import type { Logger } from "../logger.ts";
import { type ConnectionTarget, hostOptions } from "./dsn.ts";

/** The postgres.js client type used throughout the service. */
export type Sql = postgres.Sql;

/** The options postgres.js takes to build a client. */
export type ClientOptions = postgres.Options<Record<string, postgres.PostgresType>>;

/** Builds a client from its options: `postgres` in the service, a fake in unit tests. */
export type ClientFactory = (options: ClientOptions) => Sql;

/**
 * What may sit between the service and PostgreSQL: nothing (`none`), or
 * PgBouncer in transaction pooling (`pgbouncer`), where a server session
 * serves many clients one transaction at a time.
 */
export const POOLERS = ["none", "pgbouncer"] as const;

/** One of {@link POOLERS}. */
export type Pooler = (typeof POOLERS)[number];

/** The shape of a client: how many connections, and whether its sessions refuse writes. */
export interface PoolShape {
  max: number;
  /** PostgreSQL itself refuses writes (SQLSTATE 25006), not only the maintenance gate. */
  readOnly: boolean;
}

/** Client settings that stay the same across client generations. */
export interface ClientSettings {
  connectTimeoutMs: number;
  idleTimeoutSeconds: number;
  /** PostgreSQL's statement_timeout and idle_in_transaction_session_timeout, in ms. */
  queryTimeoutMs: number;
  pooler: Pooler;
  /** Receives the server's notices (at debug level). */
  logger: Logger;
}

/**
 * Seconds a connection waits before reconnecting after the `retries`-th failed
 * connection: doubling from 50 ms up to 1 s, with jitter. postgres.js's own
 * (3^retries / 100 s, up to 20 s) counts failures across the whole pool and
 * forgets them only on a success, and the query that asked for the connection
 * waits with it: after an outage of a few seconds, requests hung for 10–20 s
 * once the database was back (cf. porsager/postgres#1193).
 */
function reconnectDelaySeconds(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 1);
}

/**
 * The postgres.js options of a client of `shape` on `target`, named
 * `applicationName` in pg_stat_activity.
 *
 * Without a pooler, every session starts with the timeouts (and, read-only,
 * `default_transaction_read_only`) as startup parameters. PgBouncer refuses a
 * connection that sends any startup parameter but the few it tracks
 * (`unsupported startup parameter`), and in transaction pooling a session
 * setting would stay on a server connection other clients then use; so with
 * `pgbouncer` only application_name, TimeZone and client_encoding are sent, and
 * each write transaction sets its own (see {@link writeTransaction}).
 */
export function clientOptions(
  target: ConnectionTarget,
  shape: PoolShape,
  applicationName: string,
  settings: ClientSettings,
): ClientOptions {
  const { connectTimeoutMs, idleTimeoutSeconds, queryTimeoutMs, pooler, logger } = settings;
  return {
    ...hostOptions(target),
    database: target.database,
    user: target.username,
    ...(target.password !== undefined && { password: target.password }),
    ssl: target.ssl,
    // Always a number: a string or undefined `max` silently means 1 in postgres.js.
    max: Number(shape.max),
    connect_timeout: connectTimeoutMs / 1000,
    backoff: reconnectDelaySeconds,
    idle_timeout: idleTimeoutSeconds,
    fetch_types: false,
    // PgBouncer 1.18 in transaction pooling cannot keep a named prepared statement on the server session
    // that prepared it: postgres.js then sends unnamed statements.
    prepare: pooler === "none",
    // Any setting may be sent at connection start; postgres.js's types name only a few.
    connection: {
      application_name: applicationName,
      TimeZone: "UTC",
      ...(pooler === "none" && {
        // The server gives up about when we do: a statement past it is cancelled (57014), and a write's
        // transaction left open by a client that went away is rolled back (25P03) and its locks freed.
        statement_timeout: queryTimeoutMs,
        idle_in_transaction_session_timeout: queryTimeoutMs,
        // Refuses writes outside transactions too (an `idempotent` run that writes).
        ...(shape.readOnly && { default_transaction_read_only: "on" }),
      }),
    } as ClientOptions["connection"],
    types: {
      // TIMESTAMP columns hold UTC wall-clock time (the session runs in UTC): read as the ISO text of that time.
      utcTimestamp: {
        to: 1114,
        from: [1114],
        serialize: (value: Date) => value.toISOString(),
        parse: isoTimestamp,
      },
    },
    onnotice: (notice) => logger.debug("db.notice", { message: notice.message }),
  };
}

/** PostgreSQL's text of a TIMESTAMP in the ISO DateStyle: the fraction is optional, without trailing zeros. */
const POSTGRES_TIMESTAMP = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?$/;

/**
 * A TIMESTAMP holding UTC time as `toISOString()` writes it
 * (`2026-11-26 16:09:29.123456` → `2026-11-26T16:09:29.123Z`, the fraction cut
 * to milliseconds), built from the text without a Date in between: parsing and
 * formatting a Date cost about 0.5 µs per value. A value of another shape
 * (`infinity`, BC, a year past 9999), which no Date could format, is kept as
 * PostgreSQL wrote it.
 */
export function isoTimestamp(text: string): string {
  if (!POSTGRES_TIMESTAMP.test(text)) return text;
  const millis = text.length > 20 ? text.slice(20, 23).padEnd(3, "0") : "000";
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${millis}Z`;
}

/** How every write transaction on a client of one shape begins. */
export interface WriteTransaction {
  /** postgres.js `begin()` options: `read only` on a read-only client, so PostgreSQL refuses the write (25006). */
  readonly begin: "" | "read only";
  /** `SET LOCAL` statements sent ahead of the work, or null when the session already carries the settings. */
  readonly setLocal: string | null;
}

/**
 * How a write transaction begins on a client of `shape`. A read-only client
 * begins `READ ONLY` whatever its sessions' defaults (through PgBouncer they
 * are the server's). Through PgBouncer, the timeouts the sessions cannot carry
 * are set for the transaction (`SET LOCAL`, gone at its end).
 */
export function writeTransaction(
  shape: PoolShape,
  { queryTimeoutMs, pooler }: Pick<ClientSettings, "queryTimeoutMs" | "pooler">,
): WriteTransaction {
  return {
    begin: shape.readOnly ? "read only" : "",
    setLocal:
      pooler === "none"
        ? null
        : `SET LOCAL statement_timeout = ${queryTimeoutMs}; ` +
          `SET LOCAL idle_in_transaction_session_timeout = ${queryTimeoutMs}`,
  };
}
