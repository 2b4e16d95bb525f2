/**
 * SQL of the `idempotency_keys` table. Each function runs on the transaction
 * it is given: a key's row is written in the same transaction as the write it
 * records, so both commit or neither.
 */
import type { Sql } from "../db/db-holder.ts";

/** What a key is bound to: the request it was first used for. */
export interface KeyedRequest {
  key: string;
  method: string;
  path: string;
  /** See {@link requestFingerprint}. */
  fingerprint: string;
}

/** An answer as stored under a key, and replayed. */
export interface StoredResponse {
  status: number;
  /** Only the headers that belong to the answer (Content-Type, Location), by lower-case name. */
  headers: Record<string, string>;
  /** The body as sent; null when there was none. */
  body: string | null;
}

/** A live (unexpired) key's row. */
export interface StoredKey extends StoredResponse {
  method: string;
  path: string;
  fingerprint: string;
}

/**
 * Takes the key for the rest of the transaction, without waiting: false when
 * another transaction holds it (its request is still running). A transaction
 * lock on the key's 64-bit hash, released only after COMMIT has made that
 * transaction's row visible; two keys sharing a hash only ever wait for each other.
 */
export async function claimKey(sql: Sql, key: string): Promise<boolean> {
  const [row] = await sql<{ claimed: boolean }[]>`
    SELECT pg_try_advisory_xact_lock(hashtextextended(${key}, 0)) AS claimed`;
  return row?.claimed === true;
}

/** The key's row, unless it has expired (an expired row not swept yet counts as absent). */
export async function findKey(sql: Sql, key: string): Promise<StoredKey | undefined> {
  const [row] = await sql<StoredKey[]>`
    SELECT method, path, fingerprint, status, headers, body FROM idempotency_keys
    WHERE key = ${key} AND expires_at > now()`;
  return row;
}

/** Records `response` as the answer to `request` for `ttlSeconds`, replacing an expired row of the same key. */
export async function saveKey(
  sql: Sql,
  request: KeyedRequest,
  response: StoredResponse,
  ttlSeconds: number,
): Promise<void> {
  await sql`
    INSERT INTO idempotency_keys (key, method, path, fingerprint, status, headers, body, expires_at)
    VALUES (${request.key}, ${request.method}, ${request.path}, ${request.fingerprint}, ${response.status},
      ${sql.json(response.headers)}, ${response.body}, now() + make_interval(secs => ${ttlSeconds}))
    ON CONFLICT (key) DO UPDATE SET
      method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status,
      headers = EXCLUDED.headers, body = EXCLUDED.body, created_at = EXCLUDED.created_at,
      expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()`;
}

/** Deletes up to `limit` expired keys, oldest first; resolves with how many. */
export async function deleteExpiredKeys(sql: Sql, limit: number): Promise<number> {
  const result = await sql`
    DELETE FROM idempotency_keys WHERE key IN (
      SELECT key FROM idempotency_keys WHERE expires_at <= now() ORDER BY expires_at LIMIT ${limit})`;
  return result.count;
}
