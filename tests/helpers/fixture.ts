/**
 * The preamble most maintenance test files share: a real etcd and a fresh
 * database, and often an in-process service following a key on them, started
 * before the file's tests and stopped after them.
 */
import { type Logger, silentLogger } from "../../src/logger.ts";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "./etcd.ts";
import { put, startMaintenanceService } from "./maintenance.ts";
import { createTestDatabase, type TestDatabase } from "./postgres.ts";
import { waitFor } from "./wait.ts";

/** A test file's etcd and database. */
export interface EtcdAndDatabase {
  etcd: TestEtcd;
  database: TestDatabase;
  /** Stops etcd and drops the database. */
  stop(): Promise<void>;
}

/** Starts etcd and creates a database named after `prefix`, together; on a failure, removes what did start. */
export async function startEtcdAndDatabase(prefix: string): Promise<EtcdAndDatabase> {
  const [etcd, database] = await Promise.allSettled([TestEtcd.start(), createTestDatabase(prefix)]);
  if (etcd.status === "rejected" || database.status === "rejected") {
    await Promise.all([
      etcd.status === "fulfilled" && etcd.value.stop(),
      database.status === "fulfilled" && database.value.drop(),
    ]);
    throw etcd.status === "rejected" ? etcd.reason : (database as PromiseRejectedResult).reason;
  }
  return {
    etcd: etcd.value,
    database: database.value,
    stop: async () => {
      await Promise.all([etcd.value.stop(), database.value.drop()]);
    },
  };
}

/** What {@link startFollowingService} starts. */
export interface FollowingServiceOptions {
  /** Names the database. */
  prefix: string;
  /** The service's maintenance key (MAINTENANCE_KEY). */
  key: string;
  /** Written to `key` before the service starts, when given. */
  initial?: string;
  /** More of the service's environment. */
  env?: Record<string, string>;
  logger?: Logger;
}

/** A test file's etcd and database, and an in-process service following a key on them. */
export interface FollowingService extends EtcdAndDatabase {
  service: Service;
}

/**
 * Starts etcd and a database, then a service following `key` on them, and
 * resolves once the schema is applied and the service has read every key it
 * follows. `stop()` stops the service first.
 */
export async function startFollowingService(options: FollowingServiceOptions): Promise<FollowingService> {
  const base = await startEtcdAndDatabase(options.prefix);
  let service: Service | undefined;
  try {
    if (options.initial !== undefined) await put(base.etcd, options.key, options.initial);
    service = await startMaintenanceService(
      base.database.url,
      base.etcd.endpoint,
      options.key,
      options.env,
      options.logger ?? silentLogger,
    );
    const started = service;
    await waitFor("the first reading of every key", () =>
      started.maintenance.status().keys.every((key) => key.mode !== null),
    );
  } catch (error) {
    await service?.stop();
    await base.stop();
    throw error;
  }
  const ready = service;
  return {
    ...base,
    service: ready,
    stop: async () => {
      await ready.stop();
      await base.stop();
    },
  };
}
