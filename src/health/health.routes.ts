import { createRoute, z } from "@hono/zod-openapi";
import type { DbHolder } from "../db/db-holder.ts";
import type { SchemaStatus } from "../db/migrate.ts";
import { createRouter, jsonContent } from "../http/openapi.ts";
import type { Gate } from "../maintenance/gate.ts";
import type { MaintenanceStatusProvider } from "../maintenance/status.ts";
import {
  databaseStatsJson,
  HealthSchema,
  httpStatsJson,
  maintenanceStatusJson,
  StatsSchema,
} from "./health.schemas.ts";

/** Longest `/health` waits for PostgreSQL before calling it down. */
const DATABASE_CHECK_TIMEOUT_MS = 2000;

/** What the health and stats routes read. */
export interface HealthDeps {
  db: DbHolder;
  schema: SchemaStatus;
  gate: Gate;
  maintenance: MaintenanceStatusProvider;
  startedAt: Date;
}

const health = createRoute({
  method: "get",
  path: "/health",
  operationId: "getHealth",
  tags: ["health"],
  summary: "Readiness: database, schema, maintenance",
  description:
    "200 when the service can serve users, and also in maintenance (status `maintenance`), whatever the database " +
    "does then: maintenance is often on because the database is down. 503 when the database is unreachable outside maintenance.",
  responses: {
    200: jsonContent(HealthSchema, "Healthy, or in maintenance."),
    503: jsonContent(HealthSchema, "Unhealthy: the database does not answer."),
  },
});

const live = createRoute({
  method: "get",
  path: "/health/live",
  operationId: "getLiveness",
  tags: ["health"],
  summary: "Liveness: the process serves",
  description: "Always 200 while the process can answer; never depends on the database or maintenance.",
  responses: { 200: jsonContent(z.object({ status: z.literal("alive") }), "The process is serving.") },
});

const stats = createRoute({
  method: "get",
  path: "/stats",
  operationId: "getStats",
  tags: ["health"],
  summary: "Service and connection pool statistics",
  responses: { 200: jsonContent(StatsSchema, "Current statistics.") },
});

/** `/health`, `/health/live` and `/stats`: always served, also in maintenance. */
export function healthRoutes(deps: HealthDeps) {
  const { db, schema, gate, maintenance, startedAt } = deps;

  const checkDatabase = async () => {
    const started = performance.now();
    try {
      await db.ping(DATABASE_CHECK_TIMEOUT_MS);
      return { status: "up" as const, latency_ms: Math.round((performance.now() - started) * 100) / 100 };
    } catch {
      return { status: "down" as const, detail: "database unreachable" };
    }
  };

  return createRouter()
    .openapi(health, async (c) => {
      const m = maintenanceStatusJson(maintenance.status());
      const database = await checkDatabase();
      const status: "healthy" | "unhealthy" | "maintenance" = m.enabled
        ? "maintenance"
        : database.status === "up" && schema.ready
          ? "healthy"
          : "unhealthy";
      const body = {
        status,
        maintenance: m.enabled,
        mode: m.mode,
        key: m.key,
        reason: m.reason,
        since: m.since,
        retry_after_seconds: m.retry_after_seconds,
        held_requests: gate.held,
        upcoming_window: m.upcoming_window,
        rejected: m.rejected,
        checks: {
          database,
          schema: { status: schema.ready ? ("ready" as const) : ("pending" as const) },
          maintenance_source: m.source,
        },
        timestamp: new Date().toISOString(),
      };
      c.header("Cache-Control", "no-store");
      return status === "unhealthy" ? c.json(body, 503) : c.json(body, 200);
    })
    .openapi(live, (c) => c.json({ status: "alive" as const }, 200))
    .openapi(stats, async (c) => {
      const m = maintenanceStatusJson(maintenance.status());
      const openConnections = await db.openConnections().catch(() => null);
      c.header("Cache-Control", "no-store");
      return c.json(
        {
          maintenance: m.enabled,
          maintenance_status: m,
          database: databaseStatsJson(db.stats(), openConnections),
          http: httpStatsJson(gate.inFlight, gate.held, gate.holdOutcomes),
          uptime_seconds: Math.round((Date.now() - startedAt.getTime()) / 100) / 10,
          started_at: startedAt.toISOString(),
        },
        200,
      );
    });
}
