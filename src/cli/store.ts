import type { Etcd3 } from "etcd3";
import { ETCD_CALL_TIMEOUT_MS, isEtcdUnreachable } from "../maintenance/etcd-client.ts";
import { type EtcdHeader, EtcdHistory, type HistoryReset } from "../maintenance/etcd-history.ts";
import { instancesPrefix } from "../maintenance/fleet.ts";
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

/** What a write did. */
export interface WriteResult {
  revision: number;
  /** The lease the value was attached to (hex), when a TTL was given. */
  lease: string | null;
}

/** What a delete did. */
export interface DeleteResult {
  revision: number;
  /** The value the key held; null when it did not exist (nothing was deleted). */
  previous: string | null;
}

/** Lease IDs are int64s; etcdctl shows them in hex. */
const hexLease = (id: string | number) => BigInt(id).toString(16);

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

  constructor(
    private readonly client: Etcd3,
    private readonly timeoutMs = ETCD_CALL_TIMEOUT_MS + 500,
  ) {}

  async read(key: string): Promise<StoredKey> {
    const response = await this.bounded(() => this.client.get(key).exec());
    const [kv] = response.kvs;
    const lease = kv && kv.lease !== "0" ? hexLease(kv.lease) : null;
    return {
      key,
      value: kv ? kv.value.toString("utf8") : null,
      revision: kv ? Number(kv.mod_revision) : null,
      lease,
      storeRevision: Number(response.header.revision),
    };
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
  async write(key: string, value: string, ttlSeconds: number | null): Promise<WriteResult> {
    let lease: string | null = null;
    if (ttlSeconds !== null) {
      const grant = await this.bounded(() => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
      lease = grant.ID;
    }
    const put = this.client.put(key).value(value);
    if (lease !== null) put.lease(lease);
    const response = await this.bounded(() => put.exec());
    return { revision: Number(response.header.revision), lease: lease === null ? null : hexLease(lease) };
  }

  /** Deletes `key`, returning what it held. */
  async delete(key: string): Promise<DeleteResult> {
    const response = await this.bounded(() => this.client.kv.deleteRange({ key: Buffer.from(key), prev_kv: true }));
    const [previous] = response.prev_kvs;
    return { revision: Number(response.header.revision), previous: previous ? previous.value.toString("utf8") : null };
  }

  /** Every acknowledgement under `<serviceKey>/instances/`, by instance name. */
  async instances(serviceKey: string): Promise<InstanceEntry[]> {
    const prefix = instancesPrefix(serviceKey);
    const response = await this.bounded(() => this.client.getAll().prefix(prefix).exec());
    return response.kvs
      .map((kv) => parseEntry(kv.key.toString("utf8").slice(prefix.length), kv.value.toString("utf8")))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  private async bounded<T extends { header: EtcdHeader }>(call: () => Promise<T>): Promise<T> {
    const mark = this.history.mark();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new EtcdCallError(`no answer within ${(this.timeoutMs / 1000).toFixed(1)} s`, true)),
        this.timeoutMs,
      );
    });
    try {
      const response = await Promise.race([call(), deadline]);
      this.historyReset = this.history.check(response.header, mark) ?? this.historyReset;
      return response;
    } catch (error) {
      if (error instanceof EtcdCallError) throw error;
      throw new EtcdCallError(describeEtcdError(error), isEtcdUnreachable(error), { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** grpc's messages, to one readable line: `14 UNAVAILABLE: No connection established. Last error: …`. */
export function describeEtcdError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (
    message
      .split("\n")[0]
      ?.replace(/\.?\s*Resolution note:.*$/, "")
      .replace(/^4 DEADLINE_EXCEEDED: Deadline exceeded after ([\d.]+)s,.*$/, "no answer within $1 s")
      .trim() ?? message
  );
}
