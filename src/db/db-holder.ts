import postgres from "postgres";
import { describeError, type Logger } from "../logger.ts";
import { within } from "../util/sleep.ts";
import { type ConnectionTarget, hostOptions } from "./dsn.ts";
import {
  DatabaseReadOnlyError,
  DatabaseUnavailableError,
  errorCode,
  isConnectionError,
  isOperational,
  isStatementError,
  WriteOutcomeUnknownError,
} from "./errors.ts";

/** The postgres.js client type used throughout the service. */
export type Sql = postgres.Sql;

/** Pool settings that stay the same across client generations. */
export interface DbHolderOptions {
  max: number;
  connectTimeoutMs: number;
  idleTimeoutSeconds: number;
  /**
   * Longest a call of {@link DbHolder.run} may take: past it the caller gets a
   * DatabaseUnavailableError (a write whose COMMIT was sent: WriteOutcomeUnknownError)
   * and a read is cancelled. PostgreSQL's statement_timeout and
   * idle_in_transaction_session_timeout are set to match.
   */
  queryTimeoutMs: number;
  /** Distinguishes this process's connections in pg_stat_activity. */
  instanceId: string;
  logger: Logger;
}

/** The shape of a client: how many connections, and whether its sessions refuse writes. */
export interface PoolShape {
  max: number;
  /** Sessions start with `default_transaction_read_only=on`: PostgreSQL itself refuses writes. */
  readOnly: boolean;
}

/** One postgres.js client and what we count about it. */
interface Generation {
  readonly id: number;
  readonly max: number;
  readonly readOnly: boolean;
  readonly applicationName: string;
  readonly sql: Sql;
  readonly createdAt: number;
  /** Work running on this client, each with its deadline. */
  readonly runs: Set<PendingRun<unknown>>;
  /** Called when `runs` empties, while the client is being retired. */
  onIdle: (() => void) | null;
  /** When a query last failed for want of a connection, and when one last succeeded (epoch ms). */
  lastConnectionError: number;
  lastSuccess: number;
}

/** One call of {@link DbHolder.run} waiting on a client, and how to give it up. */
class PendingRun<T> {
  /** Settles with the work, or rejects early when aborted. */
  readonly settled: Promise<T>;
  /** Set when given up: a write's transaction then rolls back instead of committing. */
  givenUp = false;
  /** Set just before a write's COMMIT is sent: from then on, a failure leaves its outcome unknown. */
  committing = false;
  private readonly work: Promise<T>;
  private reject: (error: unknown) => void = () => {};

  constructor(
    start: (run: PendingRun<T>) => Promise<T>,
    /** Epoch ms after which it is given up. */
    readonly deadline: number,
  ) {
    this.work = start(this);
    this.settled = new Promise<T>((resolve, reject) => {
      this.reject = reject;
      this.work.then(resolve, (error: unknown) => reject(this.outcome(error)));
    });
  }

  /**
   * Gives up: rejects the caller at once, and cancels a read (removed from the
   * queue if not yet sent). A write that has not reached its COMMIT never will;
   * one that has gets {@link WriteOutcomeUnknownError}.
   */
  abort(reason: string): void {
    this.givenUp = true;
    const cancel = (this.work as { cancel?: () => unknown }).cancel;
    if (cancel) Promise.resolve(cancel.call(this.work)).catch(() => {});
    this.reject(this.outcome(new DatabaseUnavailableError(reason)));
  }

  /** What a failure means for the caller: after COMMIT went out, only an ERROR answer proves it did not apply. */
  private outcome(error: unknown): unknown {
    if (!this.committing || isStatementError(error)) return error;
    return new WriteOutcomeUnknownError("the database did not confirm the COMMIT", { cause: error });
  }
}

const NO_OPTIONS: RunOptions = {};

/** A client is replaced after a connection failure at most this often. */
const RECYCLE_INTERVAL_MS = 1000;
/** Longest an observation query (`openConnections`) may wait: /stats must not hang on a saturated pool. */
const OBSERVATION_TIMEOUT_MS = 2000;
/** How often deadlines and failed clients are checked. */
const SWEEP_INTERVAL_MS = 250;

/** What `/stats` shows about the pool. */
export interface PoolStats {
  generation: number;
  max: number;
  readOnly: boolean;
  applicationName: string;
  inFlight: number;
  queriesTotal: number;
  queryErrorsTotal: number;
}

