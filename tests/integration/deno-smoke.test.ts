import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type EtcdAndDatabase, startEtcdAndDatabase } from "../helpers/fixture.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { DENO_ENTRY, exitCode, type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/database-service";
let fixture: EtcdAndDatabase;
let database: TestDatabase;
let etcd: TestEtcd;
let deno: ServiceProcess;

beforeAll(async () => {
  fixture = await startEtcdAndDatabase("deno");
  ({ database, etcd } = fixture);
  deno = await spawnService(
    { DATABASE_URL: database.url, ETCD_ENDPOINTS: etcd.endpoint, LOG_LEVEL: "info", DRAIN_TIMEOUT_MS: "2000" },
    DENO_ENTRY,
  );
  await waitForStatus(deno, "/health", 200, 60_000);
});
afterAll(async () => {
  if (deno && deno.proc.exitCode === null) deno.proc.kill("SIGKILL");
  await fixture?.stop();
});

describe("the service under Deno (deno run -A src/index.ts)", () => {
  test("serves CRUD on the port it is given, follows the etcd key, and stops cleanly on SIGTERM", async () => {
    const base = deno.baseUrl;
    const created = await fetch(`${base}/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Alice", email: "alice@example.com" }),
    });
    expect(created.status).toBe(201);
    const alice = (await created.json()) as { id: number };
    expect((await fetch(`${base}/users/${alice.id}`)).status).toBe(200);
    const updated = await fetch(`${base}/users/${alice.id}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Alice B", email: "alice.b@example.com" }),
    });
    expect(await updated.json()).toMatchObject({ name: "Alice B" });

    await etcd.etcdctl("put", KEY, "true");
    await waitForStatus(deno, "/users", 503);
    const refused = await fetch(`${base}/users/${alice.id}`);
    expect(refused.headers.get("retry-after")).toBe("60");
    expect(refused.headers.get("content-type")).toBe("application/problem+json");
    expect(await (await fetch(`${base}/health`)).json()).toMatchObject({ status: "maintenance", maintenance: true });

    await etcd.etcdctl("put", KEY, "false");
    await waitForStatus(deno, "/users", 200);
    expect((await fetch(`${base}/users/${alice.id}`, { method: "DELETE" })).status).toBe(204);

    deno.proc.kill("SIGTERM");
    expect(await exitCode(deno)).toBe(0);
    expect(deno.logLines().some((line) => line.event === "service.stopped")).toBe(true);
  });
});
