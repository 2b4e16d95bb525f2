/** Milliseconds per unit of a duration such as `1h30m`. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const DURATION = /^(?:\d+(?:ms|s|m|h|d))+$/;
const PART = /(\d+)(ms|s|m|h|d)/g;

/** Thrown by {@link parseDuration}: the text is not a duration. */
export class DurationError extends Error {}

/**
 * Parses `90s`, `30m`, `2h`, `1h30m`, `500ms` or `1d` (a bare number means
 * seconds) into milliseconds. Zero and unknown units are refused.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim().toLowerCase();
  let ms: number;
  if (/^\d+$/.test(trimmed)) {
    ms = Number(trimmed) * 1000;
  } else if (DURATION.test(trimmed)) {
    ms = 0;
    for (const [, amount, unit] of trimmed.matchAll(PART)) ms += Number(amount) * (UNIT_MS[unit as string] ?? 0);
  } else {
    throw new DurationError(`"${text}" is not a duration (use e.g. 90s, 30m, 2h or 1h30m)`);
  }
  if (!Number.isSafeInteger(ms)) throw new DurationError(`"${text}" is too long`);
  if (ms <= 0) throw new DurationError(`"${text}" must be longer than zero`);
  return ms;
}

/** `1h30m`, `90s`, `1.5s`, `250ms`: a short human form of `ms`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) {
    const seconds = Math.round(ms / 100) / 10;
    return `${seconds}s`;
  }
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join("");
}
