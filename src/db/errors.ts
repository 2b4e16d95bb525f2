/** The database cannot be reached or refused the connection; clients get 503. */
export class DatabaseUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DatabaseUnavailableError";
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
