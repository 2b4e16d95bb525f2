import type { Context, MiddlewareHandler } from "hono";
import type { AppEnv } from "../http/context.ts";
import { preferredWaitMs } from "../http/prefer.ts";
import { HttpProblem } from "../http/problem.ts";
import { secretMatcher } from "../http/secret.ts";
import { type Logger, silentLogger } from "../logger.ts";
import { type Clock, systemClock } from "../util/clock.ts";
import { DEFAULT_HOLD_LIMITS, HOLD_CAP_MS, type HoldLimits, type HoldOutcome, HoldQueue } from "./hold-queue.ts";
import type { Mode } from "./value.ts";

/** What the gate lets through, and what it tells those it refuses. */
export interface GateSetting {
  /** `off`: everything; `read-only`: GET and HEAD; `full`: nothing. */
  mode: Mode;
  /** The 503's `detail`. */
  detail: string;
  retryAfterSeconds: number;
  /** When set (epoch ms), Retry-After counts down to this instant instead (the end of a window). */
  retryUntil: number | null;
  /** How long a refused request may wait for the gate to admit it (at most {@link HOLD_CAP_MS}); 0: not at all. */
  holdMs: number;
}

/** Header an operator sends to pass a closed gate. */
export const BYPASS_HEADER = "X-Maintenance-Bypass";
/** Header on responses served through the bypass. */
export const BYPASSED_HEADER = "X-Maintenance-Bypassed";
/** Header announcing an upcoming maintenance window. */
export const WINDOW_HEADER = "Maintenance-Window";
/** Header on the response to a request that was held: milliseconds it waited for the gate. */
export const HELD_HEADER = "Maintenance-Held-Ms";

/** Asked right before a write query is issued. */
export interface WriteAdmission {
  /** Returns when a write may start now; throws the maintenance 503 problem when writes are refused. */
  admitWrite(): void;
}

/** The admission of a request an operator sent through the bypass: its writes start as it was let in. */
export const BYPASSED_WRITES: WriteAdmission = { admitWrite() {} };

/** The setting of an open gate: everything passes. */
export const OPEN_SETTING: GateSetting = { mode: "off", detail: "", retryAfterSeconds: 0, retryUntil: null, holdMs: 0 };
const READS = new Set(["GET", "HEAD"]);

/** How the gate holds requests it refuses, and where it logs each episode. */
export interface GateHoldOptions extends HoldLimits {
  logger: Logger;
}

/** The answer to a request whose client went away while it was held: nginx's 499, counted and logged, never sent. */
const clientGone = () =>
  new HttpProblem({
    status: 499,
    slug: "client-closed-request",
    title: "Client Closed Request",
    detail: "The client closed the connection while the request was held for maintenance to end.",
  });

/**
 * Admits or refuses requests to the routes it guards, and counts the admitted
 * ones still running so a drain can wait for them. The hot path reads one
 * field: no I/O per request. An operator holding the bypass token passes.
 *
 * A request is admitted once its body has arrived (the body stage runs
 * first), and asked again by {@link admitWrite} right before each write: one
 * admitted before the gate closed starts no write after it closed, except
 * while the drain that follows a close with holding on waits for it.
 *
 * With a setting's `holdMs` above 0, a refused request is held instead (see
 * {@link HoldQueue}): it waits, not in flight, for the gate to admit it, for
 * at most `holdMs`, the client's `Prefer: wait`, and {@link HOLD_CAP_MS}; then
 * it runs and its response carries {@link HELD_HEADER}, or it gets the 503.
 * The open gate's path is unchanged by this.
 */
export class Gate implements WriteAdmission {
  private setting: GateSetting = OPEN_SETTING;
  private window: string | null = null;
  private running = 0;
  private refused = 0;
  /**
   * True from the gate closing with holding on until the drain after it ends: requests admitted while it
   * was open still start their writes, which the drain waits for, rather than refuse them.
   */
  private admittedMayWrite = false;
  /** Drains waiting for `running` to reach 0. */
  private idleWaiters: (() => void)[] = [];
  private readonly bypass: ((given: string) => boolean) | null;
  private readonly holds: HoldQueue;

  constructor(
    bypassToken: string | null = null,
    private readonly clock: Clock = systemClock,
    { logger = silentLogger, ...limits }: Partial<GateHoldOptions> = {},
  ) {
    this.bypass = bypassToken === null ? null : secretMatcher(bypassToken);
    this.holds = new HoldQueue({ ...DEFAULT_HOLD_LIMITS, ...limits }, clock, logger);
  }

  /** The mode the gate enforces now. */
  get mode(): Mode {
    return this.setting.mode;
  }

  /** Whether some requests are refused (maintenance is on). */
  get closed(): boolean {
    return this.setting.mode !== "off";
  }

  /** The detail and Retry-After of refusals now. */
  get current(): GateSetting {
    return this.setting;
  }

  /** Admitted requests that have not finished. */
  get inFlight(): number {
    return this.running;
  }

  /** Requests answered 503 by the gate since start. */
  get refusedTotal(): number {
    return this.refused;
  }

  /** Refused requests waiting for the gate to admit them (not in flight). */
  get held(): number {
    return this.holds.held;
  }

