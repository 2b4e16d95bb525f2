import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { createEtcdClient } from "./etcd-client.ts";
import { EtcdSource } from "./etcd-source.ts";
import {
  type AcknowledgedParts,
  type AcknowledgingOptions,
  type FleetRegistration,
  startAcknowledging,
} from "./fleet.ts";
import type { KeySource } from "./manager.ts";
import { MemorySource } from "./memory-source.ts";
import { EtcdWriter, type MaintenanceWriter } from "./writer.ts";

/**
 * Where maintenance state is read from and written to: etcd, or an in-process key.
 * It owns the etcd client it creates; everything using the client gets it from here
 * and stops before {@link MaintenanceBackend.close}.
 */
export interface MaintenanceBackend {
  /** The service's own key first, then the fleet key; the manager starts and closes their sources. */
  keys: KeySource[];
  /** Writes the service's own key (the admin API). */
  writer: MaintenanceWriter;
  /**
   * Starts publishing this instance's acknowledgement for `maint --wait`; null for the
   * in-process key, which has no fleet. Close the registration before the backend.
   */
  acknowledge(parts: AcknowledgedParts, instanceId: string): FleetRegistration | null;
  /** Closes the etcd client: call once the sources and the acknowledgement have stopped. */
  close(): void;
}

/** The maintenance backend `config` names: etcd, or an in-process key. */
export function createMaintenanceBackend(config: Config, logger: Logger): MaintenanceBackend {
  const { key, globalKey } = config.maintenance;
  if (config.maintenanceSource.kind === "memory") {
    // One process, no fleet: the in-process key stands alone.
    const memory = new MemorySource();
    return { keys: [{ key, source: memory }], writer: memory, acknowledge: () => null, close: () => {} };
  }
  const client = createEtcdClient(config.maintenanceSource);
  const keys = [key, ...(globalKey === null ? [] : [globalKey])].map((k) => ({
    key: k,
    source: new EtcdSource(client, k, logger),
  }));
  const fleet = (instanceId: string): AcknowledgingOptions => ({ key, globalKey, instanceId });
  return {
    keys,
    writer: new EtcdWriter(client, key),
    acknowledge: (parts, instanceId) => startAcknowledging(client, parts, fleet(instanceId), logger),
    close: () => client.close(),
  };
}
