import { describe, expect, test } from "bun:test";
import { type GateSetting, OPEN_SETTING } from "../../src/maintenance/gate.ts";
import {
  type Actual,
  ImpossibleStateError,
  nextStep,
  type Phase,
  phaseOf,
  type Step,
} from "../../src/maintenance/transitions.ts";
import type { Mode } from "../../src/maintenance/value.ts";

const setting = (mode: Exclude<Mode, "off">, detail = "upgrade"): GateSetting => ({
  mode,
  detail,
  retryAfterSeconds: 60,
  retryUntil: null,
  holdMs: 0,
});

const OFF = OPEN_SETTING;
const RO = setting("read-only");
const FULL = setting("full");
const FULL_NEW_REASON = setting("full", "disk upgrade, second part");
const FULL_HOLDING = { ...FULL, holdMs: 3000 };

/** Gate, pool and whether the requests admitted before the gate last closed further are done. */
const at = (gate: GateSetting, pool: Mode, drained = true): Actual => ({ gate, pool, drained });

/**
 * The whole state machine: from where the participants are (gate, pool, drain), toward a
 * target, the one next step. A run repeats it with the latest target until `settled`.
 */
// biome-ignore format: one row per line keeps the table readable
const table: [string, GateSetting, Actual, Step, Phase][] = [
  // Serving.
  ["serving, target off", OFF, at(OFF, "off"), "settled", "serving"],
  ["serving, read-only arrives: the gate closes first", RO, at(OFF, "off"), "close-gate", "entering"],
  ["serving, full arrives: the gate closes first", FULL, at(OFF, "off"), "close-gate", "entering"],

  // Entering read-only: close, drain, shrink.
  ["gate read-only, admitted requests may run: drain", RO, at(RO, "off", false), "drain", "entering"],
  ["gate read-only, drained: shrink the pool", RO, at(RO, "off"), "resize-pool", "entering"],
  ["read-only in place", RO, at(RO, "read-only"), "settled", "maintenance"],

  // `false` arrives while we drain into read-only: the pool was never touched, the gate reopens.
  ["draining into read-only, off arrives: reopen the gate", OFF, at(RO, "off", false), "open-gate", "leaving"],
  ["drained into read-only, off arrives: reopen the gate", OFF, at(RO, "off"), "open-gate", "leaving"],
  // ... and full arrives instead: close further, then drain (again) before the pool moves.
  ["draining into read-only, full arrives: close further", FULL, at(RO, "off", false), "close-gate", "entering"],
  ["draining into full, read-only arrives: drain still", RO, at(FULL, "off", false), "drain", "entering"],

  // Entering full.
  ["gate full, admitted requests may run: drain", FULL, at(FULL, "off", false), "drain", "entering"],
  ["gate full, drained: shrink the pool", FULL, at(FULL, "off"), "resize-pool", "entering"],
  ["full in place", FULL, at(FULL, "full"), "settled", "maintenance"],
  ["full in place, a new reason: the gate's answer changes, nothing else", FULL_NEW_REASON, at(FULL, "full"), "close-gate", "maintenance"],
  ["full in place, a new hold: the gate's answer changes, nothing else", FULL_HOLDING, at(FULL, "full"), "close-gate", "maintenance"],
  ["draining into full, a new reason: the gate's answer changes first", FULL_NEW_REASON, at(FULL, "off", false), "close-gate", "entering"],

  // Between maintenance modes.
  ["read-only in place, full arrives: close further", FULL, at(RO, "read-only"), "close-gate", "entering"],
  ["gate full over the read-only pool: drain the reads", FULL, at(FULL, "read-only", false), "drain", "entering"],
  ["gate full over the read-only pool, drained: make it writable", FULL, at(FULL, "read-only"), "resize-pool", "entering"],
  ["full in place, read-only arrives: the pool first (it refuses writes)", RO, at(FULL, "full"), "resize-pool", "entering"],
  ["pool read-only under the full gate: open the gate to reads", RO, at(FULL, "read-only"), "open-gate", "entering"],

  // Leaving: the pool first, then the gate.
  ["full in place, off arrives: restore the pool first", OFF, at(FULL, "full"), "resize-pool", "leaving"],
  ["pool restored: open the gate", OFF, at(FULL, "off"), "open-gate", "leaving"],
  ["read-only in place, off arrives: restore the pool first", OFF, at(RO, "read-only"), "resize-pool", "leaving"],
  ["draining into full from read-only, off arrives: restore the pool", OFF, at(FULL, "read-only", false), "resize-pool", "leaving"],
  ["leaving, full arrives again: close nothing, shrink back", FULL, at(FULL, "off"), "resize-pool", "entering"],
];

describe("nextStep", () => {
  test.each(table)("%s", (_, target, actual, step) => {
    expect(nextStep(target, actual)).toBe(step);
  });

  test.each(table)("phase: %s", (_, target, actual, __, phase) => {
    expect(phaseOf(target, actual)).toBe(phase);
  });

  const impossible: [string, Actual][] = [
    ["a pool closed further than the gate", at(OFF, "full")],
    ["a read-only pool behind an open gate", at(OFF, "read-only")],
    ["a full pool behind a read-only gate", at(RO, "full")],
    ["a drain pending behind an open gate", at(OFF, "off", false)],
    ["a drain pending once the pool serves the gate's mode", at(FULL, "full", false)],
  ];
  test.each(impossible)("%s throws", (_, actual) => {
    for (const target of [OFF, RO, FULL]) expect(() => nextStep(target, actual)).toThrow(ImpossibleStateError);
  });
});
