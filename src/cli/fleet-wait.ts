import type { HistoryReset } from "../maintenance/etcd-history.ts";
import type { Acknowledgement } from "../maintenance/fleet.ts";
import { within } from "../util/sleep.ts";
import type { InstanceEntry } from "./acks.ts";
import { instancesTable } from "./acks.ts";
import { formatDuration } from "./duration.ts";
import { EXIT } from "./exit-codes.ts";
import { type Output, printable } from "./output.ts";
import { EtcdCallError, type InstancesWatch, type MaintenanceStore } from "./store.ts";

/** What `--wait` waits for. */
export interface WaitTarget {
  /** `on`: every instance in maintenance and drained; `off`: every instance out of maintenance. */
  goal: "on" | "off";
  /** Which revision in the acknowledgement tells how far the written key was read. */
  field: "revision" | "global_revision";
  /** The write's revision; null when there is none to wait for (an `off` that deleted nothing). */
  revision: number | null;
}

/** An instance not yet where the target wants it, and why. */
export interface Pending {
  name: string;
  ack: Acknowledgement | null;
  why: string;
}

/** Splits instances into those that reached `target` and those that did not (with the reason). */
export function assess(entries: InstanceEntry[], target: WaitTarget): Pending[] {
  const pending: Pending[] = [];
  for (const { name, ack, problem } of entries) {
    if (!ack) {
      pending.push({ name, ack, why: `unreadable acknowledgement: ${problem}` });
      continue;
    }
    const read = ack[target.field];
    if (target.revision !== null && (read === null || read < target.revision)) {
      const at = read === null ? "does not follow that key" : `at ${read}`;
      pending.push({ name, ack, why: `has not read revision ${target.revision} yet (${at})` });
    } else if (target.goal === "on" && ack.mode === "off") {
      pending.push({ name, ack, why: "mode off (a window not begun yet, or the value was replaced)" });
    } else if (target.goal === "on" && !ack.drained) {
      pending.push({ name, ack, why: `not drained (phase ${ack.phase}, ${ack.in_flight} in flight)` });
    } else if (target.goal === "off" && ack.mode !== "off") {
      pending.push({ name, ack, why: `mode ${ack.mode}` });
    }
  }
  return pending;
}

/** How soon a reading that failed is tried again, unless the watch regains etcd first. */
const RETRY_MS = 1000;

/** Options of {@link waitForFleet}. */
export interface WaitOptions {
  serviceKey: string;
  /** The key the command wrote: read again, to say what it holds, when etcd's history went back. */
  writtenKey: string;
  target: WaitTarget;
  timeoutMs: number;
  /** Adds to each pending instance's reason at the timeout, e.g. the other key still holding maintenance. */
  explain?: (pending: Pending[]) => Promise<(p: Pending) => string>;
  /** Aborted on Ctrl-C: the wait detaches. */
  interrupt?: AbortSignal;
}

/** The store calls {@link waitForFleet} makes: a {@link MaintenanceStore}, or a test's plain object. */
export type FleetStore = Pick<MaintenanceStore, "instances" | "watchInstances" | "read" | "historyReset">;

/**
 * Whether something changed since it was last taken: the watch sets it, the wait loop takes it.
 * A change arriving while the loop reads is kept for its next wait, not lost.
 */
class ChangeSignal {
  private pending = false;
  private wake: (() => void) | undefined;

  /** Records a change; wakes a waiting {@link next}. */
  readonly set = (): void => {
    this.pending = true;
    this.wake?.();
  };

  /** Resolves once a change is recorded (at once if one was since the last call), or after `ms`. */
  async next(ms: number): Promise<void> {
    if (!this.pending) await within(new Promise<void>((resolve) => (this.wake = resolve)), ms, undefined);
    this.wake = undefined;
    this.pending = false;
  }
}

/**
 * Waits until every live instance reached the target (exit 0), or the timeout
 * passes (exit 1, naming the instances not there). Reads the acknowledgements,
 * then again each time the watch on them reports a change (a write, a delete, a
 * lease expiring, the watch losing or regaining etcd); a reading that failed is
 * retried. Prints the progress table each time it changes. No instance at all is
 * a failure: nobody can confirm the write was acted on.
 *
 * An instance whose acknowledgement disappears before it got there (its lease
 * expired: killed, or cut off from etcd and perhaps still serving on its last
 * state; or stopped) is named, and the wait then ends with exit 1 once the
 * others got there, as Patroni's `pause --wait` names the members that did not
 * follow. One that comes back under the same name is waited for again.
 *
 * `interrupt` (Ctrl-C) detaches, as Nomad's `node drain` monitor does: the wait
 * stops watching and exits {@link EXIT.detached}; the write stands and the instances
 * go on acting on it.
 */
