/** Small helpers of the benchmark: child processes, statistics, timing. */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { freePort } from "../src/util/free-port.ts";
import { TestEtcd } from "../tests/helpers/etcd.ts";
import { createTestDatabase, type TestDatabase } from "../tests/helpers/postgres.ts";

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname;

/** Cleanup actions, run last-in first-out by {@link cleanUp}, also on SIGINT/SIGTERM. */
const cleanups: { what: string; run: () => Promise<unknown> | unknown }[] = [];

export function onCleanup(what: string, run: () => Promise<unknown> | unknown): void {
  cleanups.push({ what, run });
}

export async function cleanUp(): Promise<void> {
  for (let item = cleanups.pop(); item; item = cleanups.pop()) {
    try {
      await item.run();
    } catch (error) {
      console.error(`cleanup of ${item.what} failed:`, error);
    }
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

/** A temporary directory, removed at cleanup. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onCleanup(`temp dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An HTTP server running as a child process, its output going to files. */
export interface Child {
  readonly name: string;
  readonly url: string;
  readonly proc: Subprocess;
  /** The file its stdout goes to. */
  readonly stdoutPath: string;
  /** The last `lines` lines of stdout and stderr, for error messages. */
  tail(lines?: number): string;
  /** SIGTERM, then SIGKILL after 15 s. */
  stop(): Promise<void>;
}

/** Spawns `bun <args>` in the repository root with exactly `env` (plus PATH and HOME). */
export function spawnBun(name: string, args: string[], env: Record<string, string>, logDir: string): Child {
  return spawnServer(name, [process.execPath, ...args], env, logDir);
}

/** Spawns `argv` in the repository root with exactly `env` (plus PATH and HOME); `env.PORT` is where it listens. */
export function spawnServer(name: string, argv: string[], env: Record<string, string>, logDir: string): Child {
  const out = join(logDir, `${name}.out.log`);
  const err = join(logDir, `${name}.err.log`);
  const proc = Bun.spawn(argv, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
    stdin: "ignore",
    stdout: Bun.file(out),
    stderr: Bun.file(err),
  });
  const read = (path: string, lines: number) => {
    try {
      return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  };
  const child: Child = {
    name,
    url: `http://127.0.0.1:${env.PORT}`,
    proc,
    stdoutPath: out,
    tail: (lines = 20) => `--- ${name} stdout\n${read(out, lines)}\n--- ${name} stderr\n${read(err, lines)}`,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(15_000).then(() => false)]);
      if (!exited) {
        proc.kill("SIGKILL");
        await proc.exited;
      }
    },
  };
  onCleanup(`process ${name}`, () => child.stop());
  return child;
}

/** Polls `url` until it answers `status` (or one of them); throws with the child's output after `timeoutMs`. */
export async function waitForStatus(child: Child, path: string, status: number[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline && child.proc.exitCode === null) {
    try {
      const response = await fetch(`${child.url}${path}`, { signal: AbortSignal.timeout(1000) });
      last = `${response.status} ${await response.text()}`;
      if (status.includes(response.status)) return;
    } catch (error) {
      last = String(error);
    }
    await Bun.sleep(50);
  }
  throw new Error(`${child.name} ${path} did not answer ${status} (last: ${last.slice(0, 300)})\n${child.tail()}`);
}

/** The median of `values` (mean of the middle two for an even count). */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export { percentile } from "../tests/helpers/percentile.ts";

/** `value` rounded to `digits` decimals, as text. */
export const fmt = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");

/** A markdown table. */
export function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

/** Output of a command, trimmed; "" when it fails. */
export function commandOutput(cmd: string[]): string {
  try {
    const result = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
    return result.stdout.toString().trim();
  } catch {
    return "";
  }
}

/** A numeric knob from the environment. */
export const knob = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);

export const CONNECTIONS = knob("BENCH_CONNECTIONS", 32);
export const SEED_USERS = 10_000;

export const log = (message: string): void => console.error(`[${new Date().toISOString().slice(11, 23)}] ${message}`);

/** What a throughput run sends: GET /users/{random seeded id}, or POST /users with unique emails. */
export type Workload = "read" | "write";

/** What every benchmark starts from: etcd, a fresh seeded database, and the service running on them. */
export interface Stack {
  etcd: TestEtcd;
  db: TestDatabase;
  /** DATABASE_URL of the fresh database. */
  url: string;
  logDir: string;
  service: Child;
  /** The environment of a service process at `level` on `port`. */
  serviceEnv(level: string, port: number): Record<string, string>;
}

/**
 * Starts etcd, creates a fresh database, starts the service (`bun <serviceArgs> src/index.ts`,
 * LOG_LEVEL=warn unless BENCH_SERVICE_LOG_LEVEL says otherwise), which migrates it, and seeds SEED_USERS users. Everything is cleaned up by {@link cleanUp}.
 */
export async function startStack(serviceArgs: string[] = []): Promise<Stack> {
  const logDir = tempDir("bench-logs-");
  const etcd = await TestEtcd.start();
  onCleanup("etcd", () => etcd.stop());
  const db = await createTestDatabase("bench");
  onCleanup(`database ${db.name}`, () => db.drop());
  const url = `${db.url}?sslmode=disable`;
  const serviceEnv = (level: string, port: number) => ({
    DATABASE_URL: url,
    ETCD_ENDPOINTS: etcd.endpoint,
    HOST: "127.0.0.1",
    PORT: String(port),
    LOG_LEVEL: level,
  });
  const service = spawnBun(
    "service",
    [...serviceArgs, "src/index.ts"],
    serviceEnv(process.env.BENCH_SERVICE_LOG_LEVEL ?? "warn", await freePort()),
    logDir,
  );
  await waitForStatus(service, "/health", [200]);
  await db.sql`
    INSERT INTO users (name, email)
    SELECT 'User ' || g, 'user' || g || '@example.com' FROM generate_series(1, ${SEED_USERS}) AS g`;
  await db.sql`VACUUM ANALYZE users`;
  log(`seeded ${SEED_USERS} users into ${db.name}`);
  return { etcd, db, url, logDir, service, serviceEnv };
}

/** Runs `main`, then always cleans up; exits non-zero on failure. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (error) {
    console.error(error);
    process.exitCode = 1;
  } finally {
    await cleanUp();
  }
}

export { freePort };
