import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./context.ts";

/** Header carrying the request id, accepted from clients and always echoed. */
export const REQUEST_ID_HEADER = "X-Request-Id";

const acceptable = /^[\w.:@/+=-]{1,128}$/;

/** Takes the client's `X-Request-Id` when it is sane, else makes one, and echoes it. */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const given = c.req.header(REQUEST_ID_HEADER);
    const id = given !== undefined && acceptable.test(given) ? given : crypto.randomUUID();
    c.set("requestId", id);
    await next();
    c.res.headers.set(REQUEST_ID_HEADER, id);
  };
}
