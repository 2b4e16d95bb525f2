import { describe, expect, test } from "bun:test";
import { ConfigError, DEFAULT_DATABASE_URL, loadConfig } from "../../src/config.ts";
import { parseDatabaseUrl } from "../../src/db/dsn.ts";

/** The problems a ConfigError lists for `env`; fails the test when loadConfig accepts it. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe("loadConfig defaults", () => {
  const config = loadConfig({});

  test("an empty environment listens on 0.0.0.0:8080", () => {
    expect(config.port).toBe(8080);
    expect(config.host).toBe("0.0.0.0");
  });

  test("the default DATABASE_URL is the keyword form of the seed README", () => {
    expect(DEFAULT_DATABASE_URL).toBe(
      "host=localhost user=postgres password=postgres dbname=testdb port=5432 sslmode=disable",
    );
    // The fields themselves are dsn.test.ts's business.
    expect(config.database).toEqual({ kind: "server", target: parseDatabaseUrl(DEFAULT_DATABASE_URL) });
  });

  test("the pool defaults to 10 connections, 1 in maintenance, 5 s connect, 30 s idle and 15 s query timeouts, no pooler", () => {
    expect(config.db).toEqual({
      poolMax: 10,
      maintenancePoolMax: 1,
      connectTimeoutMs: 5000,
      idleTimeoutSeconds: 30,
      queryTimeoutMs: 15_000,
      pooler: "none",
    });
  });

  test("etcd defaults to one endpoint, localhost:2379, without credentials", () => {
    expect(config.maintenanceSource).toEqual({ kind: "etcd", endpoints: ["localhost:2379"] });
  });

  test("maintenance, shutdown, idle timeout and log level take their documented defaults", () => {
    expect(config.maintenance).toEqual({
      key: "/maintenance/database-service",
      globalKey: "/maintenance/global",
      bypassToken: null,
      startPolicy: "open",
      drainTimeoutMs: 30_000,
      retryAfterSeconds: 60,
      hold: { defaultMs: 0, maxHeld: 256, budgetMs: 10_000 },
    });
    expect(config.shutdownTimeoutMs).toBe(30_000);
    expect(config.idleTimeoutSeconds).toBe(120);
    expect(config.logLevel).toBe("info");
  });

  test("a write's answer is kept 24 h under its Idempotency-Key", () => {
    expect(config.idempotencyTtlSeconds).toBe(86_400);
  });

  test("variables the service does not know are ignored", () => {
    expect(loadConfig({ PATH: "/bin", SOMETHING_ELSE: "x" })).toEqual(config);
  });
});

describe("loadConfig values", () => {
  test("numbers are parsed, with surrounding spaces trimmed", () => {
    const config = loadConfig({ PORT: " 3000 ", DB_POOL_MAX: "20", DB_MAINTENANCE_POOL_MAX: "2" });
    expect(config.port).toBe(3000);
    expect(config.db.poolMax).toBe(20);
    expect(config.db.maintenancePoolMax).toBe(2);
  });

  test("the hold settings are read, and a default hold above the 8 s cap is refused", () => {
    const config = loadConfig({
      MAINTENANCE_HOLD_MS: "3000",
      MAINTENANCE_HOLD_MAX: "32",
      MAINTENANCE_HOLD_BUDGET_MS: "4000",
    });
    expect(config.maintenance.hold).toEqual({ defaultMs: 3000, maxHeld: 32, budgetMs: 4000 });
    expect(problemsOf({ MAINTENANCE_HOLD_MS: "8001" })).toEqual(["MAINTENANCE_HOLD_MS: must be at most 8000"]);
  });

  test("PORT=0 (any free port) is accepted", () => {
    expect(loadConfig({ PORT: "0" }).port).toBe(0);
  });

  test("comma-separated ETCD_ENDPOINTS are split and trimmed, empty entries dropped", () => {
    expect(loadConfig({ ETCD_ENDPOINTS: " etcd-1:2379 , etcd-2:2379,,etcd-3:2379 " }).maintenanceSource).toEqual({
      kind: "etcd",
      endpoints: ["etcd-1:2379", "etcd-2:2379", "etcd-3:2379"],
    });
  });

  test("ETCD_ENDPOINTS=memory is the in-process key, with no etcd settings", () => {
    expect(loadConfig({ ETCD_ENDPOINTS: " memory " }).maintenanceSource).toEqual({ kind: "memory" });
  });

  test("DATABASE_URL=embedded and embedded://<dir> are an embedded PostgreSQL", () => {
    expect(loadConfig({ DATABASE_URL: "embedded" }).database).toEqual({ kind: "embedded", dir: ".data/postgres" });
    expect(loadConfig({ DATABASE_URL: "embedded:///tmp/pg" }).database).toEqual({ kind: "embedded", dir: "/tmp/pg" });
  });

  test("LOG_LEVEL is case-insensitive", () => {
    expect(loadConfig({ LOG_LEVEL: "DEBUG" }).logLevel).toBe("debug");
    expect(loadConfig({ LOG_LEVEL: " Warn " }).logLevel).toBe("warn");
  });

  test("a URL DATABASE_URL is parsed", () => {
    expect(loadConfig({ DATABASE_URL: "postgres://app:secret@db:6543/orders?sslmode=require" }).database).toEqual({
      kind: "server",
      target: {
        host: ["db"],
        port: [6543],
        database: "orders",
        username: "app",
        password: "secret",
        ssl: "require",
      },
    });
  });

  test("connect_timeout in DATABASE_URL overrides DB_CONNECT_TIMEOUT_MS", () => {
    const config = loadConfig({ DATABASE_URL: "host=h connect_timeout=7", DB_CONNECT_TIMEOUT_MS: "1000" });
    expect(config.db.connectTimeoutMs).toBe(7000);
  });

  test("DB_CONNECT_TIMEOUT_MS applies when DATABASE_URL has no connect_timeout", () => {
    expect(loadConfig({ DB_CONNECT_TIMEOUT_MS: "1500" }).db.connectTimeoutMs).toBe(1500);
  });

  test("etcd credentials and TLS files are carried when given in pairs", () => {
    const config = loadConfig({
      ETCD_USERNAME: "svc",
      ETCD_PASSWORD: "pw",
      ETCD_CA_FILE: "/ca.pem",
      ETCD_CERT_FILE: "/cert.pem",
      ETCD_KEY_FILE: "/key.pem",
    });
    expect(config.maintenanceSource).toEqual({
      kind: "etcd",
      endpoints: ["localhost:2379"],
      username: "svc",
      password: "pw",
      caFile: "/ca.pem",
      certFile: "/cert.pem",
      keyFile: "/key.pem",
    });
  });

  test("MAINTENANCE_START_POLICY=closed is accepted", () => {
    expect(loadConfig({ MAINTENANCE_START_POLICY: "closed" }).maintenance.startPolicy).toBe("closed");
  });
});

describe("loadConfig rejects bad values, naming each variable", () => {
  test("PORT=abc is not a whole number", () => {
    expect(problemsOf({ PORT: "abc" })).toEqual(["PORT: must be a whole number"]);
  });

  test("an empty PORT is not a whole number", () => {
    expect(problemsOf({ PORT: "" })).toEqual(["PORT: must be a whole number"]);
  });

  test("PORT=65536 is out of range", () => {
    expect(problemsOf({ PORT: "65536" })).toEqual(["PORT: must be at most 65535"]);
  });

  test("DB_POOL_MAX=0 is below the minimum", () => {
    expect(problemsOf({ DB_POOL_MAX: "0" })).toEqual(["DB_POOL_MAX: must be at least 1"]);
  });

  test("IDEMPOTENCY_TTL_S is between 1 s and 7 days", () => {
    expect(problemsOf({ IDEMPOTENCY_TTL_S: "0" })).toEqual(["IDEMPOTENCY_TTL_S: must be at least 1"]);
    expect(problemsOf({ IDEMPOTENCY_TTL_S: "604801" })).toEqual(["IDEMPOTENCY_TTL_S: must be at most 604800"]);
    expect(loadConfig({ IDEMPOTENCY_TTL_S: "1" }).idempotencyTtlSeconds).toBe(1);
  });

  test("a negative or fractional number is not a whole number", () => {
    expect(problemsOf({ DB_POOL_MAX: "-1", DB_IDLE_TIMEOUT_S: "1.5" })).toEqual([
      "DB_POOL_MAX: must be a whole number",
      "DB_IDLE_TIMEOUT_S: must be a whole number",
    ]);
  });

  test("every bad variable is listed at once", () => {
    const problems = problemsOf({ PORT: "x", LOG_LEVEL: "loud", MAINTENANCE_START_POLICY: "maybe" });
    expect(problems).toEqual([
      "PORT: must be a whole number",
      "MAINTENANCE_START_POLICY: must be open or closed",
      "LOG_LEVEL: must be one of debug, info, warn, error",
    ]);
  });

  test("an unparseable DATABASE_URL is named with the parser's reason", () => {
    const problems = problemsOf({ DATABASE_URL: "nonsense" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toStartWith("DATABASE_URL: ");
    expect(problems[0]).toContain("Connection URI");
  });

  test("a DATABASE_URL with an unknown keyword is named", () => {
    expect(problemsOf({ DATABASE_URL: "host=h bogus=1" })).toEqual([
      "DATABASE_URL: Unrecognised option in connection string: bogus",
    ]);
  });

  test("a blank HOST is rejected", () => {
    expect(problemsOf({ HOST: "   " })).toEqual(["HOST: must not be empty"]);
  });

  test("a DATABASE_URL port outside 1–65535 is named", () => {
    expect(problemsOf({ DATABASE_URL: "host=h port=99999" })).toEqual([
      "DATABASE_URL: port 99999 is out of range (1–65535)",
    ]);
  });

  for (const host of ["bad_host!", "[::1]", "127.0.0.1:8080", "256.1.1.1", "a..b", "-db"]) {
    test(`HOST=${host} is neither an IP address nor a host name`, () => {
      expect(problemsOf({ HOST: host })).toEqual([
        "HOST: must be an IP address (IPv6 without brackets, e.g. ::1) or a host name",
      ]);
    });
  }

  test("ETCD_ENDPOINTS with no endpoint in it is rejected", () => {
    expect(problemsOf({ ETCD_ENDPOINTS: " , " })).toEqual(["ETCD_ENDPOINTS: must name at least one endpoint"]);
  });

  test("DB_MAINTENANCE_POOL_MAX above DB_POOL_MAX is rejected", () => {
    expect(problemsOf({ DB_POOL_MAX: "4", DB_MAINTENANCE_POOL_MAX: "5" })).toEqual([
      "DB_MAINTENANCE_POOL_MAX: must not exceed DB_POOL_MAX",
    ]);
  });

  test("DB_MAINTENANCE_POOL_MAX equal to DB_POOL_MAX is accepted", () => {
    expect(loadConfig({ DB_POOL_MAX: "4", DB_MAINTENANCE_POOL_MAX: "4" }).db.maintenancePoolMax).toBe(4);
  });

  test("ETCD_USERNAME without ETCD_PASSWORD is rejected", () => {
    expect(problemsOf({ ETCD_USERNAME: "svc" })).toEqual(["ETCD_USERNAME/ETCD_PASSWORD: set both or neither"]);
  });

  test("ETCD_CERT_FILE without ETCD_KEY_FILE is rejected", () => {
    expect(problemsOf({ ETCD_CERT_FILE: "/cert.pem" })).toEqual(["ETCD_CERT_FILE/ETCD_KEY_FILE: set both or neither"]);
  });

  test("MAINTENANCE_GLOBAL_KEY equal to MAINTENANCE_KEY is rejected", () => {
    expect(problemsOf({ MAINTENANCE_KEY: "/m", MAINTENANCE_GLOBAL_KEY: " /m " })).toEqual([
      "MAINTENANCE_GLOBAL_KEY: must differ from MAINTENANCE_KEY",
    ]);
  });

  test("bad values and broken rules across variables are all listed at once", () => {
    const problems = problemsOf({
      PORT: "x",
      DB_POOL_MAX: "4",
      DB_MAINTENANCE_POOL_MAX: "5",
      ETCD_USERNAME: "svc",
      ETCD_KEY_FILE: "/key.pem",
      MAINTENANCE_KEY: "/m",
      MAINTENANCE_GLOBAL_KEY: "/m",
      LOG_LEVEL: "loud",
    });
    expect(problems).toEqual([
      "PORT: must be a whole number",
      "LOG_LEVEL: must be one of debug, info, warn, error",
      "ETCD_USERNAME/ETCD_PASSWORD: set both or neither",
      "ETCD_CERT_FILE/ETCD_KEY_FILE: set both or neither",
      "MAINTENANCE_GLOBAL_KEY: must differ from MAINTENANCE_KEY",
      "DB_MAINTENANCE_POOL_MAX: must not exceed DB_POOL_MAX",
    ]);
  });

  test("a rule across variables is not checked when one of them is bad on its own", () => {
    expect(problemsOf({ DB_POOL_MAX: "0", DB_MAINTENANCE_POOL_MAX: "5" })).toEqual(["DB_POOL_MAX: must be at least 1"]);
    expect(problemsOf({ ETCD_USERNAME: "  ", MAINTENANCE_KEY: "" })).toEqual([
      "ETCD_USERNAME: must not be empty",
      "MAINTENANCE_KEY: must not be empty",
    ]);
  });

  test("ADMIN_TOKEN must be a bearer token (RFC 6750 b64token) of at least 8 characters", () => {
    expect(loadConfig({ ADMIN_TOKEN: "aZ09-._~+/==" }).adminToken).toBe("aZ09-._~+/==");
    expect(problemsOf({ ADMIN_TOKEN: "short" })).toEqual(["ADMIN_TOKEN: must be at least 8 characters"]);
    for (const token of ["has space", "pa$$word!", "token=with=inner"]) {
      expect(problemsOf({ ADMIN_TOKEN: token })).toEqual([
        "ADMIN_TOKEN: must be letters, digits and - . _ ~ + / (then = padding)",
      ]);
    }
  });

  test("the ConfigError message lists every problem", () => {
    let thrown: unknown;
    try {
      loadConfig({ PORT: "abc", DB_POOL_MAX: "0" });
    } catch (error) {
      thrown = error;
    }
    expect((thrown as Error).message).toBe(
      "invalid configuration:\n  PORT: must be a whole number\n  DB_POOL_MAX: must be at least 1",
    );
  });
});
