import { expect } from "bun:test";

/** Every problem `type` is this URN followed by a slug such as `validation-error`. */
export const PROBLEM_TYPE_PREFIX = "urn:problem:database-service:";

/** A user as the API returns it. */
export interface UserJson {
  id: number;
  name: string;
  email: string;
  created_at: string;
  updated_at: string;
}

/** What a problem response must say; `type` is the slug after {@link PROBLEM_TYPE_PREFIX}. */
export interface ExpectedProblem {
  status: number;
  type: string;
  title: string;
  detail: string;
  /** The request path; the body's `instance`. */
  instance: string;
  errors?: { field: string; message: string }[];
}

/** An ISO 8601 UTC date-time with milliseconds, as `toISOString` writes it. */
export const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Asserts that `response` is exactly the problem `expected`: status,
 * `application/problem+json`, and a body with nothing more or less than the
 * expected fields plus `request_id`, which must equal the X-Request-Id header.
 */
export async function expectProblem(response: Response, expected: ExpectedProblem): Promise<void> {
  const text = await response.text();
  expect({ status: response.status, body: text }).toMatchObject({ status: expected.status });
  expect(response.headers.get("content-type")).toBe("application/problem+json");
  const requestId = response.headers.get("x-request-id");
  expect(requestId).toBeTruthy();
  expect(JSON.parse(text)).toEqual({
    type: `${PROBLEM_TYPE_PREFIX}${expected.type}`,
    title: expected.title,
    status: expected.status,
    detail: expected.detail,
    instance: expected.instance,
    ...(expected.errors && { errors: expected.errors }),
    request_id: requestId,
  });
}

/** The 400 problem listing `errors` for a request to `instance`. */
export function validationProblem(instance: string, errors: { field: string; message: string }[]): ExpectedProblem {
  return {
    status: 400,
    type: "validation-error",
    title: "Bad Request",
    detail:
      errors.length === 1 ? "The request has 1 invalid field." : `The request has ${errors.length} invalid fields.`,
    instance,
    errors,
  };
}

/** Asserts a JSON (not problem) response with `status`, and returns its body. */
export async function expectJson<T>(response: Response, status: number): Promise<T> {
  const text = await response.text();
  expect({ status: response.status, body: text }).toMatchObject({ status });
  expect(response.headers.get("content-type")).toBe("application/json");
  return JSON.parse(text) as T;
}

/** The URL of a `Link: <url>; rel="next"` header, or null when there is none. */
export function nextLink(response: Response): string | null {
  const link = response.headers.get("link");
  if (link === null) return null;
  const match = /^<([^>]+)>; rel="next"$/.exec(link);
  if (!match?.[1]) throw new Error(`malformed Link header: ${link}`);
  return match[1];
}

/** Anything with Hono's `request`, such as a service's app. */
export interface Requester {
  request(input: string, init?: RequestInit): Response | Promise<Response>;
}

/** Creates a user through the API and returns it; fails the test unless the answer is 201. */
export async function createUser(app: Requester, name: string, email: string): Promise<UserJson> {
  const response = await app.request("/users", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, email }),
  });
  return expectJson<UserJson>(response, 201);
}
