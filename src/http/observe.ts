import type { MiddlewareHandler } from "hono";
import type { Logger } from "../logger.ts";
import type { Metrics } from "../metrics/metrics.ts";
import { logRequest } from "./access-log.ts";
import type { AppEnv } from "./context.ts";
import { REQUEST_ID_HEADER, requestIdFrom } from "./request-id.ts";

/**
 * The one middleware every request passes first: gives it a request id
 * (echoed in `X-Request-Id`), counts it in the metrics, and logs it. One
 * middleware rather than three, because each layer of Hono's chain costs on
 * every request.
 */
export function observeRequests(logger: Logger, metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER));
    c.set("requestId", id);
    const started = performance.now();
    metrics.requestStarted();
    await next();
    const ms = performance.now() - started;
    metrics.requestFinished(c, ms / 1000);
    logRequest(logger, c, ms);
    c.res.headers.set(REQUEST_ID_HEADER, id);
  };
}
