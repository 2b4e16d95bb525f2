import { getPath } from "hono/utils/url";

const SLASH = 0x2f;

/**
 * The path Hono routes on, also for a request whose URL is only a path. Bun
 * 1.4.5 gives an HTTP/1.0 request without `Host` the URL `/users` instead of an
 * absolute one (https://github.com/oven-sh/bun/pull/33721); Hono's own
 * `getPath` then skips past a scheme that is not there and every route 404s.
 * Such a URL is read as if on a placeholder origin (Hono's `getPath` reads
 * only `url`), which costs one comparison on every other request.
 */
export function requestPath(request: Request): string {
  const url = request.url;
  return url.charCodeAt(0) === SLASH ? getPath({ url: `http://localhost${url}` } as Request) : getPath(request);
}
