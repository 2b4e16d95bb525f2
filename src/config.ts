import { isIP } from "node:net";
import * as v from "valibot";
import { POOLERS } from "./db/client-options.ts";
import { type ConnectionTarget, InvalidDatabaseUrlError, parseDatabaseUrl } from "./db/dsn.ts";
import { type EmbeddedDatabase, parseEmbeddedUrl } from "./db/embedded.ts";
import { DEFAULT_HOLD_LIMITS, HOLD_CAP_MS } from "./maintenance/hold-queue.ts";

/** The seed README's default: a local PostgreSQL with the compose credentials. */
export const DEFAULT_DATABASE_URL =
  "host=localhost user=postgres password=postgres dbname=testdb port=5432 sslmode=disable";

const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A PostgreSQL server to connect to. */
export interface ServerDatabase {
  kind: "server";
  target: ConnectionTarget;
}

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

const nonEmpty = () => v.pipe(v.string(), v.trim(), v.nonEmpty("must not be empty"));
const text = (fallback: string) => v.optional(nonEmpty(), fallback);
const optionalText = () => v.optional(nonEmpty());

/** A token of at least `min` characters, each as `pattern` allows. */
const token = (min: number, pattern: RegExp, message: string) =>
  v.optional(
    v.pipe(v.string(), v.trim(), v.minLength(min, `must be at least ${min} characters`), v.regex(pattern, message)),
  );

