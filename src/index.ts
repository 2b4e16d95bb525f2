/**
 * Entry point, on Bun (`bun src/index.ts`) and Deno (`deno run -A src/index.ts`):
 * reads the configuration, starts an embedded PostgreSQL when asked to, starts
 * the service, serves HTTP, and shuts down gracefully on SIGTERM/SIGINT. The
 * only runtime-specific code is {@link listen}; the only file that exits.
 */
import { type Config, ConfigError, loadConfig, withDatabase } from "./config.ts";
import type { ConnectionTarget } from "./db/dsn.ts";
import { type RunningEmbeddedDatabase, startEmbeddedPostgres } from "./db/embedded.ts";
import { createLogger, describeError, type Logger } from "./logger.ts";
import { type Service, startService } from "./service.ts";
import { Deadline } from "./util/deadline.ts";
import { hostProblem, listenProblem } from "./util/listen-problem.ts";

/**
 * The last part of SHUTDOWN_TIMEOUT_MS, kept for cutting what still runs:
 * queries are ended (postgres.js takes up to a second to destroy a busy
 * connection), their requests answered 503, and the pool closed. A shorter
 * SHUTDOWN_TIMEOUT_MS cuts at once and still gets this long.
 */
const CUT_RESERVE_MS = 1500;

/** A listening HTTP server, whichever runtime runs it. */
interface Listener {
  port: number;
  /** Stops accepting; resolves when in-flight requests have been answered. */
  stop(): Promise<void>;
}

/** The slice of Deno's API the entry uses (bun-types does not describe Deno). */
interface DenoServe {
  serve(
    options: { port: number; hostname: string; onListen?: () => void },
    handler: (request: Request) => Response | Promise<Response>,
  ): { addr: { port: number }; shutdown(): Promise<void> };
}

function listen(config: Config, fetch: (request: Request) => Response | Promise<Response>): Listener {
  const deno = (globalThis as { Deno?: DenoServe }).Deno;
  if (deno) {
    // Deno.serve, not `deno serve`: the latter ignores the port we are given.
    const server = deno.serve({ port: config.port, hostname: config.host, onListen: () => {} }, fetch);
    return { port: server.addr.port, stop: () => server.shutdown() };
  }
  const server = Bun.serve({
    port: config.port,
    hostname: config.host,
    // Bun cuts a request silent for 10 s by default; slow queries may take longer.
    idleTimeout: config.idleTimeoutSeconds,
    fetch,
  });
  return { port: server.port ?? config.port, stop: () => server.stop() };
}

/** What {@link main} started, for the development entry's banner. */
interface Started {
  config: Config;
  url: string;
  logger: Logger;
}

/** Prints each configuration problem on a line of its own and exits with 2. */
function exitMisconfigured(problems: string[]): never {
  for (const problem of problems) console.error(`invalid configuration: ${problem}`);
  process.exit(2);
}

/** The URL the service answers on, for people: a wildcard address reads as localhost, IPv6 in brackets. */
function serviceUrl(host: string, port: number): string {
  const name = host === "0.0.0.0" || host === "::" ? "localhost" : host.includes(":") ? `[${host}]` : host;
  return `http://${name}:${port}`;
}

/**
 * Starts everything from `env`. Exits with 2 on bad configuration, including
 * a HOST or PORT it cannot listen on (checked before the service starts, so
 * nothing is left behind).
 */
export async function main(env: Record<string, string | undefined>): Promise<Started> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    exitMisconfigured(error.problems);
  }
  const logger = createLogger(config.logLevel);
  const unresolved = await hostProblem(config.host);
  if (unresolved) exitMisconfigured([unresolved]);

  let embedded: RunningEmbeddedDatabase | undefined;
  let database: ConnectionTarget;
  if (config.database.kind === "embedded") {
    try {
      embedded = await startEmbeddedPostgres(config.database, logger);
    } catch (error) {
      logger.error("embedded_postgres.failed", describeError(error));
      process.exit(1);
    }
    database = embedded.target;
    // Reported as used: as root it may have been relocated (see db/embedded-location.ts).
    config = { ...config, database: { kind: "embedded", dir: embedded.dir } };
  } else {
    database = config.database.target;
  }
  let server: Listener;
  try {
    // The service is built right below, in the same turn: no request reaches the listener before it exists.
    server = listen(config, (request) => service.app.fetch(request));
  } catch (error) {
    const problem = listenProblem(error, config);
    if (problem === null) throw error;
    await embedded?.stop();
    exitMisconfigured([problem]);
  }
  const service: Service = startService(withDatabase(config, database), logger);
  const url = serviceUrl(config.host, server.port);
  logger.info("service.listening", { url, docs: `${url}/docs`, maintenance_source: config.maintenanceSource.kind });

  /**
   * Every stage of the shutdown: requests may finish on their own until `cut`,
   * then queries still running are ended so their requests are answered (503),
   * the pool is closed and the answers are written.
   */
  const stop = async (cut: Deadline): Promise<true> => {
    const answered = server.stop();
    await cut.race(answered, undefined);
    await service.stop(cut);
    await answered;
    await embedded?.stop();
    return true;
  };
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    const timeoutMs = config.shutdownTimeoutMs;
    // One deadline for every stage; the cut comes CUT_RESERVE_MS before it.
    const deadline = Deadline.after(Math.max(timeoutMs, CUT_RESERVE_MS));
    const cut = Deadline.after(Math.max(0, timeoutMs - CUT_RESERVE_MS));
    logger.info("service.stopping", { signal, timeout_ms: timeoutMs });
    try {
      if (await deadline.race(stop(cut), false)) {
        logger.info("service.stopped");
        process.exit(0);
      }
      logger.error("service.stop_timeout", { timeout_ms: timeoutMs });
      process.exit(1);
    } catch (error) {
      logger.error("service.stop_failed", describeError(error));
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  return { config, url, logger };
}

if (import.meta.main) await main(process.env);
