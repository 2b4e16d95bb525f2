import type { DbHolder, PoolShape } from "../db/db-holder.ts";
import type { Logger } from "../logger.ts";
import { sleep } from "../util/sleep.ts";
import { type Gate, type GateSetting, retryAfter } from "./gate.ts";
import type { MaintenanceSource, Observation } from "./source.ts";
import type {
  KeyStatus,
  MaintenanceStatus,
  MaintenanceStatusProvider,
  RejectedValue,
  TransitionRecord,
} from "./status.ts";
import { type MaintenanceRequest, type Mode, modeAt, modeRank, parseMaintenanceValue, sameRequest } from "./value.ts";

/** Settings of the {@link MaintenanceManager}. */
export interface ManagerSettings {
  poolMax: number;
  maintenancePoolMax: number;
  drainTimeoutMs: number;
  retryAfterSeconds: number;
  /** `closed`: start in maintenance until the first key answers. */
  startPolicy: "open" | "closed";
}

/** A maintenance key and where its values come from; the first one given is the service's own key. */
export interface KeySource {
  key: string;
  source: MaintenanceSource;
}

/**
 * The pool part of the manager's participants; a DbHolder in the service.
 * `reconnect` must swap to the new shape before returning its promise.
 */
export type PoolResizer = Pick<DbHolder, "reconnect" | "shape">;

/** Status, plus a way to wait until a written revision has been seen. */
export interface MaintenanceObserver extends MaintenanceStatusProvider {
  /** Waits (up to `timeoutMs`) until `key` was read at or after `revision`; true if it was. */
  observed(key: string, revision: number, timeoutMs: number): Promise<boolean>;
  /** Resolves when no transition is running or pending. */
  settled(): Promise<void>;
}

/** What the manager knows of one key. */
interface KeyState {
  key: string;
  source: MaintenanceSource;
  /** The key's latest understood request; null before the first reading. */
  request: MaintenanceRequest | null;
  /** Revision of the value behind `request`. */
  revision: number | null;
  /** The latest revision read, understood or not. */
  observedThrough: number;
}

/** The request in force and the key it comes from. */
interface Effective {
  mode: Mode;
  request: MaintenanceRequest | null;
  key: KeyState | null;
}

const DEFAULT_DETAIL: Record<Exclude<Mode, "off">, string> = {
  full: "The service is in maintenance. Please retry later.",
  "read-only": "The service is read-only during maintenance. Reads are served; please retry writes later.",
};
const START_CLOSED_REASON = "Maintenance state is not known yet: waiting for etcd.";
const LONGEST_LOGGED_VALUE = 200;
const HISTORY = 20;
/** setTimeout's longest delay; later window boundaries are re-checked then. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/**
 * The one writer of maintenance state. It reads the service's key and the
 * fleet key, takes the most restrictive request in force (full > read-only >
 * off, each within its window), and moves the participants there, one step at
 * a time, never two transitions at once:
 * - closing more (off → read-only → full): set the gate first (refused requests
 *   get 503 at once), wait for admitted requests to finish (up to the drain
 *   timeout), then reconnect the pool with the maintenance shape;
 * - opening (full → read-only → off): reconnect the pool first, then the gate.
 * Readings that arrive meanwhile only change what is desired; the loop then
 * heads for the latest, so bursts of toggles coalesce and the final value wins.
 * Window starts and ends apply on this instance's clock, without further writes.
 */
