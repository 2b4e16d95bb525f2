import { z } from "@hono/zod-openapi";
import type { PoolStats } from "../db/db-holder.ts";
import type { HoldOutcome } from "../maintenance/hold-queue.ts";
import type {
  KeyStatus,
  MaintenanceStatus,
  RejectedValue,
  SourceStatus,
  TransitionRecord,
  Window,
} from "../maintenance/status.ts";

/*
 * Each JSON shape is declared once, as a zod schema; its type is inferred, and
 * a mapper beside it builds it from the domain snapshot (camelCase, Dates,
 * numeric revisions). etcd revisions go out as strings: they are 64-bit.
 */

const iso = (date: Date | null) => (date === null ? null : date.toISOString());
const revisionString = (revision: number | null) => (revision === null ? null : String(revision));

const SourceStatusSchema = z
  .object({
    kind: z.enum(["etcd", "memory"]),
    status: z.enum(["connected", "connecting", "unavailable"]).openapi({
      description:
        "`connected`: etcd confirmed the state within the last 60 s. `unavailable`: the source is lost, or has " +
        "not confirmed the state within 60 s; the last known state is kept (fail-static).",
    }),
    last_confirmed_at: z.string().nullable().openapi({ format: "date-time" }),
    stale_seconds: z.number().nullable().openapi({ description: "Age of the kept state while unavailable." }),
    last_error: z.string().nullable(),
  })
  .openapi("MaintenanceSource");

/** A maintenance source's status as JSON. */
export type SourceStatusJson = z.infer<typeof SourceStatusSchema>;

const sourceStatusJson = (source: SourceStatus): SourceStatusJson => ({
  kind: source.kind,
  status: source.status,
  last_confirmed_at: iso(source.lastConfirmedAt),
  stale_seconds: source.staleSeconds,
  last_error: source.lastError,
});

const ModeSchema = z.enum(["off", "read-only", "full"]).openapi("MaintenanceMode", {
  description: "`read-only`: reads served, writes 503; `full`: every /users operation 503.",
});

const RejectedSchema = z
  .object({ key: z.string(), value: z.string(), revision: z.string(), at: z.string().openapi({ format: "date-time" }) })
  .nullable()
  .openapi({ description: "The last value of a key that was not understood and so changed nothing." });

/** A rejected value as JSON. */
export type RejectedValueJson = z.infer<typeof RejectedSchema>;

const rejectedJson = (rejected: RejectedValue | null): RejectedValueJson =>
  rejected && {
    key: rejected.key,
    value: rejected.value,
    revision: String(rejected.revision),
    at: rejected.at.toISOString(),
  };

const WindowSchema = z
  .object({
    start: z.string().nullable().openapi({ format: "date-time" }),
    end: z.string().nullable().openapi({ format: "date-time" }),
  })
  .nullable()
  .openapi({ description: "The nearest maintenance window written but not yet begun." });

const windowJson = (window: Window | null): z.infer<typeof WindowSchema> =>
  window && { start: iso(window.start), end: iso(window.end) };

const KeyStatusSchema = z
  .object({
    key: z.string(),
    mode: ModeSchema.nullable().openapi({ description: "What the key asks for now; null before the first reading." }),
    revision: z.string().nullable(),
    source: SourceStatusSchema,
  })
  .openapi("MaintenanceKeyStatus");

const keyStatusJson = (key: KeyStatus): z.infer<typeof KeyStatusSchema> => ({
  key: key.key,
  mode: key.mode,
  revision: revisionString(key.revision),
  source: sourceStatusJson(key.source),
});

const TransitionSchema = z
  .object({
    kind: z.enum(["enter", "leave", "update", "abandon"]),
    at: z.string().openapi({ format: "date-time" }),
    key: z.string(),
    revision: z.string().nullable(),
    from_mode: ModeSchema,
    mode: ModeSchema,
    reason: z.string().nullable(),
    drained: z.boolean(),
    drain_ms: z.number().int(),
    ms: z.number().int(),
  })
  .openapi("MaintenanceTransition");

const transitionJson = (transition: TransitionRecord): z.infer<typeof TransitionSchema> => ({
  kind: transition.kind,
  at: transition.at.toISOString(),
  key: transition.key,
  revision: revisionString(transition.revision),
  from_mode: transition.fromMode,
  mode: transition.mode,
  reason: transition.reason,
  drained: transition.drained,
  drain_ms: transition.drainMs,
  ms: transition.ms,
});

/** Maintenance as `/health` and `/stats` describe it. */
export const MaintenanceStatusSchema = z
  .object({
    enabled: z.boolean(),
    mode: ModeSchema,
    phase: z.enum(["serving", "entering", "maintenance", "leaving"]),
    reason: z.string().nullable(),
    since: z.string().nullable().openapi({ format: "date-time" }),
    retry_after_seconds: z.number().int().nullable(),
    key: z.string().openapi({ description: "The key that caused the current state." }),
    revision: z.string().nullable(),
    upcoming_window: WindowSchema,
    source: SourceStatusSchema,
    keys: z.array(KeyStatusSchema),
    rejected: RejectedSchema,
    transitions: z
      .array(TransitionSchema)
      .openapi({ description: "The latest transitions, newest first (at most 20)." }),
  })
  .openapi("MaintenanceStatus");

