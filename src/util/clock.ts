/** Cancels a timer armed with {@link Clock.after}; calling it again, or after the timer fired, does nothing. */
export type CancelTimer = () => void;

/**
 * Where time comes from for code whose behaviour depends on it (windows,
 * deadlines, countdowns): given to it, so tests can move time by hand.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Calls `callback` once, `ms` from now. */
  after(ms: number, callback: () => void): CancelTimer;
}

/** setTimeout's longest delay: a longer one would fire at once. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** The real clock: `Date.now()` and `setTimeout`; delays beyond setTimeout's limit are re-armed in steps. */
export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, callback) {
    const due = Date.now() + ms;
    let timer: ReturnType<typeof setTimeout>;
    const arm = (delay: number) => {
      timer = setTimeout(fire, Math.min(Math.max(0, delay), LONGEST_TIMER_MS));
    };
    // Fires only once `due` is reached: never early, whatever the timer did.
    const fire = () => {
      const left = due - Date.now();
      if (left > 0) arm(left);
      else callback();
    };
    arm(ms);
    return () => clearTimeout(timer);
  },
};
