import type { GateSetting } from "./gate.ts";
import { type Mode, modeRank } from "./value.ts";

/**
 * One step toward the target, in the order the invariants ask for:
 * - `close-gate`: the gate takes the target's setting before anything else when that refuses more
 *   (off → read-only → full), or refuses the same with a new reason or Retry-After;
 * - `drain`: wait for requests admitted before the gate closed further (up to the drain timeout),
 *   before the pool is shrunk under them;
 * - `resize-pool`: reconnect the pool with the target mode's shape;
 * - `open-gate`: the gate takes the target's setting once the pool serves it (refusing less);
 * - `settled`: gate and pool are where the target wants them.
 */
export type Step = "close-gate" | "drain" | "resize-pool" | "open-gate" | "settled";

/** `serving`, `entering` (draining, shrinking the pool), `maintenance`, or `leaving` (restoring the pool). */
export type Phase = "serving" | "entering" | "maintenance" | "leaving";

/** Where the participants are, as the manager last moved them. */
export interface Actual {
  /** What the gate enforces, and tells those it refuses. */
  readonly gate: GateSetting;
  /** The mode whose shape the pool has: `off` (full size), `read-only` or `full` (maintenance size). */
  readonly pool: Mode;
  /**
   * False from the moment the gate closes further until the requests it admitted before have
   * finished or the drain timed out; a drain cut short by a new target leaves it false.
   */
  readonly drained: boolean;
}

/** A combination of gate, pool and drain that the steps can never produce. */
export class ImpossibleStateError extends Error {
  constructor(actual: Actual, why: string) {
    super(`impossible maintenance state (gate ${actual.gate.mode}, pool ${actual.pool}): ${why}`);
    this.name = "ImpossibleStateError";
  }
}

/**
 * The next step from `actual` toward the gate setting `target` (whose mode is also the pool's
 * target). Pure: the manager performs the step, then asks again with the target of that moment,
 * so a target that changes midway (a burst of toggles) only changes where the next step heads.
 */
export function nextStep(target: GateSetting, actual: Actual): Step {
  const want = modeRank[target.mode];
  const gate = modeRank[actual.gate.mode];
  const pool = modeRank[actual.pool];
  if (pool > gate) throw new ImpossibleStateError(actual, "the pool is in a more closed mode than the gate");
  if (!actual.drained && gate <= pool) {
    throw new ImpossibleStateError(actual, "a drain is pending, yet the gate refuses no more than the pool serves");
  }
  const gateCurrent = sameSetting(target, actual.gate);
  if (want > gate || (want === gate && !gateCurrent)) return "close-gate";
  if (want > pool && !actual.drained) return "drain";
  if (want !== pool) return "resize-pool";
  if (!gateCurrent) return "open-gate";
  return "settled";
}

/** The phase to report while heading from `actual` to `target`. */
export function phaseOf(target: GateSetting, actual: Actual): Phase {
  const inPlace = actual.gate.mode === target.mode && actual.pool === target.mode;
  if (target.mode === "off") return inPlace ? "serving" : "leaving";
  return inPlace ? "maintenance" : "entering";
}

/** True when two gate settings refuse the same requests with the same answer, after the same hold. */
export function sameSetting(a: GateSetting, b: GateSetting): boolean {
  return (
    a.mode === b.mode &&
    a.detail === b.detail &&
    a.retryAfterSeconds === b.retryAfterSeconds &&
    a.retryUntil === b.retryUntil &&
    a.holdMs === b.holdMs
  );
}
