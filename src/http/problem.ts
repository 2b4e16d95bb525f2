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

/**
 * An error that carries the problem it should be answered with. Thrown by
 * handlers and middleware; `app.onError` renders it.
 */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly options: { errors?: FieldError[]; headers?: Record<string, string> } = {},
  ) {
    super(detail);
    this.name = "HttpProblem";
  }
}

/** Renders a problem as a `application/problem+json` Response. */
export function problemResponse(
  problem: HttpProblem,
  context: { instance?: string; requestId?: string } = {},
): Response {
  const body: ProblemBody = {
    type: problemType(problem.slug),
    title: problem.title,
    status: problem.status,
    detail: problem.detail,
    ...(context.instance !== undefined && { instance: context.instance }),
    ...(problem.options.errors && { errors: problem.options.errors }),
    ...(context.requestId !== undefined && { request_id: context.requestId }),
  };
  return new Response(JSON.stringify(body), {
    status: problem.status,
    headers: { "content-type": PROBLEM_CONTENT_TYPE, ...problem.options.headers },
  });
}
