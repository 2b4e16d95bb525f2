import type { MiddlewareHandler } from "hono";
import { HttpProblem } from "../http/problem.ts";
import { secretMatcher } from "../http/secret.ts";

/**
 * Requires `Authorization: Bearer <token>`, compared in constant time.
 * Missing and wrong tokens both answer 401.
 */
export function bearerAuth(token: string): MiddlewareHandler {
  const matches = secretMatcher(token);
  return async (c, next) => {
    const header = c.req.header("Authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = match?.[1];
    if (given === undefined || !matches(given)) {
      throw new HttpProblem(
        401,
        "unauthorized",
        "Unauthorized",
        given === undefined ? "Send Authorization: Bearer <ADMIN_TOKEN>." : "The bearer token is not valid.",
        {
          headers: {
            "WWW-Authenticate":
              given === undefined ? 'Bearer realm="admin"' : 'Bearer realm="admin", error="invalid_token"',
          },
        },
      );
    }
    await next();
  };
}
