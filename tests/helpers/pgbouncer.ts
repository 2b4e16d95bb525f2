import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import postgres from "postgres";
import { freePort } from "./free-port.ts";
import { TEST_DATABASE_URL } from "./postgres.ts";

/** Debian's pgbouncer package puts the program outside a normal user's PATH. */
const PGBOUNCER = Bun.which("pgbouncer") ?? "/usr/sbin/pgbouncer";

/** `[pgbouncer]` settings beyond the stock ones: a setting's value, as pgbouncer.ini spells it. */
export type PgBouncerSettings = Record<string, string | number>;

/**
 * PgBouncer in transaction pooling in front of the tests' PostgreSQL
 * ({@link TEST_DATABASE_URL}), started for a test file on a free port with a
 * temporary configuration: the stock settings but for `pool_mode =
 * transaction`, where it listens, and authentication (`trust`, with a
 * userlist naming the one user). Every database name is passed through to the
 * same name upstream.
 */
export class TestPgBouncer {
  private constructor(
    private readonly child: Subprocess<"ignore", "ignore", "pipe">,
    /** The temporary directory holding the configuration; removed by {@link stop}. */
    private readonly dir: string,
    readonly port: number,
    /** The user clients log in as (and PgBouncer, upstream). */
    readonly user: string,
    private readonly stderr: Promise<string>,
  ) {}

  /** The process id, e.g. to signal it. */
  get pid(): number {
    return this.child.pid;
  }

  /**
   * Starts PgBouncer and waits until a query passes through it to
   * PostgreSQL; fails loudly when the program is missing or does not come up.
   * `settings` adds to or overrides the `[pgbouncer]` section (e.g.
   * `{ max_client_conn: 500 }` for a fleet).
   */
  static async start(settings: PgBouncerSettings = {}): Promise<TestPgBouncer> {
    if (!existsSync(PGBOUNCER)) {
      throw new Error("pgbouncer is not installed: run `bash scripts/provision.sh` as root");
    }
    const upstream = new URL(TEST_DATABASE_URL);
    const user = decodeURIComponent(upstream.username) || "postgres";
    const password = decodeURIComponent(upstream.password);
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "pgbouncer-test-"));
    const upstreamHost = upstream.hostname.replace(/^\[(.*)\]$/, "$1");
    const server = [
      `host=${upstreamHost}`,
      `port=${upstream.port || 5432}`,
      // Upstream as the one user; its password, when PostgreSQL asks for one, from here.
      `user=${user}`,
      ...(password === "" ? [] : [`password=${password}`]),
    ].join(" ");
    const config: PgBouncerSettings = {
      listen_addr: "127.0.0.1",
      listen_port: port,
      // No Unix socket: several instances at once would share its directory.
      unix_socket_dir: "",
      auth_type: "trust",
      auth_file: join(dir, "userlist.txt"),
      pool_mode: "transaction",
      ...settings,
    };
    writeFileSync(join(dir, "userlist.txt"), `"${user}" ""\n`);
    const ini = join(dir, "pgbouncer.ini");
    writeFileSync(
      ini,
      [
        "[databases]",
        `* = ${server}`,
        "[pgbouncer]",
        ...Object.entries(config).map(([name, value]) => `${name} = ${value}`),
      ].join("\n"),
    );
    // PgBouncer refuses to run as root; it then drops to `nobody`, who must be able to read its files.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      chmodSync(dir, 0o755);
      for (const file of [ini, join(dir, "userlist.txt")]) chmodSync(file, 0o644);
    }
    const child = spawn([PGBOUNCER, ...(asRoot ? ["-u", "nobody"] : []), ini], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    const bouncer = new TestPgBouncer(child, dir, port, user, new Response(child.stderr).text());
    await bouncer.waitUntilServing();
    return bouncer;
  }

  /** A `postgres://` URL of `database` through PgBouncer. */
  url(database: string): string {
    return `postgres://${encodeURIComponent(this.user)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Stops PgBouncer by its PID (SIGTERM: it closes every connection at once) and removes its files. */
  async stop(): Promise<void> {
    this.child.kill("SIGTERM");
    await this.child.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async waitUntilServing(): Promise<void> {
    const upstreamDatabase = new URL(TEST_DATABASE_URL).pathname.slice(1) || "postgres";
    const deadline = Date.now() + 15_000;
    let last: unknown;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) {
        rmSync(this.dir, { recursive: true, force: true });
        throw new Error(`pgbouncer exited with ${this.child.exitCode}: ${await this.stderr}`);
      }
      // A plain client: postgres.js sends only startup parameters PgBouncer knows when told none.
      const sql = postgres(this.url(upstreamDatabase), {
        max: 1,
        prepare: false,
        connect_timeout: 2,
        onnotice: () => {},
      });
      try {
        await sql`select 1`;
        return;
      } catch (error) {
        last = error;
      } finally {
        await sql.end({ timeout: 1 });
      }
      await Bun.sleep(50);
    }
    await this.stop();
    throw new Error(`pgbouncer did not pass a query to PostgreSQL within 15 s: ${String(last)}`);
  }
}
