import { ExponentialBackoff, type IBackoff, noJitterGenerator } from "cockatiel";

/** The first wait and the longest one of a {@link RetryBackoff}, in milliseconds. */
export interface RetryBackoffOptions {
  firstMs: number;
  maxMs: number;
}

/**
 * The waits of a loop that retries until it succeeds: `firstMs` after a first
 * failure, twice as long after each further failure in a row, at most `maxMs`,
 * without jitter; a success starts over. The delays are cockatiel's exponential
 * backoff; its `retry` policy is not used because its wait ignores the abort
 * signal, and these loops stop at once when the service does.
 */
export class RetryBackoff {
  private readonly delays: ExponentialBackoff<number>;
  /** The wait of the latest failure in a row; undefined after a success or before any failure. */
  private current: IBackoff<unknown> | undefined;
  private failuresInARow = 0;

  constructor({ firstMs, maxMs }: RetryBackoffOptions) {
    this.delays = new ExponentialBackoff({ generator: noJitterGenerator, initialDelay: firstMs, maxDelay: maxMs });
  }

  /** Failures since the last success (or since the start). */
  get failures(): number {
    return this.failuresInARow;
  }

  /** Counts one more failure in a row; returns how long to wait before the next attempt (ms). */
  failed(): number {
    this.failuresInARow++;
    this.current = this.current ? this.current.next(undefined) : this.delays.next();
    return this.current.duration;
  }

  /** Counts a success: the next failure waits `firstMs` again. */
  succeeded(): void {
    this.failuresInARow = 0;
    this.current = undefined;
  }
}
