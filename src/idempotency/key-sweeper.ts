import type { DbHolder } from "../db/db-holder.ts";
import type { SchemaStatus } from "../db/migrate.ts";
import { describeError, type Logger } from "../logger.ts";
import { type CancelTimer, type Clock, systemClock } from "../util/clock.ts";
import { deleteExpiredKeys } from "./idempotency-store.ts";

/** Most expired keys one statement deletes: a backlog goes in batches, each well within the query timeout. */
export const SWEEP_BATCH = 10_000;

/** Longest pause between two sweeps. */
const MAX_SWEEP_INTERVAL_MS = 60_000;

/** What the sweeper needs. */
export interface KeySweeperDeps {
  db: Pick<DbHolder, "run">;
  schema: SchemaStatus;
  /** Whether writes are refused now (maintenance): a sweep is a write, and waits for the next turn. */
  gate: { readonly closed: boolean };
  logger: Logger;
  /** The keys' time to live: sweeps come this often, at most a minute apart. */
  ttlSeconds: number;
  clock?: Clock;
}

/** The background deletion of expired keys; {@link KeySweeper.stop} ends it. */
export interface KeySweeper {
  /** Cancels the next sweep and waits for one that is running. */
  stop(): Promise<void>;
}

/** Thrown at a sweep's admission while maintenance refuses writes: not a failure, nothing to log. */
class SweepDeferred extends Error {}

/**
 * Deletes expired idempotency keys in the background (a lookup already
 * ignores them: this only keeps the table small). Each sweep is a write
 * transaction asked to start like any other: none starts in maintenance or
 * before the schema is migrated. A failure is logged and the next sweep tries again.
 */
export function startKeySweeper(deps: KeySweeperDeps): KeySweeper {
  const { db, schema, gate, logger, clock = systemClock } = deps;
  const intervalMs = Math.min(deps.ttlSeconds * 1000, MAX_SWEEP_INTERVAL_MS);
  const admission = {
    admitWrite() {
      if (gate.closed) throw new SweepDeferred();
    },
  };
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  let cancel: CancelTimer = () => {};

  const sweep = async () => {
    if (!schema.ready || gate.closed) return;
    try {
      let total = 0;
      let deleted: number;
      do {
        deleted = await db.run((sql) => deleteExpiredKeys(sql, SWEEP_BATCH), { admission });
        total += deleted;
      } while (deleted === SWEEP_BATCH && !stopped);
      if (total > 0) logger.debug("idempotency.keys_swept", { deleted: total });
    } catch (error) {
      if (!(error instanceof SweepDeferred)) logger.warn("idempotency.sweep_failed", describeError(error));
    }
  };
  const schedule = () => {
    cancel = clock.after(intervalMs, () => {
      running = sweep().then(() => {
        if (!stopped) schedule();
      });
    });
  };
  schedule();

  return {
    async stop() {
      stopped = true;
      cancel();
      await running;
    },
  };
}
