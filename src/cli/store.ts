import { Buffer } from "node:buffer";
import { CompareResult, CompareTarget, type Etcd3, EtcdLeaseInvalidError, type Lease } from "etcd3";
import { ETCD_CALL_TIMEOUT_MS, isEtcdUnreachable } from "../maintenance/etcd-client.ts";
import { type EtcdHeader, EtcdHistory, type HistoryReset } from "../maintenance/etcd-history.ts";
import { deleteKey, hexLease, type KeyDeletion, type KeyWrite, readKey, writeKey } from "../maintenance/etcd-key.ts";
import { instancesPrefix } from "../maintenance/fleet.ts";
import { within } from "../util/sleep.ts";
import { type InstanceEntry, parseEntry } from "./acks.ts";

/** An etcd call failed or did not answer in time; the CLI exits 1. */
export class EtcdCallError extends Error {
  constructor(
    message: string,
    /** No answer (down, unreachable, too slow), as opposed to an answer refusing the call (auth, permissions). */
    readonly unreachable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A key as etcd holds it now. */
export interface StoredKey {
  key: string;
  /** null when the key does not exist. */
  value: string | null;
  /** The key's mod_revision; null when it does not exist. */
  revision: number | null;
  /** The lease the key is attached to (hex, as etcdctl prints it); null when none. */
  lease: string | null;
  /** The store's revision when read. */
  storeRevision: number;
}

/** The acknowledgements under `<serviceKey>/instances/`, by instance name. */
export interface Instances {
  entries: InstanceEntry[];
  /** The store's revision when read: a watch from the next one misses no change. */
  storeRevision: number;
}

/** A watch on the acknowledgements; see {@link MaintenanceStore.watchInstances}. */
export interface InstancesWatch {
  /** True once etcd cancelled it (e.g. its start revision was compacted): it tells of no further change. */
  readonly ended: boolean;
  close(): Promise<void>;
}

/** A lock this command holds; see {@link MaintenanceStore.acquireLock}. */
export interface HeldLock {
  /**
   * Stops keeping the lease alive and revokes it, deleting the lock key. Resolves with whether the
   * lock turned out to be lost before: its lease revoked by someone else (`maint unlock`) or expired
   * (etcd out of reach for longer than its TTL, or restored without it).
   */
  release(): Promise<{ lost: boolean }>;
}

/** What an attempt to take a lock found: it is ours now, or the key as its holder wrote it. */
export type LockAttempt = { acquired: true; lock: HeldLock } | { acquired: false; holder: StoredKey };

/** Every etcd call gets this long, beyond the client's own 5 s deadlines, before it counts as unanswered. */
const CALL_BOUND_MS = ETCD_CALL_TIMEOUT_MS + 500;
/** Longest a closing watch waits for etcd to confirm its cancellation. */
const WATCH_CANCEL_MS = 1000;
/** What a call's bounded wait gives when etcd did not answer in time. */
const NO_ANSWER = Symbol("no answer");

/**
 * The CLI's etcd operations, each bounded: the client's own 5 s deadlines,
 * raced against a timer for the calls that might outlive them (dialing, retries).
 * Every answer is checked against the history seen so far ({@link EtcdHistory}),
 * so a write's revision is known to be meaningless once etcd was restored or rebuilt.
 */
export class MaintenanceStore {
  private readonly history = new EtcdHistory();
  /** The latest time etcd's history was found to have gone back, if ever. */
  historyReset: HistoryReset | null = null;

  constructor(private readonly client: Etcd3) {}

  async read(key: string): Promise<StoredKey> {
    const { header, ...stored } = await this.bounded(() => readKey(this.client, key));
    return { key, ...stored, storeRevision: Number(header.revision) };
  }

  /** Seconds left on a lease (hex id); null when it is gone. */
  async leaseSecondsLeft(lease: string): Promise<number | null> {
    const response = await this.bounded(() =>
      this.client.leaseClient.leaseTimeToLive({ ID: BigInt(`0x${lease}`).toString() }),
    );
    const ttl = Number(response.TTL);
    return ttl < 0 ? null : ttl;
  }

  /** Writes `value` to `key`, under a new lease of `ttlSeconds` when given. */
  write(key: string, value: string, ttlSeconds: number | null): Promise<KeyWrite> {
    return this.bounded(() => writeKey(this.client, key, value, ttlSeconds));
  }

  /** Deletes `key`, returning what it held. */
  delete(key: string): Promise<KeyDeletion> {
    return this.bounded(() => deleteKey(this.client, key));
  }

  /** Every acknowledgement under `<serviceKey>/instances/`, by instance name. */
  async instances(serviceKey: string): Promise<Instances> {
    const prefix = instancesPrefix(serviceKey);
    const response = await this.bounded(() => this.client.getAll().prefix(prefix).exec());
    const entries = response.kvs
      .map((kv) => parseEntry(kv.key.toString("utf8").slice(prefix.length), kv.value.toString("utf8")))
      .sort((a, b) => a.name.localeCompare(b.name));
    return { entries, storeRevision: Number(response.header.revision) };
  }

  /**
   * Watches `<serviceKey>/instances/` from the revision after `storeRevision` (that of an
   * {@link instances} reading, so no change between is missed) and calls `onChange` whenever an
   * acknowledgement is written, deleted or expires, and whenever the watch loses or regains etcd
   * (changes may have been missed): the caller reads them again.
   */
  watchInstances(serviceKey: string, storeRevision: number, onChange: () => void): InstancesWatch {
    const watcher = this.client
      .watch()
      .prefix(instancesPrefix(serviceKey))
      .startRevision(String(storeRevision + 1))
      .watcher();
    const watch = {
      ended: false,
      async close() {
        await within(
          watcher.cancel().catch(() => {}),
          WATCH_CANCEL_MS,
          undefined,
        );
      },
    };
    watcher
      .on("data", (response) => {
        // A later reading is checked against the revisions the watch delivered, as against any answer.
        this.history.saw(response.header);
        onChange();
      })
      .on("connected", onChange)
      .on("disconnected", onChange)
      .on("error", () => {
        // etcd cancelled the watch (etcd3 has already dropped it): the next reading starts another.
        watch.ended = true;
        onChange();
      });
    return watch;
  }

  /**
   * Writes `value` to `lockKey` under a new lease of `ttlSeconds`, kept alive until released,
   * if and only if the key does not exist (one transaction); otherwise reads who holds it.
   * The lease ends the lock when this process dies or loses etcd, so no lock outlives its holder
   * by more than `ttlSeconds`.
   */
  async acquireLock(lockKey: string, value: string, ttlSeconds: number): Promise<LockAttempt> {
    const lease = this.client.lease(ttlSeconds);
    // etcd3 emits "lost" when a keep-alive finds the lease gone, and when the first grant fails.
    let lost = false;
    lease.on("lost", () => {
      lost = true;
    });
    try {
      const id = await this.answered(() => lease.grant());
      const key = Buffer.from(lockKey);
      const response = await this.bounded(() =>
        this.client.kv.txn({
          compare: [{ key, target: CompareTarget.Create, result: CompareResult.Equal, create_revision: 0 }],
          success: [{ request_put: { key, value: Buffer.from(value), lease: id } }],
          failure: [{ request_range: { key } }],
        }),
      );
      if (!response.succeeded) {
        await revokeQuietly(lease);
        const [kv] = response.responses[0]?.response_range.kvs ?? [];
        const holder: StoredKey = {
          key: lockKey,
          value: kv ? kv.value.toString("utf8") : null,
          revision: kv ? Number(kv.mod_revision) : null,
          lease: kv && kv.lease !== "0" ? hexLease(kv.lease) : null,
          storeRevision: Number(response.header.revision),
        };
        return { acquired: false, holder };
      }
      const release = async () => {
        lease.release();
        if (lost) return { lost };
        try {
          // The RPC, not lease.revoke(), which hides a lease already gone.
          await this.answered(() => this.client.leaseClient.leaseRevoke({ ID: id }));
          return { lost: false };
        } catch (error) {
          // Not answered: the lease expires by itself within its TTL.
          return { lost: error instanceof EtcdCallError && error.cause instanceof EtcdLeaseInvalidError };
        }
      };
      return { acquired: true, lock: { release } };
    } catch (error) {
      // etcd did not answer: stop the keep-alives without another call it would not answer either;
      // a lease granted unseen expires within its TTL.
      lease.release();
      throw error;
    }
  }

  /**
   * Breaks the lock at `lockKey`: revokes its lease (the key goes with it, and its holder's
   * keep-alive learns it lost the lock), or deletes the key when it has no lease.
   * Resolves with what the key held; its value is null when there was no lock.
   */
  async breakLock(lockKey: string): Promise<StoredKey> {
    const held = await this.read(lockKey);
    if (held.lease !== null) {
      const lease = held.lease;
      await this.bounded(() => this.client.leaseClient.leaseRevoke({ ID: BigInt(`0x${lease}`).toString() }));
    } else if (held.value !== null) {
      await this.delete(lockKey);
    }
    return held;
  }

  private async bounded<T extends { header: EtcdHeader }>(call: () => Promise<T>): Promise<T> {
    const mark = this.history.mark();
    const response = await this.answered(call);
    this.historyReset = this.history.check(response.header, mark) ?? this.historyReset;
    return response;
  }

  /** `call`'s answer, or an {@link EtcdCallError} when it fails or does not come within {@link CALL_BOUND_MS}. */
  private async answered<T>(call: () => Promise<T>): Promise<T> {
    let response: T | typeof NO_ANSWER;
    try {
      response = await within(call(), CALL_BOUND_MS, NO_ANSWER);
    } catch (error) {
      throw new EtcdCallError(describeEtcdError(error), isEtcdUnreachable(error), { cause: error });
    }
    if (response === NO_ANSWER) {
      throw new EtcdCallError(`no answer within ${(CALL_BOUND_MS / 1000).toFixed(1)} s`, true);
    }
    return response;
  }
}

/** Revokes `lease`, ignoring failures: unrevoked, it expires after its TTL anyway. */
async function revokeQuietly(lease: Lease): Promise<void> {
  await within(
    lease.revoke().catch(() => {}),
    CALL_BOUND_MS,
    undefined,
  );
}

/** grpc's messages, to one readable line: `14 UNAVAILABLE: No connection established. Last error: …`. */
function describeEtcdError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (
    message
      .split("\n")[0]
      ?.replace(/\.?\s*Resolution note:.*$/, "")
      .replace(/^4 DEADLINE_EXCEEDED: Deadline exceeded after ([\d.]+)s,.*$/, "no answer within $1 s")
      .trim() ?? message
  );
}
