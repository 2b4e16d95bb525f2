import { describe, expect, test } from "bun:test";
import { hostOptions, InvalidDatabaseUrlError, parseDatabaseUrl } from "../../src/db/dsn.ts";

describe("parseDatabaseUrl, keyword/value form", () => {
  test("the seed README's string parses to every field it names", () => {
    expect(
      parseDatabaseUrl("host=localhost user=postgres password=postgres dbname=testdb port=5432 sslmode=disable"),
    ).toEqual({
      host: ["localhost"],
      port: [5432],
      database: "testdb",
      username: "postgres",
      password: "postgres",
      ssl: false,
    });
  });

  test("quoted values keep their spaces and an escaped \\' becomes a quote", () => {
    expect(parseDatabaseUrl("host='my host' user=app password='it\\'s a secret' dbname='my db'")).toEqual({
      host: ["my host"],
      port: [5432],
      database: "my db",
      username: "app",
      password: "it's a secret",
      ssl: "prefer",
    });
  });

  test("without user, dbname, port or sslmode it takes libpq's defaults and no password", () => {
    expect(parseDatabaseUrl("host=db.internal")).toEqual({
      host: ["db.internal"],
      port: [5432],
      database: "postgres",
      username: "postgres",
      ssl: "prefer",
    });
  });

  test("several hosts pair with their ports in order", () => {
    const target = parseDatabaseUrl("host=h1,h2 port=5433,5434 dbname=db");
    expect(target.host).toEqual(["h1", "h2"]);
    expect(target.port).toEqual([5433, 5434]);
  });

  test("one port applies to every host, as in libpq", () => {
    expect(parseDatabaseUrl("host=h1,h2 port=5433").port).toEqual([5433, 5433]);
  });

  test("connect_timeout is carried in seconds", () => {
    expect(parseDatabaseUrl("host=h connect_timeout=3").connectTimeoutSeconds).toBe(3);
  });

  test("connect_timeout=0 (wait forever in libpq) is not carried", () => {
    expect(parseDatabaseUrl("host=h connect_timeout=0")).not.toHaveProperty("connectTimeoutSeconds");
  });

  test("PG* environment variables do not fill in what the string leaves out", () => {
    const saved = {
      PGUSER: process.env.PGUSER,
      PGPASSWORD: process.env.PGPASSWORD,
      PGDATABASE: process.env.PGDATABASE,
    };
    Object.assign(process.env, { PGUSER: "intruder", PGPASSWORD: "leaked", PGDATABASE: "elsewhere" });
    try {
      expect(parseDatabaseUrl("host=h")).toEqual({
        host: ["h"],
        port: [5432],
        database: "postgres",
        username: "postgres",
        ssl: "prefer",
      });
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  test("surrounding whitespace is ignored", () => {
    expect(parseDatabaseUrl("  host=h dbname=db  ").database).toBe("db");
  });
});

describe("parseDatabaseUrl, URL form", () => {
  test("a percent-encoded password is decoded", () => {
    expect(parseDatabaseUrl("postgres://app:p%40ss%2Fw%3Ard@db:6543/orders")).toEqual({
      host: ["db"],
      port: [6543],
      database: "orders",
      username: "app",
      password: "p@ss/w:rd",
      ssl: "prefer",
    });
  });

  test("postgresql:// is accepted as well as postgres://", () => {
    expect(parseDatabaseUrl("postgresql://u:p@h/db")).toEqual({
      host: ["h"],
      port: [5432],
      database: "db",
      username: "u",
      password: "p",
      ssl: "prefer",
    });
  });

  test("several comma-separated hosts keep their own ports", () => {
    const target = parseDatabaseUrl("postgres://u@h1:5433,h2:5434/db");
    expect(target.host).toEqual(["h1", "h2"]);
    expect(target.port).toEqual([5433, 5434]);
  });

  test("a host without a port in a list takes 5432, the others keep theirs", () => {
    const target = parseDatabaseUrl("postgres://u@h1,h2:5433/db");
    expect(target.host).toEqual(["h1", "h2"]);
    expect(target.port).toEqual([5432, 5433]);
  });

  test("an IPv6 address in brackets, with and without a port, loses its brackets", () => {
    expect(parseDatabaseUrl("postgres://u:p@[::1]:6543/db")).toEqual({
      host: ["::1"],
      port: [6543],
      database: "db",
      username: "u",
      password: "p",
      ssl: "prefer",
    });
    expect(parseDatabaseUrl("postgresql://[2001:db8::5]/db").host).toEqual(["2001:db8::5"]);
  });

  test("IPv4 and IPv6 hosts mix in one list", () => {
    const target = parseDatabaseUrl("postgres://u@[::1]:5433,127.0.0.1:5434,[fe80::1%25eth0]/db?sslmode=disable");
    expect(target.host).toEqual(["::1", "127.0.0.1", "fe80::1%eth0"]);
    expect(target.port).toEqual([5433, 5434, 5432]);
    expect(target.ssl).toBe(false);
  });

  test("sslmode=require becomes 'require'", () => {
    expect(parseDatabaseUrl("postgres://u@h/db?sslmode=require").ssl).toBe("require");
  });

  test("sslmode=disable becomes false", () => {
    expect(parseDatabaseUrl("postgres://u@h/db?sslmode=disable").ssl).toBe(false);
  });

  test("sslmode=verify-ca is verified in full, as postgres.js can", () => {
    expect(parseDatabaseUrl("postgres://u@h/db?sslmode=verify-ca").ssl).toBe("verify-full");
  });

  test("connect_timeout in the query string is carried", () => {
    expect(parseDatabaseUrl("postgres://u@h/db?connect_timeout=7").connectTimeoutSeconds).toBe(7);
  });

  test("without a database the user's name is the database", () => {
    expect(parseDatabaseUrl("postgres://alice@h").database).toBe("alice");
  });
});

describe("parseDatabaseUrl, rejected strings", () => {
  const rejects = (value: string, message: RegExp) => {
    let thrown: unknown;
    try {
      parseDatabaseUrl(value);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InvalidDatabaseUrlError);
    expect((thrown as Error).message).toMatch(message);
  };

  test("an unknown keyword throws InvalidDatabaseUrlError naming it", () => {
    rejects("host=h bogus=1", /bogus/);
  });

  test("an unknown URL parameter throws InvalidDatabaseUrlError naming it", () => {
    rejects("postgres://h/db?bogus=1", /bogus/);
  });

  test("garbage throws InvalidDatabaseUrlError", () => {
    rejects("nonsense", /Connection URI|Keyword\/Value/);
  });

  test("an empty string throws InvalidDatabaseUrlError", () => {
    rejects("", /Connection URI|Keyword\/Value/);
  });

  test("another URL scheme throws InvalidDatabaseUrlError", () => {
    rejects("mysql://u@h/db", /Connection URI|Keyword\/Value/);
  });

  test("a URL without a host throws InvalidDatabaseUrlError", () => {
    rejects("postgres://", /no host/);
  });

  test("a port that is not a number throws InvalidDatabaseUrlError naming port", () => {
    rejects("host=h port=abc", /port/);
  });

  for (const [value, port] of [
    ["host=h port=99999", "99999"],
    ["host=h port=0", "0"],
    ["postgres://h:65536/db", "65536"],
    ["postgres://h1:5432,[::1]:0/db", "0"],
  ]) {
    test(`${value}: a port outside 1–65535 throws InvalidDatabaseUrlError naming it`, () => {
      rejects(value as string, new RegExp(`^port ${port} is out of range \\(1–65535\\)$`));
    });
  }

  test("a port that is not a number in a URL throws InvalidDatabaseUrlError naming it", () => {
    rejects("postgres://h:abc/db", /^port "abc" is not a number$/);
  });

  test("more than one port, but not one per host, throws InvalidDatabaseUrlError", () => {
    rejects("host=h1,h2,h3 port=5432,5433", /^2 ports given for 3 hosts$/);
  });

  test("an IPv6 address without brackets in a URL throws InvalidDatabaseUrlError asking for them", () => {
    rejects("postgres://u@::1/db", /in brackets/);
  });

  test("brackets around something that is not an IPv6 address throw InvalidDatabaseUrlError", () => {
    rejects("postgres://u@[db.internal]:5432/db", /not an IPv6 address/);
  });

  test("an unknown sslmode throws InvalidDatabaseUrlError naming sslmode", () => {
    rejects("postgres://h/db?sslmode=sometimes", /sslmode/);
  });
});

describe("hostOptions, what postgres.js is given", () => {
  test("hosts and ports go as arrays, so an IPv6 address is not split at its colons", () => {
    expect(hostOptions(parseDatabaseUrl("host=::1,127.0.0.1 port=5433,5434"))).toEqual({
      host: ["::1", "127.0.0.1"],
      port: [5433, 5434],
    } as never);
  });
});
