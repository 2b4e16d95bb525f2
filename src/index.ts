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
import { startService } from "./service.ts";

/** A listening HTTP server, whichever runtime runs it. */
interface Listener {
  port: number;
  /** Stops accepting; resolves when in-flight requests have finished. */
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
export interface Started {
  config: Config;
  url: string;
  logger: Logger;
}

/** Starts everything from `env`; exits with 2 on bad configuration. */
export async function main(env: Record<string, string | undefined>): Promise<Started> {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);

  let embedded: RunningEmbeddedDatabase | undefined;
  let database: ConnectionTarget;
  if ("kind" in config.database) {
    try {
      embedded = await startEmbeddedPostgres(config.database, logger);
    } catch (error) {
      logger.error("embedded_postgres.failed", describeError(error));
      process.exit(1);
    }
    database = embedded.target;
  } else {
    database = config.database;
  }
  const service = startService(withDatabase(config, database), logger);
  const server = listen(config, (request) => service.app.fetch(request));
  const url = `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${server.port}`;
  logger.info("service.listening", { url, docs: `${url}/docs`, maintenance_source: config.maintenanceSource });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("service.stopping", { signal });
    const hardExit = setTimeout(() => {
      logger.error("service.stop_timeout", { timeout_ms: config.shutdownTimeoutMs });
      process.exit(1);
    }, config.shutdownTimeoutMs + 5000);
    try {
      await Promise.race([server.stop(), new Promise((resolve) => setTimeout(resolve, config.shutdownTimeoutMs))]);
      await service.stop();
      await embedded?.stop();
      clearTimeout(hardExit);
      logger.info("service.stopped");
      process.exit(0);
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
