import parseConnectionString from "@databases/pg-connection-string";

/** Where and how to reach PostgreSQL, in the shape postgres.js takes. */
export interface ConnectionTarget {
  host: string[];
  port: number[];
  database: string;
  username: string;
  password?: string;
  /** postgres.js `ssl`: false, or a libpq sslmode it understands. */
  ssl: false | "prefer" | "require" | "verify-full";
  /** Seconds; from libpq `connect_timeout` when the string gives one. */
  connectTimeoutSeconds?: number;
}

/** Thrown when a DATABASE_URL cannot be understood; the message says why. */
export class InvalidDatabaseUrlError extends Error {}

const sslModes: Record<string, ConnectionTarget["ssl"]> = {
  disable: false,
  allow: "prefer",
  prefer: "prefer",
  require: "require",
  "verify-ca": "verify-full",
  "verify-full": "verify-full",
  "no-verify": "require",
};

/**
 * Parses a PostgreSQL connection string, in either the libpq keyword/value form
 * (`host=localhost user=postgres dbname=testdb sslmode=disable`) or the URL form
 * (`postgres://user:pass@host:5432/db?sslmode=require`).
 *
 * postgres.js throws "Invalid URL" on the keyword form, and pg-connection-string
 * silently mis-parses it (brianc/node-postgres#2125), so both go through
 * @databases/pg-connection-string. PG* environment variables are not consulted:
 * the string alone decides.
 */
export function parseDatabaseUrl(value: string): ConnectionTarget {
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(value.trim(), {
      env: {},
      invalidOptionMode: "error",
      unrecognisedOptionMode: "error",
    });
  } catch (error) {
    throw new InvalidDatabaseUrlError(error instanceof Error ? error.message : String(error));
  }
  const host = parsed.host.filter((h) => h !== "");
  if (host.length === 0) throw new InvalidDatabaseUrlError("no host given");
  const ports = parsed.port.map((p) => p ?? 5432);
  const username = parsed.user ?? "postgres";
  const sslmode = parsed.sslmode ?? "prefer";
  const ssl = sslModes[sslmode];
  if (ssl === undefined) throw new InvalidDatabaseUrlError(`unsupported sslmode "${sslmode}"`);
  const connectTimeout = parsed.connect_timeout;
  return {
    host,
    port: ports.length > 0 ? ports : [5432],
    database: parsed.dbname ?? username,
    username,
    ...(parsed.password !== undefined && { password: parsed.password }),
    ssl,
    ...(connectTimeout !== undefined && connectTimeout > 0 && { connectTimeoutSeconds: connectTimeout }),
  };
}