/** Maintenance status as JSON. */
export type MaintenanceStatusJson = z.infer<typeof MaintenanceStatusSchema>;

/** The JSON of a maintenance status, as `/health`, `/stats` and the admin API show it. */
export function maintenanceStatusJson(status: MaintenanceStatus): MaintenanceStatusJson {
  return {
    enabled: status.enabled,
    mode: status.mode,
    phase: status.phase,
    reason: status.reason,
    since: iso(status.since),
    retry_after_seconds: status.retryAfterSeconds,
    key: status.key,
    revision: revisionString(status.revision),
    upcoming_window: windowJson(status.upcomingWindow),
    source: sourceStatusJson(status.source),
    keys: status.keys.map(keyStatusJson),
    rejected: rejectedJson(status.rejected),
    transitions: status.transitions.map(transitionJson),
  };
}

const CheckSchema = z.object({
  status: z.enum(["up", "down"]),
  latency_ms: z.number().optional(),
  detail: z.string().optional(),
});

/** Body of `GET /health`. */
export const HealthSchema = z
  .object({
    status: z.enum(["healthy", "unhealthy", "maintenance"]),
    maintenance: z.boolean(),
    mode: ModeSchema,
    key: z.string().openapi({ description: "The maintenance key that caused the current state." }),
    reason: z.string().nullable().openapi({ description: "Why maintenance is on." }),
    since: z.string().nullable().openapi({ format: "date-time", description: "When maintenance began." }),
    retry_after_seconds: z.number().int().nullable(),
    held_requests: z.number().int().openapi({
      description: "Refused /users requests waiting for maintenance to end (hold mode); they are not in flight.",
    }),
    upcoming_window: WindowSchema,
    rejected: RejectedSchema,
    checks: z.object({
      database: CheckSchema,
      schema: z.object({ status: z.enum(["ready", "pending"]) }),
      maintenance_source: SourceStatusSchema,
    }),
    timestamp: z.string().openapi({ format: "date-time" }),
  })
  .openapi("Health");

const HoldOutcomesSchema = z
  .object({
    released: z.number().int(),
    timed_out: z.number().int(),
    overflow: z.number().int(),
    client_gone: z.number().int(),
  })
  .openapi("HoldOutcomes", {
    description:
      "Held requests since start, by how they ended: `released` (served once maintenance ended), `timed_out` " +
      "(503 after their wait or the episode's budget), `overflow` (503 at once: too many held), `client_gone` " +
      "(dropped, never run).",
  });

/** The `http` part of `/stats`: requests in flight, and requests held through maintenance. */
export function httpStatsJson(
  inFlight: number,
  held: number,
  outcomes: Readonly<Record<HoldOutcome, number>>,
): z.infer<typeof StatsSchema>["http"] {
  return { in_flight: inFlight, held, hold_outcomes: { ...outcomes } };
}

/** Body of `GET /stats`. */
export const StatsSchema = z
  .object({
    maintenance: z.boolean(),
    maintenance_status: MaintenanceStatusSchema,
    database: z.object({
      generation: z.number().int(),
      max: z.number().int().openapi({ description: "Configured pool size of the client in use." }),
      read_only: z.boolean().openapi({ description: "Whether the client's sessions refuse writes (read-only mode)." }),
      application_name: z.string(),
      open_connections: z.number().int().nullable().openapi({
        description: "Connections this process holds, as pg_stat_activity sees them (null when unreachable).",
      }),
      in_flight: z.number().int(),
      queries_total: z.number().int(),
      query_errors_total: z.number().int(),
    }),
    http: z.object({
      in_flight: z.number().int().openapi({ description: "Admitted /users requests running." }),
      held: z.number().int().openapi({
        description: "Refused /users requests waiting for maintenance to end (hold mode); not in flight.",
      }),
      hold_outcomes: HoldOutcomesSchema,
    }),
    uptime_seconds: z.number(),
    started_at: z.string().openapi({ format: "date-time" }),
  })
  .openapi("Stats");

/** The pool part of `/stats`, from the pool's counters and the connections PostgreSQL sees. */
export function databaseStatsJson(
  stats: PoolStats,
  openConnections: number | null,
): z.infer<typeof StatsSchema>["database"] {
  return {
    generation: stats.generation,
    max: stats.max,
    read_only: stats.readOnly,
    application_name: stats.applicationName,
    in_flight: stats.inFlight,
    queries_total: stats.queriesTotal,
    query_errors_total: stats.queryErrorsTotal,
    open_connections: openConnections,
  };
}