/** `embedded` / `embedded://<dir>`, or a server's URL or keyword/value string. */
const databaseUrl = v.pipe(
  v.optional(v.string(), DEFAULT_DATABASE_URL),
  v.rawTransform(({ dataset, addIssue, NEVER }): ServerDatabase | EmbeddedDatabase => {
    const embedded = parseEmbeddedUrl(dataset.value);
    if (embedded) return embedded;
    try {
      return { kind: "server", target: parseDatabaseUrl(dataset.value) };
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

/** Comma-separated etcd endpoints, or `memory`: an in-process key, for development. */
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

/** Each variable the service reads, by its name: how it is parsed and what it defaults to. */
const EnvironmentSchema = v.object({
  PORT: integer(8080, 0, 65535),
  HOST: listenHost,
  DATABASE_URL: databaseUrl,
  DB_POOL_MAX: integer(10, 1, 1000),
  DB_MAINTENANCE_POOL_MAX: integer(1, 1, 1000),
  DB_CONNECT_TIMEOUT_MS: integer(5000, 100, 600_000),
  DB_IDLE_TIMEOUT_S: integer(30, 1, 86_400),
  DB_QUERY_TIMEOUT_MS: integer(15_000, 100, 3_600_000),
  DB_POOLER: v.optional(v.picklist(POOLERS, `must be one of ${POOLERS.join(", ")}`), "none"),
  ETCD_ENDPOINTS: endpoints,
  ETCD_USERNAME: optionalText(),
  ETCD_PASSWORD: optionalText(),
  ETCD_CA_FILE: optionalText(),
  ETCD_CERT_FILE: optionalText(),
  ETCD_KEY_FILE: optionalText(),
  MAINTENANCE_KEY: text("/maintenance/database-service"),
  MAINTENANCE_GLOBAL_KEY: v.optional(v.pipe(v.string(), v.trim()), "/maintenance/global"),
  MAINTENANCE_BYPASS_TOKEN: token(16, /^\S+$/, "must not contain spaces"),
  // What RFC 6750 allows after "Bearer " (a b64token), and so all hono/bearer-auth lets through.
  ADMIN_TOKEN: token(8, /^[A-Za-z0-9._~+/-]+=*$/, "must be letters, digits and - . _ ~ + / (then = padding)"),
  MAINTENANCE_START_POLICY: v.optional(v.picklist(["open", "closed"], "must be open or closed"), "open"),
  DRAIN_TIMEOUT_MS: integer(30_000, 0, 3_600_000),
  RETRY_AFTER_SECONDS: integer(60, 0, 86_400),
  MAINTENANCE_HOLD_MS: integer(0, 0, HOLD_CAP_MS),
  MAINTENANCE_HOLD_MAX: integer(DEFAULT_HOLD_LIMITS.maxHeld, 0, 100_000),
  MAINTENANCE_HOLD_BUDGET_MS: integer(DEFAULT_HOLD_LIMITS.budgetMs, 0, 3_600_000),
  SHUTDOWN_TIMEOUT_MS: integer(30_000, 0, 3_600_000),
  IDLE_TIMEOUT_S: integer(120, 0, 255),
  IDEMPOTENCY_TTL_S: integer(86_400, 1, 604_800),
  LOG_LEVEL: v.optional(
    v.pipe(v.string(), v.trim(), v.toLowerCase(), v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`)),
    "info",
  ),
});

type Environment = v.InferOutput<typeof EnvironmentSchema>;

/**
 * A rule across variables, reported as `<label>: <message>`. It is checked
 * only when each of `names` is valid on its own, so it adds to their own
 * problems and never repeats them.
 */
function across(
  label: string,
  names: (keyof Environment)[],
  requirement: (env: Environment) => boolean,
  message: string,
) {
  return v.rawCheck<Environment>(({ dataset, addIssue }) => {
    const failed = new Set(dataset.issues?.map((issue) => issue.path?.[0]?.key));
    if (names.some((name) => failed.has(name))) return;
    const env = dataset.value as Environment;
    if (requirement(env)) return;
    // valibot's forward() names an entry of the input; this names a rule over several.
    addIssue({ message, path: [{ type: "unknown", origin: "value", input: env, key: label, value: undefined }] });
  });
}

const setTogether = (a: keyof Environment, b: keyof Environment) =>
  across(`${a}/${b}`, [a, b], (env) => (env[a] === undefined) === (env[b] === undefined), "set both or neither");

/**
 * The environment, parsed in one pass: every variable on its own, then the
 * rules across variables (each problem is reported, not only the first),
 * then grouped into the shape the service uses.
 */
const ConfigSchema = v.pipe(
  EnvironmentSchema,
  setTogether("ETCD_USERNAME", "ETCD_PASSWORD"),
  setTogether("ETCD_CERT_FILE", "ETCD_KEY_FILE"),
  across(
    "MAINTENANCE_GLOBAL_KEY",
    ["MAINTENANCE_GLOBAL_KEY", "MAINTENANCE_KEY"],
    (env) => env.MAINTENANCE_GLOBAL_KEY !== env.MAINTENANCE_KEY,
    "must differ from MAINTENANCE_KEY",
  ),
  across(
    "DB_MAINTENANCE_POOL_MAX",
    ["DB_MAINTENANCE_POOL_MAX", "DB_POOL_MAX"],
    (env) => env.DB_MAINTENANCE_POOL_MAX <= env.DB_POOL_MAX,
    "must not exceed DB_POOL_MAX",
  ),
  v.transform((env) => ({
    port: env.PORT,
    host: env.HOST,
    /** The PostgreSQL server to use, or an embedded one to start (`DATABASE_URL=embedded`). */
    database: env.DATABASE_URL,
    db: {
      poolMax: env.DB_POOL_MAX,
      maintenancePoolMax: env.DB_MAINTENANCE_POOL_MAX,
      // libpq's connect_timeout in DATABASE_URL wins over DB_CONNECT_TIMEOUT_MS.
      connectTimeoutMs:
        env.DATABASE_URL.kind === "server" && env.DATABASE_URL.target.connectTimeoutSeconds
          ? env.DATABASE_URL.target.connectTimeoutSeconds * 1000
          : env.DB_CONNECT_TIMEOUT_MS,
      idleTimeoutSeconds: env.DB_IDLE_TIMEOUT_S,
      /** Longest a query may run; PostgreSQL's statement_timeout too. */
      queryTimeoutMs: env.DB_QUERY_TIMEOUT_MS,
      /** `pgbouncer`: PgBouncer in transaction pooling sits in front of PostgreSQL. */
      pooler: env.DB_POOLER,
    },
    /** Where the maintenance key lives: etcd, or (`ETCD_ENDPOINTS=memory`) an in-process key, for development. */
    maintenanceSource: maintenanceSource(env),
    /** Bearer token of the admin API; the API is absent when null. */
    adminToken: env.ADMIN_TOKEN ?? null,
    maintenance: {
      key: env.MAINTENANCE_KEY,
      /** The fleet-wide key, watched beside `key`; null when MAINTENANCE_GLOBAL_KEY is empty. */
      globalKey: env.MAINTENANCE_GLOBAL_KEY === "" ? null : env.MAINTENANCE_GLOBAL_KEY,
      /** Lets an operator through a closed gate with `X-Maintenance-Bypass`; null when unset. */
      bypassToken: env.MAINTENANCE_BYPASS_TOKEN ?? null,
      startPolicy: env.MAINTENANCE_START_POLICY,
      drainTimeoutMs: env.DRAIN_TIMEOUT_MS,
      retryAfterSeconds: env.RETRY_AFTER_SECONDS,
      /** Holding refused requests while maintenance lasts (the value's `hold_ms` overrides `defaultMs`; 0: off). */
      hold: {
        defaultMs: env.MAINTENANCE_HOLD_MS,
        maxHeld: env.MAINTENANCE_HOLD_MAX,
        budgetMs: env.MAINTENANCE_HOLD_BUDGET_MS,
      },
    },
    /** How long a write's answer is kept under its Idempotency-Key, and the key bound to its request. */
    idempotencyTtlSeconds: env.IDEMPOTENCY_TTL_S,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    /** Seconds a connection may stay silent before Bun closes it (Bun's default, 10 s, cuts slow requests). */
    idleTimeoutSeconds: env.IDLE_TIMEOUT_S,
    logLevel: env.LOG_LEVEL,
  })),
);

/** The in-process key when ETCD_ENDPOINTS is `memory`, else etcd with its endpoints, credentials and TLS files. */
function maintenanceSource(env: Environment) {
  const endpoints = env.ETCD_ENDPOINTS;
  if (endpoints.length === 1 && endpoints[0] === "memory") return { kind: "memory" as const };
  return {
    kind: "etcd" as const,
    endpoints,
    ...(env.ETCD_USERNAME !== undefined && { username: env.ETCD_USERNAME }),
    ...(env.ETCD_PASSWORD !== undefined && { password: env.ETCD_PASSWORD }),
    ...(env.ETCD_CA_FILE !== undefined && { caFile: env.ETCD_CA_FILE }),
    ...(env.ETCD_CERT_FILE !== undefined && { certFile: env.ETCD_CERT_FILE }),
    ...(env.ETCD_KEY_FILE !== undefined && { keyFile: env.ETCD_KEY_FILE }),
  };
}

/** Everything the service reads from its environment, parsed and typed. */
export type Config = v.InferOutput<typeof ConfigSchema>;

/** How to reach etcd, when the maintenance key lives there. */
export type EtcdConfig = Omit<Extract<Config["maintenanceSource"], { kind: "etcd" }>, "kind">;

/** A configuration whose database is a server to connect to (an embedded one already started). */
export type ServerConfig = Config & { database: ServerDatabase };

/** `config` with its database resolved to a server (e.g. an embedded one, once started). */
export function withDatabase(config: Config, target: ConnectionTarget): ServerConfig {
  return { ...config, database: { kind: "server", target } };
}

/** Thrown by {@link loadConfig}; `problems` names each bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

/**
 * Parses the environment once. Unset variables take their defaults; bad
 * values throw one {@link ConfigError} naming every offending variable.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const known = Object.fromEntries(
    Object.keys(EnvironmentSchema.entries).flatMap((name) => (env[name] === undefined ? [] : [[name, env[name]]])),
  );
  const result = v.safeParse(ConfigSchema, known);
  if (!result.success) {
    throw new ConfigError(result.issues.map((issue) => `${v.getDotPath(issue) ?? "environment"}: ${issue.message}`));
  }
  return result.output;
}
