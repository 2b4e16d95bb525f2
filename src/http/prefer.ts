/** One preference of a `Prefer` header: everything up to the next comma outside a quoted string. */
const PREFERENCE = /(?:[^,"]|"(?:[^"\\]|\\.)*")+/g;
/** `wait` `=` delta-seconds, optionally quoted, before any parameters (RFC 7240 §2, §4.3). */
const WAIT = /^\s*wait\s*=\s*(?:"(\d+)"|(\d+))\s*(?:;|$)/i;

/**
 * The `wait` preference of a `Prefer` header (RFC 7240 §4.3) in milliseconds:
 * how long the client is willing to wait for a response. Null when the header
 * is absent or has no valid `wait`; when `wait` is given more than once, the
 * first counts (§2).
 */
export function preferredWaitMs(header: string | undefined): number | null {
  if (header === undefined) return null;
  for (const [preference] of header.matchAll(PREFERENCE)) {
    const name = preference.trim().split(/[\s=;]/, 1)[0] ?? "";
    if (name.toLowerCase() !== "wait") continue;
    const match = WAIT.exec(preference);
    if (!match) return null;
    return Number(match[1] ?? match[2]) * 1000;
  }
  return null;
}
