import type { MaintenanceSource, Observation } from "./source.ts";
import type { SourceStatus } from "./status.ts";
import type { MaintenanceWriter, StoredValue } from "./writer.ts";

/**
 * An in-process maintenance key (`ETCD_ENDPOINTS=memory`), for development
 * without etcd: written through the admin API, observed at once. It lives as
 * long as the process; every instance has its own.
 */
export class MemorySource implements MaintenanceSource, MaintenanceWriter {
  private stored: StoredValue = { value: null, revision: 1 };
  private listener: ((observation: Observation) => void) | undefined;
  private readonly startedAt = new Date();

  start(listener: (observation: Observation) => void): void {
    this.listener = listener;
    listener({ ...this.stored });
  }

  status(): SourceStatus {
    return {
      kind: "memory",
      status: "connected",
      lastConfirmedAt: this.startedAt,
      staleSeconds: null,
      lastError: null,
    };
  }

  async close(): Promise<void> {
    this.listener = undefined;
  }

  async read(): Promise<StoredValue> {
    return { ...this.stored };
  }

  async write(value: string): Promise<number> {
    return this.store(value);
  }

  async clear(): Promise<number> {
    return this.store(null);
  }

  private store(value: string | null): number {
    this.stored = { value, revision: this.stored.revision + 1 };
    this.listener?.({ ...this.stored });
    return this.stored.revision;
  }
}
