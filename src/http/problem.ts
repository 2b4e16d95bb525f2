import type { Context } from "hono";
import type { AppEnv } from "./context.ts";

/** One bad input field, as listed in a 400 problem's `errors`. */
export interface FieldError {
  /** Where the bad value is, e.g. `body.email`, `path.id`, `query.limit`. */
  field: string;
  message: string;
}

/** An RFC 9457 problem details body. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance?: string;
  errors?: FieldError[];
  request_id?: string;
}

/** The media type of every error body. */
export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** Problem type URI for a short slug such as `validation-error`. */
export const problemType = (slug: string) => `urn:problem:database-service:${slug}`;

/** What a problem says, and the response headers it comes with. */
export interface ProblemOptions {
  status: number;
  /** The problem type's short name, e.g. `validation-error` (see {@link problemType}). */
  slug: string;
  title: string;
  detail: string;
  /** Each bad field (400 only). */
  errors?: FieldError[];
  /** E.g. Retry-After, WWW-Authenticate, Allow. */
  headers?: Record<string, string>;
}

/**
 * An error that carries the problem it should be answered with. Thrown by
 * handlers and middleware; `app.onError` renders it.
 */
export class HttpProblem extends Error {
  readonly status: number;
  readonly slug: string;
  readonly title: string;
  readonly detail: string;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(options: ProblemOptions) {
    super(options.detail);
    this.name = "HttpProblem";
    this.status = options.status;
    this.slug = options.slug;
    this.title = options.title;
    this.detail = options.detail;
    this.errors = options.errors;
    this.headers = options.headers;
  }
}

/** Renders `problem` as the `application/problem+json` answer to the request of `c`. */
export function problemResponse(c: Context<AppEnv>, problem: HttpProblem): Response {
  const requestId = c.get("requestId");
  const body: ProblemBody = {
    type: problemType(problem.slug),
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    instance: c.req.path,
    ...(problem.errors && { errors: problem.errors }),
    ...(requestId !== undefined && { request_id: requestId }),
  };
  return new Response(JSON.stringify(body), {
    status: problem.status,
    headers: { "content-type": PROBLEM_CONTENT_TYPE, ...problem.headers },
  });
}
