import { type Logger, silentLogger } from "../logger.ts";
import { type CancelTimer, type Clock, systemClock } from "../util/clock.ts";
import type { Mode } from "./value.ts";

/** How a held request ended: run, refused at its deadline (or the budget's), refused as one too many, or dropped. */
export type HoldOutcome = "released" | "timed_out" | "overflow" | "client_gone";

/** Every {@link HoldOutcome}, in the order metrics and logs list them. */
export const HOLD_OUTCOMES: readonly HoldOutcome[] = ["released", "timed_out", "overflow", "client_gone"];

/**
 * Longest a request is ever held, whatever the maintenance value and the client ask: 2 s under the
 * 10 s after which Bun (by default) and many proxies cut a silent request.
 */
export const HOLD_CAP_MS = 8000;

/** The bounds of holding. */
export interface HoldLimits {
  /** Most requests held at once; one more is refused at once (`overflow`). */
  maxHeld: number;
  /** How long one maintenance episode may hold requests, from its start; then every held one is refused. */
  budgetMs: number;
  /** Most released requests running at once: the pool's size, so a release does not queue in postgres.js. */
  releaseConcurrency: number;
}

/** The service's defaults. */
export const DEFAULT_HOLD_LIMITS: HoldLimits = { maxHeld: 256, budgetMs: 10_000, releaseConcurrency: 10 };

/** How a hold ended, and after how long. */
export interface HoldEnd {
  outcome: HoldOutcome;
  heldMs: number;
}

/** One request waiting. */
interface Held {
  /** A GET or HEAD: read-only mode admits it. */
  readonly read: boolean;
  readonly since: number;
  readonly signal: AbortSignal;
  cancelTimer: CancelTimer;
  readonly onAbort: () => void;
  readonly resolve: (end: HoldEnd) => void;
}

/** What one maintenance episode did with the requests it refused, for its log line. */
interface Episode {
  held: number;
  peak: number;
  longestMs: number;
  budgetSpent: boolean;
  outcomes: Record<HoldOutcome, number>;
}

const noOutcomes = (): Record<HoldOutcome, number> => ({ released: 0, timed_out: 0, overflow: 0, client_gone: 0 });

/** Whether the gate in `mode` admits a request (a read or not). */
const admits = (mode: Mode, read: boolean) => mode === "off" || (mode === "read-only" && read);

/**
 * Requests the maintenance gate refuses, waiting for it to admit them, in arrival order. Held requests are
 * not in flight: nothing waits for them. The gate tells the queue each mode it enforces ({@link follow});
 * when one admits held requests, they are released oldest first, at most `releaseConcurrency` running at
 * once ({@link finished} frees a place). Each waits until its own deadline, and every one of an episode
 * (from the gate closing to it opening) until the episode's budget, counted from its first hold, is spent;
 * then a request the gate still refuses is refused, and one it admits runs at once. A request whose client
 * went away leaves the queue and never runs. Outcomes are counted in plain numbers, and each episode that
 * held or refused anything logs one line.
 */
export class HoldQueue {
  private readonly waiting: Held[] = [];
  private mode: Mode = "off";
  /** Released requests still running. */
  private running = 0;
  /** False once the episode's budget is spent: nobody new is held until the gate opens. */
  private open = true;
  private cancelBudget: CancelTimer = () => {};
  private readonly totals = noOutcomes();
  /** The episode under way, or the last one while its held requests are still leaving. */
  private episode: Episode | null = null;

  constructor(
    private readonly limits: HoldLimits = DEFAULT_HOLD_LIMITS,
    private readonly clock: Clock = systemClock,
    private readonly logger: Logger = silentLogger,
  ) {}

  /** Requests waiting now. */
  get held(): number {
    return this.waiting.length;
  }

  /** How many held requests left the queue since start, by outcome. */
  get outcomes(): Readonly<Record<HoldOutcome, number>> {
    return this.totals;
  }

  /** Whether a request refused now may be held: false once the episode's budget is spent. */
  get accepting(): boolean {
    return this.open;
  }

