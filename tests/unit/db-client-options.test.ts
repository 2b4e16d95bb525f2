import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { type ClientSettings, clientOptions, isoTimestamp, writeTransaction } from "../../src/db/client-options.ts";
import { type ConnectionTarget, parseDatabaseUrl } from "../../src/db/dsn.ts";
import { silentLogger } from "../../src/logger.ts";

const TARGET: ConnectionTarget = parseDatabaseUrl("postgres://app:secret@db.internal:6432/orders?sslmode=require");
const NAME = "database-service:0a1b2c3d:1";
const settings = (pooler: ClientSettings["pooler"]): ClientSettings => ({
  connectTimeoutMs: 5000,
  idleTimeoutSeconds: 30,
  queryTimeoutMs: 15_000,
  pooler,
  logger: silentLogger,
});
const WRITABLE = { max: 10, readOnly: false };
const READ_ONLY = { max: 1, readOnly: true };

describe("clientOptions: what each client is built with", () => {
  test("where and as whom it connects, from the connection string", () => {
    const options = clientOptions(TARGET, WRITABLE, NAME, settings("none"));
    expect(options).toMatchObject({
      host: ["db.internal"] as unknown as string,
      port: [6432] as unknown as number,
      database: "orders",
      user: "app",
      password: "secret",
      ssl: "require",
    });
  });

  test("a socket directory becomes postgres.js's `path`", () => {
    const options = clientOptions(parseDatabaseUrl("host=/run/postgresql user=app"), WRITABLE, NAME, settings("none"));
    expect(options.path).toBe("/run/postgresql/.s.PGSQL.5432");
    expect(options.host).toBeUndefined();
  });

  test("pool size, timeouts in postgres.js's units, and no type fetching", () => {
    const options = clientOptions(TARGET, WRITABLE, NAME, settings("none"));
    expect(options).toMatchObject({ max: 10, connect_timeout: 5, idle_timeout: 30, fetch_types: false });
  });

  test("max is a number even when the shape's is not (a string would silently mean 1)", () => {
    const shape = { max: "4" as unknown as number, readOnly: false };
    expect(clientOptions(TARGET, shape, NAME, settings("none")).max).toBe(4);
  });

  test("reconnect delays double from about 50 ms up to about 1 s, jittered down by at most half", () => {
    const backoff = clientOptions(TARGET, WRITABLE, NAME, settings("none")).backoff as (retries: number) => number;
    for (const [retries, ceiling] of [
      [0, 0.05],
      [1, 0.1],
      [3, 0.4],
      [5, 1],
      [30, 1],
    ] as const) {
      const delay = backoff(retries);
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    }
  });

  test("TIMESTAMP values are read as the ISO text of their UTC time, cut to milliseconds", () => {
    const types = clientOptions(TARGET, WRITABLE, NAME, settings("none")).types as Record<
      string,
      { parse: (value: string) => string; serialize: (value: Date) => string }
    >;
    const parse = types.utcTimestamp?.parse;
    expect(parse).toBe(isoTimestamp);
    const cases: [string, string][] = [
      ["2030-01-02 03:04:05.678", "2030-01-02T03:04:05.678Z"],
      ["2030-01-02 03:04:05.678999", "2030-01-02T03:04:05.678Z"],
      ["2030-01-02 03:04:05.5", "2030-01-02T03:04:05.500Z"],
      ["2030-01-02 03:04:05", "2030-01-02T03:04:05.000Z"],
    ];
    for (const [text, iso] of cases) {
      expect(isoTimestamp(text)).toBe(iso);
      // The same text as the Date it stands for gives.
      expect(isoTimestamp(text)).toBe(new Date(`${text.replace(" ", "T")}Z`).toISOString());
    }
    for (const text of ["infinity", "-infinity", "0044-03-15 00:00:00 BC", "10000-01-01 00:00:00"]) {
      expect(isoTimestamp(text)).toBe(text);
    }
    expect(types.utcTimestamp?.serialize(new Date(Date.UTC(2030, 0, 2)))).toBe("2030-01-02T00:00:00.000Z");
  });

  describe("without a pooler", () => {
    test("sessions start with the timeouts, UTC and the application name; statements are prepared", () => {
      const options = clientOptions(TARGET, WRITABLE, NAME, settings("none"));
      expect(options.connection).toEqual({
        application_name: NAME,
        TimeZone: "UTC",
        statement_timeout: 15_000,
        idle_in_transaction_session_timeout: 15_000,
      } as typeof options.connection);
      expect(options.prepare).toBe(true);
    });

    test("a read-only client's sessions start read-only", () => {
      const options = clientOptions(TARGET, READ_ONLY, NAME, settings("none"));
      expect(options.connection).toMatchObject({ default_transaction_read_only: "on" });
      expect(options.max).toBe(1);
    });
  });

  describe("behind PgBouncer", () => {
    test("only the startup parameters PgBouncer tracks are sent, and statements are not prepared", () => {
      for (const shape of [WRITABLE, READ_ONLY]) {
        const options = clientOptions(TARGET, shape, NAME, settings("pgbouncer"));
        expect(options.connection).toEqual({ application_name: NAME, TimeZone: "UTC" } as typeof options.connection);
        expect(options.prepare).toBe(false);
      }
    });
  });
});

describe("writeTransaction: how each write transaction begins", () => {
  const SET_LOCAL = "SET LOCAL statement_timeout = 15000; SET LOCAL idle_in_transaction_session_timeout = 15000";
  const cases: [string, ClientSettings["pooler"], typeof WRITABLE, ReturnType<typeof writeTransaction>][] = [
    [
      "writable, no pooler: a plain BEGIN, the session has the timeouts",
      "none",
      WRITABLE,
      { begin: "", setLocal: null },
    ],
    ["read-only, no pooler: BEGIN READ ONLY", "none", READ_ONLY, { begin: "read only", setLocal: null }],
    [
      "writable, PgBouncer: the timeouts set for the transaction",
      "pgbouncer",
      WRITABLE,
      { begin: "", setLocal: SET_LOCAL },
    ],
    [
      "read-only, PgBouncer: BEGIN READ ONLY and the timeouts",
      "pgbouncer",
      READ_ONLY,
      { begin: "read only", setLocal: SET_LOCAL },
    ],
  ];
  for (const [name, pooler, shape, expected] of cases) {
    test(name, () => {
      expect(writeTransaction(shape, settings(pooler))).toEqual(expected);
    });
  }
});

describe("DB_POOLER", () => {
  test("defaults to none and accepts pgbouncer", () => {
    expect(loadConfig({}).db.pooler).toBe("none");
    expect(loadConfig({ DB_POOLER: "pgbouncer" }).db.pooler).toBe("pgbouncer");
  });

  test("anything else is a configuration error naming the choices", () => {
    let thrown: unknown;
    try {
      loadConfig({ DB_POOLER: "pgpool" });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).problems).toEqual(["DB_POOLER: must be one of none, pgbouncer"]);
  });
});
