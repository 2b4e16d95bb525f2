import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { swaggerUI } from "@hono/swagger-ui";
import { Hono } from "hono";
import { secureHeaders } from "hono/secure-headers";

/**
 * Swagger UI files served from the pinned swagger-ui-dist package: URL name → media type. A Map, not an
 * object literal, so `__proto__` or `toString` in the URL is not found on Object.prototype.
 */
const assets = new Map([
  ["swagger-ui.css", "text/css; charset=utf-8"],
  ["swagger-ui-bundle.js", "text/javascript; charset=utf-8"],
  ["favicon-32x32.png", "image/png"],
]);

/**
 * Scripts only from this origin (no CDN, no inline script), with hono's other
 * protective headers; no HSTS, which is the TLS terminator's to set for the whole host.
 */
const docsHeaders = secureHeaders({
  contentSecurityPolicy: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    imgSrc: ["'self'", "data:"],
    connectSrc: ["'self'"],
    frameAncestors: ["'none'"],
  },
  strictTransportSecurity: false,
});

const initializer = `window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
`;

const distDir = () => dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));

/**
 * `/docs`: Swagger UI for `/openapi.json`, working offline and under a strict
 * CSP. @hono/swagger-ui renders the page, but its default loads assets from a
 * CDN and starts with an inline script, so both are replaced by files served here.
 */
export function docsRoutes() {
  const cache = new Map<string, Uint8Array>();
  const page = swaggerUI({
    title: "database-service API",
    url: "/openapi.json",
    manuallySwaggerUIHtml: () => `
      <div id="swagger-ui"></div>
      <link rel="stylesheet" href="/docs/assets/swagger-ui.css" />
      <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" />
      <script src="/docs/assets/swagger-ui-bundle.js"></script>
      <script src="/docs/swagger-initializer.js"></script>`,
  });
  return (
    new Hono()
      .use("/docs/*", docsHeaders)
      .get("/docs", page)
      // The icon link sits in <body> (where @hono/swagger-ui puts our markup), which browsers ignore: they ask here.
      .get("/favicon.ico", (c) => c.redirect("/docs/assets/favicon-32x32.png", 301))
      // Not under /docs/assets/: a static path beside the :file parameter would make Hono fall back from
      // its RegExpRouter to the slower TrieRouter for every route of the app.
      .get("/docs/swagger-initializer.js", (c) =>
        c.body(initializer, 200, { "content-type": "text/javascript; charset=utf-8" }),
      )
      .get("/docs/assets/:file", async (c) => {
        const file = c.req.param("file");
        const type = assets.get(file);
        if (type === undefined) return c.notFound();
        let body = cache.get(file);
        if (!body) {
          body = new Uint8Array(await readFile(join(distDir(), file)));
          cache.set(file, body);
        }
        return c.body(body as Uint8Array<ArrayBuffer>, 200, {
          "content-type": type,
          "cache-control": "public, max-age=86400",
        });
      })
  );
}
