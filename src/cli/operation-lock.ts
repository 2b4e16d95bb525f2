import * as v from "valibot";
import { formatDuration } from "./duration.ts";
import { printable } from "./output.ts";
import type { StoredKey } from "./store.ts";

/**
 * Seconds the operation lock outlives a holder that stopped keeping it alive (killed, frozen,
 * cut off from etcd): the longest another operator waits for a lock nobody holds any more.
 */
export const LOCK_LEASE_SECONDS = 10;

/** Where the lock serializing `maint on`/`off` on `key` lives. */
export const operationLockKey = (key: string) => `${key}/lock`;

/** Who holds an operation lock, as written in it. */
export interface LockHolder {
  /** `user@host` of the operator's machine. */
  operator: string;
  pid: number;
  /** The command line after `maint`. */
  command: string;
  /** When the lock was taken (ISO 8601, the holder's clock). */
  since: string;
}

const LockHolderSchema = v.object({
  operator: v.string(),
  pid: v.number(),
  command: v.string(),
  since: v.string(),
}) satisfies v.GenericSchema<unknown, LockHolder>;

/** The holder written in a lock's value; null when the value is not one. */
export function parseHolder(raw: string | null): LockHolder | null {
  let json: unknown;
  try {
    json = JSON.parse(raw ?? "");
  } catch {
    return null;
  }
  const parsed = v.safeParse(LockHolderSchema, json);
  return parsed.success ? parsed.output : null;
}

/**
 * A held lock in words: `alice@bastion (pid 4242) running \`maint on --wait\`, since
 * 2026-12-01T04:10:00.000Z (1m5s ago), lease 694d77d5e8f5e00b`; a value that names no
 * holder is shown as it is.
 */
export function describeHolder(held: StoredKey, now: number): string {
  const lease = held.lease === null ? "no lease" : `lease ${held.lease}`;
  const holder = parseHolder(held.value);
  if (!holder) return printable(`an unrecognised holder ${JSON.stringify(held.value)} (${lease})`);
  const { operator, pid, command, since } = holder;
  const age = now - Date.parse(since);
  const ago = Number.isNaN(age) ? "" : ` (${formatDuration(Math.max(0, age))} ago)`;
  return printable(`${operator} (pid ${pid}) running \`maint ${command}\`, since ${since}${ago}, ${lease}`);
}
