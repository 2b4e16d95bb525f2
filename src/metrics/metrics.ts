import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { matchedRoutes } from "hono/route";
import { Counter, Gauge, Registry } from "prom-client";
import type { DbHolder } from "../db/db-holder.ts";
import { createRouter } from "../http/openapi.ts";
import type { FleetRegistration } from "../maintenance/fleet.ts";
import type { Gate } from "../maintenance/gate.ts";
import { HOLD_OUTCOMES } from "../maintenance/hold-queue.ts";
import type { MaintenanceManager } from "../maintenance/manager.ts";
import { RequestMetrics } from "./request-metrics.ts";

/** What the metrics read at scrape time. */
export interface MetricsDeps {
  db: DbHolder;
  gate: Gate;
  maintenance: Pick<MaintenanceManager, "status" | "transitionCounts" | "stableAndDrained">;
  /** This instance's acknowledgement in etcd; null or absent when the maintenance key is in-process. */
  fleet?: Pick<FleetRegistration, "pending"> | null;
}

/** Prometheus metrics of one service instance, and the calls that count requests. */
export interface Metrics {
  registry: Registry;
  /** A request began. */
  requestStarted(): void;
  /** A request was answered after `seconds`: counted by method, route pattern and status. */
  requestFinished(c: Context, seconds: number): void;
}

const MODES = ["off", "read-only", "full"] as const;
const SOURCE_STATES = ["connected", "connecting", "unavailable"] as const;

/**
 * The service's metrics. Request metrics are counted as requests pass, into
 * plain numbers; the rest is read from the gate, the maintenance manager and the
 * pool when Prometheus scrapes, so the hot path does nothing for them.
 */
export function createMetrics({ db, gate, maintenance, fleet = null }: MetricsDeps): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const requests = new RequestMetrics();
  requests.register(registry);

  /** A gauge without labels whose value `read` gives at each scrape. */
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });

  gauge("maintenance_enabled", "1 while maintenance is on (mode full or read-only), else 0.", () =>
    gate.closed ? 1 : 0,
  );
  new Gauge({
    name: "maintenance_mode",
    help: "1 for the mode the gate enforces now, 0 for the others.",
    labelNames: ["mode"] as const,
    registers,
    collect() {
      for (const mode of MODES) this.set({ mode }, gate.mode === mode ? 1 : 0);
    },
  });
  gauge(
    "maintenance_since_timestamp_seconds",
    "When maintenance began on this instance (Unix time, seconds); 0 while off.",
    () => {
      const { since } = maintenance.status();
      return since === null ? 0 : since.getTime() / 1000;
    },
  );
  gauge(
    "maintenance_window_end_timestamp_seconds",
    "When the maintenance in force ends by its window's end (Unix time, seconds); 0 while off or without an end.",
    () => {
      const end = gate.current.retryUntil;
      return end === null ? 0 : end / 1000;
    },
  );
  gauge(
    "maintenance_drained",
    "1 when no transition runs and the last one finished with every admitted request and old query done in time " +
      "(the acknowledgement's drained), else 0.",
    () => (maintenance.stableAndDrained ? 1 : 0),
  );
  if (fleet) {
    gauge(
      "maintenance_acknowledgement_pending",
      "1 while this instance's acknowledgement in etcd is behind its state (a write under way or retried), else 0.",
      () => (fleet.pending ? 1 : 0),
    );
  }
  new Counter({
    name: "maintenance_transitions_total",
    help: "Completed maintenance transitions, by kind (enter, leave, update, abandon).",
    labelNames: ["kind"] as const,
    registers,
    collect() {
      // The manager keeps the totals; a scrape copies them.
      this.reset();
      for (const [kind, count] of Object.entries(maintenance.transitionCounts)) this.inc({ kind }, count);
    },
  });
  new Counter({
    name: "maintenance_rejected_requests_total",
    help: "Requests answered 503 because of maintenance.",
    registers,
    collect() {
      this.reset();
      this.inc(gate.refusedTotal);
    },
  });
  new Gauge({
    name: "maintenance_held_requests",
    help: "Refused requests waiting for maintenance to end (hold mode); they are not in flight.",
    registers,
    collect() {
      this.set(gate.held);
    },
  });
  new Counter({
    name: "maintenance_hold_outcomes_total",
    help:
      "Held requests by how they ended: released (served after maintenance), timed_out (503 after their wait or the " +
      "episode's budget), overflow (503 at once, too many held), client_gone (dropped, never run).",
    labelNames: ["outcome"] as const,
    registers,
    collect() {
      this.reset();
      const outcomes = gate.holdOutcomes;
      for (const outcome of HOLD_OUTCOMES) this.inc({ outcome }, outcomes[outcome]);
    },
  });
  new Gauge({
    name: "maintenance_source_up",
    help: "1 for the state of each maintenance key's source (etcd or in-process), 0 for the others.",
    labelNames: ["key", "kind", "state"] as const,
    registers,
    collect() {
      for (const { key, source } of maintenance.status().keys) {
        for (const state of SOURCE_STATES) this.set({ key, kind: source.kind, state }, source.status === state ? 1 : 0);
      }
    },
  });
  gauge("db_pool_max", "Configured max connections of the postgres.js client in use.", () => db.shape.max);
  new Gauge({
    name: "db_pool_open_connections",
    help: "Connections this instance holds, as pg_stat_activity sees them (absent when the database does not answer).",
    registers,
    async collect() {
      this.reset();
      const open = await db.openConnections().catch(() => null);
      if (open !== null) this.set(open);
    },
  });
  gauge(
    "db_queries_in_flight",
    "Queries running now, on the current client and on clients being retired.",
    () => db.inFlight,
  );

  return {
    registry,
    requestStarted: () => {
      requests.inFlight++;
    },
    requestFinished: (c, seconds) => {
      requests.inFlight--;
      requests.record(c.req.method, routePattern(c), c.res.status, seconds);
    },
  };
}

/** The pattern of the route that handled the request (`/users/:id`), not its path: bounded label values. */
function routePattern(c: Context): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const route = routes[i];
    if (route && route.method !== "ALL") return route.path;
  }
  return "unmatched";
}

const metricsRoute = createRoute({
  method: "get",
  path: "/metrics",
  operationId: "getMetrics",
  tags: ["health"],
  summary: "Prometheus metrics",
  description: "Prometheus text exposition format. Always served, also in maintenance.",
  responses: {
    200: {
      description: "The metrics.",
      content: { "text/plain": { schema: z.string() } },
    },
  },
});

/** `GET /metrics`. */
export function metricsRoutes(metrics: Metrics) {
  return createRouter().openapi(metricsRoute, async (c) =>
    c.text(await metrics.registry.metrics(), 200, { "content-type": metrics.registry.contentType }),
  );
}
