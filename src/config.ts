import { isIP } from "node:net";
import * as v from "valibot";
import { type ConnectionTarget, InvalidDatabaseUrlError, parseDatabaseUrl } from "./db/dsn.ts";
import { type EmbeddedDatabase, parseEmbeddedUrl } from "./db/embedded.ts";

/** The seed README's default: a local PostgreSQL with the compose credentials. */
export const DEFAULT_DATABASE_URL =
  "host=localhost user=postgres password=postgres dbname=testdb port=5432 sslmode=disable";

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const integer = (fallback: number, min: number, max: number) =>
  v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.regex(/^\d+$/, "must be a whole number"),
      v.transform(Number),
      v.minValue(min, `must be at least ${min}`),
      v.maxValue(max, `must be at most ${max}`),
    ),
    String(fallback),
  );

const text = (fallback: string) => v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty("must not be empty")), fallback);
const optionalText = () => v.optional(v.pipe(v.string(), v.trim(), v.nonEmpty("must not be empty")));

const databaseUrl = v.pipe(
  v.optional(v.string(), DEFAULT_DATABASE_URL),
  v.rawTransform(({ dataset, addIssue, NEVER }): ConnectionTarget | EmbeddedDatabase => {
    const embedded = parseEmbeddedUrl(dataset.value);
    if (embedded) return embedded;
    try {
      return parseDatabaseUrl(dataset.value);
    } catch (error) {
      if (!(error instanceof InvalidDatabaseUrlError)) throw error;
      addIssue({ message: error.message });
      return NEVER;
    }
  }),
);

