import { z } from "@hono/zod-openapi";

/** Largest id a PostgreSQL SERIAL (int4) can hold. */
export const MAX_ID = 2_147_483_647;

/** Page size bounds of `GET /users`. */
export const PAGE = { default: 100, max: 1000 } as const;

const positiveInt4 = (name: string) =>
  z
    .string()
    .regex(/^\d{1,10}$/, `${name} must be a positive integer`)
    .transform(Number)
    .refine((n) => n >= 1 && n <= MAX_ID, `${name} must be between 1 and ${MAX_ID}`);

/** A user as the API returns it. */
export const UserSchema = z
  .object({
    id: z.number().int().openapi({ example: 1 }),
    name: z.string().openapi({ example: "Alice" }),
    email: z.string().openapi({ example: "alice@example.com" }),
    created_at: z.string().openapi({ format: "date-time", example: "2026-11-26T16:09:29.123Z" }),
    updated_at: z.string().openapi({ format: "date-time", example: "2026-11-26T16:09:29.123Z" }),
  })
  .openapi("User");

/**
 * What a client sends to create or replace a user. The name is trimmed; the
 * email is kept as given and must be unique ignoring case.
 */
export const UserInputSchema = z
  .object({
    name: z
      .string()
      .trim()
      .min(1, "name must not be empty")
      .max(255, "name must be at most 255 characters")
      // PostgreSQL text cannot hold U+0000.
      .refine((name) => !name.includes("\u0000"), "name must not contain NUL characters"),
    email: z.email("email must be a valid address").max(255, "email must be at most 255 characters"),
  })
  .openapi("UserInput", { example: { name: "Alice", email: "alice@example.com" } });

/** `{id}` of `/users/{id}`: a positive 32-bit integer. */
export const UserIdParamsSchema = z.object({
  id: positiveInt4("id").openapi({
    param: { name: "id", in: "path" },
    type: "integer",
    minimum: 1,
    maximum: MAX_ID,
    example: 1,
  }),
});

/** Keyset pagination of `GET /users`. */
export const ListUsersQuerySchema = z.object({
  limit: z
    .string()
    .regex(/^\d{1,4}$/, "limit must be an integer")
    .transform(Number)
    .refine((n) => n >= 1 && n <= PAGE.max, `limit must be between 1 and ${PAGE.max}`)
    .optional()
    .openapi({
      param: { name: "limit", in: "query" },
      type: "integer",
      minimum: 1,
      maximum: PAGE.max,
      default: PAGE.default,
      description: "Users per page.",
    }),
  after: positiveInt4("after")
    .optional()
    .openapi({
      param: { name: "after", in: "query" },
      type: "integer",
      minimum: 1,
      maximum: MAX_ID,
      description: "Return users with an id greater than this (the last id of the previous page).",
    }),
});

/** A stored user as the repository returns it. */
export interface User {
  id: number;
  name: string;
  email: string;
  /** ISO 8601 in UTC with milliseconds (`2026-11-26T16:09:29.123Z`), as the API returns it. */
  created_at: string;
  updated_at: string;
}

/** Validated input for create and replace. */
export type UserInput = z.infer<typeof UserInputSchema>;
