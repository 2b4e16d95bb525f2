import { z } from "@hono/zod-openapi";

const SourceStatusSchema = z
  .object({
    kind: z.enum(["etcd", "memory"]),
    status: z.enum(["connected", "connecting", "unavailable"]).openapi({
      description: "`unavailable`: the source is lost and the last known state is kept (fail-static).",
    }),
    last_confirmed_at: z.string().nullable().openapi({ format: "date-time" }),
    stale_seconds: z.number().nullable().openapi({ description: "Age of the kept state while unavailable." }),
    last_error: z.string().nullable(),
  })
  .openapi("MaintenanceSource");

const RejectedSchema = z
  .object({ value: z.string(), revision: z.string(), at: z.string().openapi({ format: "date-time" }) })
  .nullable()
  .openapi({ description: "The last value of the key that was not understood and so changed nothing." });

/** Maintenance as `/health` and `/stats` describe it. */
export const MaintenanceStatusSchema = z
  .object({
    enabled: z.boolean(),
    phase: z.enum(["serving", "entering", "maintenance", "leaving"]),
    reason: z.string().nullable(),
    since: z.string().nullable().openapi({ format: "date-time" }),
    retry_after_seconds: z.number().int().nullable(),
    key: z.string(),
    revision: z.string().nullable(),
    source: SourceStatusSchema,
    rejected: RejectedSchema,
  })
  .openapi("MaintenanceStatus");

const CheckSchema = z.object({
  status: z.enum(["up", "down", "skipped"]),
  latency_ms: z.number().optional(),
  detail: z.string().optional(),
});

/** Body of `GET /health`. */
export const HealthSchema = z
  .object({
    status: z.enum(["healthy", "unhealthy", "maintenance"]),
    maintenance: z.boolean(),
    reason: z.string().nullable().openapi({ description: "Why maintenance is on." }),
    since: z.string().nullable().openapi({ format: "date-time", description: "When maintenance began." }),
    retry_after_seconds: z.number().int().nullable(),
    rejected: RejectedSchema,
    checks: z.object({
      database: CheckSchema,
      schema: z.object({ status: z.enum(["ready", "pending"]) }),
      maintenance_source: SourceStatusSchema,
    }),
    timestamp: z.string().openapi({ format: "date-time" }),
  })
  .openapi("Health");

/** Body of `GET /stats`. */
export const StatsSchema = z
  .object({
    maintenance: z.boolean(),
    maintenance_status: MaintenanceStatusSchema,
    database: z.object({
      generation: z.number().int(),
      max: z.number().int().openapi({ description: "Configured pool size of the client in use." }),
      application_name: z.string(),
      open_connections: z.number().int().nullable().openapi({
        description: "Connections this process holds, as pg_stat_activity sees them (null when unreachable).",
      }),
      in_flight: z.number().int(),
      queries_total: z.number().int(),
      query_errors_total: z.number().int(),
    }),
    http: z.object({ in_flight: z.number().int().openapi({ description: "Admitted /users requests running." }) }),
    uptime_seconds: z.number(),
    started_at: z.string().openapi({ format: "date-time" }),
  })
  .openapi("Stats");
