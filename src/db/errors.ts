/**
 * The database cannot serve the request now (unreachable, refusing logins,
 * missing, overloaded, shutting down, a statement cancelled or timed out),
 * and a write it carried provably did not and will not commit. Clients get 503.
 */
export class DatabaseUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DatabaseUnavailableError";
  }
}

/**
 * A write's COMMIT was sent and no answer came by its deadline, or the
 * connection failed while waiting for it: the write may or may not have been
 * applied. Clients get 504 `outcome-unknown`.
 */
export class WriteOutcomeUnknownError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "WriteOutcomeUnknownError";
  }
}

/** The schema has not been migrated yet (the database has not answered since start); clients get 503. */
export class SchemaNotReadyError extends Error {
  constructor() {
    super("the database schema is not ready yet");
    this.name = "SchemaNotReadyError";
  }
}

/**
 * PostgreSQL refused a write because the session is read-only (SQLSTATE 25006):
 * a write reached a read-only maintenance pool. Clients get 503.
 */
export class DatabaseReadOnlyError extends Error {
  constructor(options?: { cause?: unknown }) {
    super("the database session is read-only", options);
    this.name = "DatabaseReadOnlyError";
  }
}

/** postgres.js and socket error codes that mean "no usable connection". */
const connectionCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  // PostgreSQL SQLSTATEs: admin/crash shutdown, cannot connect now, too many connections.
  "57P01",
  "57P02",
  "57P03",
  "53300",
]);

/**
 * SQLSTATE classes in which every condition is operational: about the
 * database's availability, capacity or administration, never about the
 * statement we sent (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 */
const operationalClasses = new Set([
  // 08 connection exception.
  "08",
  // 28 invalid authorization: login refused (role disabled, password rotated, pg_hba).
  "28",
  // 53 insufficient resources: disk full, out of memory, too many connections.
  "53",
  // 57 operator intervention: statement cancelled or timed out (57014), shutdown,
  // cannot connect now, database dropped (57P04), idle session timeout (57P05).
  "57",
  // 58 system error: I/O errors on the database server.
  "58",
]);

/** Single operational SQLSTATEs from classes that otherwise hold our own mistakes. */
const operationalCodes = new Set([
  // The database named in DATABASE_URL does not exist (dropped, or not created yet).
  "3D000",
  // The session was ended for idling in a transaction (idle_in_transaction_session_timeout).
  "25P03",
  // The transaction was rolled back by a concurrency conflict; the same request can succeed when retried.
  "40001",
  "40P01",
  // A lock could not be had in time (an operator's lock_timeout).
  "55P03",
  // A privilege was revoked from the service's role: like a disabled login, an operator's change.
  "42501",
]);

/** The `code` of a postgres.js or socket error, if it has one. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** True when `error` means the database is unreachable rather than that a query is wrong. */
export function isConnectionError(error: unknown): boolean {
  const code = errorCode(error);
  if (code === undefined) return false;
  // SQLSTATE class 08: connection exception.
  return connectionCodes.has(code) || code.startsWith("08");
}

/**
 * True when `error` is an operational database condition, answered 503: the
 * connection failed or was refused, or PostgreSQL reported a condition of the
 * database rather than of our statement. Everything else (a constraint we map
 * ourselves, a syntax error, 0A000 feature not supported, XX internal error or
 * corruption) is not, and stays a 500 unless a caller maps it.
 */
export function isOperational(error: unknown): boolean {
  const code = errorCode(error);
  if (code === undefined) return false;
  return isConnectionError(error) || operationalCodes.has(code) || operationalClasses.has(code.slice(0, 2));
}

/**
 * True when PostgreSQL answered a statement with an ERROR: it ended the
 * statement and, in a transaction, the transaction. A FATAL or PANIC ends the
 * session, possibly after a COMMIT took effect, and a failed connection gives
 * no answer at all.
 */
export function isStatementError(error: unknown): boolean {
  return (error as { severity?: unknown } | null)?.severity === "ERROR";
}

/**
 * True when work met a connection that closed under it before anything could
 * commit (the first query after a PostgreSQL restart finds its idle
 * connection gone): the same work may be run once more on a new connection.
 */
export function isStaleConnection(error: unknown): boolean {
  const code = errorCode(error);
  return code === "CONNECTION_CLOSED" || code === "ECONNRESET" || code === "57P01";
}

/**
 * What a database failure means for the service: a write refused by a
 * read-only session is a {@link DatabaseReadOnlyError}, an operational
 * condition (see {@link isOperational}) a {@link DatabaseUnavailableError};
 * anything else (our statement's error) is left as it is.
 */
export function translateDatabaseError(error: unknown): unknown {
  if (errorCode(error) === "25006") return new DatabaseReadOnlyError({ cause: error });
  if (error instanceof DatabaseUnavailableError || !isOperational(error)) return error;
  return new DatabaseUnavailableError("database unavailable", { cause: error });
}
