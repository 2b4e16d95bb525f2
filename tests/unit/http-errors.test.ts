import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  DatabaseReadOnlyError,
  DatabaseUnavailableError,
  SchemaNotReadyError,
  WriteOutcomeUnknownError,
} from "../../src/db/errors.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { clientProblem, errorHandler, notFound } from "../../src/http/errors.ts";
import { HttpProblem } from "../../src/http/problem.ts";
import { EmailTakenError } from "../../src/users/users.repository.ts";
import { captureLogs } from "../helpers/logs.ts";

const REQUEST_ID = "req-1";

/** A tiny app whose only route throws `error`, answered by the app's error handler. */
function throwing(error: unknown) {
  const logs = captureLogs();
  const app = new Hono<AppEnv>()
    .use("*", async (c, next) => {
      c.set("requestId", REQUEST_ID);
      await next();
    })
    .post("/thing", () => {
      throw error;
    });
  app.onError(errorHandler(logs));
  app.notFound(notFound);
  return { answer: () => app.request("/thing", { method: "POST" }), logs };
}

/** The problem body `status`/`slug`/`title`/`detail` for POST /thing. */
const body = (status: number, slug: string, title: string, detail: string, extra: object = {}) => ({
  type: `urn:problem:database-service:${slug}`,
  title,
  status,
  detail,
  instance: "/thing",
  ...extra,
  request_id: REQUEST_ID,
});

async function expectProblem(response: Response, expected: object, headers: Record<string, string> = {}) {
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  for (const [name, value] of Object.entries(headers)) expect(response.headers.get(name)).toBe(value);
  expect(await response.json()).toEqual(expected);
}

