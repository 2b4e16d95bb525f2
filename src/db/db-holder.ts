import postgres from "postgres";
import { describeError, type Logger } from "../logger.ts";
import { type CancelTimer, type Clock, systemClock } from "../util/clock.ts";
import {
  type ClientFactory,
  type ClientSettings,
  clientOptions,
  type Pooler,
  type PoolShape,
  type Sql,
  writeTransaction,
} from "./client-options.ts";
import type { ConnectionTarget } from "./dsn.ts";
import { isConnectionError, isStaleConnection, translateDatabaseError } from "./errors.ts";
import { Generation } from "./generation.ts";
import { inTransaction, PendingRun } from "./pending-run.ts";

export type { PoolShape, Sql };

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
  /** What sits between the service and PostgreSQL (default `none`); see {@link clientOptions}. */
  pooler?: Pooler;
  /** Distinguishes this process's connections in pg_stat_activity. */
  instanceId: string;
  logger: Logger;
}

/** What a {@link DbHolder} is given instead of reaching for it; unit tests pass fakes. */
export interface DbHolderDependencies {
  /** Builds each client generation's postgres.js client (default: `postgres`). */
  createClient?: ClientFactory;
  /** Reads the time for deadlines and arms the sweep (default: the system clock). */
  clock?: Clock;
}

const createPostgresClient: ClientFactory = (options) => postgres(options) as unknown as Sql;

const NO_OPTIONS: RunOptions = {};

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
 * Owns the postgres.js client. Nothing else keeps a client: every query goes
 * through {@link DbHolder.run}, which picks the current generation, counts the
 * query in flight, runs writes in transactions that never commit after their
 * caller was answered, and turns operational failures into
 * {@link DatabaseUnavailableError}.
 *
 * postgres.js cannot change `max` on a live client, so {@link DbHolder.reconnect}
 * builds a new client and retires the old one once its queries are done.
 * Building a holder opens nothing and arms no timer: clients connect on their
 * first query, and the deadline sweep runs from the first {@link DbHolder.run}
 * until {@link DbHolder.close}.
 */
export class DbHolder {
  readonly applicationNamePrefix: string;
  private current: Generation;
  private readonly retiring = new Set<Generation>();
  private generations = 0;
  private queriesTotal = 0;
  private queryErrorsTotal = 0;
  private readonly settings: ClientSettings;
  private readonly createClient: ClientFactory;
  private readonly clock: Clock;
  /** Stops the deadline sweep; null before the first run and after close. */
  private stopSweeping: CancelTimer | null = null;
  private closed = false;

  constructor(
    private readonly target: ConnectionTarget,
    private readonly options: DbHolderOptions,
    { createClient = createPostgresClient, clock = systemClock }: DbHolderDependencies = {},
  ) {
    this.applicationNamePrefix = `database-service:${options.instanceId}:`;
    this.settings = { ...options, pooler: options.pooler ?? "none" };
    this.createClient = createClient;
    this.clock = clock;
    this.current = this.createGeneration({ max: options.max, readOnly: false });
  }

  /** The shape of the client now in use. */
  get shape(): PoolShape {
    return { max: this.current.shape.max, readOnly: this.current.shape.readOnly };
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
      if (!isStaleConnection(error)) throw translateDatabaseError(error);
      this.options.logger.info("db.retry_after_stale_connection", describeError(error));
      try {
        return await this.runOnce(work, options);
      } catch (retryError) {
        throw translateDatabaseError(retryError);
      }
    }
  }

  /** One attempt on the current client, given up at its deadline. Not async: one promise per query, not three. */
  private runOnce<T>(work: (sql: Sql) => Promise<T>, options: RunOptions): Promise<T> {
    if (this.stopSweeping === null) this.startSweeping();
    const generation = this.current;
    this.queriesTotal++;
    const start = options.idempotent
      ? () => work(generation.sql)
      : (run: PendingRun<T>) => inTransaction(generation.sql, generation.transaction, work, run, options.admission);
    const run = new PendingRun(start, this.clock.now() + (options.timeoutMs ?? this.options.queryTimeoutMs));
    generation.runs.add(run);
    return run.settled.then(
      (result) => {
        generation.lastSuccess = this.clock.now();
        generation.finished(run);
        return result;
      },
      (error: unknown) => {
        this.queryErrorsTotal++;
        if (isConnectionError(error)) {
          generation.lastConnectionError = this.clock.now();
          this.recycle(generation);
        }
        generation.finished(run);
        throw error;
      },
    );
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
      max: this.current.shape.max,
      readOnly: this.current.shape.readOnly,
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

  /** Ends every client, letting running queries finish for up to `timeoutMs`, and stops the sweep. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    this.stopSweeping?.();
    this.stopSweeping = null;
    // Those retiring already are cut at once; taken before the current client joins them.
    const retiring = [...this.retiring];
    await Promise.all([this.retire(this.current, timeoutMs), ...retiring.map((g) => this.retire(g, 0))]);
  }

  /** Arms the sweep, unless the holder is closed; it re-arms itself after each pass. */
  private startSweeping(): void {
    if (this.closed) return;
    const pass = () => {
      this.sweep();
      this.stopSweeping = this.clock.after(SWEEP_INTERVAL_MS, pass);
    };
    this.stopSweeping = this.clock.after(SWEEP_INTERVAL_MS, pass);
  }

  /** Gives up runs past their deadline, and replaces a client whose connections failed. */
  private sweep(): void {
    const now = this.clock.now();
    for (const generation of [this.current, ...this.retiring]) {
      for (const run of generation.runs.snapshot()) {
        if (now < run.deadline) continue;
        generation.lastConnectionError = now;
        run.abort("database did not answer in time");
      }
    }
    this.recycle(this.current);
  }

  /**
   * Replaces the current client, when its connections failed and it has not
   * answered a query since, with a fresh one of the same shape, and ends the
   * old one (running queries get the end grace). Once its connections have
   * failed, postgres.js can leave queued queries waiting forever, even after
   * the server is back (seen with 3.4.9; cf. porsager/postgres#1174); ending
   * the client rejects them.
   */
  private recycle(generation: Generation): void {
    if (generation !== this.current || !generation.connectionsFailed(this.clock.now())) return;
    this.current = this.createGeneration(generation.shape);
    this.options.logger.warn("db.client_recycled", { from_generation: generation.id, to_generation: this.current.id });
    void this.retire(generation, 0);
  }

  /** Retires `generation` (once, however often asked), counting its runs in flight until it has ended. */
  private async retire(generation: Generation, drainTimeoutMs: number): Promise<boolean> {
    this.retiring.add(generation);
    const drained = await generation.retire(drainTimeoutMs);
    this.retiring.delete(generation);
    return drained;
  }

  private createGeneration(shape: PoolShape): Generation {
    const id = ++this.generations;
    const applicationName = `${this.applicationNamePrefix}${id}`;
    return new Generation({
      id,
      shape: { max: shape.max, readOnly: shape.readOnly },
      applicationName,
      sql: this.createClient(clientOptions(this.target, shape, applicationName, this.settings)),
      transaction: writeTransaction(shape, this.settings),
      createdAt: this.clock.now(),
      logger: this.options.logger,
    });
  }
}
