import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type EtcdAndDatabase, startEtcdAndDatabase } from "../helpers/fixture.ts";
import { PROBLEM_TYPE_PREFIX, type UserJson } from "../helpers/http.ts";
import {
  expectMaintenance,
  lockUsersTable,
  put,
  type Stats,
  type TableLock,
  waitForLockWaiters,
} from "../helpers/maintenance.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { DENO_ENTRY, exitCode, type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/shutdown-test";
const DRAIN_TIMEOUT_MS = 3000;
/** A shutdown deadline far beyond the wait for an exit: what ends such a stop is never the deadline. */
const FAR_SHUTDOWN_TIMEOUT_MS = 600_000;

const SHUTDOWN_TIMEOUT_MS = 3000;
/** The entry's cut comes this long before the deadline (CUT_RESERVE_MS in src/index.ts). */
const CUT_RESERVE_MS = 1500;

let fixture: EtcdAndDatabase;
let etcd: TestEtcd;
let database: TestDatabase;
const running = new Set<ServiceProcess>();
let lock: TableLock | undefined;

beforeAll(async () => {
  fixture = await startEtcdAndDatabase("mshutdown");
  ({ etcd, database } = fixture);
});
afterEach(async () => {
  await lock?.release();
  lock = undefined;
  // A failed test must not leave its child behind.
  for (const service of running) {
    service.proc.kill("SIGKILL");
    await service.exited;
  }
  running.clear();
});
afterAll(() => fixture?.stop());

/** Spawns `bun src/index.ts` following KEY and waits until it is healthy. */
async function start(): Promise<ServiceProcess> {
  await put(etcd, KEY, "false");
  const service = await spawnService({
    DATABASE_URL: database.url,
    ETCD_ENDPOINTS: etcd.endpoint,
    MAINTENANCE_KEY: KEY,
    DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS),
    SHUTDOWN_TIMEOUT_MS: String(FAR_SHUTDOWN_TIMEOUT_MS),
    LOG_LEVEL: "info",
  });
  running.add(service);
  await waitForStatus(service, "/health", 200);
  return service;
}

async function stats(service: ServiceProcess): Promise<Stats> {
  const response = await fetch(`${service.baseUrl}/stats`);
  expect(response.status).toBe(200);
  return (await response.json()) as Stats;
}

/** Sends SIGTERM and resolves with the exit code and how long the exit took. */
async function terminate(service: ServiceProcess): Promise<{ code: number; ms: number }> {
  const started = performance.now();
  service.proc.kill("SIGTERM");
  const code = await exitCode(service);
  running.delete(service);
  return { code, ms: performance.now() - started };
}

const events = (service: ServiceProcess) => service.logLines().map((line) => String(line.event));

describe("SIGTERM to bun src/index.ts", () => {
  test("while entering maintenance with a request stuck in a query, it exits 0 once the drain timeout ends the drain", async () => {
    const service = await start();
    const created = await fetch(`${service.baseUrl}/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Stuck Sam", email: "sam@example.com" }),
    });
    expect(created.status).toBe(201);
    const sam = (await created.json()) as UserJson;
    const prefix = (await stats(service)).database.application_name.replace(/\d+$/, "");

    lock = await lockUsersTable(database.url);
    const stuck = fetch(`${service.baseUrl}/users/${sam.id}`);
    await waitForLockWaiters(database.sql, prefix, 1);

    await put(etcd, KEY, "true");
    await waitFor("the drain to begin", async () => (await stats(service)).maintenance_status.phase === "entering");
    await expectMaintenance(await fetch(`${service.baseUrl}/users`), "/users", 60);
    expect((await stats(service)).http.in_flight).toBe(1);

    // The lock stays held and the shutdown deadline is far: only the drain timeout can end the stuck request.
    const { code } = await terminate(service);
    expect(code).toBe(0);

    // The stuck request got an answer before the process went: a 503 problem, not a reset.
    const answer = await stuck;
    expect(answer.status).toBe(503);
    expect(answer.headers.get("content-type")).toBe("application/problem+json");
    expect(((await answer.json()) as { type: string }).type).toStartWith(PROBLEM_TYPE_PREFIX);

    // The entry ended by the drain timeout, and the process stopped after it.
    const seen = events(service);
    const transition = service.logLines().find((line) => line.event === "maintenance.transition");
    expect(transition).toMatchObject({ kind: "enter", from_mode: "off", mode: "full", drained: false });
    expect(seen.indexOf("service.stopping")).toBeLessThan(seen.indexOf("maintenance.transition"));
    expect(seen.at(-1)).toBe("service.stopped");
    expect(service.stderr()).toBe("");
  });

  test("in maintenance, it exits 0 without waiting for its shutdown deadline", async () => {
    const service = await start();
    await put(etcd, KEY, "true");
    await waitFor("maintenance", async () => (await stats(service)).maintenance_status.phase === "maintenance");
    await expectMaintenance(await fetch(`${service.baseUrl}/users`), "/users", 60);

    const { code } = await terminate(service);
    expect(code).toBe(0);
    expect(events(service).at(-1)).toBe("service.stopped");
    expect(service.stderr()).toBe("");
  });
});

const runtimes: [string, string[] | undefined][] = [
  ["bun src/index.ts", undefined],
  ["deno run -A src/index.ts", DENO_ENTRY],
];

for (const [name, command] of runtimes) {
  describe(`SIGTERM to ${name}, a request stuck on a lock`, () => {
    test("with a request stuck on a lock, it ends by its SHUTDOWN_TIMEOUT_MS (exit 0, not the overrun's 1) and the request is answered 503", async () => {
      const service = await spawnService(
        {
          DATABASE_URL: database.url,
          ETCD_ENDPOINTS: etcd.endpoint,
          MAINTENANCE_KEY: `/maintenance/shutdown-${running.size}-${Date.now()}`,
          SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
          LOG_LEVEL: "info",
        },
        command,
      );
      running.add(service);
      await waitForStatus(service, "/health", 200);
      const created = await fetch(`${service.baseUrl}/users`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "Stuck Sam", email: `sam-${Date.now()}@example.com` }),
      });
      expect(created.status).toBe(201);
      const sam = (await created.json()) as UserJson;
      const stats = (await (await fetch(`${service.baseUrl}/stats`)).json()) as Stats;
      const prefix = stats.database.application_name.replace(/\d+$/, "");

      lock = await lockUsersTable(database.url);
      const stuck = fetch(`${service.baseUrl}/users/${sam.id}`).then(
        (response) => response,
        (error: unknown) => error,
      );
      await waitForLockWaiters(database.sql, prefix, 1);

      const { code, ms } = await terminate(service);

      // Past its deadline, the entry logs service.stop_timeout and exits 1.
      expect(code).toBe(0);
      // The request had its time: it was not cut before the last CUT_RESERVE_MS.
      expect(ms).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_MS - CUT_RESERVE_MS);
      // The lock is still held: the shutdown cut the query, and the request got an answer, not a reset.
      const answer = await stuck;
      expect(answer).toBeInstanceOf(Response);
      const response = answer as Response;
      expect(response.status).toBe(503);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      expect(((await response.json()) as { type: string }).type).toStartWith(PROBLEM_TYPE_PREFIX);
      expect(events(service)).not.toContain("service.stop_timeout");
      expect(service.logLines().at(-1)?.event).toBe("service.stopped");
      expect(service.stderr()).toBe("");
    });
  });
}