describe("errorHandler: one table from error classes to problems", () => {
  test("a thrown HttpProblem is answered as it is, with its headers", async () => {
    const problem = new HttpProblem({
      status: 429,
      slug: "slow-down",
      title: "Too Many Requests",
      detail: "Later.",
      headers: { "Retry-After": "7" },
    });
    const response = await throwing(problem).answer();
    expect(response.status).toBe(429);
    await expectProblem(response, body(429, "slow-down", "Too Many Requests", "Later."), { "retry-after": "7" });
  });

  test("an unreachable database answers 503 database-unavailable with Retry-After 5, and is logged", async () => {
    const { answer, logs } = throwing(
      new DatabaseUnavailableError("down", { cause: Object.assign(new Error("refused"), { code: "ECONNREFUSED" }) }),
    );
    const response = await answer();
    expect(response.status).toBe(503);
    await expectProblem(
      response,
      body(
        503,
        "database-unavailable",
        "Service Unavailable",
        "The database is not reachable right now. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
      ),
      { "retry-after": "5" },
    );
    expect(logs.events("db.unavailable")).toMatchObject([
      { level: "warn", request_id: REQUEST_ID, error: "refused", code: "ECONNREFUSED" },
    ]);
  });

  test("a schema not migrated yet answers 503 database-unavailable, logging nothing", async () => {
    const { answer, logs } = throwing(new SchemaNotReadyError());
    const response = await answer();
    expect(response.status).toBe(503);
    await expectProblem(
      response,
      body(
        503,
        "database-unavailable",
        "Service Unavailable",
        "The database schema is not ready yet. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
      ),
      { "retry-after": "5" },
    );
    expect(logs.lines).toEqual([]);
  });

  test("a read-only session answers 503 read-only, logged with the path", async () => {
    const { answer, logs } = throwing(new DatabaseReadOnlyError());
    const response = await answer();
    expect(response.status).toBe(503);
    await expectProblem(
      response,
      body(
        503,
        "read-only",
        "Service Unavailable",
        "The service is read-only during maintenance. Nothing was written: retry a write with the same Idempotency-Key to have it applied exactly once.",
      ),
      { "retry-after": "5" },
    );
    expect(logs.events("db.write_refused_read_only")).toMatchObject([{ request_id: REQUEST_ID, path: "/thing" }]);
  });

  test("a write of unknown outcome answers 504 outcome-unknown, logged with method and path", async () => {
    const { answer, logs } = throwing(new WriteOutcomeUnknownError("no answer to COMMIT"));
    const response = await answer();
    expect(response.status).toBe(504);
    expect(response.headers.get("retry-after")).toBeNull();
    await expectProblem(
      response,
      body(
        504,
        "outcome-unknown",
        "Gateway Timeout",
        "The database did not confirm the write in time: it may or may not have been applied. Retry it with the same Idempotency-Key to have it applied exactly once.",
      ),
    );
    expect(logs.events("db.write_outcome_unknown")).toMatchObject([
      { request_id: REQUEST_ID, method: "POST", path: "/thing", error: "no answer to COMMIT" },
    ]);
  });

  test("a taken email answers 409 email-taken naming the field", async () => {
    const response = await throwing(new EmailTakenError("a@example.com")).answer();
    expect(response.status).toBe(409);
    await expectProblem(
      response,
      body(409, "email-taken", "Conflict", "A user with email a@example.com already exists.", {
        errors: [{ field: "body.email", message: "email is already taken" }],
      }),
    );
  });

  test("an HTTPException carrying its own response is answered with that response", async () => {
    const own = new Response("teapot", { status: 418, headers: { "x-own": "yes" } });
    const response = await throwing(new HTTPException(418, { res: own })).answer();
    expect(response.status).toBe(418);
    expect(response.headers.get("x-own")).toBe("yes");
    expect(await response.text()).toBe("teapot");
  });

  test("hono's malformed-JSON 400 names the body as not well-formed JSON", async () => {
    const response = await throwing(new HTTPException(400, { message: "Malformed JSON in request body" })).answer();
    await expectProblem(
      response,
      body(400, "malformed-request", "Bad Request", "Malformed JSON in request body", {
        errors: [{ field: "body", message: "body is not well-formed JSON" }],
      }),
    );
  });

  test("another HTTPException 400 is not called malformed JSON", async () => {
    const response = await throwing(new HTTPException(400, { message: "Malformed FormData request." })).answer();
    await expectProblem(
      response,
      body(400, "malformed-request", "Bad Request", "Malformed FormData request.", {
        errors: [{ field: "request", message: "Malformed FormData request." }],
      }),
    );
  });

  test("an HTTPException 5xx carries no internal message", async () => {
    const response = await throwing(new HTTPException(502, { message: "upstream said: secret" })).answer();
    expect(response.status).toBe(502);
    await expectProblem(
      response,
      body(502, "http-error", "Server Error", "The server could not complete the request."),
    );
  });

  test("anything else is a 500 without its message, logged as unhandled", async () => {
    const { answer, logs } = throwing(new TypeError("secret internals"));
    const response = await answer();
    expect(response.status).toBe(500);
    await expectProblem(
      response,
      body(500, "internal-error", "Internal Server Error", "The server could not complete the request."),
    );
    expect(logs.events("http.unhandled_error")).toMatchObject([
      { level: "error", request_id: REQUEST_ID, error: "secret internals" },
    ]);
  });
});

describe("clientProblem: the errors that are the client's own, stored under an Idempotency-Key", () => {
  test("a 4xx HttpProblem is itself, a taken email its 409 problem", () => {
    const missing = new HttpProblem({
      status: 404,
      slug: "not-found",
      title: "Not Found",
      detail: "No user with id 7.",
    });
    expect(clientProblem(missing)).toBe(missing);
    expect(clientProblem(new EmailTakenError("a@example.com"))).toMatchObject({
      status: 409,
      slug: "email-taken",
      detail: "A user with email a@example.com already exists.",
      errors: [{ field: "body.email", message: "email is already taken" }],
    });
  });

  test("a 5xx HttpProblem, a database error or a bug is not", () => {
    const maintenance = new HttpProblem({
      status: 503,
      slug: "maintenance",
      title: "Service Unavailable",
      detail: ".",
    });
    expect(clientProblem(maintenance)).toBeUndefined();
    expect(clientProblem(new DatabaseUnavailableError("down"))).toBeUndefined();
    expect(clientProblem(new WriteOutcomeUnknownError("unknown"))).toBeUndefined();
    expect(clientProblem(new TypeError("bug"))).toBeUndefined();
  });
});
