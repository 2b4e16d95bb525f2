import * as v from "valibot";

/** How much of the API a maintenance value closes, least to most. */
export type Mode = "off" | "read-only" | "full";

/** Ranks modes by how much they close: off < read-only < full. */
export const modeRank: Record<Mode, number> = { off: 0, "read-only": 1, full: 2 };

/** What one value of a maintenance key asks for. */
export interface MaintenanceRequest {
  mode: Mode;
  reason: string | null;
  retryAfterSeconds: number | null;
  /** How long a refused request may wait for maintenance to end (`hold_ms`); null: the service's default. */
  holdMs: number | null;
  /** The request applies from `start` (inclusive) to `end` (exclusive); null means unbounded. */
  start: Date | null;
  end: Date | null;
}

/** The outcome of reading one value: a request, or why it was not understood. */
export type ParsedValue = { ok: true; request: MaintenanceRequest } | { ok: false; problem: string };

const ON = new Set(["true", "1", "yes", "on", "enabled", "maintenance"]);
const OFF = new Set(["false", "0", "no", "off", "disabled", ""]);

/** Whether the date part names a day that exists: isoTimestamp takes 2030-02-30, which Date reads as March 2. */
const realDay = (value: string) => {
  const [, year, month, day] = /^(\d{4})-(\d{2})-(\d{2})/.exec(value) ?? [];
  return Number(day) <= new Date(Date.UTC(Number(year), Number(month), 0)).getUTCDate();
};

const timestamp = (name: string) =>
  v.optional(
    v.pipe(
      v.string(`${name} must be an RFC 3339 timestamp`),
      v.isoTimestamp(`${name} must be an RFC 3339 timestamp`),
      v.check(realDay, `${name} must be an RFC 3339 timestamp`),
      v.transform((value) => new Date(value)),
    ),
  );

/**
 * The JSON form:
 * `{"mode":"full"|"read-only"|"off","reason":"…","retry_after":120,"hold_ms":3000,"start":"…","end":"…"}`,
 * where `"enabled":true` is a synonym of `"mode":"full"` (and `false` of `"off"`). A `hold_ms` above the
 * hold cap is not refused, only capped where it is used: a value turning maintenance on must not be
 * ignored for asking too long a hold.
 */
const JsonValueSchema = v.pipe(
  v.strictObject(
    {
      enabled: v.optional(v.boolean("enabled must be true or false")),
      mode: v.optional(v.picklist(["off", "read-only", "full"], "mode must be full, read-only or off")),
      reason: v.optional(v.pipe(v.string("reason must be a string"), v.trim(), v.maxLength(500, "reason is too long"))),
      retry_after: v.optional(
        v.pipe(
          v.number("retry_after must be a number"),
          v.integer("retry_after must be whole seconds"),
          v.minValue(0, "retry_after must not be negative"),
          v.maxValue(86_400 * 7, "retry_after must be at most a week"),
        ),
      ),
      hold_ms: v.optional(
        v.pipe(
          v.number("hold_ms must be a number"),
          v.integer("hold_ms must be whole milliseconds"),
          v.minValue(0, "hold_ms must not be negative"),
        ),
      ),
      start: timestamp("start"),
      end: timestamp("end"),
    },
    "must be an object of mode (or enabled), reason, retry_after, hold_ms, start and end only",
  ),
  v.check((value) => value.enabled !== undefined || value.mode !== undefined, "enabled or mode is required"),
  v.check(
    (value) => value.enabled === undefined || value.mode === undefined || value.enabled === (value.mode !== "off"),
    "enabled and mode contradict each other",
  ),
  v.check((value) => !value.start || !value.end || value.start < value.end, "start must be before end"),
);

const request = (mode: Mode, fields: Partial<MaintenanceRequest> = {}): ParsedValue => ({
  ok: true,
  request: { mode, reason: null, retryAfterSeconds: null, holdMs: null, start: null, end: null, ...fields },
});

/**
 * Reads a value of a maintenance key. `null` means the key does not exist
 * (never written, deleted, or its lease expired): off. Words are trimmed and
 * compared ignoring case (`true` means full maintenance); a JSON object is
 * validated strictly. Anything else is not understood, and the caller keeps
 * its current state.
 */
export function parseMaintenanceValue(raw: string | null): ParsedValue {
  if (raw === null) return request("off");
  const word = raw.trim().toLowerCase();
  if (ON.has(word)) return request("full");
  if (OFF.has(word)) return request("off");
  if (!word.startsWith("{")) return { ok: false, problem: "not a known word or a JSON object" };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, problem: "malformed JSON" };
  }
  const result = v.safeParse(JsonValueSchema, json);
  if (!result.success) return { ok: false, problem: result.issues.map((issue) => issue.message).join("; ") };
  const { enabled, mode, reason, retry_after, hold_ms, start, end } = result.output;
  const resolved: Mode = mode ?? (enabled ? "full" : "off");
  if (resolved === "off") return request("off");
  return request(resolved, {
    reason: reason ? reason : null,
    retryAfterSeconds: retry_after ?? null,
    holdMs: hold_ms ?? null,
    start: start ?? null,
    end: end ?? null,
  });
}

/** The mode `request` imposes at time `now`: its own inside its window, off outside. */
export function modeAt(request: MaintenanceRequest, now: number): Mode {
  if (request.start && now < request.start.getTime()) return "off";
  if (request.end && now >= request.end.getTime()) return "off";
  return request.mode;
}

/** True when two requests ask for exactly the same thing. */
export function sameRequest(a: MaintenanceRequest, b: MaintenanceRequest): boolean {
  return (
    a.mode === b.mode &&
    a.reason === b.reason &&
    a.retryAfterSeconds === b.retryAfterSeconds &&
    a.holdMs === b.holdMs &&
    a.start?.getTime() === b.start?.getTime() &&
    a.end?.getTime() === b.end?.getTime()
  );
}
