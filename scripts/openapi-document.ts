/**
 * Builds the app with inert dependencies and returns its OpenAPI document.
 * Shared by `scripts/generate-openapi.ts` (writes openapi/openapi.json) and
 * the test that fails when the committed file drifts from what the app serves.
 *
 * Inert: the DbHolder's postgres.js client is lazy and nothing here queries,
 * so no connection is opened; no timers, no etcd.
 */
import { fileURLToPath } from "node:url";
import { createApp, OPENAPI_INFO } from "../src/app.ts";
import { DEFAULT_DATABASE_URL } from "../src/config.ts";
import { DbHolder } from "../src/db/db-holder.ts";
import { parseDatabaseUrl } from "../src/db/dsn.ts";
import { silentLogger } from "../src/logger.ts";
import { Gate } from "../src/maintenance/gate.ts";
import type { MaintenanceStatusProvider } from "../src/maintenance/status.ts";

/** Absolute path of the committed document. */
export const OPENAPI_DOCUMENT_PATH = fileURLToPath(new URL("../openapi/openapi.json", import.meta.url));

/** Maintenance as the inert app reports it: off, from an in-memory source. */
const maintenanceOff: MaintenanceStatusProvider = {
  status: () => ({
    enabled: false,
    phase: "serving",
    reason: null,
    since: null,
    retry_after_seconds: null,
    key: "/maintenance/database-service",
    revision: null,
    source: { kind: "memory", status: "connected", last_confirmed_at: null, stale_seconds: null, last_error: null },
    rejected: null,
  }),
};

/** The app built with dependencies that do no I/O unless a route queries the database. */
export function createInertApp() {
  const db = new DbHolder(parseDatabaseUrl(DEFAULT_DATABASE_URL), {
    max: 1,
    connectTimeoutMs: 1000,
    idleTimeoutSeconds: 1,
    instanceId: "openapi",
    logger: silentLogger,
  });
  return createApp({
    db,
    schema: { ready: true },
    gate: new Gate(),
    maintenance: maintenanceOff,
    logger: silentLogger,
    startedAt: new Date(0),
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
