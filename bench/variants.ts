/**
 * The service's request path rebuilt one layer at a time from src/ modules, to
 * price each layer (bench/ablation.ts). VARIANT (cumulative, each adds to the one before):
 *   holder    bare Hono, queries through src's UsersRepository + DbHolder (no validation)
 *   openapi   OpenAPIHono + src's usersRoutes: zod validation, toJson, error handler
 *   observe   + src's observeRequests middleware: request id, request metrics, access log (at LOG_LEVEL)
 *   gate      + the body read on POST/PUT and the gate on /users: the service's middleware stack
 *
 *   VARIANT=openapi PORT=8082 DATABASE_URL=postgres://... bun bench/variants.ts
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { Hono } from "hono";
import { loadConfig } from "../src/config.ts";
import { DbHolder } from "../src/db/db-holder.ts";
import { parseDatabaseUrl } from "../src/db/dsn.ts";
import type { AppEnv } from "../src/http/context.ts";
import { errorHandler, notFound } from "../src/http/errors.ts";
import { observeRequests } from "../src/http/observe.ts";
import { validationHook } from "../src/http/openapi.ts";
import { readBody } from "../src/http/read-body.ts";
import { IdempotentWrites } from "../src/idempotency/idempotent-writes.ts";
import { createLogger } from "../src/logger.ts";
import { Gate } from "../src/maintenance/gate.ts";
import { createMetrics, type MetricsDeps } from "../src/metrics/metrics.ts";
import { usersRoutes } from "../src/users/users.handlers.ts";
import { UsersRepository } from "../src/users/users.repository.ts";
import { VARIANTS } from "./targets.ts";

const variant = process.env.VARIANT ?? "holder";
const level = VARIANTS.indexOf(variant);
if (level < 0) throw new Error(`VARIANT must be one of ${VARIANTS.join(", ")}`);

// Pool settings exactly as the service derives them from the same environment.
const config = loadConfig({ DATABASE_URL: process.env.DATABASE_URL, LOG_LEVEL: process.env.LOG_LEVEL ?? "warn" });
const logger = createLogger(config.logLevel);
const db = new DbHolder(parseDatabaseUrl(process.env.DATABASE_URL ?? ""), {
  ...config.db,
  max: config.db.poolMax,
  instanceId: `variant-${variant}`,
  logger,
});
const gate = new Gate();
const users = new UsersRepository(db, { ready: true }, gate);

function buildApp() {
  if (level === 0) {
    return new Hono()
      .get("/users/:id", async (c) => {
        const user = await users.get(Number(c.req.param("id")));
        return user ? c.json(user) : c.json({ error: "not found" }, 404);
      })
      .post("/users", async (c) => c.json(await users.create(await c.req.json()), 201));
  }
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  if (level >= 2) {
    // The maintenance part is read only when /metrics is scraped, which the benchmark never does.
    const maintenance = {} as MetricsDeps["maintenance"];
    app.use("*", observeRequests(logger, createMetrics({ db, gate, maintenance })));
  }
  if (level >= 3) {
    app.on(["POST", "PUT"], "/users/*", readBody());
    app.use("/users/*", gate.middleware());
  }
  app.route("/", usersRoutes(users, new IdempotentWrites(config.idempotencyTtlSeconds)));
  app.onError(errorHandler(logger));
  app.notFound(notFound);
  return app;
}

const server = Bun.serve({ port: Number(process.env.PORT ?? 8082), hostname: "127.0.0.1", fetch: buildApp().fetch });
const stop = async () => {
  await server.stop();
  await db.close(1000);
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
