import { within } from "./sleep.ts";

/**
 * One point in time shared by several stages (e.g. the steps of a shutdown):
 * each waits only for what is left, so together they never exceed it.
 */
export class Deadline {
  private constructor(
    /** Epoch milliseconds. */
    readonly at: number,
  ) {}

  /** The deadline `ms` from now. */
  static after(ms: number): Deadline {
    return new Deadline(Date.now() + ms);
  }

  /** Milliseconds left; 0 once it has passed. */
  remaining(): number {
    return Math.max(0, this.at - Date.now());
  }

  /** Resolves with `promise`, or with `fallback` once the deadline has passed, whichever comes first. */
  race<T, F>(promise: Promise<T>, fallback: F): Promise<T | F> {
    return within(promise, this.remaining(), fallback);
  }
}
