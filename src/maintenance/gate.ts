import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../http/context.ts";
import { HttpProblem } from "../http/problem.ts";
import { secretMatcher } from "../http/secret.ts";
import { type Clock, systemClock } from "../util/clock.ts";
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
}

/** Header an operator sends to pass a closed gate. */
export const BYPASS_HEADER = "X-Maintenance-Bypass";
/** Header on responses served through the bypass. */
export const BYPASSED_HEADER = "X-Maintenance-Bypassed";
/** Header announcing an upcoming maintenance window. */
export const WINDOW_HEADER = "Maintenance-Window";

/** Asked right before a write query is issued. */
export interface WriteAdmission {
  /** Returns when a write may start now; throws the maintenance 503 problem when writes are refused. */
  admitWrite(): void;
}

/** The admission of a request an operator sent through the bypass: its writes start as it was let in. */
export const BYPASSED_WRITES: WriteAdmission = { admitWrite() {} };

/** The setting of an open gate: everything passes. */
export const OPEN_SETTING: GateSetting = { mode: "off", detail: "", retryAfterSeconds: 0, retryUntil: null };
const READS = new Set(["GET", "HEAD"]);

/**
 * Admits or refuses requests to the routes it guards, and counts the admitted
 * ones still running so a drain can wait for them. The hot path reads one
 * field: no I/O per request. An operator holding the bypass token passes.
 *
 * A request is admitted once its body has arrived (the body stage runs
 * first), and asked again by {@link admitWrite} right before each write: one
 * admitted before the gate closed starts no write after it closed.
 */
export class Gate implements WriteAdmission {
  private setting: GateSetting = OPEN_SETTING;
  private window: string | null = null;
  private running = 0;
  private refused = 0;
  /** Drains waiting for `running` to reach 0. */
  private idleWaiters: (() => void)[] = [];
  private readonly bypass: ((given: string) => boolean) | null;

  constructor(
    bypassToken: string | null = null,
    private readonly clock: Clock = systemClock,
  ) {
    this.bypass = bypassToken === null ? null : secretMatcher(bypassToken);
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

  /** Enforces `setting` from the next request on. */
  set(setting: GateSetting): void {
    this.setting = setting.mode === "off" ? OPEN_SETTING : setting;
  }

  /** Announces an upcoming window on every response (`<start>/<end>`, ISO 8601), or stops announcing. */
  announce(window: string | null): void {
    this.window = window;
  }

  /**
   * Waits until no admitted request is running, or `timeoutMs` passes, or
   * `interrupt` aborts. Returns true when drained.
   */
  async drain(timeoutMs: number, interrupt: AbortSignal): Promise<boolean> {
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

  /** Refuses the write when the gate refuses writes now (any maintenance mode). */
  admitWrite(): void {
    if (this.setting.mode !== "off") throw this.refusal(this.setting);
  }

  /** Middleware for the guarded routes. */
  middleware(): MiddlewareHandler<AppEnv> {
    return async (c, next) => {
      const setting = this.setting;
      let bypassed = false;
      if (setting.mode !== "off" && (setting.mode === "full" || !READS.has(c.req.method))) {
        const given = c.req.header(BYPASS_HEADER);
        if (given === undefined || this.bypass === null || !this.bypass(given)) throw this.refusal(setting);
        bypassed = true;
        c.set("writeAdmission", BYPASSED_WRITES);
      }
      this.running++;
      try {
        await next();
      } finally {
        if (--this.running === 0 && this.idleWaiters.length > 0) for (const wake of this.idleWaiters) wake();
        // After next(): headers set before it are lost when the route fails and onError builds the response.
        if (bypassed) c.header(BYPASSED_HEADER, "true");
        if (this.window) c.header(WINDOW_HEADER, this.window);
      }
    };
  }

  /** The maintenance 503, counted as refused. */
  private refusal(setting: GateSetting): HttpProblem {
    this.refused++;
    return new HttpProblem({
      status: 503,
      slug: "maintenance",
      title: "Service Unavailable",
      detail: setting.detail,
      headers: {
        "Retry-After": String(retryAfter(setting, this.clock)),
        ...(this.window && { [WINDOW_HEADER]: this.window }),
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
