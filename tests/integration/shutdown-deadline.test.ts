import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { TestEtcd } from "../helpers/etcd.ts";
import { PROBLEM_TYPE_PREFIX, type UserJson } from "../helpers/http.ts";
import { lockUsersTable, type Stats, type TableLock, waitForLockWaiters } from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { DENO_ENTRY, type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";

// Servers start and a shutdown is waited for; bun's 5 s default per test is too tight.
setDefaultTimeout(60_000);

const SHUTDOWN_TIMEOUT_MS = 3000;
/** The entry's cut comes this long before the deadline (CUT_RESERVE_MS in src/index.ts). */
const CUT_RESERVE_MS = 1500;
/**
 * The deadline is behaviour, so it is asserted, with a margin for a busy 2-core
 * machine. The process is expected to end about 0.4 s before its deadline (the
 * cut at 1.5 s, then about 1 s for postgres.js to end the busy connection);
 * 1.5 s past the deadline leaves some 1.9 s for scheduling delays, while the
 * old double wait (~6 s) still fails by 1.5 s.
 */
const MARGIN_MS = 1500;

let etcd: TestEtcd;
let database: TestDatabase;
const running = new Set<ServiceProcess>();
let lock: TableLock | undefined;

beforeAll(async () => {
  [etcd, database] = await Promise.all([TestEtcd.start(), createTestDatabase("shutdown")]);
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
afterAll(async () => {
  await etcd?.stop();
  await database?.drop();
});

const runtimes: [string, string[] | undefined][] = [
  ["bun src/index.ts", undefined],
  ["deno run -A src/index.ts", DENO_ENTRY],
];

for (const [name, command] of runtimes) {
  describe(`SIGTERM to ${name}`, () => {
    test("with a request stuck on a lock, it ends within SHUTDOWN_TIMEOUT_MS and the request is answered 503", async () => {
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
      await waitForStatus(service, "/health", 200, 30_000);
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

      const started = performance.now();
      service.proc.kill("SIGTERM");
      const code = await Promise.race([service.exited, Bun.sleep(20_000).then(() => "timeout" as const)]);
      const ms = performance.now() - started;
      if (code === "timeout") throw new Error(`no exit\nstdout:\n${service.stdout()}\nstderr:\n${service.stderr()}`);
      running.delete(service);

      expect(code).toBe(0);
      expect(ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS + MARGIN_MS);
      // The request had its time: it was not cut before the last CUT_RESERVE_MS.
      expect(ms).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_MS - CUT_RESERVE_MS);
      // The lock is still held: the shutdown cut the query, and the request got an answer, not a reset.
      const answer = await stuck;
      expect(answer).toBeInstanceOf(Response);
      const response = answer as Response;
      expect(response.status).toBe(503);
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      expect(((await response.json()) as { type: string }).type).toStartWith(PROBLEM_TYPE_PREFIX);
      expect(service.logLines().at(-1)?.event).toBe("service.stopped");
      expect(service.stderr()).toBe("");
    });
  });
}
