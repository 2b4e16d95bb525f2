import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const dataDir = mkdtempSync(join(tmpdir(), "dev-mode-"));
// As root, PostgreSQL runs as the `postgres` user, which must be able to enter the directory.
chmodSync(dataDir, 0o755);
const running: ServiceProcess[] = [];

/**
 * `npm run dev` as a newcomer runs it: no DATABASE_URL, no etcd; only the checkout moved to a temp dir, so the
 * data lands in a `.data/postgres` whose parent does not exist yet, as in a fresh clone.
 */
async function startDev(): Promise<ServiceProcess> {
  const dev = await spawnService({ DATABASE_URL: `embedded://${dataDir}/.data/postgres`, LOG_LEVEL: "info" }, [
    process.execPath,
    "src/dev.ts",
  ]);
  running.push(dev);
  await waitForStatus(dev, "/health", 200, 60_000);
  return dev;
}

async function stop(dev: ServiceProcess): Promise<number> {
  dev.proc.kill("SIGTERM");
  return dev.exited;
}

afterAll(async () => {
  for (const dev of running) if (dev.proc.exitCode === null) await stop(dev);
  rmSync(dataDir, { recursive: true, force: true });
});

describe("npm run dev (embedded PostgreSQL, in-process maintenance key)", () => {
  test("serves CRUD, toggles maintenance through the admin API, and keeps data across restarts", async () => {
    const first = await startDev();
    const banner = first.stdout();
    expect(banner).toContain(`docs         ${first.baseUrl}/docs`);
    expect(banner).toContain("embedded PostgreSQL");
    const token = /admin token {2}(\S+)/.exec(banner)?.[1];
    expect(token).toMatch(/^[0-9a-f]{32}$/);
    expect(banner).toContain(
      `curl -X PUT -H "Authorization: Bearer ${token}" -H "Content-Type: text/plain" -d true ${first.baseUrl}/admin/maintenance`,
    );

    const created = await fetch(`${first.baseUrl}/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Alice", email: "alice@example.com" }),
    });
    expect(created.status).toBe(201);
    const alice = (await created.json()) as { id: number };

    const admin = (body: string) =>
      fetch(`${first.baseUrl}/admin/maintenance`, {
        method: "PUT",
        headers: { authorization: `Bearer ${token}`, "content-type": "text/plain" },
        body,
      });
    expect((await admin("true")).status).toBe(200);
    const refused = await fetch(`${first.baseUrl}/users/${alice.id}`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("60");
    expect((await admin("false")).status).toBe(200);
    await waitForStatus(first, `/users/${alice.id}`, 200);

    expect(await stop(first)).toBe(0);
    expect(first.logLines().some((line) => line.event === "embedded_postgres.initialised")).toBe(true);

    const second = await startDev();
    expect(second.logLines().some((line) => line.event === "embedded_postgres.initialised")).toBe(false);
    const again = await fetch(`${second.baseUrl}/users/${alice.id}`);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ name: "Alice", email: "alice@example.com" });
    expect(await stop(second)).toBe(0);
  });
});
