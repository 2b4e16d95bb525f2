import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import type { AppEnv } from "../http/context.ts";
import { HttpProblem, problemResponse } from "../http/problem.ts";
import { secretMatcher } from "../http/secret.ts";

const MISSING = 'Bearer realm="admin"';
const INVALID = 'Bearer realm="admin", error="invalid_token"';

/** The 401 problem, as hono/bearer-auth's response (it adds the challenge header). */
const unauthorized = (detail: string) => (c: Context) =>
  problemResponse(
    c as Context<AppEnv>,
    new HttpProblem({ status: 401, slug: "unauthorized", title: "Unauthorized", detail }),
  );

const missing = { wwwAuthenticateHeader: MISSING, message: unauthorized("Send Authorization: Bearer <ADMIN_TOKEN>.") };

/**
 * Requires `Authorization: Bearer <token>`, compared in constant time.
 * Missing, malformed and wrong tokens all answer a 401 problem with a Bearer
 * challenge (hono/bearer-auth answers a malformed header 400 by default).
 */
export function adminAuth(token: string): MiddlewareHandler<AppEnv> {
  const matches = secretMatcher(token);
  return bearerAuth({
    realm: "admin",
    // Ours, not hono's default: its comparison hashes, then compares the digests as strings.
    verifyToken: (given) => matches(given),
    noAuthenticationHeader: missing,
    invalidAuthenticationHeader: missing,
    invalidToken: { wwwAuthenticateHeader: INVALID, message: unauthorized("The bearer token is not valid.") },
  });
}