export class MaintenanceManager implements MaintenanceObserver {
  private readonly keys: KeyState[];
  private phase: MaintenanceStatus["phase"] = "serving";
  private since: Date | null = null;
  private rejected: RejectedValue | null = null;
  private readonly history: TransitionRecord[] = [];
  private readonly counts: Record<TransitionRecord["kind"], number> = { enter: 0, leave: 0, update: 0, abandon: 0 };
  /** Whether the last transition finished with every admitted request and old query done in time. */
  private drained = true;
  /**
   * True from the first line of run() to just before its last notify. Not `loop`: that is
   * unset while run() executes its first steps (inside `loop ??= run()`) and still set at its end.
   */
  private transitioning = false;
  /** A reading arrived while run() was going: look again when it ends. */
  private rerun = false;
  private loop: Promise<void> | undefined;
  /** Aborted when the desired state changes or the manager closes: cuts a drain short. */
  private interrupt = new AbortController();
  private boundaryTimer: ReturnType<typeof setTimeout> | undefined;
  private startClosed: boolean;
  private closed = false;
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly settings: ManagerSettings,
    private readonly gate: Gate,
    private readonly pool: PoolResizer,
    sources: KeySource[],
    private readonly logger: Logger,
  ) {
    if (sources.length === 0) throw new Error("at least one maintenance key is required");
    this.keys = sources.map(({ key, source }) => ({ key, source, request: null, revision: null, observedThrough: -1 }));
    this.startClosed = settings.startPolicy === "closed";
  }

  /** Starts following the keys (closing the gate first under the `closed` start policy). */
  start(): void {
    if (this.startClosed) this.kick();
    for (const state of this.keys) state.source.start((observation) => this.observe(state, observation));
  }

  /** Waits (up to `timeoutMs`) until `key` was read at or after `revision`; true if it was. */
  async observed(key: string, revision: number, timeoutMs: number): Promise<boolean> {
    const state = this.keys.find((k) => k.key === key);
    if (!state) return false;
    const deadline = Date.now() + timeoutMs;
    while (state.observedThrough < revision) {
      if (Date.now() >= deadline) return false;
      await sleep(5);
    }
    return true;
  }

  /** The revision through which `key` has been read (-1 before the first reading). */
  observedThrough(key: string): number {
    return this.keys.find((k) => k.key === key)?.observedThrough ?? -1;
  }

  /** Calls `listener` after every reading and every transition step, e.g. to publish an acknowledgement. */
  subscribe(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Resolves when no transition is running or pending. */
  async settled(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /** Whether the state has settled and the last transition drained in time. */
  get stableAndDrained(): boolean {
    return !this.transitioning && this.drained;
  }

  /** Transitions since start, by kind. */
  get transitionCounts(): Readonly<Record<TransitionRecord["kind"], number>> {
    return this.counts;
  }

  /** Stops following the keys and waits for a running transition to end (its drain is cut short). */
  async close(): Promise<void> {
    this.closed = true;
    this.interrupt.abort();
    clearTimeout(this.boundaryTimer);
    await Promise.all(this.keys.map((k) => k.source.close()));
    await this.settled();
  }

  status(): MaintenanceStatus {
    const gate = this.gate.current;
    const effective = this.effective(Date.now());
    const cause = this.gate.closed ? (effective.key ?? this.keys[0]) : this.keys[0];
    const upcoming = this.upcomingWindow(Date.now());
    return {
      enabled: this.gate.closed,
      mode: this.gate.mode,
      phase: this.phase,
      reason: this.gate.closed ? (effective.request?.reason ?? (this.startClosed ? START_CLOSED_REASON : null)) : null,
      since: this.gate.closed && this.since ? this.since.toISOString() : null,
      retry_after_seconds: this.gate.closed ? retryAfter(gate) : null,
      key: cause?.key ?? "",
      revision: cause?.revision === null || cause?.revision === undefined ? null : String(cause.revision),
      upcoming_window: upcoming && {
        start: upcoming.start?.toISOString() ?? null,
        end: upcoming.end?.toISOString() ?? null,
      },
      source: (this.keys[0] as KeyState).source.status(),
      keys: this.keys.map((k) => this.keyStatus(k)),
      rejected: this.rejected,
      transitions: [...this.history],
    };
  }

  /** Takes one reading of a key. */
  private observe(state: KeyState, { value, revision, reset }: Observation): void {
    state.observedThrough = reset ? revision : Math.max(state.observedThrough, revision);
    const parsed = parseMaintenanceValue(value);
    if (!parsed.ok) {
      const shown = value === null ? "" : value.slice(0, LONGEST_LOGGED_VALUE);
      this.rejected = { key: state.key, value: shown, revision: String(revision), at: new Date().toISOString() };
      this.logger.warn("maintenance.value_rejected", {
        key: state.key,
        revision,
        value: shown,
        problem: parsed.problem,
        kept_mode: this.gate.mode,
      });
      return;
    }
    if (this.rejected?.key === state.key) this.rejected = null;
    const first = this.startClosed;
    this.startClosed = false;
    state.revision = revision;
    if (first || !state.request || !sameRequest(parsed.request, state.request)) {
      state.request = parsed.request;
      this.kick();
    }
    this.notify();
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }

  /** The desired state may have changed: (re)start the loop and re-arm the window timer. */
  private kick(): void {
    this.interrupt.abort();
    this.interrupt = new AbortController();
    this.armBoundaryTimer();
    if (this.loop) {
      // run() reads the desired state at every step; this covers a change after its last read.
      this.rerun = true;
      return;
    }
    // Cleared in a later microtask, never inside run(): run() may finish synchronously.
    this.loop = this.run().finally(() => {
      this.loop = undefined;
      if (this.rerun) this.kick();
    });
  }

  /** The most restrictive request in force at `now` (ties go to the service's own key). */
  private effective(now: number): Effective {
    if (this.startClosed) {
      const request = { mode: "full" as const, reason: null, retryAfterSeconds: null, start: null, end: null };
      return { mode: "full", request, key: null };
    }
    let best: Effective = { mode: "off", request: null, key: null };
    for (const state of this.keys) {
      if (!state.request) continue;
      const mode = modeAt(state.request, now);
      if (modeRank[mode] > modeRank[best.mode]) best = { mode, request: state.request, key: state };
    }
    return best;
  }

  private gateSettingFor(effective: Effective): GateSetting {
    if (effective.mode === "off") return { mode: "off", detail: "", retryAfterSeconds: 0, retryUntil: null };
    const request = effective.request;
    return {
      mode: effective.mode,
      detail: request?.reason ?? (this.startClosed ? START_CLOSED_REASON : DEFAULT_DETAIL[effective.mode]),
      retryAfterSeconds: request?.retryAfterSeconds ?? this.settings.retryAfterSeconds,
      retryUntil: request?.end?.getTime() ?? null,
    };
  }

  private shapeFor(mode: Mode): PoolShape {
    if (mode === "off") return { max: this.settings.poolMax, readOnly: false };
    return { max: this.settings.maintenancePoolMax, readOnly: mode === "read-only" };
  }

  /** Moves gate and pool, one step at a time, toward the desired state until they match it. */
  private async run(): Promise<void> {
    this.transitioning = true;
    const started = performance.now();
    const fromMode = this.gate.mode;
    const fromSetting = this.gate.current;
    let drained = true;
    let drainMs = 0;
    let steps = 0;
    try {
      for (; !this.closed; steps++) {
        this.rerun = false;
        const effective = this.effective(Date.now());
        const setting = this.gateSettingFor(effective);
        const want = modeRank[effective.mode];
        const have = modeRank[this.gate.mode];
        if (want > have || (want === have && want > 0 && !sameSetting(this.gate.current, setting))) {
          if (have === 0) this.since = new Date();
          this.gate.set(setting);
          if (want > have) this.phase = "entering";
          this.notify();
          if (want > have) {
            const drainStarted = performance.now();
            drained = (await this.gate.drain(this.remaining(started), this.interrupt.signal)) && drained;
            drainMs += performance.now() - drainStarted;
          }
          continue;
        }
        const shape = this.shapeFor(effective.mode);
        if (!sameShape(this.pool.shape, shape)) {
          this.phase = want > 0 ? "entering" : "leaving";
          // reconnect() swaps at once. Into maintenance, the step is done when the old, larger
          // client has ended; out of it, the new client serves now and the small one ends behind.
          const retired = this.pool.reconnect(shape, this.remaining(started));
          if (want > 0) drained = (await retired) && drained;
          else void retired;
          continue;
        }
        if (want < have) {
          this.gate.set(setting);
          if (want === 0) this.since = null;
          continue;
        }
        break;
      }
    } catch (error) {
      drained = false;
      this.logger.error("maintenance.transition_failed", { error: String(error) });
    }
    this.phase = this.gate.closed ? "maintenance" : "serving";
    this.transitioning = false;
    if (steps === 0) return;
    this.drained = drained;
    this.record(fromMode, fromSetting, started, drained, drainMs);
    this.notify();
  }

  /** Logs and keeps one line per transition: key, revision, mode, reason, drain time. */
  private record(fromMode: Mode, fromSetting: GateSetting, started: number, drained: boolean, drainMs: number): void {
    const toMode = this.gate.mode;
    const kind: TransitionRecord["kind"] =
      fromMode === "off" ? (toMode === "off" ? "abandon" : "enter") : toMode === "off" ? "leave" : "update";
    if (kind === "update" && fromMode === toMode && sameSetting(fromSetting, this.gate.current)) return;
    const effective = this.effective(Date.now());
    const cause = effective.key ?? this.keys[0];
    const entry: TransitionRecord = {
      kind,
      at: new Date().toISOString(),
      key: cause?.key ?? "",
      revision: cause?.revision === null || cause?.revision === undefined ? null : String(cause.revision),
      from_mode: fromMode,
      mode: toMode,
      reason: effective.request?.reason ?? null,
      drained,
      drain_ms: Math.round(drainMs),
      ms: Math.round(performance.now() - started),
    };
    this.counts[kind]++;
    this.history.unshift(entry);
    this.history.length = Math.min(this.history.length, HISTORY);
    this.logger.info("maintenance.transition", { ...entry });
  }

  /** The nearest window not yet begun, for the Maintenance-Window header. */
  private upcomingWindow(now: number): MaintenanceRequest | null {
    let next: MaintenanceRequest | null = null;
    for (const { request } of this.keys) {
      if (!request?.start || request.mode === "off" || request.start.getTime() <= now) continue;
      if (!next?.start || request.start < next.start) next = request;
    }
    return next;
  }

  /** Wakes the loop at the next window start or end, so windows apply without further writes. */
  private armBoundaryTimer(): void {
    clearTimeout(this.boundaryTimer);
    const now = Date.now();
    const upcoming = this.upcomingWindow(now);
    this.gate.announce(upcoming ? `${upcoming.start?.toISOString()}/${upcoming.end?.toISOString() ?? ".."}` : null);
    const boundaries = this.keys
      .flatMap(({ request }) => [request?.start?.getTime(), request?.end?.getTime()])
      .filter((t): t is number => t !== undefined && t > now);
    if (boundaries.length === 0 || this.closed) return;
    const delay = Math.min(LONGEST_TIMER_MS, Math.min(...boundaries) - now + 1);
    this.boundaryTimer = setTimeout(() => this.kick(), delay);
  }

  private keyStatus(state: KeyState): KeyStatus {
    return {
      key: state.key,
      mode: state.request ? modeAt(state.request, Date.now()) : null,
      revision: state.revision === null ? null : String(state.revision),
      source: state.source.status(),
    };
  }

  private remaining(startedAt: number): number {
    return Math.max(0, this.settings.drainTimeoutMs - (performance.now() - startedAt));
  }
}

function sameSetting(a: GateSetting, b: GateSetting): boolean {
  return (
    a.mode === b.mode &&
    a.detail === b.detail &&
    a.retryAfterSeconds === b.retryAfterSeconds &&
    a.retryUntil === b.retryUntil
  );
}

function sameShape(a: PoolShape, b: PoolShape): boolean {
  return a.max === b.max && a.readOnly === b.readOnly;
}
