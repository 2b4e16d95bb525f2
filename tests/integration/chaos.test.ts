import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { TestEtcd } from "../helpers/etcd.ts";
import { TestEtcdCluster } from "../helpers/etcd-cluster.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { waitFor } from "../helpers/wait.ts";

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
  await waitForStatus(service, "/health", 200, 15_000);
  return service;
}

/** Runs `clients` loops of GET /users until stopped; returns every status (and when its request began) and transport error. */
function load(service: ServiceProcess, clients: number) {
  const statuses: number[] = [];
  const startedAt: number[] = [];
  const errors: string[] = [];
  const slow: number[] = [];
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      const started = performance.now();
      try {
        const response = await fetch(`${service.baseUrl}/users?limit=3`, { signal: AbortSignal.timeout(10_000) });
        await response.arrayBuffer();
        statuses.push(response.status);
        startedAt.push(started);
      } catch (error) {
        errors.push(String(error));
      }
      const ms = performance.now() - started;
      if (ms > 2500) slow.push(Math.round(ms));
    }
  });
  return {
    statuses,
    startedAt,
    errors,
    slow,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

const status = async (service: ServiceProcess, path: string) =>
  (await fetch(`${service.baseUrl}${path}`, { signal: AbortSignal.timeout(5000) })).status;

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

  test("requests fail fast with 503, /health is unhealthy, /health/live stays 200, and it recovers without restart", async () => {
    const through = await proxyDatabase(database.url);
    proxy = through.proxy;
    const service = await start({
      DATABASE_URL: through.url,
      ETCD_ENDPOINTS: "memory",
      DB_CONNECT_TIMEOUT_MS: "1000",
    });
    const traffic = load(service, 8);
    await Bun.sleep(500);
    await proxy.cut();
    await waitFor("a 503", () => traffic.statuses.at(-1) === 503, 5000);
    const cutAt = traffic.statuses.length;
    await Bun.sleep(1500);
    expect(await status(service, "/health")).toBe(503);
    expect(await status(service, "/health/live")).toBe(200);
    const response = await fetch(`${service.baseUrl}/users/1`);
    expect(response.status).toBe(503);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toMatchObject({ type: "urn:problem:database-service:database-unavailable" });

    await proxy.restore();
    await waitFor("200 again", () => traffic.statuses.at(-1) === 200, 10_000);
    await traffic.stop();
    expect(await status(service, "/health")).toBe(200);

    const during = traffic.statuses.slice(cutAt);
    expect(traffic.errors).toEqual([]);
    expect(traffic.slow).toEqual([]);
    expect(new Set(traffic.statuses)).toEqual(new Set([200, 503]));
    expect(during.filter((s) => s === 503).length).toBeGreaterThan(10);
  }, 60_000);
});

describe("chaos: etcd killed under load and restarted", () => {
  let etcd: TestEtcd;
  afterAll(async () => etcd?.stop());

  test("no request fails because of etcd, and the next toggle applies", async () => {
    etcd = await TestEtcd.start();
    const service = await start({ ETCD_ENDPOINTS: etcd.endpoint });
    const traffic = load(service, 8);
    await Bun.sleep(500);
    await etcd.kill();
    await Bun.sleep(3000);
    const stats = (await (await fetch(`${service.baseUrl}/stats`)).json()) as {
      maintenance_status: { source: { status: string; stale_seconds: number } };
    };
    expect(stats.maintenance_status.source.status).toBe("unavailable");
    await etcd.resume();
    await Bun.sleep(500);
    const toggledAt = performance.now();
    await etcd.put(KEY, "true");
    const applied = await waitFor(
      "maintenance after etcd returned",
      async () => (await status(service, "/users")) === 503,
      5000,
    );
    await traffic.stop();
    console.log(`[chaos] toggle applied ${Math.round(applied)} ms after the write that followed etcd's return`);
    expect(traffic.errors).toEqual([]);
    // Every request begun before the toggle (less a margin for one reaching the service late), through etcd's
    // death and return, was served.
    const beforeToggle = traffic.statuses.filter((_, i) => (traffic.startedAt[i] as number) < toggledAt - 50);
    expect(beforeToggle.filter((s) => s !== 200)).toEqual([]);
    expect(beforeToggle.length).toBeGreaterThan(100);
  }, 60_000);
});

describe("chaos: a three-member etcd cluster loses the member the service uses", () => {
  let cluster: TestEtcdCluster;
  afterAll(async () => cluster?.stop());

  test("with any one member killed, a toggle written through another applies within 5 s", async () => {
    cluster = await TestEtcdCluster.start(3);
    const service = await start({ ETCD_ENDPOINTS: cluster.endpoints });
    await waitFor("watching", async () => (await status(service, "/users")) === 200, 5000);
    // Whichever member carries the service's watch, one of these rounds kills it.
    for (let killed = 0; killed < 3; killed++) {
      const writer = (killed + 1) % 3;
      const on = killed % 2 === 0;
      await cluster.kill(killed);
      await cluster.put(writer, KEY, on ? "true" : "false");
      const ms = await waitFor(
        `the toggle with member ${killed} down`,
        async () => (await status(service, "/users")) === (on ? 503 : 200),
        5000,
      );
      console.log(`[chaos] member m${killed} down: toggle through m${writer} applied in ${Math.round(ms)} ms`);
      await cluster.resume(killed);
    }
  }, 120_000);
});
