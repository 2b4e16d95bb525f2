import type { DbHolder } from "../db/db-holder.ts";
import type { Logger } from "../logger.ts";
import { sleep } from "../util/sleep.ts";
import type { Gate } from "./gate.ts";
import type { MaintenanceSource, Observation } from "./source.ts";
import type { MaintenanceStatus, MaintenanceStatusProvider, RejectedValue } from "./status.ts";
import { type MaintenanceRequest, parseMaintenanceValue } from "./value.ts";

/** Settings of the {@link MaintenanceManager}. */
export interface ManagerSettings {
  key: string;
  poolMax: number;
  maintenancePoolMax: number;
  drainTimeoutMs: number;
  retryAfterSeconds: number;
  /** `closed`: start in maintenance until the source first answers. */
  startPolicy: "open" | "closed";
}

/** The pool part of the manager's participants; a DbHolder in the service. */
export type PoolResizer = Pick<DbHolder, "reconnect" | "max">;

/** Status, plus a way to wait until a written revision has been seen. */
export interface MaintenanceObserver extends MaintenanceStatusProvider {
  observed(revision: number, timeoutMs: number): Promise<boolean>;
}

/** The state the manager has brought the participants to. */
interface Applied {
  enabled: boolean;
  reason: string | null;
  retryAfterSeconds: number;
}

const DEFAULT_DETAIL = "The service is in maintenance. Please retry later.";
const START_CLOSED_REASON = "Maintenance state is not known yet: waiting for etcd.";
const LONGEST_LOGGED_VALUE = 200;

/**
 * The one writer of maintenance state. It turns readings of the key into
 * transitions of the participants, one transition at a time:
 * - entering: close the gate (new requests get 503 at once), wait for admitted
 *   requests to finish (up to the drain timeout), then reconnect the pool with
 *   the maintenance `max`;
 * - leaving: reconnect the pool with the normal `max`, then open the gate.
 * Readings that arrive during a transition only update the desired state; the
 * loop then moves to the latest one, so bursts of toggles coalesce and the
 * final value wins.
 */
export class MaintenanceManager implements MaintenanceObserver {
  private desired: MaintenanceRequest = { enabled: false };
  private applied: Applied;
  private phase: MaintenanceStatus["phase"] = "serving";
  private since: Date | null = null;
  private revision: number | null = null;
  private rejected: RejectedValue | null = null;
  /** Revision of the latest reading, understood or not. */
  private lastObserved: number | null = null;
  private loop: Promise<void> | undefined;
  /** Aborted when the desired state changes or the manager closes: cuts a drain short. */
  private interrupt = new AbortController();
  private closed = false;

  constructor(
    private readonly settings: ManagerSettings,
    private readonly gate: Gate,
    private readonly pool: PoolResizer,
    private readonly source: MaintenanceSource,
    private readonly logger: Logger,
  ) {
    this.applied = { enabled: false, reason: null, retryAfterSeconds: settings.retryAfterSeconds };
  }

  /** Starts following the source (closing the gate first under the `closed` start policy). */
  start(): void {
    if (this.settings.startPolicy === "closed") {
      this.desired = { enabled: true, reason: START_CLOSED_REASON, retryAfterSeconds: null };
      this.closeGate(START_CLOSED_REASON, this.settings.retryAfterSeconds);
      this.applied = { enabled: true, reason: START_CLOSED_REASON, retryAfterSeconds: this.settings.retryAfterSeconds };
      this.phase = "maintenance";
      this.since = new Date();
    }
    this.source.start((observation) => this.observe(observation));
  }

  /** Waits (up to `timeoutMs`) until a reading at or after `revision` was taken; true if it was. */
  async observed(revision: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while ((this.lastObserved ?? -1) < revision) {
      if (Date.now() >= deadline) return false;
      await sleep(5);
    }
    return true;
  }

