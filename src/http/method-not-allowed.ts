import type { NotFoundHandler } from "hono";
import type { RouterRoute } from "hono/types";
import type { AppEnv } from "./context.ts";
import { HttpProblem, problemResponse } from "./problem.ts";

/** A path pattern of the app and the methods it serves. */
interface KnownPath {
  pattern: RegExp;
  methods: Set<string>;
}

/** `/users/:id` → `^/users/[^/]+$`; null for middleware patterns (`*`) and regex or optional parameters. */
function patternOf(path: string): RegExp | null {
  if (/[*?{}]/.test(path)) return null;
  const source = path
    .split("/")
    .map((segment) => (segment.startsWith(":") ? "[^/]+" : segment.replace(/[.+^$()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${source}$`);
}

/** The app's paths with the methods each serves (HEAD wherever GET is), from its route table. */
function knownPaths(routes: readonly RouterRoute[]): KnownPath[] {
  const methods = new Map<string, Set<string>>();
  for (const { method, path } of routes) {
    if (method === "ALL" || patternOf(path) === null) continue;
    const set = methods.get(path) ?? new Set<string>();
    set.add(method);
    if (method === "GET") set.add("HEAD");
    methods.set(path, set);
  }
  return [...methods].map(([path, set]) => ({ pattern: patternOf(path) as RegExp, methods: set }));
}

/**
 * The app's not-found handler, answering 405 with `Allow` (RFC 9110 §15.5.6)
 * when the path is one the app serves with other methods only, and `notFound`
 * otherwise (unknown paths stay 404). Runs only for requests no route took: the paths are matched
 * here, never on the hot path. Call once every route is registered.
 */
export function methodNotAllowed(
  routes: readonly RouterRoute[],
  notFound: NotFoundHandler<AppEnv>,
): NotFoundHandler<AppEnv> {
  const known = knownPaths(routes);
  return (c) => {
    const path = c.req.path;
    // Several patterns may match one path (`/docs/assets/:file` and a fixed file): the union is allowed.
    const methods = new Set(known.flatMap((entry) => (entry.pattern.test(path) ? [...entry.methods] : [])));
    // A route that serves this method and found nothing (an unknown asset) is a 404 too.
    if (methods.size === 0 || methods.has(c.req.method)) return notFound(c);
    const allow = [...methods].sort().join(", ");
    const problem = new HttpProblem({
      status: 405,
      slug: "method-not-allowed",
      title: "Method Not Allowed",
      detail: `${c.req.method} is not served on ${path}; allowed: ${allow}.`,
      headers: { Allow: allow },
    });
    // Returned, not thrown: when no middleware but the observer matched, Hono's onError would answer
    // outside it (no request id, no metrics).
    return problemResponse(c, problem);
  };
}