/** Options of {@link DbHolder.run}. */
export interface RunOptions {
  /**
   * Reads only and is safe to repeat: runs as it is, outside a transaction,
   * and is cancelled at its deadline. Otherwise the work is a write, run in a
   * transaction that commits only if the caller is still waiting.
   */
  idempotent?: boolean;
  /** Overrides the holder's query timeout for this call. */
  timeoutMs?: number;
  /**
   * A write's last check, made once its transaction holds a connection and
   * right before the write is sent: throwing ends the transaction with nothing
   * written (the maintenance gate refuses writes this way).
   */
  admission?: { admitWrite(): void };
}

/**
 * Seconds a connection waits before reconnecting after the `retries`-th failed
 * connection: doubling from 50 ms up to 1 s, with jitter. postgres.js's own
 * (3^retries / 100 s, up to 20 s) counts failures across the whole pool and
 * forgets them only on a success, and the query that asked for the connection
 * waits with it: after an outage of a few seconds, requests hung for 10–20 s
 * once the database was back (cf. porsager/postgres#1193).
 */
function reconnectDelaySeconds(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 1);
}

/** Seconds `end()` may take to close a drained client's sockets before destroying them. */
const END_GRACE_SECONDS = 1;

/**
 * Owns the postgres.js client. Nothing else keeps a client: every query goes
 * through {@link DbHolder.run}, which picks the current generation, counts the
 * query in flight, runs writes in transactions that never commit after their
 * caller was answered, and turns operational failures into
 * {@link DatabaseUnavailableError}.
 *
 * postgres.js cannot change `max` on a live client, so {@link DbHolder.reconnect}
 * builds a new client and retires the old one once its queries are done.
 */
export class DbHolder {
  readonly applicationNamePrefix: string;
  private current: Generation;
  private readonly retiring = new Set<Generation>();
  private generations = 0;
  private queriesTotal = 0;
  private queryErrorsTotal = 0;
  private readonly sweepTimer: ReturnType<typeof setInterval>;

  constructor(
    private readonly target: ConnectionTarget,
    private readonly options: DbHolderOptions,
  ) {
    this.applicationNamePrefix = `database-service:${options.instanceId}:`;
    this.current = this.createGeneration({ max: options.max, readOnly: false });
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    // The sweep alone must not keep a process alive (Bun and Node timers can be unref'd).
    (this.sweepTimer as { unref?: () => void }).unref?.();
  }

  /** The shape of the client now in use. */
  get shape(): PoolShape {
    return { max: this.current.max, readOnly: this.current.readOnly };
  }

  /** Queries running now, on the current client and on clients being retired. */
  get inFlight(): number {
    let total = this.current.runs.size;
    for (const generation of this.retiring) total += generation.runs.size;
    return total;
  }

  /**
   * Runs `work` with the current client. An operational failure (see
   * {@link isOperational}) becomes a {@link DatabaseUnavailableError}; work that
   * meets a connection closed under it (the first query after a PostgreSQL
   * restart) before anything could commit is retried once.
   *
   * A write (not `idempotent`) runs in a transaction, and its COMMIT is sent
   * only while the caller still waits. So when it fails with anything but
   * {@link WriteOutcomeUnknownError} it did not commit and never will: given
   * up before its COMMIT, it rolls back. Only a COMMIT sent without an answer
   * by the deadline, or answered by a broken connection, is unknown.
   */
  async run<T>(work: (sql: Sql) => Promise<T>, options: RunOptions = NO_OPTIONS): Promise<T> {
    try {
      return await this.runOnce(work, options);
    } catch (error) {
      if (!isStaleConnection(error)) throw translate(error);
      this.options.logger.info("db.retry_after_stale_connection", describeError(error));
      try {
        return await this.runOnce(work, options);
      } catch (retryError) {
        throw translate(retryError);
      }
    }
  }

  /** One attempt on the current client, given up at its deadline. Not async: one promise per query, not three. */
  private runOnce<T>(work: (sql: Sql) => Promise<T>, options: RunOptions): Promise<T> {
    const generation = this.current;
    this.queriesTotal++;
    const start = options.idempotent
      ? () => work(generation.sql)
      : (run: PendingRun<T>) => inTransaction(generation.sql, work, run, options.admission);
    const run = new PendingRun(start, Date.now() + (options.timeoutMs ?? this.options.queryTimeoutMs));
    generation.runs.add(run);
    return run.settled.then(
      (result) => {
        generation.lastSuccess = Date.now();
        this.finished(generation, run);
        return result;
      },
      (error: unknown) => {
        this.queryErrorsTotal++;
        if (isConnectionError(error)) {
          generation.lastConnectionError = Date.now();
          this.recycle(generation);
        }
        this.finished(generation, run);
        throw error;
      },
    );
  }

