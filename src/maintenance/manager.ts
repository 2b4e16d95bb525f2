import type { DbHolder, PoolShape } from "../db/db-holder.ts";
import type { Logger } from "../logger.ts";
import { type CancelTimer, type Clock, systemClock } from "../util/clock.ts";
import { type Gate, type GateSetting, OPEN_SETTING, retryAfter } from "./gate.ts";
import type { MaintenanceSource, Observation } from "./source.ts";
import type {
  KeyStatus,
  MaintenanceStatus,
  MaintenanceStatusProvider,
  RejectedValue,
  TransitionRecord,
} from "./status.ts";
import { type Actual, nextStep, type Phase, phaseOf, type Step, sameSetting } from "./transitions.ts";
import { type MaintenanceRequest, type Mode, modeAt, modeRank, parseMaintenanceValue, sameRequest } from "./value.ts";

/** Settings of the {@link MaintenanceManager}. */
export interface ManagerSettings {
  poolMax: number;
  maintenancePoolMax: number;
  drainTimeoutMs: number;
  retryAfterSeconds: number;
  /** How long a refused request may wait for maintenance to end, unless the value says (`hold_ms`); 0: not at all. */
  holdMs: number;
  /** `closed`: start in maintenance until the first key answers. */
  startPolicy: "open" | "closed";
}

/** A maintenance key and where its values come from; the first one given is the service's own key. */
export interface KeySource {
  key: string;
  source: MaintenanceSource;
}

/**
 * The pool part of the manager's participants; a DbHolder in the service, which
 * starts with the serving shape (`poolMax`, read-write). `reconnect` must swap
 * to the new shape before returning its promise.
 */
export type PoolResizer = Pick<DbHolder, "reconnect">;

/** Status, plus a way to wait until a written revision has been applied. */
export interface MaintenanceObserver extends MaintenanceStatusProvider {
  /**
   * Resolves once `key` was read at or after `revision` and no transition is running or pending,
   * or after `timeoutMs`; true in the first case.
   */
  applied(key: string, revision: number, timeoutMs: number): Promise<boolean>;
}

/** What the manager knows of one key's value: nothing yet, or the request read at a revision. */
type Reading = { state: "unknown" } | { state: "known"; request: MaintenanceRequest; revision: number };

/** One key followed. */
interface FollowedKey {
  readonly key: string;
  readonly source: MaintenanceSource;
  reading: Reading;
  /** The latest revision read, understood or not (-1 before the first reading). */
  observedThrough: number;
}

/** The request in force and the key it comes from (none under the closed start policy). */
interface Effective {
  mode: Mode;
  request: MaintenanceRequest | null;
  key: FollowedKey | null;
}

/** A transition under way: where it began and what it waited for. */
interface Transition {
  readonly from: GateSetting;
  readonly startedAt: number;
  steps: number;
  /** Every drain, and the old pool's queries into maintenance, finished in time. */
  drained: boolean;
  drainMs: number;
}

const DEFAULT_DETAIL: Record<Exclude<Mode, "off">, string> = {
  full: "The service is in maintenance. Please retry later.",
  "read-only": "The service is read-only during maintenance. Reads are served; please retry writes later.",
};
/** What the closed start policy asks for until a key answers. */
const START_CLOSED: MaintenanceRequest = {
  mode: "full",
  reason: "Maintenance state is not known yet: waiting for etcd.",
  retryAfterSeconds: null,
  holdMs: 0,
  start: null,
  end: null,
};
const LONGEST_LOGGED_VALUE = 200;
const HISTORY = 20;

/**
 * The one writer of maintenance state. It reads the service's key and the
 * fleet key, takes the most restrictive request in force (full > read-only >
 * off, each within its window) as the target, and moves gate and pool there
 * one step at a time, as {@link nextStep} says, never two transitions at once.
 * Readings that arrive meanwhile only change the target: the loop asks for the
 * next step with the latest one, so bursts of toggles coalesce and the final
 * value wins. Window starts and ends apply on the clock given, without further
 * writes.
 */
