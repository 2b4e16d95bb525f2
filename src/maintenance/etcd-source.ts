import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { describeError, type Logger } from "../logger.ts";
import { sleep } from "../util/sleep.ts";
import type { MaintenanceSource, Observation } from "./source.ts";
import type { SourceStatus } from "./status.ts";

/** Interval of the safety-net linearizable GET. */
const RESYNC_INTERVAL_MS = 30_000;
/** First and longest wait between attempts while etcd does not answer. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;

/**
 * Watches one etcd key and reports its value, level-triggered:
 * - GET the key, then watch from that revision + 1, so nothing is lost between;
 * - GET again whenever the watch (re)connects, because the client may skip
 *   events in its resume window;
 * - a watch cancelled by etcd (compaction) never recovers in etcd3 1.1.2, so
 *   it is rebuilt from a fresh GET, with backoff;
 * - a linearizable GET every 30 s reconciles as a safety net.
 * While etcd is unreachable the last value stands, reported as stale.
 */
export class EtcdSource implements MaintenanceSource {
  private readonly stopping = new AbortController();
  private listener: ((observation: Observation) => void) | undefined;
  private lastRevision = -1;
  private state: SourceStatus["status"] = "connecting";
  private lastConfirmedAt: number | null = null;
  private lastError: string | null = null;
  private watcher: Watcher | undefined;
  private running: Promise<void> | undefined;
  private resyncTimer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly key: string,
    private readonly logger: Logger,
  ) {}

  start(listener: (observation: Observation) => void): void {
    this.listener = listener;
    this.running = this.run();
    this.resyncTimer = setInterval(() => void this.resync("periodic"), RESYNC_INTERVAL_MS);
  }

  status(): SourceStatus {
    const confirmed = this.lastConfirmedAt;
    return {
      kind: "etcd",
      status: this.state,
      last_confirmed_at: confirmed === null ? null : new Date(confirmed).toISOString(),
      stale_seconds:
        this.state === "connected" || confirmed === null ? null : Math.round((Date.now() - confirmed) / 100) / 10,
      last_error: this.lastError,
    };
  }

  /** Cancels the watch before closing the client: close alone keeps the process alive. */
  async close(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.resyncTimer);
    await this.watcher?.cancel().catch(() => {});
    await this.running;
    this.client.close();
  }

  /** GET, watch until the watch dies, repeat; back off while etcd does not answer. */
  private async run(): Promise<void> {
    const { signal } = this.stopping;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const revision = await this.read();
        failures = 0;
        await this.watchFrom(revision + 1);
      } catch (error) {
        failures++;
        this.markUnavailable(error);
      }
      if (signal.aborted) break;
      const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 10));
      await sleep(delay, signal);
    }
  }

  /** A linearizable GET of the key; reports it and returns the store revision it reflects. */
  private async read(): Promise<number> {
    const response = await this.client.get(this.key).exec();
    const storeRevision = Number(response.header.revision);
    const [kv] = response.kvs;
    this.markConnected();
    this.report(kv ? kv.value.toString("utf8") : null, kv ? Number(kv.mod_revision) : storeRevision, storeRevision);
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

  /** Resolves when the watch is cancelled by etcd or the source is closing. */
  private watchFrom(startRevision: number): Promise<void> {
    return new Promise((resolve) => {
      // watcher() attaches at once, so no event fires before our listeners are on.
      const watcher = this.client.watch().key(this.key).startRevision(String(startRevision)).watcher();
      this.watcher = watcher;
      const onKv = (kv: IKeyValue, value: string | null) => {
        const revision = Number(kv.mod_revision);
        this.markConnected();
        this.report(value, revision, revision);
      };
      const finish = () => {
        this.stopping.signal.removeEventListener("abort", abort);
        if (this.watcher === watcher) this.watcher = undefined;
        resolve();
      };
      const abort = () => {
        void watcher.cancel().catch(() => {});
        finish();
      };
      watcher
        .on("put", (kv) => onKv(kv, kv.value.toString("utf8")))
        .on("delete", (kv) => onKv(kv, null))
        .on("connected", () => void this.resync("watch connected"))
        .on("disconnected", (error) => this.markUnavailable(error))
        .on("error", (error) => {
          // Typically "Watcher canceled" after compaction: rebuild from a fresh GET. etcd3 has already
          // dropped the watcher; cancelling it again makes etcd answer for a watch id etcd3 no longer
          // knows, and etcd3 throws on that answer, out of reach, while another watch keeps the stream open.
          this.logger.warn("etcd.watch_cancelled", describeError(error));
          finish();
        });
      this.stopping.signal.addEventListener("abort", abort, { once: true });
    });
  }

  /** Passes on a reading unless a newer one was already reported. */
  private report(value: string | null, revision: number, asOf: number): void {
    if (asOf < this.lastRevision) return;
    this.lastRevision = asOf;
    this.listener?.({ value, revision });
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
