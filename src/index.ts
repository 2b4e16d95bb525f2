/**
 * Entry point: reads the configuration, starts the service, serves HTTP, and
 * shuts down gracefully on SIGTERM/SIGINT. The only file that exits.
 */
import { ConfigError, loadConfig } from "./config.ts";
import { createLogger, describeError } from "./logger.ts";
import { startService } from "./service.ts";

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(2);
}

const logger = createLogger(config.logLevel);
const service = startService(config, logger);

const server = Bun.serve({
  port: config.port,
  hostname: config.host,
  // Bun cuts a request silent for 10 s by default; slow queries may take longer.
  idleTimeout: config.idleTimeoutSeconds,
  fetch: service.app.fetch,
});
logger.info("service.listening", {
  url: `http://${config.host}:${server.port}`,
  docs: `http://localhost:${server.port}/docs`,
});

let shuttingDown = false;
async function shutdown(signal: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  logger.info("service.stopping", { signal });
  const hardExit = setTimeout(() => {
    logger.error("service.stop_timeout", { timeout_ms: config.shutdownTimeoutMs });
    process.exit(1);
  }, config.shutdownTimeoutMs + 5000);
  try {
    // Stop accepting; in-flight requests finish.
    await Promise.race([server.stop(), new Promise((resolve) => setTimeout(resolve, config.shutdownTimeoutMs))]);
    await service.stop();
    logger.info("service.stopped");
    clearTimeout(hardExit);
    process.exit(0);
  } catch (error) {
    logger.error("service.stop_failed", describeError(error));
    process.exit(1);
  }
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