  /** Held requests since start, by how they left the queue. */
  get holdOutcomes(): Readonly<Record<HoldOutcome, number>> {
    return this.holds.outcomes;
  }

  /** Enforces `setting` from the next request on, and releases the held requests it admits. */
  set(setting: GateSetting): void {
    if (setting.mode === "off") this.admittedMayWrite = false;
    else if (this.setting.mode === "off") this.admittedMayWrite = setting.holdMs > 0;
    this.setting = setting.mode === "off" ? OPEN_SETTING : setting;
    this.holds.follow(this.setting.mode);
  }

  /** Announces an upcoming window on every response (`<start>/<end>`, ISO 8601), or stops announcing. */
  announce(window: string | null): void {
    this.window = window;
  }

  /**
   * Waits until no admitted request is running, or `timeoutMs` passes, or
   * `interrupt` aborts. Returns true when drained. Held requests are not
   * waited for. Once drained or timed out, requests admitted before the gate
   * closed start no more writes.
   */
  async drain(timeoutMs: number, interrupt: AbortSignal): Promise<boolean> {
    const drained = await this.idle(timeoutMs, interrupt);
    if (drained || !interrupt.aborted) this.admittedMayWrite = false;
    return drained;
  }

  private async idle(timeoutMs: number, interrupt: AbortSignal): Promise<boolean> {
    if (this.running === 0) return true;
    if (interrupt.aborted || timeoutMs <= 0) return false;
    await new Promise<void>((resolve) => {
      const done = () => {
        cancelTimer();
        interrupt.removeEventListener("abort", done);
        this.idleWaiters = this.idleWaiters.filter((waiter) => waiter !== done);
        resolve();
      };
      const cancelTimer = this.clock.after(timeoutMs, done);
      interrupt.addEventListener("abort", done, { once: true });
      this.idleWaiters.push(done);
    });
    return this.running === 0;
  }

  /** Refuses the write when the gate refuses writes now (any maintenance mode, once the drain is over). */
  admitWrite(): void {
    if (this.setting.mode !== "off" && !this.admittedMayWrite) throw this.refusal(this.setting);
  }

  /** Middleware for the guarded routes. */
  middleware(): MiddlewareHandler<AppEnv> {
    return async (c, next) => {
      const setting = this.setting;
      let bypassed = false;
      /** Milliseconds the request was held; -1 when it was not. */
      let heldMs = -1;
      if (setting.mode !== "off" && (setting.mode === "full" || !READS.has(c.req.method))) {
        const given = c.req.header(BYPASS_HEADER);
        if (given !== undefined && this.bypass?.(given)) {
          bypassed = true;
          c.set("writeAdmission", BYPASSED_WRITES);
        } else if (setting.holdMs > 0) {
          heldMs = await this.hold(c, setting);
        } else {
          throw this.refusal(setting);
        }
      }
      this.running++;
      try {
        await next();
      } finally {
        if (--this.running === 0 && this.idleWaiters.length > 0) for (const wake of this.idleWaiters) wake();
        if (heldMs >= 0) this.holds.finished();
        // After next(): headers set before it are lost when the route fails and onError builds the response.
        if (bypassed) c.header(BYPASSED_HEADER, "true");
        if (heldMs >= 0) c.header(HELD_HEADER, String(heldMs));
        if (this.window) c.header(WINDOW_HEADER, this.window);
      }
    };
  }

  /**
   * Holds a request `setting` refuses until the gate admits it, and resolves with how long that took;
   * throws the 503 when it may not be held or was not admitted in time.
   */
  private async hold(c: Context<AppEnv>, setting: GateSetting): Promise<number> {
    if (!this.holds.accepting) throw this.refusal(setting);
    const waitMs = Math.min(setting.holdMs, HOLD_CAP_MS, preferredWaitMs(c.req.header("Prefer")) ?? HOLD_CAP_MS);
    if (waitMs <= 0) throw this.refusal(setting);
    const { outcome, heldMs } = await this.holds.hold(READS.has(c.req.method), waitMs, c.req.raw.signal);
    if (outcome === "released") return Math.round(heldMs);
    if (outcome === "client_gone") throw clientGone();
    throw this.refusal(setting, heldMs);
  }

  /** The maintenance 503, counted as refused; it says how long the request was held, if it was. */
  private refusal(setting: GateSetting, heldMs = 0): HttpProblem {
    this.refused++;
    return new HttpProblem({
      status: 503,
      slug: "maintenance",
      title: "Service Unavailable",
      detail: setting.detail,
      headers: {
        "Retry-After": String(retryAfter(setting, this.clock)),
        ...(this.window && { [WINDOW_HEADER]: this.window }),
        ...(heldMs > 0 && { [HELD_HEADER]: String(Math.round(heldMs)) }),
      },
    });
  }
}

/**
 * Seconds a refused client should wait: until the window's end when known, never negative. The clock is
 * read only then, so a refusal with a fixed Retry-After costs no clock read.
 */
export function retryAfter(setting: GateSetting, clock: Pick<Clock, "now">): number {
  if (setting.retryUntil === null) return setting.retryAfterSeconds;
  return Math.max(0, Math.ceil((setting.retryUntil - clock.now()) / 1000));
}
