import { type Hook, OpenAPIHono, z } from "@hono/zod-openapi";
import { HELD_HEADER } from "../maintenance/gate.ts";
import type { AppEnv } from "./context.ts";
import { type FieldError, HttpProblem, PROBLEM_CONTENT_TYPE } from "./problem.ts";

/** RFC 9457 problem details, as every error body is shaped. */
export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: "urn:problem:database-service:validation-error" }),
    title: z.string().openapi({ example: "Bad Request" }),
    status: z.number().int().openapi({ example: 400 }),
    detail: z.string().openapi({ example: "The request has 1 invalid field." }),
    instance: z.string().optional().openapi({ example: "/users" }),
    errors: z
      .array(z.object({ field: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: "Each invalid field (400 only)." }),
    request_id: z.string().optional(),
  })
  .openapi("Problem");

/** Name of the shared 503 response component. */
export const SERVICE_UNAVAILABLE = "ServiceUnavailable";

/** The Retry-After header of a 503, for a response's `headers`. */
export const retryAfterHeader = {
  "Retry-After": {
    description: "Seconds to wait before retrying.",
    schema: { type: "integer" as const, minimum: 0 },
  },
};

/** The shared 503 response: maintenance or an unreachable database, with Retry-After. */
export const serviceUnavailableComponent = {
  description:
    "In maintenance, or the database cannot serve the request now. Retry after the given delay. " +
    "A write answered 503 was not applied and never will be: retry it with the same Idempotency-Key.",
  headers: {
    ...retryAfterHeader,
    [HELD_HEADER]: { $ref: `#/components/headers/${HELD_HEADER}` },
  },
  content: {
    [PROBLEM_CONTENT_TYPE]: {
      schema: { $ref: "#/components/schemas/Problem" },
      example: {
        type: "urn:problem:database-service:maintenance",
        title: "Service Unavailable",
        status: 503,
        detail: "The service is in maintenance. Please retry later.",
        instance: "/users",
        request_id: "6f1c1a8e-2a4b-4c3d-9e8f-0a1b2c3d4e5f",
      },
    },
  },
};

/** A reference to the shared 503 response. */
export const serviceUnavailableRef = { $ref: `#/components/responses/${SERVICE_UNAVAILABLE}` };

/** Name of the shared 504 response component. */
export const OUTCOME_UNKNOWN = "OutcomeUnknown";

/** The shared 504 response of writes: the COMMIT was sent and not confirmed in time. */
export const outcomeUnknownComponent = {
  description:
    "The write was sent to the database and its COMMIT was not confirmed in time: it may or may not have been " +
    "applied. Retry it with the same Idempotency-Key to have it applied exactly once (its answer is replayed " +
    "if it was), or read the resource to learn which.",
  content: {
    [PROBLEM_CONTENT_TYPE]: {
      schema: { $ref: "#/components/schemas/Problem" },
      example: {
        type: "urn:problem:database-service:outcome-unknown",
        title: "Gateway Timeout",
        status: 504,
        detail:
          "The database did not confirm the write in time: it may or may not have been applied. Retry it with the same Idempotency-Key to have it applied exactly once.",
        instance: "/users",
        request_id: "6f1c1a8e-2a4b-4c3d-9e8f-0a1b2c3d4e5f",
      },
    },
  },
};

/** A reference to the shared 504 response. */
export const outcomeUnknownRef = { $ref: `#/components/responses/${OUTCOME_UNKNOWN}` };

const HELD_DESCRIPTION =
  "Present when the request was held because maintenance refused it (hold mode): milliseconds it waited for " +
  "maintenance to end before it was served, or before this 503.";

/** The header of a held request's response, as a component. */
const heldHeaderComponent = { description: HELD_DESCRIPTION, schema: { type: "integer" as const, minimum: 0 } };

/** Response headers of a /users operation that maintenance may have held. */
export const heldHeaders = z.object({
  [HELD_HEADER]: z.number().int().min(0).optional().openapi({ description: HELD_DESCRIPTION }),
});

/** Name of the shared `Prefer` parameter component. */
const PREFER = "Prefer";

/** A reference to the `Prefer` request header (RFC 7240), for a /users operation's `parameters`. */
export const preferParameterRef = { $ref: `#/components/parameters/${PREFER}` };

/** The `Prefer` request header: how long the client will wait while maintenance holds its request. */
const preferParameterComponent = {
  name: "Prefer",
  in: "header" as const,
  required: false,
  description:
    "RFC 7240. `wait=<seconds>` bounds how long a request refused by maintenance is held (hold mode) before the " +
    "503; `wait=0` asks for the 503 at once. The maintenance value's `hold_ms` and 8 s bound it too.",
  schema: { type: "string" as const, example: "wait=3" },
};

/** Registers the shared responses, headers and parameters that routes reference. */
export function registerSharedResponses(registry: OpenAPIHono<AppEnv>["openAPIRegistry"]): void {
  registry.registerComponent("headers", HELD_HEADER, heldHeaderComponent);
  registry.registerComponent("parameters", PREFER, preferParameterComponent);
  registry.registerComponent("responses", SERVICE_UNAVAILABLE, serviceUnavailableComponent);
  registry.registerComponent("responses", OUTCOME_UNKNOWN, outcomeUnknownComponent);
}

/** A JSON response of `schema`, for a route's `responses`. */
export const jsonContent = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

/** A problem+json response of `description`, for a route's `responses`. */
export const problem = (description: string) => ({
  description,
  content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
});

const sourceName: Record<string, string> = { json: "body", param: "path", query: "query", header: "header" };

/**
 * Turns a failed zod validation into a 400 problem listing every bad field.
 * Shared by all routes as the app's default hook.
 */
export const validationHook: Hook<unknown, AppEnv, string, unknown> = (result) => {
  if (result.success) return;
  const source = sourceName[result.target] ?? result.target;
  const errors: FieldError[] = result.error.issues.map((issue) => ({
    field: [source, ...issue.path.map(String)].join("."),
    message: issue.message,
  }));
  const count = errors.length === 1 ? "1 invalid field" : `${errors.length} invalid fields`;
  throw new HttpProblem({
    status: 400,
    slug: "validation-error",
    title: "Bad Request",
    detail: `The request has ${count}.`,
    errors,
  });
};

/** A router for one route module, answering failed validations with {@link validationHook}. */
export const createRouter = () => new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
