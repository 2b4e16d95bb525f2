import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { TestEtcd } from "../helpers/etcd.ts";
import { TestEtcdCluster } from "../helpers/etcd-cluster.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/database-service";
let database: TestDatabase;
const services: ServiceProcess[] = [];

async function start(env: Record<string, string>): Promise<ServiceProcess> {
  const service = await spawnService({
    DATABASE_URL: database.url,
    LOG_LEVEL: "warn",
    DRAIN_TIMEOUT_MS: "2000",
    ...env,
  });
  services.push(service);
  await waitForStatus(service, "/health", 200);
  return service;
}

/** One answer the load saw: its status and, for a problem, its type. */
interface Seen {
  status: number;
  type: string | null;
}

/** Runs `clients` loops of GET /users until stopped; returns every answer, in order, and every transport error. */
function load(service: ServiceProcess, clients: number) {
  const answers: Seen[] = [];
  const errors: string[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      try {
        const response = await fetch(`${service.baseUrl}/users?limit=3`);
        const body = (await response.json()) as { type?: string };
        answers.push({ status: response.status, type: body.type ?? null });
      } catch (error) {
        errors.push(String(error));
      }
    }
  });
  return {
    answers,
    errors,
    /** How many answers since the `from`th had `status`. */
    count: (status: number, from = 0) => answers.slice(from).filter((answer) => answer.status === status).length,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const status = async (service: ServiceProcess, path: string) => (await fetch(`${service.baseUrl}${path}`)).status;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  for (const s of services) if (s.proc.exitCode === null) s.proc.kill("SIGKILL");
  await database.drop();
});

describe("chaos: PostgreSQL goes away under load", () => {
  let proxy: TcpProxy;
  afterAll(async () => proxy?.close());

  test("requests get the database 503, /health is unhealthy, /health/live stays 200, and it recovers without restart", async () => {
    const through = await proxyDatabase(database.url);
    proxy = through.proxy;
    const service = await start({
      DATABASE_URL: through.url,
      ETCD_ENDPOINTS: "memory",
      DB_CONNECT_TIMEOUT_MS: "1000",
    });
    const traffic = load(service, 8);
    await waitFor("users served under load", () => traffic.count(200) >= 20);
    await proxy.cut();
    await waitFor("a 503", () => traffic.answers.at(-1)?.status === 503);
    const cutAt = traffic.answers.length;
    // Refused at once rather than held: a dozen answers while the link is down.
    await waitFor("a dozen 503s", () => traffic.count(503, cutAt) >= 12);
    expect(await status(service, "/health")).toBe(503);
    expect(await status(service, "/health/live")).toBe(200);
    const response = await fetch(`${service.baseUrl}/users/1`);
    expect(response.status).toBe(503);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toMatchObject({ type: "urn:problem:database-service:database-unavailable" });

    await proxy.restore();
    await waitFor("200 again", () => traffic.answers.at(-1)?.status === 200);
    await traffic.stop();
    expect(await status(service, "/health")).toBe(200);

    expect(traffic.errors).toEqual([]);
    // Users, or the database 503: nothing else, and no 5xx but that.
    const refused = traffic.answers.filter((answer) => answer.status !== 200);
    expect(new Set(refused.map((answer) => `${answer.status} ${answer.type}`))).toEqual(
      new Set(["503 urn:problem:database-service:database-unavailable"]),
    );
  });
});

describe("chaos: etcd killed under load and restarted", () => {
  let etcd: TestEtcd;
  afterAll(async () => etcd?.stop());

  test("no request fails because of etcd, and the next toggle applies", async () => {
    etcd = await TestEtcd.start();
    const service = await start({ ETCD_ENDPOINTS: etcd.endpoint });
    const sourceStatus = async () =>
      (
        (await (await fetch(`${service.baseUrl}/stats`)).json()) as {
          maintenance_status: { source: { status: string } };
        }
      ).maintenance_status.source.status;
    await waitFor("the source to connect", async () => (await sourceStatus()) === "connected");
    const traffic = load(service, 8);
    await waitFor("users served under load", () => traffic.count(200) >= 20);
    await etcd.kill();
    await waitFor("the source to be reported unavailable", async () => (await sourceStatus()) === "unavailable");
    const killedAt = traffic.answers.length;
    await waitFor("users served while etcd is down", () => traffic.count(200, killedAt) >= 50);
    await etcd.resume();
    await waitFor("the source to reconnect", async () => (await sourceStatus()) === "connected");
    // Every request answered before the toggle was written, through etcd's death and return, was served.
    const beforeToggle = [...traffic.answers];
    await etcd.put(KEY, "true");
    await waitFor("maintenance after etcd returned", async () => (await status(service, "/users")) === 503);
    await traffic.stop();
    expect(traffic.errors).toEqual([]);
    expect(beforeToggle.filter((answer) => answer.status !== 200)).toEqual([]);
  });
});

describe("chaos: a three-member etcd cluster loses the member the service uses", () => {
  let cluster: TestEtcdCluster;
  afterAll(async () => cluster?.stop());

  test("with any one member killed, a toggle written through another applies", async () => {
    cluster = await TestEtcdCluster.start(3);
    const service = await start({ ETCD_ENDPOINTS: cluster.endpoints });
    await waitFor("watching", async () => (await status(service, "/users")) === 200);
    // Whichever member carries the service's watch, one of these rounds kills it.
    for (let killed = 0; killed < 3; killed++) {
      const writer = (killed + 1) % 3;
      const on = killed % 2 === 0;
      await cluster.kill(killed);
      await cluster.put(writer, KEY, on ? "true" : "false");
      await waitFor(
        `the toggle with member ${killed} down`,
        async () => (await status(service, "/users")) === (on ? 503 : 200),
      );
      await cluster.resume(killed);
    }
  });
});
