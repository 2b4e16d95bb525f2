import { loadConfig, type ServerConfig, withDatabase } from "../../src/config.ts";
import { parseDatabaseUrl } from "../../src/db/dsn.ts";
import { type Logger, silentLogger } from "../../src/logger.ts";
import { type Service, startService } from "../../src/service.ts";

/** Configuration for an in-process service on `databaseUrl`, with `env` overrides. */
export function testConfig(databaseUrl: string, env: Record<string, string> = {}): ServerConfig {
  const config = loadConfig({ DATABASE_URL: databaseUrl, DB_CONNECT_TIMEOUT_MS: "2000", LOG_LEVEL: "error", ...env });
  return withDatabase(config, parseDatabaseUrl(databaseUrl));
}

/** An in-process service (no listener): call `service.app.request(...)`. Schema applied before it resolves. */
export async function startTestService(
  databaseUrl: string,
  env: Record<string, string> = {},
  logger: Logger = silentLogger,
): Promise<Service> {
  const service = startService(testConfig(databaseUrl, env), logger);
  await service.schemaApplied;
  return service;
}

/** JSON request init for `app.request`. */
export const jsonBody = (method: string, body: unknown): RequestInit => ({
  method,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});
