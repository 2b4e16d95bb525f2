import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { exitCode, type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

let database: TestDatabase;
const running = new Set<ServiceProcess>();

beforeAll(async () => {
  database = await createTestDatabase("restart");
});
afterEach(async () => {
  // A failed test must not leave its child behind.
  for (const service of running) {
    service.proc.kill("SIGKILL");
    await service.exited;
  }
  running.clear();
});
afterAll(async () => {
  await database.drop();
});

async function start(env: Record<string, string>): Promise<ServiceProcess> {
  const service = await spawnService(env);
  running.add(service);
  return service;
}

describe("the entry point, bun src/index.ts", () => {
  test("SIGTERM stops it with exit code 0 and a service.stopped log line; a restart serves the same user", async () => {
    const env = { DATABASE_URL: database.url, LOG_LEVEL: "info" };
    const first = await start(env);
    await waitForStatus(first, "/health", 200);

    const created = await fetch(`${first.baseUrl}/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Persistent Pat", email: "pat@example.com" }),
    });
    expect(created.status).toBe(201);
    const pat = (await created.json()) as { id: number };
    expect(created.headers.get("location")).toBe(`/users/${pat.id}`);

    first.proc.kill("SIGTERM");
    expect(await exitCode(first)).toBe(0);
    const events = first.logLines().map((line) => line.event);
    expect(events).toContain("service.listening");
    expect(first.logLines().find((line) => line.event === "service.stopping")).toMatchObject({ signal: "SIGTERM" });
    expect(events.at(-1)).toBe("service.stopped");
    expect(events.indexOf("service.stopping")).toBeLessThan(events.indexOf("service.stopped"));
    expect(first.stderr()).toBe("");

    const second = await start(env);
    await waitForStatus(second, "/health", 200);
    const fetched = await fetch(`${second.baseUrl}/users/${pat.id}`);
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toEqual(pat);

    second.proc.kill("SIGTERM");
    expect(await exitCode(second)).toBe(0);
    expect(second.logLines().at(-1)?.event).toBe("service.stopped");
  });

  test("SIGINT stops it with exit code 0 as well", async () => {
    const service = await start({ DATABASE_URL: database.url, LOG_LEVEL: "info" });
    await waitForStatus(service, "/health", 200);
    service.proc.kill("SIGINT");
    expect(await exitCode(service)).toBe(0);
    expect(service.logLines().find((line) => line.event === "service.stopping")).toMatchObject({ signal: "SIGINT" });
    expect(service.logLines().at(-1)?.event).toBe("service.stopped");
  });

  const badConfigs: [string, Record<string, string>, string][] = [
    ["PORT=abc", { PORT: "abc" }, "PORT: must be a whole number"],
    ["DB_POOL_MAX=0", { DB_POOL_MAX: "0" }, "DB_POOL_MAX: must be at least 1"],
    ["DATABASE_URL=nonsense", { DATABASE_URL: "nonsense" }, "DATABASE_URL: "],
  ];
  for (const [name, env, message] of badConfigs) {
    test(`${name} makes it exit non-zero with a message naming the variable, before listening`, async () => {
      const service = await start({ DATABASE_URL: database.url, LOG_LEVEL: "info", ...env });
      const code = await exitCode(service);
      expect(code).not.toBe(0);
      expect(service.stderr()).toContain("invalid configuration");
      expect(service.stderr()).toContain(message);
      expect(service.logLines().map((line) => line.event)).not.toContain("service.listening");
    });
  }
});