  /** Resolves when no transition is running or pending. */
  async settled(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /** Stops following the source and waits for a running transition to end (its drain is cut short). */
  async close(): Promise<void> {
    this.closed = true;
    this.interrupt.abort();
    await this.source.close();
    await this.settled();
  }

  status(): MaintenanceStatus {
    return {
      enabled: this.gate.closed,
      phase: this.phase,
      reason: this.gate.closed ? this.applied.reason : null,
      since: this.gate.closed && this.since ? this.since.toISOString() : null,
      retry_after_seconds: this.gate.closed ? this.applied.retryAfterSeconds : null,
      key: this.settings.key,
      revision: this.revision === null ? null : String(this.revision),
      source: this.source.status(),
      rejected: this.rejected,
    };
  }

  /** Takes one reading of the key. */
  private observe({ value, revision }: Observation): void {
    this.lastObserved = revision;
    const parsed = parseMaintenanceValue(value);
    if (!parsed.ok) {
      const shown = value === null ? "" : value.slice(0, LONGEST_LOGGED_VALUE);
      this.rejected = { value: shown, revision: String(revision), at: new Date().toISOString() };
      this.logger.warn("maintenance.value_rejected", {
        key: this.settings.key,
        revision,
        value: shown,
        problem: parsed.problem,
        kept_enabled: this.desired.enabled,
      });
      return;
    }
    this.rejected = null;
    this.revision = revision;
    if (sameRequest(parsed.request, this.desired)) return;
    this.desired = parsed.request;
    this.interrupt.abort();
    this.interrupt = new AbortController();
    // Cleared in a later microtask, never inside run(): run() may finish synchronously.
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
    });
  }

  /** Applies the desired state until the applied one matches it. */
  private async run(): Promise<void> {
    try {
      while (!this.closed) {
        const target = this.desired;
        if (target.enabled) {
          const reason = target.reason;
          const retryAfterSeconds = target.retryAfterSeconds ?? this.settings.retryAfterSeconds;
          if (
            this.applied.enabled &&
            this.applied.reason === reason &&
            this.applied.retryAfterSeconds === retryAfterSeconds
          ) {
            break;
          }
          if (this.applied.enabled) this.update(reason, retryAfterSeconds);
          else await this.enter(reason, retryAfterSeconds);
        } else {
          if (!this.applied.enabled) break;
          await this.leave();
        }
      }
    } catch (error) {
      this.logger.error("maintenance.transition_failed", { error: String(error) });
    }
  }

  private async enter(reason: string | null, retryAfterSeconds: number): Promise<void> {
    const started = performance.now();
    this.phase = "entering";
    this.since = new Date();
    this.closeGate(reason ?? DEFAULT_DETAIL, retryAfterSeconds);
    this.applied = { enabled: true, reason, retryAfterSeconds };
    this.logger.info("maintenance.entering", { key: this.settings.key, revision: this.revision, reason });
    const drained = await this.gate.drain(this.settings.drainTimeoutMs, this.interrupt.signal);
    if (!this.desired.enabled && !this.closed) {
      // Turned off again while draining: the pool was never shrunk, so just reopen.
      this.gate.open();
      this.applied = { enabled: false, reason: null, retryAfterSeconds: this.settings.retryAfterSeconds };
      this.phase = "serving";
      this.logger.info("maintenance.enter_abandoned", { key: this.settings.key, revision: this.revision });
      return;
    }
    await this.resizePool(this.settings.maintenancePoolMax, this.remainingDrain(started));
    this.phase = "maintenance";
    this.logger.info("maintenance.entered", {
      key: this.settings.key,
      revision: this.revision,
      reason,
      drained,
      pool_max: this.settings.maintenancePoolMax,
      ms: Math.round(performance.now() - started),
    });
  }

  private async leave(): Promise<void> {
    const started = performance.now();
    this.phase = "leaving";
    this.logger.info("maintenance.leaving", { key: this.settings.key, revision: this.revision });
    await this.resizePool(this.settings.poolMax, this.settings.drainTimeoutMs);
    this.gate.open();
    this.applied = { enabled: false, reason: null, retryAfterSeconds: this.settings.retryAfterSeconds };
    this.phase = "serving";
    this.since = null;
    this.logger.info("maintenance.left", {
      key: this.settings.key,
      revision: this.revision,
      pool_max: this.settings.poolMax,
      ms: Math.round(performance.now() - started),
    });
  }

  /** Already in maintenance: only the reason or Retry-After changed. */
  private update(reason: string | null, retryAfterSeconds: number): void {
    this.closeGate(reason ?? DEFAULT_DETAIL, retryAfterSeconds);
    this.applied = { enabled: true, reason, retryAfterSeconds };
    this.logger.info("maintenance.updated", { key: this.settings.key, revision: this.revision, reason });
  }

  private async resizePool(max: number, drainTimeoutMs: number): Promise<void> {
    if (this.pool.max !== max) await this.pool.reconnect(max, drainTimeoutMs);
  }

  private closeGate(detail: string, retryAfterSeconds: number): void {
    this.gate.close({ detail, retryAfterSeconds });
  }

  private remainingDrain(startedAt: number): number {
    return Math.max(0, this.settings.drainTimeoutMs - (performance.now() - startedAt));
  }
}

function sameRequest(a: MaintenanceRequest, b: MaintenanceRequest): boolean {
  if (!a.enabled || !b.enabled) return a.enabled === b.enabled;
  return a.reason === b.reason && a.retryAfterSeconds === b.retryAfterSeconds;
}
