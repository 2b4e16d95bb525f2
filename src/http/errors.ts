import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  DatabaseReadOnlyError,
  DatabaseUnavailableError,
  SchemaNotReadyError,
  WriteOutcomeUnknownError,
} from "../db/errors.ts";
import { describeError, type Logger } from "../logger.ts";
import { EmailTakenError } from "../users/users.repository.ts";
import type { AppEnv } from "./context.ts";
import { HttpProblem, problemResponse } from "./problem.ts";

/** Seconds a client is asked to wait when the database cannot serve it. */
const DATABASE_RETRY_AFTER_SECONDS = 5;

/** The message hono/validator gives the 400 it throws when JSON.parse rejects a body: its only mark. */
const MALFORMED_JSON = "Malformed JSON in request body";

/** How a client retries a write answered 503 or 504, said in their `detail`. */
const EXACTLY_ONCE = "with the same Idempotency-Key to have it applied exactly once.";

/** A 503 the client may retry after {@link DATABASE_RETRY_AFTER_SECONDS}: nothing was done. */
const databaseRefused = (slug: string, detail: string) =>
  new HttpProblem({
    status: 503,
    slug,
    title: "Service Unavailable",
    detail: `${detail} Nothing was written: retry a write ${EXACTLY_ONCE}`,
    headers: { "Retry-After": String(DATABASE_RETRY_AFTER_SECONDS) },
  });

const DATABASE_UNREACHABLE = databaseRefused("database-unavailable", "The database is not reachable right now.");
const SCHEMA_NOT_READY = databaseRefused("database-unavailable", "The database schema is not ready yet.");
const READ_ONLY = databaseRefused("read-only", "The service is read-only during maintenance.");
const OUTCOME_UNKNOWN = new HttpProblem({
  status: 504,
  slug: "outcome-unknown",
  title: "Gateway Timeout",
  detail: `The database did not confirm the write in time: it may or may not have been applied. Retry it ${EXACTLY_ONCE}`,
});
const INTERNAL_ERROR = new HttpProblem({
  status: 500,
  slug: "internal-error",
  title: "Internal Server Error",
  detail: "The server could not complete the request.",
});

/** The problem for an error of one class, or undefined for an error of another; logs first when it should. */
type ErrorRule = (error: unknown, c: Context<AppEnv>, logger: Logger) => HttpProblem | undefined;

/** A warning logged, with the request id, before an error is answered. */
interface Warning<E> {
  event: string;
  fields: (error: E, c: Context<AppEnv>) => Record<string, unknown>;
}

/** Answers errors of `type` with `problem`, logging `warning` first when given. */
function on<E extends Error>(
  type: abstract new (...args: never[]) => E,
  problem: (error: E) => HttpProblem,
  warning?: Warning<E>,
): ErrorRule {
  return (error, c, logger) => {
    if (!(error instanceof type)) return undefined;
    if (warning) logger.warn(warning.event, { request_id: c.get("requestId"), ...warning.fields(error, c) });
    return problem(error);
  };
}

const cause = (error: Error) => describeError(error.cause ?? error);

const emailTaken = (error: EmailTakenError) =>
  new HttpProblem({
    status: 409,
    slug: "email-taken",
    title: "Conflict",
    detail: `A user with email ${error.email} already exists.`,
    errors: [{ field: "body.email", message: "email is already taken" }],
  });

/**
 * The problem for an error that is the client's own, the same whenever the
 * request is repeated on the same data (a 4xx: a missing user, a taken
 * email), or undefined for any other error.
 */
export function clientProblem(error: unknown): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error.status < 500 ? error : undefined;
  return error instanceof EmailTakenError ? emailTaken(error) : undefined;
}

/**
 * Every error class the app answers, with its problem: the first that matches
 * wins; anything else is a 500 (and a bug).
 */
const ERROR_RULES: ErrorRule[] = [
  on(HttpProblem, (problem) => problem),
  on(EmailTakenError, emailTaken),
  on(DatabaseUnavailableError, () => DATABASE_UNREACHABLE, { event: "db.unavailable", fields: cause }),
  on(SchemaNotReadyError, () => SCHEMA_NOT_READY),
  on(DatabaseReadOnlyError, () => READ_ONLY, {
    event: "db.write_refused_read_only",
    fields: (_, c) => ({ path: c.req.path }),
  }),
  on(WriteOutcomeUnknownError, () => OUTCOME_UNKNOWN, {
    event: "db.write_outcome_unknown",
    fields: (error, c) => ({ method: c.req.method, path: c.req.path, ...cause(error) }),
  }),
  on(HTTPException, fromHttpException),
];

/**
 * The one place errors become responses: every error body is a problem, and a
 * 5xx never carries an internal message. An `HTTPException` that brings its
 * own response (hono/bearer-auth's, carrying our problem) is answered with it.
 */
export function errorHandler(logger: Logger): ErrorHandler<AppEnv> {
  return (error, c) => {
    if (error instanceof HTTPException && error.res) return error.getResponse();
    for (const rule of ERROR_RULES) {
      const problem = rule(error, c, logger);
      if (problem) return problemResponse(c, problem);
    }
    logger.error("http.unhandled_error", {
      request_id: c.get("requestId"),
      ...describeError(error),
      stack: error instanceof Error ? error.stack : undefined,
    });
    return problemResponse(c, INTERNAL_ERROR);
  };
}

/** 404 problem for routes the app does not have. */
export const notFound: NotFoundHandler<AppEnv> = (c) =>
  problemResponse(
    c,
    new HttpProblem({
      status: 404,
      slug: "not-found",
      title: "Not Found",
      detail: `No route for ${c.req.method} ${c.req.path}.`,
    }),
  );

/** The problem for an `HTTPException` thrown by Hono or a library (the validators, the OpenAPI router). */
function fromHttpException(error: HTTPException): HttpProblem {
  switch (error.status) {
    case 400: {
      const detail = error.message || "The request is malformed.";
      const malformedJson = error.message === MALFORMED_JSON;
      return new HttpProblem({
        status: 400,
        slug: "malformed-request",
        title: "Bad Request",
        detail,
        errors: [
          malformedJson
            ? { field: "body", message: "body is not well-formed JSON" }
            : { field: "request", message: detail },
        ],
      });
    }
    case 415:
      return new HttpProblem({
        status: 415,
        slug: "unsupported-media-type",
        title: "Unsupported Media Type",
        detail: "Send the body as application/json.",
      });
    default: {
      const server = error.status >= 500;
      return new HttpProblem({
        status: error.status,
        slug: "http-error",
        title: server ? "Server Error" : "Request Error",
        detail: server ? INTERNAL_ERROR.detail : error.message,
      });
    }
  }
}
