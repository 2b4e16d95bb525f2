import { OpenAPIHono } from "@hono/zod-openapi";
import { ADMIN_SECURITY_SCHEME, adminRoutes } from "./admin/admin.routes.ts";
import { adminAuth } from "./admin/admin-auth.ts";
import { docsRoutes } from "./docs/swagger-ui.ts";
import { type HealthDeps, healthRoutes } from "./health/health.routes.ts";
import type { AppEnv } from "./http/context.ts";
import { errorHandler, notFound } from "./http/errors.ts";
import { methodNotAllowed } from "./http/method-not-allowed.ts";
import { observeRequests } from "./http/observe.ts";
import { registerSharedResponses, validationHook } from "./http/openapi.ts";
import { readBody } from "./http/read-body.ts";
import { requestPath } from "./http/request-path.ts";
import { IdempotentWrites } from "./idempotency/idempotent-writes.ts";
import type { Logger } from "./logger.ts";
import type { MaintenanceObserver } from "./maintenance/manager.ts";
import type { MaintenanceWriter } from "./maintenance/writer.ts";
import { type Metrics, metricsRoutes } from "./metrics/metrics.ts";
import { usersRoutes } from "./users/users.handlers.ts";
import { UsersRepository } from "./users/users.repository.ts";
import { VERSION } from "./version.ts";

/** What the admin API needs; it is mounted only when a token is configured. */
export interface AdminDeps {
  token: string;
  key: string;
  writer: MaintenanceWriter;
  manager: MaintenanceObserver;
}

/** Everything the app needs; built by the entry (or a test), never on import. */
export interface AppDeps extends HealthDeps {
  logger: Logger;
  admin: AdminDeps | null;
  metrics: Metrics;
  /** How long a write's answer is kept under its Idempotency-Key. */
  idempotencyTtlSeconds: number;
}

/** The OpenAPI document's fixed fields. */
export const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "database-service",
    version: VERSION,
    description:
      "Users API with maintenance mode driven by an etcd key. In maintenance every /users operation answers 503 " +
      "with Retry-After, while /health, /health/live, /stats, /metrics, /openapi.json and /docs stay served.",
  },
  // Relative: the document describes whichever origin serves it.
  servers: [{ url: "/" }],
  // No authentication on these operations.
  security: [],
  tags: [
    { name: "users", description: "Users CRUD (503 in maintenance)" },
    { name: "health", description: "Health and statistics (always served)" },
    { name: "admin", description: "Maintenance control (only when ADMIN_TOKEN is set)" },
  ],
};

/**
 * Builds the HTTP app. Building starts nothing (requests do: a body read arms
 * its deadline); the caller owns and closes every resource in `deps`.
 */
export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook, getPath: requestPath });
  registerSharedResponses(app.openAPIRegistry);

  app.use("*", observeRequests(deps.logger, deps.metrics));

  // "/users/*" matches "/users" too. The body is read first: a request is in flight for the gate
  // (and a drain) only once it can work against the database, not while it uploads.
  app.on(["POST", "PUT"], "/users/*", readBody());
  app.use("/users/*", deps.gate.middleware());

  if (deps.admin) {
    const { token, key, writer, manager } = deps.admin;
    app.openAPIRegistry.registerComponent("securitySchemes", ADMIN_SECURITY_SCHEME, {
      type: "http",
      scheme: "bearer",
      description: "The service's ADMIN_TOKEN.",
    });
    app.use("/admin/*", adminAuth(token), readBody());
    app.route("/", adminRoutes(key, writer, manager));
  }
  const users = new UsersRepository(deps.db, deps.schema, deps.gate);
  app.route("/", usersRoutes(users, new IdempotentWrites(deps.idempotencyTtlSeconds)));
  app.route("/", healthRoutes(deps));
  app.route("/", metricsRoutes(deps.metrics));
  app.route("/", docsRoutes());
  app.doc31("/openapi.json", OPENAPI_INFO);

  app.onError(errorHandler(deps.logger));
  app.notFound(methodNotAllowed(app.routes, notFound));
  return app;
}
