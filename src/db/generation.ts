import type { Logger } from "../logger.ts";
import { within } from "../util/sleep.ts";
import type { PoolShape, Sql, WriteTransaction } from "./client-options.ts";
import type { PendingRun } from "./pending-run.ts";
import { RunList } from "./run-list.ts";

/** A client is replaced after a connection failure at most this often. */
const RECYCLE_INTERVAL_MS = 1000;

/** Seconds `end()` may take to close a drained client's sockets before destroying them. */
const END_GRACE_SECONDS = 1;

/** What a {@link Generation} is made of. */
export interface GenerationParts {
  /** Counts up from 1 per holder; part of the client's application_name. */
  id: number;
  shape: PoolShape;
  applicationName: string;
  sql: Sql;
  /** How write transactions begin on this client. */
  transaction: WriteTransaction;
  /** Epoch ms. */
  createdAt: number;
  logger: Logger;
}

/**
 * One postgres.js client of one shape, the work running on it, and its end.
 * A client is never resized: a new generation replaces it, and the old one is
 * {@link retire}d once its runs are done.
 */
export class Generation {
  readonly id: number;
  readonly shape: PoolShape;
  readonly applicationName: string;
  readonly sql: Sql;
  readonly transaction: WriteTransaction;
  readonly createdAt: number;
  /** Work running on this client, each with its deadline. */
  readonly runs = new RunList();
  /** When a query last failed for want of a connection, and when one last succeeded (epoch ms; 0: never). */
  lastConnectionError = 0;
  lastSuccess = 0;
  private readonly logger: Logger;
  /** The one retirement, once asked for. */
  private retirement: Promise<boolean> | null = null;
  /** Resolves when the drain is over: the last run finished, or a retire()'s timeout passed. */
  private readonly drainOver: Promise<void>;
  private endDrain: () => void = () => {};

  constructor(parts: GenerationParts) {
    this.id = parts.id;
    this.shape = parts.shape;
    this.applicationName = parts.applicationName;
    this.sql = parts.sql;
    this.transaction = parts.transaction;
    this.createdAt = parts.createdAt;
    this.logger = parts.logger;
    this.drainOver = new Promise<void>((resolve) => {
      this.endDrain = resolve;
    });
  }

  /** Forgets a run that settled; while retiring, the last one to go ends the drain. */
  finished(run: PendingRun<unknown>): void {
    this.runs.delete(run);
    if (this.runs.size === 0 && this.retirement !== null) this.endDrain();
  }

  /**
   * True when a query failed for want of a connection and none has succeeded
   * since, and the client is old enough to replace (a database that stays down
   * does not get a new client per failed query).
   */
  connectionsFailed(now: number): boolean {
    if (now - this.createdAt < RECYCLE_INTERVAL_MS) return false;
    return this.lastConnectionError !== 0 && this.lastSuccess <= this.lastConnectionError;
  }

  /**
   * Ends the client once its runs have finished, waiting at most
   * `drainTimeoutMs` for them; then `end()` closes its connections, and runs
   * still waiting are given up. Resolves true when every run finished in time.
   *
   * Every call gets the same promise. A later call may shorten the wait (the
   * shutdown cuts a drain that a pool swap started) but never lengthens it.
   */
  retire(drainTimeoutMs: number): Promise<boolean> {
    this.retirement ??= this.end();
    void within(this.drainOver, drainTimeoutMs, undefined).then(this.endDrain);
    return this.retirement;
  }

  private async end(): Promise<boolean> {
    if (this.runs.size === 0) this.endDrain();
    await this.drainOver;
    const drained = this.runs.size === 0;
    // end() without a timeout can hang after a connection error (porsager/postgres#1097),
    // so it gets one, and is raced against our own timer as well.
    await within(this.sql.end({ timeout: END_GRACE_SECONDS }), END_GRACE_SECONDS * 1000 + 1000, undefined);
    // end() rejects the queries on its connections, not those still queued for one.
    for (const run of this.runs.snapshot()) run.abort("database client ended");
    this.logger.debug("db.client_ended", { generation: this.id, drained });
    return drained;
  }
}
