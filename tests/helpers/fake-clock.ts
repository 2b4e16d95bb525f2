import type { CancelTimer, Clock } from "../../src/util/clock.ts";

interface Timer {
  due: number;
  /** Arming order: timers due at the same instant fire in it. */
  seq: number;
  callback: () => void;
}

/** Lets every promise chain that can move on do so (a macrotask runs only after all pending microtasks). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A clock that moves only when the test says so. {@link advance} fires the
 * timers that fall due on the way, in order, each at its own instant, and lets
 * the work they start run before the next one fires.
 */
export class FakeClock implements Clock {
  private time: number;
  private seq = 0;
  private timers: Timer[] = [];

  constructor(start: number | Date = Date.UTC(2030, 0, 1)) {
    this.time = typeof start === "number" ? start : start.getTime();
  }

  now(): number {
    return this.time;
  }

  after(ms: number, callback: () => void): CancelTimer {
    const timer = { due: this.time + Math.max(0, ms), seq: this.seq++, callback };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** Timers armed and not yet fired. */
  get pending(): number {
    return this.timers.length;
  }

  /** Moves time forward by `ms`, firing what falls due meanwhile. */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.time + ms);
  }

  /** Moves time forward to `at` (epoch ms or a Date), firing what falls due meanwhile. */
  async advanceTo(at: number | Date): Promise<void> {
    const target = typeof at === "number" ? at : at.getTime();
    if (target < this.time) throw new Error("a clock does not go back");
    await settle();
    for (let next = this.nextDue(target); next; next = this.nextDue(target)) {
      this.timers = this.timers.filter((t) => t !== next);
      this.time = next.due;
      next.callback();
      await settle();
    }
    this.time = target;
  }

  private nextDue(until: number): Timer | undefined {
    let next: Timer | undefined;
    for (const timer of this.timers) {
      if (timer.due > until) continue;
      if (!next || timer.due < next.due || (timer.due === next.due && timer.seq < next.seq)) next = timer;
    }
    return next;
  }
}
