import { createRoute, z } from "@hono/zod-openapi";
import {
  heldHeaders,
  jsonContent,
  outcomeUnknownRef,
  preferParameterRef,
  problem,
  serviceUnavailableRef,
} from "../http/openapi.ts";
import { idempotencyKeyParameter } from "../idempotency/idempotency-key.ts";
import { ListUsersQuerySchema, UserIdParamsSchema, UserInputSchema, UserSchema } from "./users.schemas.ts";

const tags = ["users"];

const userBody = {
  required: true,
  content: { "application/json": { schema: UserInputSchema } },
} as const;

const userResponse = (description: string) => ({ ...jsonContent(UserSchema, description), headers: heldHeaders });

/** The `Prefer: wait` header, which bounds a hold through maintenance. */
const parameters = [preferParameterRef];
/** A write's parameters: `Prefer`, and the `Idempotency-Key` that makes its retry exactly-once. */
const writeParameters = [...parameters, idempotencyKeyParameter];

const badRequest = problem("Invalid id, query, body or Idempotency-Key; `errors` names each bad field.");
const notFound = problem("No user with this id.");
const keyInUse = "a request with the same Idempotency-Key is still running (`idempotency-key-in-use`, Retry-After).";
const conflict = problem(`Another user already has this email (compared ignoring case), or ${keyInUse}`);
const keyConflict = problem(`With an Idempotency-Key only: ${keyInUse}`);
const keyReused = problem(
  "The Idempotency-Key was first used for another method, path or body (`idempotency-key-reused`).",
);
const tooLarge = problem("Body larger than 64 KiB.");
const timeout = problem("The body did not arrive within 10 s; the connection is closed.");
const unsupported = problem("Body is not application/json, or not in UTF-8 (a charset other than utf-8).");

/** What a write of a user's JSON body may answer besides its success (and a missing user). */
const userWriteResponses = {
  400: badRequest,
  408: timeout,
  409: conflict,
  413: tooLarge,
  422: keyReused,
  415: unsupported,
  503: serviceUnavailableRef,
  504: outcomeUnknownRef,
};

/** `GET /users` */
export const listUsers = createRoute({
  method: "get",
  path: "/users",
  operationId: "listUsers",
  tags,
  parameters,
  summary: "List users",
  description: 'Users in id order, one keyset page at a time. Follow the `Link: rel="next"` header for more.',
  request: { query: ListUsersQuerySchema },
  responses: {
    200: {
      ...jsonContent(z.array(UserSchema), "A page of users."),
      headers: heldHeaders.extend({
        link: z
          .string()
          .optional()
          .openapi({ description: 'The next page, as `<url>; rel="next"`, when more users exist.' }),
      }),
    },
    400: badRequest,
    503: serviceUnavailableRef,
  },
});

/** `POST /users` */
export const createUser = createRoute({
  method: "post",
  path: "/users",
  operationId: "createUser",
  tags,
  parameters: writeParameters,
  summary: "Create a user",
  request: { body: userBody },
  responses: {
    201: {
      ...userResponse("The created user."),
      headers: heldHeaders.extend({
        location: z.string().openapi({ description: "`/users/{id}` of the new user." }),
      }),
    },
    ...userWriteResponses,
  },
});

/** `GET /users/{id}` */
export const getUser = createRoute({
  method: "get",
  path: "/users/{id}",
  operationId: "getUser",
  tags,
  parameters,
  summary: "Get a user",
  request: { params: UserIdParamsSchema },
  responses: {
    200: userResponse("The user."),
    400: badRequest,
    404: notFound,
    503: serviceUnavailableRef,
  },
});

/** `PUT /users/{id}` */
export const updateUser = createRoute({
  method: "put",
  path: "/users/{id}",
  operationId: "updateUser",
  tags,
  parameters: writeParameters,
  summary: "Replace a user's name and email",
  request: { params: UserIdParamsSchema, body: userBody },
  responses: {
    200: userResponse("The updated user, with a new updated_at."),
    404: notFound,
    ...userWriteResponses,
  },
});

/** `DELETE /users/{id}` */
export const deleteUser = createRoute({
  method: "delete",
  path: "/users/{id}",
  operationId: "deleteUser",
  tags,
  parameters: writeParameters,
  summary: "Delete a user",
  request: { params: UserIdParamsSchema },
  responses: {
    204: { description: "Deleted.", headers: heldHeaders },
    400: badRequest,
    404: notFound,
    409: keyConflict,
    422: keyReused,
    503: serviceUnavailableRef,
    504: outcomeUnknownRef,
  },
});
