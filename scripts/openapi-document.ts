/**
 * Builds the app with inert dependencies and returns its OpenAPI document.
 * Shared by `scripts/generate-openapi.ts` (writes openapi/openapi.json) and
 * the test that fails when the committed file drifts from what the app serves.
 *
 * Inert: the DbHolder's postgres.js client is lazy and nothing here queries,
 * so no connection is opened; no timers, no etcd. The maintenance manager is
 * never started, and the admin API is mounted so the document includes it.
 */
import { fileURLToPath } from "node:url";
import { createApp, OPENAPI_INFO } from "../src/app.ts";
import { DEFAULT_DATABASE_URL, loadConfig } from "../src/config.ts";
import { DbHolder } from "../src/db/db-holder.ts";
import { parseDatabaseUrl } from "../src/db/dsn.ts";
import { silentLogger } from "../src/logger.ts";
import { Gate } from "../src/maintenance/gate.ts";
import { MaintenanceManager } from "../src/maintenance/manager.ts";
import { MemorySource } from "../src/maintenance/memory-source.ts";
import { createMetrics } from "../src/metrics/metrics.ts";

/** Absolute path of the committed document. */
export const OPENAPI_DOCUMENT_PATH = fileURLToPath(new URL("../openapi/openapi.json", import.meta.url));

/** The app built with dependencies that do no I/O unless a route queries the database. */
export function createInertApp() {
  const db = new DbHolder(parseDatabaseUrl(DEFAULT_DATABASE_URL), {
    max: 1,
    connectTimeoutMs: 1000,
    idleTimeoutSeconds: 1,
    queryTimeoutMs: 1000,
    instanceId: "openapi",
    logger: silentLogger,
  });
  const config = loadConfig({ ETCD_ENDPOINTS: "memory" });
  const gate = new Gate();
  const memory = new MemorySource();
  // Never started: it reports "off" and touches nothing.
  const maintenance = new MaintenanceManager(
    {
      poolMax: 1,
      maintenancePoolMax: 1,
      drainTimeoutMs: 0,
      retryAfterSeconds: config.maintenance.retryAfterSeconds,
      holdMs: config.maintenance.hold.defaultMs,
      startPolicy: "open",
    },
    gate,
    db,
    [{ key: config.maintenance.key, source: memory }],
    silentLogger,
  );
  return createApp({
    db,
    schema: { ready: true },
    gate,
    maintenance,
    // Present so the document describes the admin API too.
    admin: { token: "openapi-document", key: config.maintenance.key, writer: memory, manager: maintenance },
    metrics: createMetrics({ db, gate, maintenance }),
    logger: silentLogger,
    startedAt: new Date(0),
    idempotencyTtlSeconds: config.idempotencyTtlSeconds,
  });
}

/** The OpenAPI 3.1 document the app serves at `/openapi.json`. */
export function buildOpenApiDocument() {
  return createInertApp().getOpenAPI31Document(OPENAPI_INFO);
}

/** The document as committed: two-space JSON with a trailing newline. */
export function serializeOpenApiDocument(document: unknown): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}