export async function waitForFleet(store: FleetStore, out: Output, options: WaitOptions): Promise<number> {
  const { serviceKey, target, timeoutMs, interrupt } = options;
  const started = performance.now();
  const goal = target.goal === "on" ? "drained" : "out of maintenance";
  const revisionText = target.revision === null ? "" : ` at revision >= ${target.revision}`;
  out.out(
    `waiting up to ${formatDuration(timeoutMs)} for every instance to be ${goal}${revisionText} (Ctrl-C detaches)`,
  );
  const changed = new ChangeSignal();
  const detached = new Promise<typeof DETACHED>((resolve) => {
    if (interrupt?.aborted) resolve(DETACHED);
    interrupt?.addEventListener("abort", () => resolve(DETACHED), { once: true });
  });
  interrupt?.addEventListener("abort", changed.set, { once: true });
  let watch: InstancesWatch | undefined;
  let shown = "";
  let entries: InstanceEntry[] = [];
  let lastError: EtcdCallError | null = null;
  /** The instances not there at the last reading, by name. */
  let behind = new Map<string, Pending>();
  /** Instances whose acknowledgement disappeared while not there: name → where they were last. */
  const gone = new Map<string, string>();
  const goneList = () => [...gone].map(([name, why]) => printable(`${name} (last: ${why})`)).join(", ");
  try {
    for (;;) {
      if (interrupt?.aborted) return detach(out, options, performance.now() - started);
      const elapsed = performance.now() - started;
      try {
        const instances = await Promise.race([store.instances(serviceKey), detached]);
        if (instances === DETACHED) return detach(out, options, performance.now() - started);
        entries = instances.entries;
        lastError = null;
        if (!watch || watch.ended) watch = store.watchInstances(serviceKey, instances.storeRevision, changed.set);
      } catch (error) {
        if (!(error instanceof EtcdCallError)) throw error;
        lastError = error;
      }
      if (store.historyReset) return await historyWentBack(store, out, options, store.historyReset);
      const pending = lastError ? [] : assess(entries, target);
      if (!lastError) {
        const present = new Set(entries.map((entry) => entry.name));
        for (const name of present) gone.delete(name);
        for (const [name, last] of behind) {
          if (present.has(name)) continue;
          gone.set(name, last.why);
          out.out(printable(`${name}: acknowledgement gone before it was ${goal} (its lease expired, or it stopped)`));
        }
        behind = new Map(pending.map((p) => [p.name, p]));
      }
      if (!lastError && entries.length === 0 && gone.size === 0) {
        out.err(
          `maint: no instance acknowledges under ${serviceKey}/instances/: nothing confirms the change ` +
            "(are the instances running, and connected to this etcd?)",
        );
        return 1;
      }
      if (!lastError) {
        const table = instancesTable(entries, Date.now(), "progress");
        if (table !== shown && entries.length > 0) {
          out.out(`[${formatDuration(elapsed)}]`);
          out.out(table);
          shown = table;
        }
        if (pending.length === 0) {
          const took = formatDuration(performance.now() - started);
          if (gone.size === 0) {
            const all = entries.length === 1 ? "the one instance" : `all ${entries.length} instances`;
            out.out(`${all} ${goal} after ${took}`);
            return 0;
          }
          const others = entries.length === 1 ? "the other instance" : `the other ${entries.length} instances`;
          if (entries.length > 0) out.out(`${others} ${goal} after ${took}`);
          out.err(
            `maint: ${gone.size} instance${gone.size === 1 ? "" : "s"} left before ${gone.size === 1 ? "it was" : "they were"} ${goal}: ` +
              `${goneList()}; an acknowledgement goes with its lease when its instance is killed or cut off from etcd ` +
              "(then it may still serve on its last state): check them before counting on the fleet",
          );
          return 1;
        }
      }
      if (performance.now() - started >= timeoutMs) {
        if (lastError) {
          out.err(
            `maint: timed out after ${formatDuration(timeoutMs)}: cannot read the acknowledgements: ${printable(lastError.message)}`,
          );
          return 1;
        }
        const explain = options.explain ? await options.explain(pending) : (p: Pending) => p.why;
        const goneText = gone.size === 0 ? "" : `; ${gone.size} left before: ${goneList()}`;
        out.err(
          `maint: timed out after ${formatDuration(timeoutMs)}: ${pending.length} of ${entries.length} instances not ${goal}: ` +
            pending.map((p) => printable(`${p.name} (${explain(p)})`)).join(", ") +
            goneText,
        );
        return 1;
      }
      const left = Math.max(0, timeoutMs - (performance.now() - started));
      await changed.next(lastError ? Math.min(RETRY_MS, left) : left);
    }
  } finally {
    interrupt?.removeEventListener("abort", changed.set);
    await watch?.close();
  }
}

/** What an interrupted read resolves with instead of the acknowledgements. */
const DETACHED = Symbol("detached");

/** Ctrl-C during the wait: says that nothing is cancelled and how to follow it, and exits {@link EXIT.detached}. */
function detach(out: Output, { writtenKey }: WaitOptions, elapsedMs: number): number {
  out.err(
    `maint: detached after ${formatDuration(elapsedMs)}; nothing is cancelled: ${writtenKey} stays as written ` +
      "and every instance goes on acting on it",
  );
  out.err("maint: follow it with `maint status`; the operation lock is released");
  return EXIT.detached;
}

/**
 * etcd was restored from a snapshot or rebuilt while waiting: the written revision means nothing
 * in its new history (the write itself may be gone), and acknowledgements restored with it are
 * stale. Says so, with what the key holds now, and exits 1: running the command again writes and
 * waits in the new history.
 */
async function historyWentBack(
  store: FleetStore,
  out: Output,
  { writtenKey, target }: WaitOptions,
  reset: HistoryReset,
): Promise<number> {
  const written = target.revision === null ? "the change" : `the write at revision ${target.revision}`;
  out.err(
    `maint: etcd.history_reset: etcd answers at revision ${reset.revision} after ${reset.seen} had been seen ` +
      `(${reset.cause} went back: restored from a snapshot or rebuilt); ${written} may be gone`,
  );
  const now = await store.read(writtenKey).catch(() => null);
  const holds = now === null ? "cannot be read" : now.value === null ? "is not set" : `holds ${printable(now.value)}`;
  out.err(`maint: ${writtenKey} ${holds} now: run the command again to write and wait in etcd's new history`);
  return 1;
}
