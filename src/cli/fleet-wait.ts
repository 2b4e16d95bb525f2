import type { HistoryReset } from "../maintenance/etcd-history.ts";
import type { Acknowledgement } from "../maintenance/fleet.ts";
import { within } from "../util/sleep.ts";
import type { InstanceEntry } from "./acks.ts";
import { instancesTable } from "./acks.ts";
import { formatDuration } from "./duration.ts";
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
 */
export async function waitForFleet(store: FleetStore, out: Output, options: WaitOptions): Promise<number> {
  const { serviceKey, target, timeoutMs } = options;
  const started = performance.now();
  const goal = target.goal === "on" ? "drained" : "out of maintenance";
  const revisionText = target.revision === null ? "" : ` at revision >= ${target.revision}`;
  out.out(`waiting up to ${formatDuration(timeoutMs)} for every instance to be ${goal}${revisionText}`);
  const changed = new ChangeSignal();
  let watch: InstancesWatch | undefined;
  let shown = "";
  let entries: InstanceEntry[] = [];
  let lastError: EtcdCallError | null = null;
  try {
    for (;;) {
      const elapsed = performance.now() - started;
      try {
        const instances = await store.instances(serviceKey);
        entries = instances.entries;
        lastError = null;
        if (!watch || watch.ended) watch = store.watchInstances(serviceKey, instances.storeRevision, changed.set);
      } catch (error) {
        if (!(error instanceof EtcdCallError)) throw error;
        lastError = error;
      }
      if (store.historyReset) return await historyWentBack(store, out, options, store.historyReset);
      if (!lastError && entries.length === 0) {
        out.err(
          `maint: no instance acknowledges under ${serviceKey}/instances/: nothing confirms the change ` +
            "(are the instances running, and connected to this etcd?)",
        );
        return 1;
      }
      const pending = lastError ? [] : assess(entries, target);
      if (!lastError) {
        const table = instancesTable(entries, Date.now(), "progress");
        if (table !== shown) {
          out.out(`[${formatDuration(elapsed)}]`);
          out.out(table);
          shown = table;
        }
        if (pending.length === 0) {
          const all = entries.length === 1 ? "the one instance" : `all ${entries.length} instances`;
          out.out(`${all} ${goal} after ${formatDuration(performance.now() - started)}`);
          return 0;
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
        out.err(
          `maint: timed out after ${formatDuration(timeoutMs)}: ${pending.length} of ${entries.length} instances not ${goal}: ` +
            pending.map((p) => printable(`${p.name} (${explain(p)})`)).join(", "),
        );
        return 1;
      }
      const left = Math.max(0, timeoutMs - (performance.now() - started));
      await changed.next(lastError ? Math.min(RETRY_MS, left) : left);
    }
  } finally {
    await watch?.close();
  }
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
