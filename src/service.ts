import { hostname } from "node:os";
import type { Etcd3 } from "etcd3";
import { createApp } from "./app.ts";
import type { Config, ServerConfig } from "./config.ts";
import { DbHolder } from "./db/db-holder.ts";
import { migrateInBackground } from "./db/migrate.ts";
import type { Logger } from "./logger.ts";
import { createEtcdClient } from "./maintenance/etcd-client.ts";
import { EtcdSource } from "./maintenance/etcd-source.ts";
import { type Acknowledgement, FleetRegistration, instancesPrefix } from "./maintenance/fleet.ts";
import { Gate } from "./maintenance/gate.ts";
import { type KeySource, MaintenanceManager } from "./maintenance/manager.ts";
import { MemorySource } from "./maintenance/memory-source.ts";
import { EtcdWriter, type MaintenanceWriter } from "./maintenance/writer.ts";
import { createMetrics } from "./metrics/metrics.ts";
import { Deadline } from "./util/deadline.ts";
import { VERSION } from "./version.ts";

/** A running service without its HTTP listener: the app, and how to stop it. */
export interface Service {
  app: ReturnType<typeof createApp>;
  db: DbHolder;
  gate: Gate;
  maintenance: MaintenanceManager;
  /** Resolves once the schema is migrated (or the service is stopping). */
  schemaApplied: Promise<void>;
  /**
   * Stops following maintenance and ends the pool, every step by `deadline`
   * (default: SHUTDOWN_TIMEOUT_MS from now). Queries still running at the deadline
   * are cut, so their requests get an answer (503). Call after the listener stopped.
   */
  stop(deadline?: Deadline): Promise<void>;
}

/** Where maintenance state is read from, and how the admin API writes it. */
interface MaintenanceBackend {
  /** The service's own key first, then the fleet key. */
  keys: KeySource[];
  /** Writes the service's own key. */
  writer: MaintenanceWriter;
  /** The etcd client, where the fleet acknowledgements go; null for the in-process key. */
  etcd: Etcd3 | null;
}

/** A short random id distinguishing this process's connections and logs. */
function newInstanceId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The maintenance backend `config` names: etcd, or an in-process key. */
function createBackend(config: Config, logger: Logger): MaintenanceBackend {
  const { key, globalKey } = config.maintenance;
  if (config.maintenanceSource === "memory") {
    // One process, no fleet: the in-process key stands alone.
    const memory = new MemorySource();
    return { keys: [{ key, source: memory }], writer: memory, etcd: null };
  }
  const client = createEtcdClient(config.etcd);
  const keys = [key, ...(globalKey === null ? [] : [globalKey])].map((k) => ({
    key: k,
    source: new EtcdSource(client, k, logger),
  }));
  return { keys, writer: new EtcdWriter(client, key), etcd: client };
}

/**
 * Publishes this instance's acknowledgement under `<key>/instances/<host>-<id>`
 * now and after every reading and transition step.
 */
function acknowledge(
  client: Etcd3,
  config: ServerConfig,
  instanceId: string,
  parts: { db: DbHolder; gate: Gate; maintenance: MaintenanceManager },
  logger: Logger,
): FleetRegistration {
  const { db, gate, maintenance } = parts;
  const { key, globalKey } = config.maintenance;
  const instance = `${hostname().slice(0, 40)}-${instanceId}`;
  const snapshot = async (): Promise<Acknowledgement> => {
    const status = maintenance.status();
    return {
      instance,
      mode: status.mode,
      phase: status.phase,
      revision: maintenance.observedThrough(key),
      global_revision: globalKey === null ? null : maintenance.observedThrough(globalKey),
      since: status.since?.toISOString() ?? null,
      drained: maintenance.stableAndDrained,
      in_flight: gate.inFlight,
      pool_max: db.shape.max,
      open_connections: await db.openConnections().catch(() => null),
      version: VERSION,
      updated_at: new Date().toISOString(),
    };
  };
  const registration = new FleetRegistration(client, `${instancesPrefix(key)}${instance}`, snapshot, logger);
  maintenance.subscribe(() => registration.publish());
  registration.publish();
  return registration;
}

/**
 * Builds every part of the service from `config` and starts its background
 * work (migrations, following the maintenance key). Runtime-neutral: the entry
 * adds the listener and signals.
 */
export function startService(config: ServerConfig, logger: Logger): Service {
  const stopping = new AbortController();
  const instanceId = newInstanceId();
  const db = new DbHolder(config.database, {
    max: config.db.poolMax,
    connectTimeoutMs: config.db.connectTimeoutMs,
    idleTimeoutSeconds: config.db.idleTimeoutSeconds,
    queryTimeoutMs: config.db.queryTimeoutMs,
    instanceId,
    logger,
  });
  const schema = migrateInBackground(db, logger, stopping.signal);
  const gate = new Gate(config.maintenance.bypassToken);
  const backend = createBackend(config, logger);
  const maintenance = new MaintenanceManager(
    {
      poolMax: config.db.poolMax,
      maintenancePoolMax: config.db.maintenancePoolMax,
      drainTimeoutMs: config.maintenance.drainTimeoutMs,
      retryAfterSeconds: config.maintenance.retryAfterSeconds,
      startPolicy: config.maintenance.startPolicy,
    },
    gate,
    db,
    backend.keys,
    logger,
  );
  const fleet = backend.etcd && acknowledge(backend.etcd, config, instanceId, { db, gate, maintenance }, logger);
  maintenance.start();
  const admin =
    config.adminToken === null
      ? null
      : { token: config.adminToken, key: config.maintenance.key, writer: backend.writer, manager: maintenance };
  const metrics = createMetrics({ db, gate, maintenance });
  const app = createApp({
    db,
    schema: schema.status,
    gate,
    maintenance,
    admin,
    metrics,
    logger,
    startedAt: new Date(),
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
      await deadline.race(schema.done, undefined);
      await db.close(deadline.remaining());
    },
  };
}
