import { describe, expect, test } from "bun:test";
import { type ParsedValue, parseMaintenanceValue } from "../../src/maintenance/value.ts";

const none = { reason: null, retryAfterSeconds: null, holdMs: null, start: null, end: null };
const on: ParsedValue = { ok: true, request: { mode: "full", ...none } };
const off: ParsedValue = { ok: true, request: { mode: "off", ...none } };

describe("parseMaintenanceValue", () => {
  test.each(["true", "1", "yes", "on", "enabled", "maintenance", " TRUE ", "Yes\n", "MAINTENANCE"])(
    "%p turns maintenance on",
    (value) => expect(parseMaintenanceValue(value)).toEqual(on),
  );

  test.each(["false", "0", "no", "off", "disabled", "", "  ", " FALSE", "Off"])("%p turns maintenance off", (value) =>
    expect(parseMaintenanceValue(value)).toEqual(off),
  );

  test("a deleted key (null) turns maintenance off", () => {
    expect(parseMaintenanceValue(null)).toEqual(off);
  });

  test("a JSON object carries reason and retry_after", () => {
    expect(parseMaintenanceValue('{"enabled":true,"reason":"disk upgrade","retry_after":120}')).toEqual({
      ok: true,
      request: { mode: "full", reason: "disk upgrade", retryAfterSeconds: 120, holdMs: null, start: null, end: null },
    });
  });

  test("a JSON object carries hold_ms, also beyond the hold cap (capped where it is used)", () => {
    expect(parseMaintenanceValue('{"mode":"full","hold_ms":5000}')).toEqual({
      ok: true,
      request: { mode: "full", ...none, holdMs: 5000 },
    });
    expect(parseMaintenanceValue('{"mode":"read-only","hold_ms":60000}')).toEqual({
      ok: true,
      request: { mode: "read-only", ...none, holdMs: 60_000 },
    });
    expect(parseMaintenanceValue('{"enabled":true,"hold_ms":0}')).toEqual({
      ok: true,
      request: { mode: "full", ...none, holdMs: 0 },
    });
  });

  test("a JSON object without reason or retry_after uses the defaults", () => {
    expect(parseMaintenanceValue(' {"enabled": true} ')).toEqual(on);
  });

  test("a JSON object with enabled false turns maintenance off, whatever else it says", () => {
    expect(parseMaintenanceValue('{"enabled":false,"reason":"done"}')).toEqual(off);
  });

  test.each([
    ["garbage", "not a known word"],
    ["truee", "not a known word"],
    ["2", "not a known word"],
    ["[true]", "not a known word"],
    ["{enabled:true}", "malformed JSON"],
    ['{"enabled":"yes"}', "enabled must be true or false"],
    ['{"reason":"x"}', "enabled"],
    ['{"enabled":true,"retry_after":-1}', "retry_after must not be negative"],
    ['{"enabled":true,"retry_after":1.5}', "retry_after must be whole seconds"],
    ['{"enabled":true,"retry_after":"60"}', "retry_after must be a number"],
    ['{"enabled":true,"hold_ms":-1}', "hold_ms must not be negative"],
    ['{"enabled":true,"hold_ms":2.5}', "hold_ms must be whole milliseconds"],
    ['{"enabled":true,"hold_ms":"5000"}', "hold_ms must be a number"],
    ['{"enabled":true,"surprise":1}', "only"],
  ])("%p is rejected (%s)", (value, problem) => {
    const parsed = parseMaintenanceValue(value);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problem).toContain(problem);
  });
});
