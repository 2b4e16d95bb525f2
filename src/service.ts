import { createApp } from "./app.ts";
import type { ServerConfig } from "./config.ts";
import { DbHolder } from "./db/db-holder.ts";
import { migrateInBackground } from "./db/migrate.ts";
import { startKeySweeper } from "./idempotency/key-sweeper.ts";
import type { Logger } from "./logger.ts";
import { createMaintenanceBackend } from "./maintenance/backend.ts";
import { Gate } from "./maintenance/gate.ts";
import { MaintenanceManager } from "./maintenance/manager.ts";
import { createMetrics } from "./metrics/metrics.ts";
import { systemClock } from "./util/clock.ts";
import { Deadline } from "./util/deadline.ts";

/** A running service without its HTTP listener: the app, and how to stop it. */
export interface Service {
  app: ReturnType<typeof createApp>;
  db: DbHolder;
  gate: Gate;
  maintenance: MaintenanceManager;
  /** Resolves once the schema is migrated (or the service is stopping). */
  schemaApplied: Promise<void>;
  /**
   * Stops following maintenance (the acknowledgement, the keys, then the etcd
   * client they used) and ends the pool, every step by `deadline` (default:
   * SHUTDOWN_TIMEOUT_MS from now). Queries still running at the deadline are
   * cut, so their requests get an answer (503). Call after the listener stopped.
   */
  stop(deadline?: Deadline): Promise<void>;
}

/** A short random id distinguishing this process's connections and logs. */
function newInstanceId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Builds every part of the service from `config` and starts its background
 * work (migrations, following the maintenance key). Runtime-neutral: the entry
 * adds the listener and signals.
 */
export function startService(config: ServerConfig, logger: Logger): Service {
  const stopping = new AbortController();
  const instanceId = newInstanceId();
  const db = new DbHolder(config.database.target, {
    max: config.db.poolMax,
    connectTimeoutMs: config.db.connectTimeoutMs,
    idleTimeoutSeconds: config.db.idleTimeoutSeconds,
    queryTimeoutMs: config.db.queryTimeoutMs,
    pooler: config.db.pooler,
    instanceId,
    logger,
  });
  const schema = migrateInBackground(db, logger, stopping.signal);
  const { hold } = config.maintenance;
  // Released requests run at most as many at once as the restored pool has connections.
  const gate = new Gate(config.maintenance.bypassToken, systemClock, {
    maxHeld: hold.maxHeld,
    budgetMs: hold.budgetMs,
    releaseConcurrency: config.db.poolMax,
    logger,
  });
  const backend = createMaintenanceBackend(config, logger);
  const maintenance = new MaintenanceManager(
    {
      poolMax: config.db.poolMax,
      maintenancePoolMax: config.db.maintenancePoolMax,
      drainTimeoutMs: config.maintenance.drainTimeoutMs,
      retryAfterSeconds: config.maintenance.retryAfterSeconds,
      holdMs: hold.defaultMs,
      startPolicy: config.maintenance.startPolicy,
    },
    gate,
    db,
    backend.keys,
    logger,
  );
  const fleet = backend.acknowledge({ db, gate, maintenance }, instanceId);
  maintenance.start();
  const admin =
    config.adminToken === null
      ? null
      : { token: config.adminToken, key: config.maintenance.key, writer: backend.writer, manager: maintenance };
  const sweeper = startKeySweeper({
    db,
    schema: schema.status,
    gate,
    logger,
    ttlSeconds: config.idempotencyTtlSeconds,
  });
  const metrics = createMetrics({ db, gate, maintenance, fleet });
  const app = createApp({
    db,
    schema: schema.status,
    gate,
    maintenance,
    admin,
    metrics,
    logger,
    startedAt: new Date(),
    idempotencyTtlSeconds: config.idempotencyTtlSeconds,
  });
  return {
    app,
    db,
    gate,
    maintenance,
    schemaApplied: schema.done,
    async stop(deadline = Deadline.after(config.shutdownTimeoutMs)) {
      stopping.abort();
      // Each step gets only what is left; one that overruns goes on in the background.
      await deadline.race(Promise.resolve(fleet?.close()), undefined);
      await deadline.race(maintenance.close(), undefined);
      // The etcd client last: the acknowledgement and the sources (closed by the manager) used it.
      backend.close();
      await deadline.race(schema.done, undefined);
      await deadline.race(sweeper.stop(), undefined);
      await db.close(deadline.remaining());
    },
  };
}
