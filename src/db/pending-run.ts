import type { Sql, WriteTransaction } from "./client-options.ts";
import { DatabaseUnavailableError, isStatementError, WriteOutcomeUnknownError } from "./errors.ts";

/** One piece of database work waiting on a client, its deadline, and how to give it up. */
export class PendingRun<T> {
  /** Settles with the work, or rejects early when aborted. */
  readonly settled: Promise<T>;
  /** Set when given up: a write's transaction then rolls back instead of committing. */
  givenUp = false;
  /** Set just before a write's COMMIT is sent: from then on, a failure leaves its outcome unknown. */
  committing = false;
  /** Its index in its client's {@link RunList}; -1 when in none. */
  slot = -1;
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

/**
 * Runs a write in a transaction whose COMMIT is sent only while `run` is still
 * waited for: given up before, the transaction rolls back (or is never begun).
 * `admission` is asked once the transaction holds a connection, so a write
 * that waited for one does not start after writes were refused meanwhile.
 */
export function inTransaction<T>(
  sql: Sql,
  transaction: WriteTransaction,
  work: (sql: Sql) => Promise<T>,
  run: PendingRun<T>,
  admission: { admitWrite(): void } | undefined,
): Promise<T> {
  return sql.begin(transaction.begin, async (tx) => {
    if (run.givenUp) throw new DatabaseUnavailableError("given up before the write was sent");
    admission?.admitWrite();
    // Sent now, pipelined ahead of the work's first statement: no round trip of its own. Awaited after the
    // work only to surface its error; a failure also fails the work's statements (25P02), never commits.
    const settings = transaction.setLocal === null ? null : tx.unsafe(transaction.setLocal).execute();
    // postgres.js's TransactionSql runs tagged queries like Sql; work must not begin, reserve or end.
    const result = await work(tx as unknown as Sql);
    await settings;
    if (run.givenUp) throw new DatabaseUnavailableError("given up before COMMIT");
    run.committing = true;
    return result;
  }) as Promise<T>;
}
