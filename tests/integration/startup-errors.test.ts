import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { freePort } from "../helpers/free-port.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { DENO_ENTRY, exitCode, spawnService } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("startup");
});
afterAll(async () => {
  await database?.drop();
});

/** Runs the entry with `env` and asserts it exits 2 printing exactly `lines`, before listening. */
async function expectExit2(env: Record<string, string>, lines: string | string[], command?: string[]): Promise<void> {
  const service = await spawnService({ DATABASE_URL: database.url, ETCD_ENDPOINTS: "memory", ...env }, command);
  expect(await exitCode(service)).toBe(2);
  expect(service.stderr()).toBe(`${[lines].flat().join("\n")}\n`);
  expect(service.logLines().map((l) => l.event)).not.toContain("service.listening");
}

/** A TCP server holding `port` on 127.0.0.1 until closed. */
async function occupy(port: number): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return server;
}

describe("DATABASE_URL ports", () => {
  const cases: [string, string][] = [
    ["host=127.0.0.1 port=99999 dbname=db", "port 99999 is out of range (1–65535)"],
    ["postgres://postgres@127.0.0.1:70000/db", "port 70000 is out of range (1–65535)"],
    ["postgres://postgres@127.0.0.1:5432,127.0.0.1:0/db", "port 0 is out of range (1–65535)"],
  ];
  for (const [url, why] of cases) {
    test(`${url} exits 2 with "DATABASE_URL: ${why}"`, async () => {
      await expectExit2({ DATABASE_URL: url }, `invalid configuration: DATABASE_URL: ${why}`);
    });
  }
});

describe("HOST that is not an address or a name", () => {
  test("HOST=bad_host! exits 2 naming HOST", async () => {
    await expectExit2(
      { HOST: "bad_host!" },
      "invalid configuration: HOST: must be an IP address (IPv6 without brackets, e.g. ::1) or a host name",
    );
  });
});

describe("several bad variables", () => {
  test("every problem is printed at once, a line each, rules across variables included", async () => {
    await expectExit2({ PORT: "x", DB_POOL_MAX: "2", DB_MAINTENANCE_POOL_MAX: "3", ETCD_USERNAME: "svc" }, [
      "invalid configuration: PORT: must be a whole number",
      "invalid configuration: ETCD_USERNAME/ETCD_PASSWORD: set both or neither",
      "invalid configuration: DB_MAINTENANCE_POOL_MAX: must not exceed DB_POOL_MAX",
    ]);
  });
});

const runtimes: [string, string[] | undefined][] = [
  ["bun src/index.ts", undefined],
  ["deno run -A src/index.ts", DENO_ENTRY],
];

for (const [name, command] of runtimes) {
  describe(`listening fails: ${name}`, () => {
    test("a PORT already in use exits 2 with one line naming PORT", async () => {
      const port = await freePort();
      const holder = await occupy(port);
      try {
        await expectExit2(
          { PORT: String(port), HOST: "127.0.0.1" },
          `invalid configuration: PORT: port ${port} is already in use`,
          command,
        );
      } finally {
        holder.close();
      }
    });

    test("a HOST that is not an address of this machine exits 2 with one line naming HOST", async () => {
      // 192.0.2.0/24 is reserved for documentation (RFC 5737): never a local address.
      await expectExit2(
        { HOST: "192.0.2.1" },
        "invalid configuration: HOST: 192.0.2.1 is not an address of this machine",
        command,
      );
    });

    test("a HOST that does not resolve exits 2 with one line naming HOST", async () => {
      // .invalid never resolves (RFC 2606).
      await expectExit2(
        { HOST: "nosuchhost.invalid" },
        "invalid configuration: HOST: nosuchhost.invalid does not resolve (ENOTFOUND)",
        command,
      );
    });

    test("a privileged PORT for an unprivileged process exits 2 with one line naming PORT", async () => {
      // Root may bind port 80, so as root the entry runs without that capability (still root: another user
      // might not reach a checkout in a private directory); without root it already lacks the privilege.
      const runtime = command ?? [process.execPath, "src/index.ts"];
      const unprivileged =
        process.getuid?.() === 0 ? ["setpriv", "--bounding-set=-net_bind_service", "--", ...runtime] : runtime;
      await expectExit2(
        { PORT: "80", HOST: "127.0.0.1" },
        "invalid configuration: PORT: port 80 needs privileges this process does not have",
        unprivileged,
      );
    });
  });
}