export class MaintenanceManager implements MaintenanceObserver {
  private readonly keys: [FollowedKey, ...FollowedKey[]];
  /** Gate and pool as this manager last moved them; the gate keeps its own copy for the hot path. */
  private actual: Actual = { gate: OPEN_SETTING, pool: "off", drained: true };
  private phase: Phase = "serving";
  /** When the gate last closed from open; null while open. */
  private since: Date | null = null;
  private rejected: RejectedValue | null = null;
  private readonly history: TransitionRecord[] = [];
  private readonly counts: Record<TransitionRecord["kind"], number> = { enter: 0, leave: 0, update: 0, abandon: 0 };
  /** Whether the last transition finished with every admitted request and old query done in time. */
  private drained = true;
  /** True while {@link run} has not decided it is settled; set and cleared synchronously. */
  private running = false;
  /** The latest run; awaited by {@link settled}. */
  private loop: Promise<void> = Promise.resolve();
  /** Aborted when the target may have changed or the manager closes: cuts a drain short. */
  private interrupt = new AbortController();
  private cancelBoundaryTimer: CancelTimer = () => {};
  private closed = false;
  private readonly listeners: (() => void)[] = [];
  /** Re-checks of pending {@link observed} and {@link applied} calls. */
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly settings: ManagerSettings,
    private readonly gate: Gate,
    private readonly pool: PoolResizer,
    sources: KeySource[],
    private readonly logger: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    const [first, ...rest] = sources.map(({ key, source }) => ({
      key,
      source,
      reading: { state: "unknown" } as Reading,
      observedThrough: -1,
    }));
    if (!first) throw new Error("at least one maintenance key is required");
    this.keys = [first, ...rest];
  }

  /** Starts following the keys (closing the gate first under the `closed` start policy). */
  start(): void {
    if (this.settings.startPolicy === "closed") this.kick();
    for (const state of this.keys) state.source.start((observation) => this.observe(state, observation));
  }

  /** Waits (up to `timeoutMs`) until `key` was read at or after `revision`; true if it was. */
  observed(key: string, revision: number, timeoutMs: number): Promise<boolean> {
    const state = this.keys.find((k) => k.key === key);
    if (!state) return Promise.resolve(false);
    return this.until(() => state.observedThrough >= revision, timeoutMs);
  }

  /** Waits (up to `timeoutMs`) until `key` was read at or after `revision` and no transition runs; true if so. */
  applied(key: string, revision: number, timeoutMs: number): Promise<boolean> {
    const state = this.keys.find((k) => k.key === key);
    if (!state) return Promise.resolve(false);
    return this.until(() => state.observedThrough >= revision && !this.running, timeoutMs);
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
    while (this.running) await this.loop;
  }

  /** Whether the state has settled and the last transition drained in time. */
  get stableAndDrained(): boolean {
    return !this.running && this.drained;
  }

  /** Transitions since start, by kind. */
  get transitionCounts(): Readonly<Record<TransitionRecord["kind"], number>> {
    return this.counts;
  }

  /** Stops following the keys and waits for a running transition to end (its drain is cut short). */
  async close(): Promise<void> {
    this.closed = true;
    this.interrupt.abort();
    this.cancelBoundaryTimer();
    await Promise.all(this.keys.map((k) => k.source.close()));
    await this.settled();
  }

  status(): MaintenanceStatus {
    const now = this.clock.now();
    const gate = this.actual.gate;
    const enabled = gate.mode !== "off";
    const effective = this.effective(now);
    const cause = enabled ? (effective.key ?? this.keys[0]) : this.keys[0];
    const upcoming = this.upcomingWindow(now);
    return {
      enabled,
      mode: gate.mode,
      phase: this.phase,
      reason: enabled ? (effective.request?.reason ?? null) : null,
      since: enabled ? this.since : null,
      retryAfterSeconds: enabled ? retryAfter(gate, this.clock) : null,
      key: cause.key,
      revision: revisionOf(cause),
      upcomingWindow: upcoming && { start: upcoming.start, end: upcoming.end },
      source: this.keys[0].source.status(),
      keys: this.keys.map((k) => keyStatus(k, now)),
      rejected: this.rejected,
      transitions: [...this.history],
    };
  }

  /** Takes one reading of a key. */
  private observe(state: FollowedKey, { value, revision, reset }: Observation): void {
    state.observedThrough = reset ? revision : Math.max(state.observedThrough, revision);
    const parsed = parseMaintenanceValue(value);
    if (parsed.ok) {
      if (this.rejected?.key === state.key) this.rejected = null;
      const before = state.reading;
      state.reading = { state: "known", request: parsed.request, revision };
      if (before.state === "unknown" || !sameRequest(parsed.request, before.request)) this.kick();
      this.notify();
    } else {
      const shown = value === null ? "" : value.slice(0, LONGEST_LOGGED_VALUE);
      this.rejected = { key: state.key, value: shown, revision, at: new Date(this.clock.now()) };
      this.logger.warn("maintenance.value_rejected", {
        key: state.key,
        revision,
        value: shown,
        problem: parsed.problem,
        kept_mode: this.actual.gate.mode,
      });
    }
    this.recheckWaiters();
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }

  /** Resolves true once `holds()` is true (checked after every reading and transition), or false after `timeoutMs`. */
  private until(holds: () => boolean, timeoutMs: number): Promise<boolean> {
    if (holds()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const finish = (result: boolean) => {
        cancelTimer();
        this.waiters.delete(check);
        resolve(result);
      };
      const check = () => {
        if (holds()) finish(true);
      };
      const cancelTimer = this.clock.after(timeoutMs, () => finish(holds()));
      this.waiters.add(check);
    });
  }

  private recheckWaiters(): void {
    for (const check of this.waiters) check();
  }

  /** The target may have changed: cut a drain short, re-arm the window timer, and run the loop unless it runs. */
  private kick(): void {
    this.interrupt.abort();
    this.interrupt = new AbortController();
    this.armBoundaryTimer();
    // A running loop asks for the target again before its next step.
    if (!this.running) this.loop = this.run();
  }

  /** The most restrictive request in force at `now` (ties go to the service's own key). */
  private effective(now: number): Effective {
    if (this.settings.startPolicy === "closed" && this.keys.every((k) => k.reading.state === "unknown")) {
      return { mode: "full", request: START_CLOSED, key: null };
    }
    let best: Effective = { mode: "off", request: null, key: null };
    for (const state of this.keys) {
      if (state.reading.state === "unknown") continue;
      const mode = modeAt(state.reading.request, now);
      if (modeRank[mode] > modeRank[best.mode]) best = { mode, request: state.reading.request, key: state };
    }
    return best;
  }

  /** The gate setting the request in force at `now` asks for. */
  private target(now: number): GateSetting {
    const { mode, request } = this.effective(now);
    if (mode === "off" || !request) return OPEN_SETTING;
    return {
      mode,
      detail: request.reason ?? DEFAULT_DETAIL[mode],
      retryAfterSeconds: request.retryAfterSeconds ?? this.settings.retryAfterSeconds,
      retryUntil: request.end?.getTime() ?? null,
      holdMs: request.holdMs ?? this.settings.holdMs,
    };
  }

  private shapeFor(mode: Mode): PoolShape {
    if (mode === "off") return { max: this.settings.poolMax, readOnly: false };
    return { max: this.settings.maintenancePoolMax, readOnly: mode === "read-only" };
  }

  /** Performs the next step toward the target until there is none; the target is read again before each. */
  private async run(): Promise<void> {
    this.running = true;
    const transition: Transition = {
      from: this.actual.gate,
      startedAt: this.clock.now(),
      steps: 0,
      drained: true,
      drainMs: 0,
    };
    try {
      while (!this.closed) {
        const target = this.target(this.clock.now());
        const step = nextStep(target, this.actual);
        this.phase = phaseOf(target, this.actual);
        if (step === "settled") break;
        await this.perform(step, target, transition);
        transition.steps++;
        this.notify();
      }
    } catch (error) {
      transition.drained = false;
      this.logger.error("maintenance.transition_failed", { error: String(error) });
    }
    this.running = false;
    if (transition.steps > 0) {
      this.drained = transition.drained;
      this.record(transition);
      this.notify();
    }
    this.recheckWaiters();
  }

  /** Moves the participants one step toward `target`, and records where they are. */
  private async perform(step: Exclude<Step, "settled">, target: GateSetting, transition: Transition): Promise<void> {
    const actual = this.actual;
    switch (step) {
      case "close-gate": {
        const further = modeRank[target.mode] > modeRank[actual.gate.mode];
        this.setGate(target);
        this.actual = { ...actual, gate: target, drained: actual.drained && !further };
        return;
      }
      case "drain": {
        const interrupt = this.interrupt.signal;
        const started = this.clock.now();
        const drained = await this.gate.drain(this.drainTimeLeft(transition), interrupt);
        transition.drainMs += this.clock.now() - started;
        transition.drained &&= drained;
        // Cut short by a new target, it is not done: the next step may wait again, with what time is left.
        if (drained || !interrupt.aborted) this.actual = { ...this.actual, drained: true };
        return;
      }
      case "resize-pool": {
        const from = this.shapeFor(actual.pool);
        const to = this.shapeFor(target.mode);
        this.actual = { ...actual, pool: target.mode };
        if (sameShape(from, to)) return;
        // reconnect() swaps at once. Into maintenance, the step is done when the old, larger
        // client has ended; out of it, the new client serves now and the small one ends behind.
        const retired = this.pool.reconnect(to, this.drainTimeLeft(transition));
        if (target.mode !== "off") transition.drained = (await retired) && transition.drained;
        return;
      }
      case "open-gate":
        this.setGate(target);
        this.actual = { ...actual, gate: target, drained: true };
        return;
    }
  }

  /** Enforces `setting` from the next request on, noting when maintenance began. */
  private setGate(setting: GateSetting): void {
    if (setting.mode === "off") this.since = null;
    else if (this.actual.gate.mode === "off") this.since = new Date(this.clock.now());
    this.gate.set(setting);
  }

  /** What is left of the drain timeout, which one transition's drains and pool retirement share. */
  private drainTimeLeft(transition: Transition): number {
    return Math.max(0, this.settings.drainTimeoutMs - (this.clock.now() - transition.startedAt));
  }

  /** Logs and keeps one line per transition: key, revision, mode, reason, drain time. */
  private record(transition: Transition): void {
    const fromMode = transition.from.mode;
    const toMode = this.actual.gate.mode;
    const kind: TransitionRecord["kind"] =
      fromMode === "off" ? (toMode === "off" ? "abandon" : "enter") : toMode === "off" ? "leave" : "update";
    if (kind === "update" && sameSetting(transition.from, this.actual.gate)) return;
    const now = this.clock.now();
    const effective = this.effective(now);
    const cause = effective.key ?? this.keys[0];
    const entry: TransitionRecord = {
      kind,
      at: new Date(now),
      key: cause.key,
      revision: revisionOf(cause),
      fromMode,
      mode: toMode,
      reason: effective.request?.reason ?? null,
      drained: transition.drained,
      drainMs: Math.round(transition.drainMs),
      ms: Math.round(now - transition.startedAt),
    };
    this.counts[kind]++;
    this.history.unshift(entry);
    this.history.length = Math.min(this.history.length, HISTORY);
    this.logger.info("maintenance.transition", {
      kind,
      at: entry.at.toISOString(),
      key: entry.key,
      revision: entry.revision,
      from_mode: fromMode,
      mode: toMode,
      reason: entry.reason,
      drained: entry.drained,
      drain_ms: entry.drainMs,
      ms: entry.ms,
    });
  }

  /** The nearest window not yet begun, for the Maintenance-Window header. */
  private upcomingWindow(now: number): MaintenanceRequest | null {
    let next: MaintenanceRequest | null = null;
    for (const { reading } of this.keys) {
      if (reading.state === "unknown") continue;
      const { request } = reading;
      if (!request.start || request.mode === "off" || request.start.getTime() <= now) continue;
      if (!next?.start || request.start < next.start) next = request;
    }
    return next;
  }

  /** Wakes the loop at the next window start or end, so windows apply without further writes. */
  private armBoundaryTimer(): void {
    this.cancelBoundaryTimer();
    const now = this.clock.now();
    const upcoming = this.upcomingWindow(now);
    this.gate.announce(upcoming ? `${upcoming.start?.toISOString()}/${upcoming.end?.toISOString() ?? ".."}` : null);
    const boundaries = this.keys
      .flatMap(({ reading }) =>
        reading.state === "known" ? [reading.request.start?.getTime(), reading.request.end?.getTime()] : [],
      )
      .filter((t): t is number => t !== undefined && t > now);
    if (boundaries.length === 0 || this.closed) return;
    this.cancelBoundaryTimer = this.clock.after(Math.min(...boundaries) - now, () => this.kick());
  }
}

function revisionOf(state: FollowedKey): number | null {
  return state.reading.state === "known" ? state.reading.revision : null;
}

function keyStatus(state: FollowedKey, now: number): KeyStatus {
  const { reading } = state;
  return {
    key: state.key,
    mode: reading.state === "known" ? modeAt(reading.request, now) : null,
    revision: revisionOf(state),
    source: state.source.status(),
  };
}

function sameShape(a: PoolShape, b: PoolShape): boolean {
  return a.max === b.max && a.readOnly === b.readOnly;
}
