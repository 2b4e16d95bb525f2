import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import {
  buildOpenApiDocument,
  createInertApp,
  OPENAPI_DOCUMENT_PATH,
  serializeOpenApiDocument,
} from "../../scripts/openapi-document.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

/** The slice of an OpenAPI document these tests read. */
interface Document {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        parameters?: { $ref?: string; name?: string }[];
        responses: Record<string, { $ref?: string; headers?: Record<string, unknown> }>;
      }
    >
  >;
  components: { responses: Record<string, { headers?: Record<string, unknown> }> };
}

const app = createInertApp();

async function served(): Promise<Document> {
  const response = await app.request("/openapi.json");
  expect(response.status).toBe(200);
  return (await response.json()) as Document;
}

/** First line where `a` and `b` differ, to point at the drift. */
function firstDifference(a: string, b: string): string {
  const left = a.split("\n");
  const right = b.split("\n");
  const line = left.findIndex((text, i) => text !== right[i]);
  const at = line === -1 ? left.length : line;
  return `line ${at + 1}: committed ${JSON.stringify(left[at])}, served ${JSON.stringify(right[at])}`;
}

describe("OpenAPI document", () => {
  test("openapi/openapi.json equals what GET /openapi.json serves", async () => {
    if (!existsSync(OPENAPI_DOCUMENT_PATH)) {
      throw new Error("openapi/openapi.json is missing: run npm run openapi");
    }
    const committed = readFileSync(OPENAPI_DOCUMENT_PATH, "utf8");
    const current = serializeOpenApiDocument(await served());
    if (committed !== current) {
      throw new Error(
        `openapi/openapi.json differs from the app's document (${firstDifference(committed, current)}): run npm run openapi`,
      );
    }
    expect(serializeOpenApiDocument(buildOpenApiDocument())).toBe(current);
  });

  test("is OpenAPI 3.1.0 and lists every route with its methods", async () => {
    const document = await served();
    expect(document.openapi).toBe("3.1.0");
    const methods = (path: string) => Object.keys(document.paths[path] ?? {}).sort();
    expect(methods("/users")).toEqual(["get", "post"]);
    expect(methods("/users/{id}")).toEqual(["delete", "get", "put"]);
    expect(methods("/health")).toEqual(["get"]);
    expect(methods("/health/live")).toEqual(["get"]);
    expect(methods("/stats")).toEqual(["get"]);
  });

  test("every /users operation answers 503 with the shared ServiceUnavailable response, which has Retry-After", async () => {
    const document = await served();
    const operations = ["/users", "/users/{id}"].flatMap((path) =>
      Object.entries(document.paths[path] ?? {}).map(([method, operation]) => ({
        route: `${method} ${path}`,
        operation,
      })),
    );
    expect(operations).toHaveLength(5);
    for (const { route, operation } of operations) {
      expect({ route, response: operation.responses["503"] }).toEqual({
        route,
        response: { $ref: "#/components/responses/ServiceUnavailable" },
      });
    }
    expect(Object.keys(document.components.responses.ServiceUnavailable?.headers ?? {})).toContain("Retry-After");
  });

  test("every /users operation takes the Prefer header, and its success and 503 say how long a hold took", async () => {
    const document = await served();
    const operations = ["/users", "/users/{id}"].flatMap((path) => Object.values(document.paths[path] ?? {}));
    expect(operations).toHaveLength(5);
    for (const operation of operations) {
      expect(operation.parameters).toContainEqual({ $ref: "#/components/parameters/Prefer" });
      const success = Object.entries(operation.responses).find(([status]) => status.startsWith("2"))?.[1];
      expect(Object.keys(success?.headers ?? {})).toContain("Maintenance-Held-Ms");
    }
    expect(Object.keys(document.components.responses.ServiceUnavailable?.headers ?? {})).toContain(
      "Maintenance-Held-Ms",
    );
  });
});

describe("/docs", () => {
  test("GET /docs answers HTML under a Content-Security-Policy, loading no script or stylesheet from elsewhere", async () => {
    const response = await app.request("/docs");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/html");
    expect(response.headers.get("content-security-policy")).toContain("script-src 'self'");
    const html = await response.text();
    const scripts = [...html.matchAll(/<script\b[^>]*\bsrc\s*=\s*["']([^"']+)["']/gi)].map((m) => m[1]);
    const styles = [...html.matchAll(/<link\b[^>]*\bhref\s*=\s*["']([^"']+)["']/gi)].map((m) => m[1]);
    expect(scripts).toContain("/docs/assets/swagger-ui-bundle.js");
    expect([...scripts, ...styles].filter((url) => /^(https?:)?\/\//i.test(url ?? ""))).toEqual([]);
    expect(html).not.toMatch(/<(script|link)\b[^>]*https?:\/\//i);
  });

  test("/docs pages and assets carry the protective headers, but no HSTS (the TLS terminator's to set)", async () => {
    for (const path of ["/docs", "/docs/assets/swagger-ui.css"]) {
      const response = await app.request(path);
      expect(response.headers.get("content-security-policy")).toBe(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
          "connect-src 'self'; frame-ancestors 'none'",
      );
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("referrer-policy")).toBe("no-referrer");
      expect(response.headers.get("strict-transport-security")).toBeNull();
    }
  });

  test("GET /docs/assets/swagger-ui-bundle.js serves the bundle as JavaScript", async () => {
    const response = await app.request("/docs/assets/swagger-ui-bundle.js");
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("javascript");
    expect((await response.text()).length).toBeGreaterThan(100_000);
  });

  test("every asset the /docs page references is served", async () => {
    const html = await (await app.request("/docs")).text();
    const urls = [...html.matchAll(/\b(?:src|href)\s*=\s*["'](\/docs\/[^"']+)["']/gi)].map((m) => m[1] ?? "");
    expect(urls.length).toBeGreaterThan(0);
    for (const url of urls) {
      expect({ url, status: (await app.request(url)).status }).toEqual({ url, status: 200 });
    }
  });
});