  private finished(generation: Generation, run: PendingRun<unknown>): void {
    generation.runs.delete(run);
    if (generation.runs.size === 0) generation.onIdle?.();
  }

  /**
   * Connections this process holds open, as PostgreSQL sees them
   * (pg_stat_activity filtered by our application_name prefix; postgres.js has
   * no pool statistics: porsager/postgres#443). The count includes the
   * connection that asks.
   */
  async openConnections(): Promise<number> {
    const prefix = this.applicationNamePrefix;
    const [row] = await this.run(
      (sql) =>
        sql<{ open: number }[]>`
          select count(*)::int as open from pg_stat_activity where starts_with(application_name, ${prefix})`,
      { idempotent: true, timeoutMs: OBSERVATION_TIMEOUT_MS },
    );
    return row?.open ?? 0;
  }

  /** Answers whether PostgreSQL responds to `select 1` within `timeoutMs`. */
  async ping(timeoutMs: number): Promise<void> {
    await this.run((sql) => sql`select 1`, { idempotent: true, timeoutMs });
  }

  /** Counters for `/stats`. */
  stats(): PoolStats {
    return {
      generation: this.current.id,
      max: this.current.max,
      readOnly: this.current.readOnly,
      applicationName: this.current.applicationName,
      inFlight: this.inFlight,
      queriesTotal: this.queriesTotal,
      queryErrorsTotal: this.queryErrorsTotal,
    };
  }

  /**
   * Replaces the client with a new one of the given shape. New queries go to
   * the new client at once; the old one is ended after its in-flight queries
   * finish (waiting at most `drainTimeoutMs`, then `end({timeout})` cuts the
   * rest). The swap happens before this returns its promise, which resolves
   * (true when the old client's queries all finished in time) once the old
   * client has ended.
   *
   * We wait for our own in-flight count before `end()` because postgres.js
   * resolves `end()` while queries are still queued and then reopens a
   * connection for them that lingers until `idle_timeout`.
   */
  async reconnect(shape: PoolShape, drainTimeoutMs: number): Promise<boolean> {
    const old = this.current;
    this.current = this.createGeneration(shape);
    this.options.logger.info("db.client_replaced", {
      from_generation: old.id,
      to_generation: this.current.id,
      max: shape.max,
      read_only: shape.readOnly,
    });
    return this.retire(old, drainTimeoutMs);
  }

  /** Gives up runs past their deadline, and replaces a client whose connections failed. */
  private sweep(): void {
    const now = Date.now();
    for (const generation of [this.current, ...this.retiring]) {
      for (const run of generation.runs) {
        if (now < run.deadline) continue;
        generation.lastConnectionError = now;
        run.abort("database did not answer in time");
      }
    }
    this.recycle(this.current);
  }

  /**
   * Replaces a client that met a connection failure, and has not answered a
   * query since, with a fresh one of the same shape, and ends the old one
   * (running queries get the end grace). Once its connections have failed,
   * postgres.js can leave queued queries waiting forever, even after the server
   * is back (seen with 3.4.9; cf. porsager/postgres#1174); ending the client
   * rejects them.
   */
  private recycle(generation: Generation): void {
    if (generation !== this.current || Date.now() - generation.createdAt < RECYCLE_INTERVAL_MS) return;
    if (generation.lastConnectionError === 0 || generation.lastSuccess > generation.lastConnectionError) return;
    this.current = this.createGeneration({ max: generation.max, readOnly: generation.readOnly });
    this.options.logger.warn("db.client_recycled", { from_generation: generation.id, to_generation: this.current.id });
    void this.retire(generation, 0);
  }

  /** Ends every client, letting running queries finish for up to `timeoutMs`. */
  async close(timeoutMs: number): Promise<void> {
    clearInterval(this.sweepTimer);
    await Promise.all([this.retire(this.current, timeoutMs), ...[...this.retiring].map((g) => this.retire(g, 0))]);
  }

