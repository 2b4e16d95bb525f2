import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { HttpProblem } from "../http/problem.ts";

const digest = (value: string) => createHash("sha256").update(value).digest();

/**
 * Requires `Authorization: Bearer <token>`. Compared in constant time over
 * SHA-256 digests, so neither the content nor the length of the token leaks
 * through timing. Missing and wrong tokens both answer 401.
 */
export function bearerAuth(token: string): MiddlewareHandler {
  const expected = digest(token);
  return async (c, next) => {
    const header = c.req.header("Authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = match?.[1];
    if (given === undefined || !timingSafeEqual(digest(given), expected)) {
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
