import type { Etcd3, Lease } from "etcd3";
import type { Logger } from "../logger.ts";
import { describeError } from "../logger.ts";
import { sleep } from "../util/sleep.ts";
import type { Mode } from "./value.ts";

/**
 * What one instance reports under `<key>/instances/<instance-id>`: how far it
 * has read the keys and whether it has finished acting on them. `maint on
 * --wait` reads these to tell when the fleet has drained.
 */
export interface Acknowledgement {
  instance: string;
  mode: Mode;
  phase: "serving" | "entering" | "maintenance" | "leaving";
  /** The service key read through this revision. */
  revision: number;
  /** The fleet key read through this revision (null when there is no fleet key). */
  global_revision: number | null;
  /** When maintenance began on this instance (ISO 8601), while on. */
  since: string | null;
  /** Settled, with every admitted request and old query finished in time. */
  drained: boolean;
  in_flight: number;
  pool_max: number;
  /** As pg_stat_activity sees them; null when the database does not answer. */
  open_connections: number | null;
  version: string;
  updated_at: string;
}

/** Where an instance's acknowledgement lives. */
export const instancesPrefix = (key: string) => `${key}/instances/`;

/** Seconds an acknowledgement outlives its instance. */
export const ACK_LEASE_SECONDS = 10;

/**
 * Keeps this instance's acknowledgement in etcd under a short lease (kept
 * alive, granted again when lost), rewritten whenever `publish()` is called.
 * A dead instance's entry disappears with its lease; a clean stop revokes it.
 */
export class FleetRegistration {
  private lease: Lease | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private readonly stopping = new AbortController();

  constructor(
    private readonly client: Etcd3,
    private readonly path: string,
    private readonly snapshot: () => Promise<Acknowledgement>,
    private readonly logger: Logger,
    private readonly leaseSeconds = ACK_LEASE_SECONDS,
  ) {}

  /** Writes the current acknowledgement soon; calls made while a write runs coalesce into one more. */
  publish(): void {
    if (this.stopping.signal.aborted) return;
    this.dirty = true;
    this.writing ??= this.flush().finally(() => {
      this.writing = undefined;
    });
  }

  /** Whether the entry in etcd is behind this instance's state: a write is under way or being retried. */
  get pending(): boolean {
    return this.writing !== undefined;
  }

  /** Revokes the lease, removing the entry at once. */
  async close(): Promise<void> {
    this.stopping.abort();
    await this.writing;
    await this.lease?.revoke().catch(() => {});
  }

  private async flush(): Promise<void> {
    for (let failures = 0; this.dirty && !this.stopping.signal.aborted; ) {
      this.dirty = false;
      try {
        const ack = await this.snapshot();
        await this.currentLease().put(this.path).value(JSON.stringify(ack));
        failures = 0;
      } catch (error) {
        failures++;
        this.dirty = true;
        if (failures === 1) this.logger.warn("fleet.publish_failed", { path: this.path, ...describeError(error) });
        await sleep(Math.min(2000, 100 * 2 ** failures), this.stopping.signal);
      }
    }
  }

  private currentLease(): Lease {
    if (this.lease && !this.lease.revoked()) return this.lease;
    const lease = this.client.lease(this.leaseSeconds);
    lease.on("lost", (error) => {
      this.logger.warn("fleet.lease_lost", describeError(error));
      if (this.lease === lease) this.lease = undefined;
      this.publish();
    });
    this.lease = lease;
    return lease;
  }
}