  /**
   * Holds a request the gate refuses for at most `waitMs`. Resolves `released` when it may run (the caller
   * then calls {@link finished} when it ends), or with why it may not: at once `overflow` when `maxHeld` wait
   * already, or `client_gone` when `signal` aborts.
   */
  hold(read: boolean, waitMs: number, signal: AbortSignal): Promise<HoldEnd> {
    const episode = this.episode;
    if (this.waiting.length >= this.limits.maxHeld || signal.aborted) {
      const outcome = signal.aborted ? "client_gone" : "overflow";
      this.count(outcome);
      return Promise.resolve({ outcome, heldMs: 0 });
    }
    return new Promise((resolve) => {
      const entry: Held = {
        read,
        since: this.clock.now(),
        signal,
        cancelTimer: () => {},
        onAbort: () => this.settle(entry, "client_gone"),
        resolve,
      };
      entry.cancelTimer = this.clock.after(waitMs, () => this.expire(entry));
      signal.addEventListener("abort", entry.onAbort, { once: true });
      this.waiting.push(entry);
      if (!episode) return;
      // The budget runs from the episode's first hold: an episode that holds nothing arms no timer.
      if (episode.held++ === 0) this.cancelBudget = this.clock.after(this.limits.budgetMs, () => this.spendBudget());
      episode.peak = Math.max(episode.peak, this.waiting.length);
    });
  }

  /** The gate enforces `mode` from now on: an episode begins or ends, and what `mode` admits is released. */
  follow(mode: Mode): void {
    const from = this.mode;
    this.mode = mode;
    if (from === "off" && mode !== "off") this.begin();
    if (from !== "off" && mode === "off") {
      this.cancelBudget();
      this.open = true;
    }
    this.release();
  }

  /** A released request ended: its place goes to the next one. */
  finished(): void {
    this.running--;
    this.release();
  }

  private begin(): void {
    this.logEpisode();
    this.episode = { held: 0, peak: 0, longestMs: 0, budgetSpent: false, outcomes: noOutcomes() };
    this.open = this.limits.budgetMs > 0;
  }

  /** The episode's budget is spent: every held request the gate refuses is refused, and nobody new is held. */
  private spendBudget(): void {
    this.open = false;
    if (this.episode) this.episode.budgetSpent = true;
    for (const entry of [...this.waiting]) this.settle(entry, admits(this.mode, entry.read) ? "released" : "timed_out");
  }

  /** A held request's deadline: it runs if the gate admits it by now (it only waited for a place), else is refused. */
  private expire(entry: Held): void {
    this.settle(entry, admits(this.mode, entry.read) ? "released" : "timed_out");
  }

  /** Releases the oldest requests the gate admits while places are free. */
  private release(): void {
    for (let i = 0; i < this.waiting.length && this.running < this.limits.releaseConcurrency; ) {
      const entry = this.waiting[i] as Held;
      if (admits(this.mode, entry.read)) this.settle(entry, "released");
      else i++;
    }
    if (this.mode === "off" && this.waiting.length === 0) this.logEpisode();
  }

  private settle(entry: Held, outcome: HoldOutcome): void {
    const index = this.waiting.indexOf(entry);
    if (index < 0) return;
    this.waiting.splice(index, 1);
    entry.cancelTimer();
    entry.signal.removeEventListener("abort", entry.onAbort);
    if (outcome === "released") this.running++;
    const heldMs = this.clock.now() - entry.since;
    this.count(outcome);
    if (this.episode) this.episode.longestMs = Math.max(this.episode.longestMs, heldMs);
    entry.resolve({ outcome, heldMs });
    // A request gone while the gate admits it frees nothing, but may be the last one the episode waited for.
    if (outcome !== "released" && this.mode === "off" && this.waiting.length === 0) this.logEpisode();
  }

  private count(outcome: HoldOutcome): void {
    this.totals[outcome]++;
    if (this.episode) this.episode.outcomes[outcome]++;
  }

  /** Logs the last episode's line once, if it held or refused anything. */
  private logEpisode(): void {
    const episode = this.episode;
    this.episode = null;
    if (!episode || (episode.held === 0 && episode.outcomes.overflow === 0 && !episode.budgetSpent)) return;
    this.logger.info("maintenance.hold_episode", {
      held: episode.held,
      peak_held: episode.peak,
      longest_held_ms: Math.round(episode.longestMs),
      budget_spent: episode.budgetSpent,
      ...episode.outcomes,
    });
  }
}
