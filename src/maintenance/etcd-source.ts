import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { describeError, type Logger } from "../logger.ts";
import { RetryBackoff } from "../util/backoff.ts";
import { sleep } from "../util/sleep.ts";
import { type EtcdHeader, EtcdHistory } from "./etcd-history.ts";
import { type KeyClient, readKey } from "./etcd-key.ts";
import type { MaintenanceSource, Observation } from "./source.ts";
import type { SourceStatus } from "./status.ts";

/** How often the source re-reads the key outside the watch (a linearizable GET). */
const RESYNC_INTERVAL_MS = 30_000;
/**
 * How long a watch lives before it is rebuilt from a fresh GET, as flagd does: a watch etcd
 * silently stops feeding (etcd-io/etcd#13822) cannot pin a stale state for longer.
 */
const WATCH_RECYCLE_MS = 10 * 60_000;
/** `connected` means etcd confirmed the state within this; two resyncs missed is not connected. */
const CONFIRMED_WITHIN_MS = 2 * RESYNC_INTERVAL_MS;
/** How long after a watch ended it is rebuilt (from a fresh GET). */
const REWATCH_DELAY_MS = 100;
/** Waits between attempts while etcd does not answer: 0.2 s, doubling, up to 2 s. */
const RETRY_BACKOFF = { firstMs: 200, maxMs: 2000 };

/** The source's intervals; the defaults are the constants above (tests shorten them). */
export interface EtcdSourceTimings {
  resyncMs: number;
  watchRecycleMs: number;
  confirmedWithinMs: number;
}

const DEFAULT_TIMINGS: EtcdSourceTimings = {
  resyncMs: RESYNC_INTERVAL_MS,
  watchRecycleMs: WATCH_RECYCLE_MS,
  confirmedWithinMs: CONFIRMED_WITHIN_MS,
};

/**
 * Watches one etcd key and reports its value, level-triggered:
 * - GET the key, then watch from that revision + 1, so nothing is lost between;
 * - GET again whenever the watch (re)connects, because the client may skip
 *   events in its resume window;
 * - a watch cancelled by etcd (compaction) never recovers in etcd3 1.1.2, so
 *   it is rebuilt from a fresh GET, with backoff;
 * - a linearizable GET every 30 s reconciles as a safety net, and the watch is
 *   rebuilt every 10 min;
 * - etcd's history going back (rebuilt empty, restored from a snapshot) is
 *   noticed on those GETs ({@link EtcdHistory}): logged once as
 *   `etcd.history_reset`, the value read is applied whatever its revision, and
 *   the watch (which etcd3 resumes from a revision of the old history, so it
 *   would wait for nothing) is rebuilt from there.
 * While etcd is unreachable the last value stands, reported as stale.
 */
