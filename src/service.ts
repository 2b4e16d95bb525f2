import { createApp } from "./app.ts";
import type { Config } from "./config.ts";
import { DbHolder } from "./db/db-holder.ts";
import { migrateInBackground } from "./db/migrate.ts";
import type { Logger } from "./logger.ts";
import { Gate } from "./maintenance/gate.ts";
import type { MaintenanceStatusProvider } from "./maintenance/status.ts";

/** A running service without its HTTP listener: the app, and how to stop it. */
export interface Service {
  app: ReturnType<typeof createApp>;
  db: DbHolder;
  gate: Gate;
  /** Resolves once the schema is migrated (or the service is stopping). */
  schemaApplied: Promise<void>;
  /** Stops background work and ends the pool; call after the listener stopped. */
  stop(): Promise<void>;
}

/** A short random id distinguishing this process's connections and logs. */
export function newInstanceId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Builds every part of the service from `config` and starts its background
 * work (migrations). Runtime-neutral: the entry adds the listener and signals.
 */
export function startService(config: Config, logger: Logger, instanceId = newInstanceId()): Service {
  const stopping = new AbortController();
  const db = new DbHolder(config.database, {
    max: config.db.poolMax,
    connectTimeoutMs: config.db.connectTimeoutMs,
    idleTimeoutSeconds: config.db.idleTimeoutSeconds,
    instanceId,
    logger,
  });
  const schema = migrateInBackground(db, logger, stopping.signal);
  const gate = new Gate();
  const maintenance: MaintenanceStatusProvider = {
    status: () => ({
      enabled: gate.closed,
      phase: "serving",
      reason: null,
      since: null,
      retry_after_seconds: null,
      key: config.maintenance.key,
      revision: null,
      source: { kind: "etcd", state: "connecting", stale_seconds: null, last_error: null },
      rejected: null,
    }),
  };
  const app = createApp({ db, schema: schema.status, gate, maintenance, logger, startedAt: new Date() });
  return {
    app,
    db,
    gate,
    schemaApplied: schema.done,
    async stop() {
      stopping.abort();
      await schema.done;
      await db.close(config.shutdownTimeoutMs);
    },
  };
}
