import { Buffer } from "node:buffer";
import type { KVClient, LeaseClient } from "etcd3";
import type { EtcdHeader } from "./etcd-history.ts";

/**
 * The etcd calls made on a maintenance key: an `Etcd3` client, or a test's plain object.
 * The RPC clients rather than etcd3's builders: the same calls (and default deadlines)
 * with nothing but plain requests and answers to fake.
 */
export interface KeyClient {
  kv: Pick<KVClient, "range" | "put" | "deleteRange">;
  leaseClient: Pick<LeaseClient, "leaseGrant">;
}

/** A linearizable read of a key. */
export interface KeyReading {
  /** The answer's header: the store revision it reflects, for the checks of etcd-history.ts. */
  header: EtcdHeader;
  /** null when the key does not exist. */
  value: string | null;
  /** The key's mod_revision; null when it does not exist. */
  revision: number | null;
  /** The lease the key is attached to (hex, as etcdctl prints it); null when none. */
  lease: string | null;
}

/** What a write did. */
export interface KeyWrite {
  header: EtcdHeader;
  /** The write's revision. */
  revision: number;
  /** The lease the value was attached to (hex), when a TTL was given. */
  lease: string | null;
}

/** What a delete did. */
export interface KeyDeletion {
  header: EtcdHeader;
  /** The delete's revision (the store's revision when nothing was deleted). */
  revision: number;
  /** The value the key held; null when it did not exist (nothing was deleted). */
  previous: string | null;
}

/** A lease ID (an int64) as etcdctl shows it: 16 hex digits, leading zeros kept (`%016x`). */
export const hexLease = (id: string): string => BigInt(id).toString(16).padStart(16, "0");

/** Reads `key`, as `etcdctl get` does (linearizable). */
export async function readKey(client: KeyClient, key: string): Promise<KeyReading> {
  const response = await client.kv.range({ key: Buffer.from(key) });
  const [kv] = response.kvs;
  return {
    header: response.header,
    value: kv ? kv.value.toString("utf8") : null,
    revision: kv ? Number(kv.mod_revision) : null,
    lease: kv && kv.lease !== "0" ? hexLease(kv.lease) : null,
  };
}

/** Writes `value` to `key`, under a new lease of `ttlSeconds` when given (the key goes when it expires). */
export async function writeKey(
  client: KeyClient,
  key: string,
  value: string,
  ttlSeconds: number | null = null,
): Promise<KeyWrite> {
  const lease = ttlSeconds === null ? null : (await client.leaseClient.leaseGrant({ TTL: ttlSeconds })).ID;
  const response = await client.kv.put({
    key: Buffer.from(key),
    value: Buffer.from(value),
    ...(lease !== null && { lease }),
  });
  return {
    header: response.header,
    revision: Number(response.header.revision),
    lease: lease === null ? null : hexLease(lease),
  };
}

/** Deletes `key` (maintenance off), returning what it held. */
export async function deleteKey(client: KeyClient, key: string): Promise<KeyDeletion> {
  const response = await client.kv.deleteRange({ key: Buffer.from(key), prev_kv: true });
  const [previous] = response.prev_kvs;
  return {
    header: response.header,
    revision: Number(response.header.revision),
    previous: previous ? previous.value.toString("utf8") : null,
  };
}