export class EtcdSource implements MaintenanceSource {
  private readonly stopping = new AbortController();
  private readonly history = new EtcdHistory();
  private readonly timings: EtcdSourceTimings;
  private listener: ((observation: Observation) => void) | undefined;
  /** Revision of the latest reading reported: an older one arriving late is dropped. */
  private lastRevision = -1;
  /** Highest mod_revision of the key seen (-1 while it does not exist). */
  private keyRevision = -1;
  private state: "connecting" | "connected" | "unavailable" = "connecting";
  private lastConfirmedAt: number | null = null;
  private lastError: string | null = null;
  private watcher: Watcher | undefined;
  /** Ends the current watch (a reset, the recycle timer, or closing), which the loop then rebuilds. */
  private endWatch: (() => Promise<void>) | undefined;
  private running: Promise<void> | undefined;
  private resyncTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly client: KeyClient & Pick<Etcd3, "watch">,
    private readonly key: string,
    private readonly logger: Logger,
    timings: Partial<EtcdSourceTimings> = {},
  ) {
    this.timings = { ...DEFAULT_TIMINGS, ...timings };
  }

  start(listener: (observation: Observation) => void): void {
    this.listener = listener;
    this.running = this.run();
    this.resyncTimer = setInterval(() => void this.resync("periodic"), this.timings.resyncMs);
  }

  /** `connected` only while etcd confirmed the state within {@link CONFIRMED_WITHIN_MS}. */
  status(): SourceStatus {
    const confirmed = this.lastConfirmedAt;
    const age = confirmed === null ? null : Date.now() - confirmed;
    const unconfirmed = this.state === "connected" && (age === null || age > this.timings.confirmedWithinMs);
    const status = unconfirmed ? "unavailable" : this.state;
    return {
      kind: "etcd",
      status,
      lastConfirmedAt: confirmed === null ? null : new Date(confirmed),
      staleSeconds: status === "connected" || age === null ? null : Math.round(age / 100) / 10,
      lastError: unconfirmed
        ? `etcd has not confirmed the state for over ${this.timings.confirmedWithinMs / 1000} s`
        : this.lastError,
    };
  }

  /**
   * Cancels the watch and stops reading. The client is not this source's: its owner closes it
   * after (a client closed with a watch still on it keeps the process alive).
   */
  async close(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.resyncTimer);
    await this.endWatch?.();
    await this.running;
  }

  /** GET, watch until the watch ends, repeat; back off while etcd does not answer. */
  private async run(): Promise<void> {
    const { signal } = this.stopping;
    const backoff = new RetryBackoff(RETRY_BACKOFF);
    while (!signal.aborted) {
      let delayMs = REWATCH_DELAY_MS;
      try {
        const revision = await this.read();
        backoff.succeeded();
        await this.watchFrom(revision + 1);
      } catch (error) {
        delayMs = backoff.failed();
        this.markUnavailable(error);
      }
      if (signal.aborted) break;
      await sleep(delayMs, signal);
    }
  }

  /**
   * A linearizable GET of the key; reports it and returns the store revision it reflects.
   * When etcd's history went back, ends the watch (the loop rebuilds it from a fresh GET).
   */
  private async read(): Promise<number> {
    const mark = this.history.mark();
    const keySeen = this.keyRevision;
    const { header, value, revision: modRevision } = await readKey(this.client, this.key);
    const storeRevision = Number(header.revision);
    const reset = this.history.check(
      header,
      mark,
      modRevision === null ? undefined : { seen: keySeen, now: modRevision },
    );
    this.markConnected();
    if (reset) {
      this.logger.warn("etcd.history_reset", { key: this.key, ...reset });
      this.lastRevision = -1;
      this.keyRevision = -1;
      void this.endWatch?.();
    }
    this.report(value, modRevision ?? storeRevision, storeRevision, reset !== null);
    return storeRevision;
  }

  /** Re-reads the key outside the watch (after a reconnect, and periodically). */
  private async resync(why: string): Promise<void> {
    if (this.stopping.signal.aborted) return;
    try {
      await this.read();
    } catch (error) {
      this.logger.warn("etcd.resync_failed", { why, ...describeError(error) });
      this.markUnavailable(error);
    }
  }

  /** Resolves when the watch is cancelled by etcd, recycled, found to follow a past history, or closing. */
  private watchFrom(startRevision: number): Promise<void> {
    if (this.stopping.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      // watcher() attaches at once, so no event fires before our listeners are on.
      const watcher = this.client.watch().key(this.key).startRevision(String(startRevision)).watcher();
      this.watcher = watcher;
      const recycle = setTimeout(() => void end(), this.timings.watchRecycleMs);
      const seen = (header: EtcdHeader) => {
        if (this.watcher === watcher) this.history.saw(header);
      };
      const onKv = (kv: IKeyValue, value: string | null) => {
        if (this.watcher !== watcher) return;
        const revision = Number(kv.mod_revision);
        this.markConnected();
        this.report(value, revision, revision, false);
      };
      const finish = () => {
        clearTimeout(recycle);
        if (this.watcher === watcher) {
          this.watcher = undefined;
          this.endWatch = undefined;
        }
        resolve();
      };
      const end = () => {
        const cancelled = watcher.cancel().catch(() => {});
        finish();
        return cancelled;
      };
      this.endWatch = end;
      watcher
        // etcd3 resumes the watch after the latest revision either of these carried: the GETs must know it.
        .on("data", (response) => seen(response.header))
        .on("put", (kv) => onKv(kv, kv.value.toString("utf8")))
        .on("delete", (kv) => onKv(kv, null))
        .on("connected", (response) => {
          seen(response.header);
          void this.resync("watch connected");
        })
        .on("disconnected", (error) => this.markUnavailable(error))
        .on("error", (error) => {
          // Typically "Watcher canceled" after compaction: rebuild from a fresh GET. etcd3 has already
          // dropped the watcher; cancelling it again makes etcd answer for a watch id etcd3 no longer
          // knows, and etcd3 throws on that answer, out of reach, while another watch keeps the stream open.
          this.logger.warn("etcd.watch_cancelled", describeError(error));
          finish();
        });
    });
  }

  /** Passes on a reading unless a newer one was already reported (after a history reset, always). */
  private report(value: string | null, revision: number, asOf: number, reset: boolean): void {
    if (asOf < this.lastRevision) return;
    this.lastRevision = asOf;
    if (value !== null) this.keyRevision = Math.max(this.keyRevision, revision);
    this.listener?.(reset ? { value, revision, reset } : { value, revision });
  }

  private markConnected(): void {
    if (this.state !== "connected") this.logger.info("etcd.connected", { key: this.key });
    this.state = "connected";
    this.lastConfirmedAt = Date.now();
    this.lastError = null;
  }

  private markUnavailable(error: unknown): void {
    if (this.stopping.signal.aborted) return;
    const message = error instanceof Error ? error.message : String(error);
    if (this.state !== "unavailable") this.logger.warn("etcd.unavailable", { key: this.key, error: message });
    this.state = "unavailable";
    this.lastError = message;
  }
}