  private async retire(generation: Generation, drainTimeoutMs: number): Promise<boolean> {
    this.retiring.add(generation);
    if (generation.runs.size > 0) {
      const idle = new Promise<void>((resolve) => {
        generation.onIdle = resolve;
      });
      await within(idle, drainTimeoutMs, undefined);
      generation.onIdle = null;
    }
    const drained = generation.runs.size === 0;
    // end() without a timeout can hang after a connection error (porsager/postgres#1097),
    // so it gets one, and is raced against our own timer as well.
    await within(generation.sql.end({ timeout: END_GRACE_SECONDS }), END_GRACE_SECONDS * 1000 + 1000, undefined);
    // end() rejects the queries on its connections, not those still queued for one.
    for (const run of generation.runs) run.abort("database client ended");
    this.retiring.delete(generation);
    this.options.logger.debug("db.client_ended", { generation: generation.id, drained });
    return drained;
  }

  private createGeneration({ max, readOnly }: PoolShape): Generation {
    const id = ++this.generations;
    const applicationName = `${this.applicationNamePrefix}${id}`;
    const { logger, connectTimeoutMs, idleTimeoutSeconds } = this.options;
    const options: postgres.Options<Record<string, postgres.PostgresType>> = {
      ...hostOptions(this.target),
      database: this.target.database,
      user: this.target.username,
      ...(this.target.password !== undefined && { password: this.target.password }),
      ssl: this.target.ssl,
      // Always a number: a string or undefined `max` silently means 1 in postgres.js.
      max: Number(max),
      connect_timeout: connectTimeoutMs / 1000,
      backoff: reconnectDelaySeconds,
      idle_timeout: idleTimeoutSeconds,
      fetch_types: false,
      // Any setting may be sent at connection start; postgres.js's types name only a few.
      connection: {
        application_name: applicationName,
        TimeZone: "UTC",
        // The server gives up about when we do: a statement past it is cancelled (57014), and a write's
        // transaction left open by a client that went away is rolled back (25P03) and its locks freed.
        statement_timeout: this.options.queryTimeoutMs,
        idle_in_transaction_session_timeout: this.options.queryTimeoutMs,
        ...(readOnly && { default_transaction_read_only: "on" }),
      } as postgres.Options<Record<string, postgres.PostgresType>>["connection"],
      types: {
        // TIMESTAMP columns hold UTC wall-clock time (the session runs in UTC);
        // read them as UTC instead of the process's local zone.
        utcTimestamp: {
          to: 1114,
          from: [1114],
          serialize: (value: Date) => value.toISOString(),
          parse: (value: string) => new Date(`${value.replace(" ", "T")}Z`),
        },
      },
      onnotice: (notice) => logger.debug("db.notice", { message: notice.message }),
    };
    const sql = postgres(options) as unknown as Sql;
    return {
      id,
      max,
      readOnly,
      applicationName,
      sql,
      createdAt: Date.now(),
      runs: new Set(),
      onIdle: null,
      lastConnectionError: 0,
      lastSuccess: 0,
    };
  }
}

/**
 * Runs a write in a transaction whose COMMIT is sent only while `run` is still
 * waited for: given up before, the transaction rolls back (or is never begun).
 * `admission` is asked once the transaction holds a connection, so a write
 * that waited for one does not start after writes were refused meanwhile.
 */
function inTransaction<T>(
  sql: Sql,
  work: (sql: Sql) => Promise<T>,
  run: PendingRun<T>,
  admission: RunOptions["admission"],
): Promise<T> {
  return sql.begin(async (tx) => {
    if (run.givenUp) throw new DatabaseUnavailableError("given up before the write was sent");
    admission?.admitWrite();
    // postgres.js's TransactionSql runs tagged queries like Sql; work must not begin, reserve or end.
    const result = await work(tx as unknown as Sql);
    if (run.givenUp) throw new DatabaseUnavailableError("given up before COMMIT");
    run.committing = true;
    return result;
  }) as Promise<T>;
}

function isStaleConnection(error: unknown): boolean {
  const code = errorCode(error);
  return code === "CONNECTION_CLOSED" || code === "ECONNRESET" || code === "57P01";
}

function translate(error: unknown): unknown {
  if (errorCode(error) === "25006") return new DatabaseReadOnlyError({ cause: error });
  if (error instanceof DatabaseUnavailableError || !isOperational(error)) return error;
  return new DatabaseUnavailableError("database unavailable", { cause: error });
}
