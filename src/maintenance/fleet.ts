import { hostname } from "node:os";
import type { Etcd3, Lease } from "etcd3";
import type { DbHolder } from "../db/db-holder.ts";
import type { Logger } from "../logger.ts";
import { describeError } from "../logger.ts";
import { RetryBackoff } from "../util/backoff.ts";
import { sleep } from "../util/sleep.ts";
import { VERSION } from "../version.ts";
import type { Gate } from "./gate.ts";
import type { MaintenanceManager } from "./manager.ts";
import type { MaintenanceStatus } from "./status.ts";
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
  /**
   * As pg_stat_activity saw them when this instance was last settled (serving or in maintenance):
   * not counted during a transition, when the pool is being swapped; null when the database did not answer.
   */
  open_connections: number | null;
  version: string;
  updated_at: string;
}

/** Where an instance's acknowledgement lives. */
export const instancesPrefix = (key: string) => `${key}/instances/`;

/** Seconds an acknowledgement outlives its instance. */
const ACK_LEASE_SECONDS = 10;
/** Waits between failed writes of the acknowledgement: 0.2 s, doubling, up to 2 s. */
const RETRY_BACKOFF = { firstMs: 200, maxMs: 2000 };

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
    private readonly client: Pick<Etcd3, "lease">,
    private readonly path: string,
    private readonly snapshot: () => Promise<Acknowledgement>,
    private readonly logger: Logger,
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
    const backoff = new RetryBackoff(RETRY_BACKOFF);
    while (this.dirty && !this.stopping.signal.aborted) {
      this.dirty = false;
      try {
        const ack = await this.snapshot();
        await this.currentLease().put(this.path).value(JSON.stringify(ack));
        backoff.succeeded();
      } catch (error) {
        this.dirty = true;
        const delayMs = backoff.failed();
        if (backoff.failures === 1)
          this.logger.warn("fleet.publish_failed", { path: this.path, ...describeError(error) });
        await sleep(delayMs, this.stopping.signal);
      }
    }
  }

  private currentLease(): Lease {
    if (this.lease && !this.lease.revoked()) return this.lease;
    const lease = this.client.lease(ACK_LEASE_SECONDS);
    lease.on("lost", (error) => {
      this.logger.warn("fleet.lease_lost", describeError(error));
      if (this.lease === lease) this.lease = undefined;
      this.publish();
    });
    this.lease = lease;
    return lease;
  }
}

/** What an acknowledgement tells of this instance, read from the parts that know it. */
export interface AcknowledgedParts {
  maintenance: Pick<MaintenanceManager, "observedThrough" | "stableAndDrained" | "subscribe"> & {
    status(): Pick<MaintenanceStatus, "mode" | "phase" | "since">;
  };
  gate: Pick<Gate, "inFlight">;
  db: Pick<DbHolder, "shape" | "openConnections">;
}

/** Where and as whom this instance acknowledges. */
export interface AcknowledgingOptions {
  /** The service's own key: the acknowledgement goes under `<key>/instances/`. */
  key: string;
  /** The fleet key, if followed. */
  globalKey: string | null;
  /** This process's id; the instance is named `<host>-<id>`. */
  instanceId: string;
}

/**
 * Publishes this instance's acknowledgement under `<key>/instances/<host>-<id>`
 * now and after every reading and transition step, until the returned
 * registration is closed. Connections are counted (a pg_stat_activity query)
 * only while settled: during a transition the pool is being swapped, and the
 * acknowledgement must not wait on a database that is draining.
 */
export function startAcknowledging(
  client: Pick<Etcd3, "lease">,
  parts: AcknowledgedParts,
  { key, globalKey, instanceId }: AcknowledgingOptions,
  logger: Logger,
): FleetRegistration {
  const { maintenance, gate, db } = parts;
  const instance = `${hostname().slice(0, 40)}-${instanceId}`;
  let openConnections: number | null = null;
  const snapshot = async (): Promise<Acknowledgement> => {
    const status = maintenance.status();
    const state = {
      instance,
      mode: status.mode,
      phase: status.phase,
      revision: maintenance.observedThrough(key),
      global_revision: globalKey === null ? null : maintenance.observedThrough(globalKey),
      since: status.since?.toISOString() ?? null,
      drained: maintenance.stableAndDrained,
      in_flight: gate.inFlight,
      pool_max: db.shape.max,
    };
    if (status.phase === "serving" || status.phase === "maintenance") {
      openConnections = await db.openConnections().catch(() => null);
    }
    return { ...state, open_connections: openConnections, version: VERSION, updated_at: new Date().toISOString() };
  };
  const registration = new FleetRegistration(client, `${instancesPrefix(key)}${instance}`, snapshot, logger);
  maintenance.subscribe(() => registration.publish());
  registration.publish();
  return registration;
}
