import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  DatabaseReadOnlyError,
  DatabaseUnavailableError,
  SchemaNotReadyError,
  WriteOutcomeUnknownError,
} from "../db/errors.ts";
import { describeError, type Logger } from "../logger.ts";
import type { AppEnv } from "./context.ts";
import { HttpProblem, problemResponse } from "./problem.ts";

/** Seconds a client is asked to wait when the database is unreachable. */
const DATABASE_RETRY_AFTER_SECONDS = 5;

const render = (c: Context<AppEnv>, problem: HttpProblem) =>
  problemResponse(problem, { instance: c.req.path, requestId: c.get("requestId") });

/**
 * The one place errors become responses: every error body is a problem, and a
 * 5xx never carries an internal message.
 */
export function errorHandler(logger: Logger): ErrorHandler<AppEnv> {
  return (error, c) => render(c, toProblem(error, c, logger));
}

/** 404 problem for routes the app does not have. */
export const notFound: NotFoundHandler<AppEnv> = (c) =>
  render(c, new HttpProblem(404, "not-found", "Not Found", `No route for ${c.req.method} ${c.req.path}.`));

/** A 503 the client may retry after {@link DATABASE_RETRY_AFTER_SECONDS}. */
const databaseRefused = (slug: string, detail: string) =>
  new HttpProblem(503, slug, "Service Unavailable", detail, {
    headers: { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) },
  });

function toProblem(error: unknown, c: Context<AppEnv>, logger: Logger): HttpProblem {
  if (error instanceof HttpProblem) return error;
  if (error instanceof DatabaseUnavailableError) {
    logger.warn("db.unavailable", { request_id: c.get("requestId"), ...describeError(error.cause ?? error) });
    return databaseRefused("database-unavailable", "The database is not reachable right now.");
  }
  if (error instanceof WriteOutcomeUnknownError) {
    logger.warn("db.write_outcome_unknown", {
      request_id: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      ...describeError(error.cause ?? error),
    });
    return new HttpProblem(
      504,
      "outcome-unknown",
      "Gateway Timeout",
      "The database did not confirm the write in time: it may or may not have been applied. Read the resource before retrying.",
    );
  }
  if (error instanceof SchemaNotReadyError) {
    return databaseRefused("database-unavailable", "The database schema is not ready yet.");
  }
  if (error instanceof DatabaseReadOnlyError) {
    logger.warn("db.write_refused_read_only", { request_id: c.get("requestId"), path: c.req.path });
    return databaseRefused("read-only", "The service is read-only during maintenance.");
  }
  if (error instanceof HTTPException) return fromHttpException(error);
  logger.error("http.unhandled_error", {
    request_id: c.get("requestId"),
    ...describeError(error),
    stack: error instanceof Error ? error.stack : undefined,
  });
  return new HttpProblem(500, "internal-error", "Internal Server Error", "The server could not complete the request.");
}

function fromHttpException(error: HTTPException): HttpProblem {
  switch (error.status) {
    case 400:
      return new HttpProblem(400, "malformed-request", "Bad Request", error.message || "The request is malformed.", {
        errors: [{ field: "body", message: "body is not well-formed JSON" }],
      });
    case 415:
      return new HttpProblem(
        415,
        "unsupported-media-type",
        "Unsupported Media Type",
        "Send the body as application/json.",
      );
    default:
      return new HttpProblem(
        error.status,
        "http-error",
        error.status >= 500 ? "Server Error" : "Request Error",
        error.status >= 500 ? "The server could not complete the request." : error.message,
      );
  }
}