/** A host name as RFC 1123 allows it; a last label of digits only is a mistyped IPv4 address, not a name. */
const HOST_NAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*(?!\d+$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** The address to listen on: an IP address (IPv6 without brackets) or a host name. */
const listenHost = v.pipe(
  text("0.0.0.0"),
  v.check(
    // An empty HOST is reported once, by text().
    (host) => host === "" || isIP(host) !== 0 || HOST_NAME.test(host),
    "must be an IP address (IPv6 without brackets, e.g. ::1) or a host name",
  ),
);

const endpoints = v.pipe(
  v.optional(v.string(), "localhost:2379"),
  v.transform((value) =>
    value
      .split(",")
      .map((endpoint) => endpoint.trim())
      .filter((endpoint) => endpoint !== ""),
  ),
  v.minLength(1, "must name at least one endpoint"),
);

const EnvironmentSchema = v.object({
  PORT: integer(8080, 0, 65535),
  HOST: listenHost,
  DATABASE_URL: databaseUrl,
  DB_POOL_MAX: integer(10, 1, 1000),
  DB_MAINTENANCE_POOL_MAX: integer(1, 1, 1000),
  DB_CONNECT_TIMEOUT_MS: integer(5000, 100, 600_000),
  DB_IDLE_TIMEOUT_S: integer(30, 1, 86_400),
  DB_QUERY_TIMEOUT_MS: integer(15_000, 100, 3_600_000),
  ETCD_ENDPOINTS: endpoints,
  ETCD_USERNAME: optionalText(),
  ETCD_PASSWORD: optionalText(),
  ETCD_CA_FILE: optionalText(),
  ETCD_CERT_FILE: optionalText(),
  ETCD_KEY_FILE: optionalText(),
  MAINTENANCE_KEY: text("/maintenance/database-service"),
  MAINTENANCE_GLOBAL_KEY: v.optional(v.pipe(v.string(), v.trim()), "/maintenance/global"),
  MAINTENANCE_BYPASS_TOKEN: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.minLength(16, "must be at least 16 characters"),
      v.regex(/^\S+$/, "must not contain spaces"),
    ),
  ),
  ADMIN_TOKEN: v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.minLength(8, "must be at least 8 characters"),
      v.regex(/^\S+$/, "must not contain spaces"),
    ),
  ),
  MAINTENANCE_START_POLICY: v.optional(v.picklist(["open", "closed"], "must be open or closed"), "open"),
  DRAIN_TIMEOUT_MS: integer(30_000, 0, 3_600_000),
  RETRY_AFTER_SECONDS: integer(60, 0, 86_400),
  SHUTDOWN_TIMEOUT_MS: integer(30_000, 0, 3_600_000),
  IDLE_TIMEOUT_S: integer(120, 0, 255),
  LOG_LEVEL: v.optional(
    v.pipe(v.string(), v.trim(), v.toLowerCase(), v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`)),
    "info",
  ),
});

/** Everything the service reads from its environment, parsed and typed. */
export interface Config {
  port: number;
  host: string;
  /** The PostgreSQL server to use, or an embedded one to start (`DATABASE_URL=embedded`). */
  database: ConnectionTarget | EmbeddedDatabase;
  db: {
    poolMax: number;
    maintenancePoolMax: number;
    connectTimeoutMs: number;
    idleTimeoutSeconds: number;
    /** Longest a query may run; PostgreSQL's statement_timeout too. */
    queryTimeoutMs: number;
  };
  /** `memory` (ETCD_ENDPOINTS=memory): an in-process key, for development; else etcd. */
  maintenanceSource: "etcd" | "memory";
  /** Bearer token of the admin API; the API is absent when unset. */
  adminToken: string | null;
  etcd: {
    endpoints: string[];
    username?: string;
    password?: string;
    caFile?: string;
    certFile?: string;
    keyFile?: string;
  };
  maintenance: {
    key: string;
    /** The fleet-wide key, watched beside `key`; null when MAINTENANCE_GLOBAL_KEY is empty. */
    globalKey: string | null;
    /** Lets an operator through a closed gate with `X-Maintenance-Bypass`; null when unset. */
    bypassToken: string | null;
    startPolicy: "open" | "closed";
    drainTimeoutMs: number;
    retryAfterSeconds: number;
  };
  shutdownTimeoutMs: number;
  /** Seconds a connection may stay silent before Bun closes it (Bun's default, 10 s, cuts slow requests). */
  idleTimeoutSeconds: number;
  logLevel: LogLevel;
}

/** A configuration whose database is a server to connect to (an embedded one already started). */
export type ServerConfig = Config & { database: ConnectionTarget };

/** `config` with its database resolved to a server (e.g. an embedded one, once started). */
export function withDatabase(config: Config, database: ConnectionTarget): ServerConfig {
  return { ...config, database };
}

/** Thrown by {@link loadConfig}; `problems` names each bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

/**
 * Parses the environment once. Unset variables take their defaults; a bad value
 * throws a {@link ConfigError} naming every offending variable.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const known = Object.fromEntries(
    Object.keys(EnvironmentSchema.entries).flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]]])),
  );
  const result = v.safeParse(EnvironmentSchema, known);
  if (!result.success) {
    throw new ConfigError(result.issues.map((issue) => `${v.getDotPath(issue) ?? "environment"}: ${issue.message}`));
  }
  const e = result.output;
  const problems: string[] = [];
  if ((e.ETCD_USERNAME === undefined) !== (e.ETCD_PASSWORD === undefined)) {
    problems.push("ETCD_USERNAME/ETCD_PASSWORD: set both or neither");
  }
  if ((e.ETCD_CERT_FILE === undefined) !== (e.ETCD_KEY_FILE === undefined)) {
    problems.push("ETCD_CERT_FILE/ETCD_KEY_FILE: set both or neither");
  }
  if (e.MAINTENANCE_GLOBAL_KEY === e.MAINTENANCE_KEY) {
    problems.push("MAINTENANCE_GLOBAL_KEY: must differ from MAINTENANCE_KEY");
  }
  if (e.DB_MAINTENANCE_POOL_MAX > e.DB_POOL_MAX) {
    problems.push("DB_MAINTENANCE_POOL_MAX: must not exceed DB_POOL_MAX");
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    port: e.PORT,
    host: e.HOST,
    database: e.DATABASE_URL,
    db: {
      poolMax: e.DB_POOL_MAX,
      maintenancePoolMax: e.DB_MAINTENANCE_POOL_MAX,
      connectTimeoutMs:
        "connectTimeoutSeconds" in e.DATABASE_URL && e.DATABASE_URL.connectTimeoutSeconds
          ? e.DATABASE_URL.connectTimeoutSeconds * 1000
          : e.DB_CONNECT_TIMEOUT_MS,
      idleTimeoutSeconds: e.DB_IDLE_TIMEOUT_S,
      queryTimeoutMs: e.DB_QUERY_TIMEOUT_MS,
    },
    maintenanceSource: e.ETCD_ENDPOINTS.length === 1 && e.ETCD_ENDPOINTS[0] === "memory" ? "memory" : "etcd",
    adminToken: e.ADMIN_TOKEN ?? null,
    etcd: {
      endpoints: e.ETCD_ENDPOINTS,
      ...(e.ETCD_USERNAME !== undefined && { username: e.ETCD_USERNAME }),
      ...(e.ETCD_PASSWORD !== undefined && { password: e.ETCD_PASSWORD }),
      ...(e.ETCD_CA_FILE !== undefined && { caFile: e.ETCD_CA_FILE }),
      ...(e.ETCD_CERT_FILE !== undefined && { certFile: e.ETCD_CERT_FILE }),
      ...(e.ETCD_KEY_FILE !== undefined && { keyFile: e.ETCD_KEY_FILE }),
    },
    maintenance: {
      key: e.MAINTENANCE_KEY,
      globalKey: e.MAINTENANCE_GLOBAL_KEY === "" ? null : e.MAINTENANCE_GLOBAL_KEY,
      bypassToken: e.MAINTENANCE_BYPASS_TOKEN ?? null,
      startPolicy: e.MAINTENANCE_START_POLICY,
      drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
      retryAfterSeconds: e.RETRY_AFTER_SECONDS,
    },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    idleTimeoutSeconds: e.IDLE_TIMEOUT_S,
    logLevel: e.LOG_LEVEL,
  };
}
