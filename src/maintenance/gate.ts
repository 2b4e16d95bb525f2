import type { MiddlewareHandler } from "hono";
import { HttpProblem } from "../http/problem.ts";
import { sleep } from "../util/sleep.ts";

/** Why the gate is closed, as clients are told. */
export interface ClosedReason {
  detail: string;
  retryAfterSeconds: number;
}

/**
 * Admits or refuses requests to the routes it guards, and counts the admitted
 * ones still running so a drain can wait for them. The hot path reads one
 * field: no I/O per request.
 */
export class Gate {
  private closedWith: ClosedReason | undefined;
  private running = 0;

  /** Whether new requests are refused. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Admitted requests that have not finished. */
  get inFlight(): number {
    return this.running;
  }

  /** Refuse new requests with 503 and `reason` (replaces an earlier reason). */
  close(reason: ClosedReason): void {
    this.closedWith = reason;
  }

  /** Admit requests again. */
  open(): void {
    this.closedWith = undefined;
  }

  /**
   * Waits until no admitted request is running, or `timeoutMs` passes.
   * Returns true when drained.
   */
  async drain(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.running > 0 && Date.now() < deadline && !signal?.aborted) await sleep(5, signal);
    return this.running === 0;
  }

  /** Middleware for the guarded routes. */
  middleware(): MiddlewareHandler {
    return async (_c, next) => {
      const reason = this.closedWith;
      if (reason) {
        throw new HttpProblem(503, "maintenance", "Service Unavailable", reason.detail, {
          headers: { "Retry-After": String(reason.retryAfterSeconds) },
        });
      }
      this.running++;
      try {
        await next();
      } finally {
        this.running--;
      }
    };
  }
}
