import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { freePort } from "../helpers/free-port.ts";
import { createTestDatabase, TEST_DATABASE_URL, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const server = new URL(TEST_DATABASE_URL);
const PG_HOST = server.hostname;
const PG_PORT = Number(server.port || 5432);
const USER = decodeURIComponent(server.username || "postgres");
/** The user (and password, as the embedded PostgreSQL of the test setup has one) in each form. */
const KEYWORD_LOGIN = `user=${USER}${server.password ? ` password=${decodeURIComponent(server.password)}` : ""}`;
const URL_LOGIN = server.password ? `${server.username}:${server.password}` : encodeURIComponent(USER);

let database: TestDatabase;
/** PostgreSQL reached through [::1]: a proxy listening on ::1 only, whatever PostgreSQL itself listens on. */
let v6: TcpProxy;
/** A port nothing listens on, for the host a multi-host list must skip. */
let deadPort: number;
let service: Service | undefined;

beforeAll(async () => {
  database = await createTestDatabase("ipv6");
  v6 = await startTcpProxy(PG_HOST, PG_PORT, "::1");
  deadPort = await freePort();
});
afterEach(async () => {
  await service?.stop();
  service = undefined;
});
afterAll(async () => {
  await v6?.close();
  await database?.drop();
});

describe("DATABASE_URL with IPv6 hosts", () => {
  const cases: [string, () => string][] = [
    [
      "keyword form, host=::1",
      () => `host=::1 port=${v6.port} ${KEYWORD_LOGIN} dbname=${database.name} sslmode=disable`,
    ],
    ["URL form, [::1]", () => `postgres://${URL_LOGIN}@[::1]:${v6.port}/${database.name}?sslmode=disable`],
    [
      "keyword form, an IPv4 host that refuses, then ::1",
      () => `host=127.0.0.1,::1 port=${deadPort},${v6.port} ${KEYWORD_LOGIN} dbname=${database.name} sslmode=disable`,
    ],
    [
      "URL form, an IPv4 host that refuses, then [::1]",
      () => `postgres://${URL_LOGIN}@127.0.0.1:${deadPort},[::1]:${v6.port}/${database.name}?sslmode=disable`,
    ],
    [
      "URL form, an [::1] port that refuses, then IPv4",
      () => `postgres://${URL_LOGIN}@[::1]:${deadPort},${PG_HOST}:${PG_PORT}/${database.name}?sslmode=disable`,
    ],
  ];
  for (const [name, url] of cases) {
    test(`${name}: the service migrates, creates and reads a user`, async () => {
      service = await startTestService(url(), { ETCD_ENDPOINTS: "memory" });
      const email = `v6-${Math.random().toString(36).slice(2)}@example.com`;
      const created = await service.app.request("/users", jsonBody("POST", { name: "Six", email }));
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: number };
      const read = await service.app.request(`/users/${id}`);
      expect(read.status).toBe(200);
      expect(await read.json()).toMatchObject({ id, name: "Six", email });
    });
  }
});
