import { createApp } from "./app.ts";
import type { Config } from "./config.ts";
import { DbHolder } from "./db/db-holder.ts";
import { migrateInBackground } from "./db/migrate.ts";
import type { Logger } from "./logger.ts";
import { createEtcdClient } from "./maintenance/etcd-client.ts";
import { EtcdSource } from "./maintenance/etcd-source.ts";
import { Gate } from "./maintenance/gate.ts";
import { MaintenanceManager } from "./maintenance/manager.ts";
import type { MaintenanceSource } from "./maintenance/source.ts";

/** A running service without its HTTP listener: the app, and how to stop it. */
export interface Service {
  app: ReturnType<typeof createApp>;
  db: DbHolder;
  gate: Gate;
  maintenance: MaintenanceManager;
  /** Resolves once the schema is migrated (or the service is stopping). */
  schemaApplied: Promise<void>;
  /** Stops following maintenance and ends the pool; call after the listener stopped. */
  stop(): Promise<void>;
}

/** Replaceable parts, for tests. */
export interface ServiceOptions {
  instanceId?: string;
  /** Where maintenance state comes from; by default the configured etcd. */
  source?: MaintenanceSource;
}

/** A short random id distinguishing this process's connections and logs. */
export function newInstanceId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The maintenance source `config` names. */
export function createSource(config: Config, logger: Logger): MaintenanceSource {
  return new EtcdSource(createEtcdClient(config.etcd), config.maintenance.key, logger);
}

/**
 * Builds every part of the service from `config` and starts its background
 * work (migrations, following the maintenance key). Runtime-neutral: the entry
 * adds the listener and signals.
 */
export function startService(config: Config, logger: Logger, options: ServiceOptions = {}): Service {
  const stopping = new AbortController();
  const db = new DbHolder(config.database, {
    max: config.db.poolMax,
    connectTimeoutMs: config.db.connectTimeoutMs,
    idleTimeoutSeconds: config.db.idleTimeoutSeconds,
    instanceId: options.instanceId ?? newInstanceId(),
    logger,
  });
  const schema = migrateInBackground(db, logger, stopping.signal);
  const gate = new Gate();
  const maintenance = new MaintenanceManager(
    {
      key: config.maintenance.key,
      poolMax: config.db.poolMax,
      maintenancePoolMax: config.db.maintenancePoolMax,
      drainTimeoutMs: config.maintenance.drainTimeoutMs,
      retryAfterSeconds: config.maintenance.retryAfterSeconds,
      startPolicy: config.maintenance.startPolicy,
    },
    gate,
    db,
    options.source ?? createSource(config, logger),
    logger,
  );
  maintenance.start();
  const app = createApp({ db, schema: schema.status, gate, maintenance, logger, startedAt: new Date() });
  return {
    app,
    db,
    gate,
    maintenance,
    schemaApplied: schema.done,
    async stop() {
      stopping.abort();
      await maintenance.close();
      await schema.done;
      await db.close(config.shutdownTimeoutMs);
    },
  };
}
