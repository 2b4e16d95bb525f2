/** One PgBouncer in transaction pooling in front of a PostgreSQL, for the fleet benchmark. */
import { chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { freePort, log, onCleanup, tempDir } from "./lib.ts";

/** Debian's binary (package `pgbouncer`). */
const PGBOUNCER = "/usr/sbin/pgbouncer";

/** A running PgBouncer. */
export interface PgBouncer {
  port: number;
  /** `url` (a postgres:// URL on the PostgreSQL) with host and port replaced by PgBouncer's. */
  through(url: string): string;
  stop(): Promise<void>;
}

/**
 * Starts PgBouncer on a free loopback port with a stock transaction-mode configuration (trust
 * authentication for `user`, as the local PostgreSQL has), every database passed to
 * `host:port`, and checks it answers a query. PgBouncer refuses to run as root: as root it is
 * started as `postgres` (`-u`), owning its temporary directory.
 */
export async function startPgBouncer(host: string, port: number, user: string): Promise<PgBouncer> {
  const dir = tempDir("bench-pgbouncer-");
  const listen = await freePort();
  writeFileSync(join(dir, "userlist.txt"), `"${user}" ""\n`);
  writeFileSync(
    join(dir, "pgbouncer.ini"),
    [
      "[databases]",
      `* = host=${host} port=${port}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${listen}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${join(dir, "userlist.txt")}`,
      "pool_mode = transaction",
      // 12 instances × a pool of 10 are 120 clients; PgBouncer's default allows 100.
      "max_client_conn = 1000",
      "default_pool_size = 20",
      `logfile = ${join(dir, "pgbouncer.log")}`,
      `pidfile = ${join(dir, "pgbouncer.pid")}`,
      "",
    ].join("\n"),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const [uid, gid] = ["-u", "-g"].map((flag) => Number(Bun.spawnSync(["id", flag, "postgres"]).stdout.toString()));
    for (const file of ["", "userlist.txt", "pgbouncer.ini"]) chownSync(join(dir, file), uid as number, gid as number);
  }
  const proc = Bun.spawn([PGBOUNCER, ...(asRoot ? ["-u", "postgres"] : []), join(dir, "pgbouncer.ini")], {
    stdout: "ignore",
    stderr: "ignore",
  });
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    await proc.exited;
  };
  onCleanup("pgbouncer", stop);
  const through = (url: string) => {
    const parsed = new URL(url);
    parsed.hostname = "127.0.0.1";
    parsed.port = String(listen);
    return parsed.toString();
  };
  const probe = postgres(through(`postgres://${user}@${host}:${port}/postgres`), {
    max: 1,
    prepare: false,
    connect_timeout: 2,
    onnotice: () => {},
  });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await probe`SELECT 1`;
        break;
      } catch (error) {
        if (attempt >= 50 || proc.exitCode !== null) {
          throw new Error(`PgBouncer on 127.0.0.1:${listen} does not answer (see ${dir}/pgbouncer.log): ${error}`);
        }
        await Bun.sleep(100);
      }
    }
  } finally {
    await probe.end({ timeout: 1 });
  }
  log(`PgBouncer (transaction pooling) on 127.0.0.1:${listen} in front of ${host}:${port}`);
  return { port: listen, through, stop };
}
