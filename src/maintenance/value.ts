import * as v from "valibot";

/** What one value of the maintenance key asks for. */
export type MaintenanceRequest =
  | { enabled: true; reason: string | null; retryAfterSeconds: number | null }
  | { enabled: false };

/** The outcome of reading one value: a request, or why it was not understood. */
export type ParsedValue = { ok: true; request: MaintenanceRequest } | { ok: false; problem: string };

const ON = new Set(["true", "1", "yes", "on", "enabled", "maintenance"]);
const OFF = new Set(["false", "0", "no", "off", "disabled", ""]);

/** The JSON form: `{"enabled":true,"reason":"disk upgrade","retry_after":120}`. */
const JsonValueSchema = v.strictObject(
  {
    enabled: v.boolean("enabled must be true or false"),
    reason: v.optional(v.pipe(v.string("reason must be a string"), v.trim(), v.maxLength(500, "reason is too long"))),
    retry_after: v.optional(
      v.pipe(
        v.number("retry_after must be a number"),
        v.integer("retry_after must be whole seconds"),
        v.minValue(0, "retry_after must not be negative"),
        v.maxValue(86_400 * 7, "retry_after must be at most a week"),
      ),
    ),
  },
  "must be an object of enabled, reason and retry_after only",
);

const OFF_REQUEST: MaintenanceRequest = { enabled: false };

/**
 * Reads a value of the maintenance key. `null` means the key does not exist
 * (never written, deleted, or its lease expired): off. Words are trimmed and
 * compared ignoring case; a JSON object is validated strictly. Anything else is
 * not understood, and the caller keeps its current state.
 */
export function parseMaintenanceValue(raw: string | null): ParsedValue {
  if (raw === null) return { ok: true, request: OFF_REQUEST };
  const word = raw.trim().toLowerCase();
  if (ON.has(word)) return { ok: true, request: { enabled: true, reason: null, retryAfterSeconds: null } };
  if (OFF.has(word)) return { ok: true, request: OFF_REQUEST };
  if (!word.startsWith("{")) return { ok: false, problem: "not a known word or a JSON object" };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, problem: "malformed JSON" };
  }
  const result = v.safeParse(JsonValueSchema, json);
  if (!result.success) return { ok: false, problem: result.issues.map((issue) => issue.message).join("; ") };
  const { enabled, reason, retry_after } = result.output;
  if (!enabled) return { ok: true, request: OFF_REQUEST };
  return {
    ok: true,
    request: { enabled: true, reason: reason ? reason : null, retryAfterSeconds: retry_after ?? null },
  };
}
