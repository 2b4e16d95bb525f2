import type { Context } from "hono";
import type { Logger } from "../logger.ts";
import type { AppEnv } from "./context.ts";

/** Logs one line for an answered request: method, path, status, duration and request id. */
export function logRequest(logger: Logger, c: Context<AppEnv>, ms: number): void {
  if (!logger.enabled("info")) return;
  logger.info("http.request", {
    method: c.req.method,
    path: c.req.path,
    status: c.res.status,
    ms: Math.round(ms * 100) / 100,
    request_id: c.get("requestId"),
  });
}
