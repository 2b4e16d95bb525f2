import { HttpProblem } from "../http/problem.ts";

/** The request header naming a write's key (draft-ietf-httpapi-idempotency-key-header). */
export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

/** The response header marking an answer replayed from an earlier request with the same key. */
export const IDEMPOTENT_REPLAYED_HEADER = "Idempotent-Replayed";

/** Longest key accepted, in characters (after unquoting). */
export const MAX_KEY_LENGTH = 255;

/** A bare key: visible ASCII, not starting with a quote (which opens the quoted form). */
const BARE = /^[\x21\x23-\x7e][\x21-\x7e]*$/;
/** The draft's form, an RFC 8941 sf-string: printable ASCII between quotes, `\"` and `\\` escaped. */
const QUOTED = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/;

const invalidKey = (message: string) =>
  new HttpProblem({
    status: 400,
    slug: "validation-error",
    title: "Bad Request",
    detail: "The request has 1 invalid field.",
    errors: [{ field: `header.${IDEMPOTENCY_KEY_HEADER.toLowerCase()}`, message }],
  });

/**
 * The key an `Idempotency-Key` header value names: the draft's quoted string
 * (`"8e03978e-40d5"`, unquoted) or, as most clients send it, a bare token of
 * visible ASCII. Throws the 400 problem for an empty, too long or unprintable key.
 */
export function parseIdempotencyKey(value: string): string {
  const quoted = QUOTED.exec(value);
  const key = quoted ? (quoted[1] as string).replace(/\\(["\\])/g, "$1") : value;
  if (key === "") throw invalidKey(`${IDEMPOTENCY_KEY_HEADER} must not be empty`);
  if (key.length > MAX_KEY_LENGTH) {
    throw invalidKey(`${IDEMPOTENCY_KEY_HEADER} must be at most ${MAX_KEY_LENGTH} characters`);
  }
  if (!quoted && !BARE.test(key)) {
    throw invalidKey(`${IDEMPOTENCY_KEY_HEADER} must be visible ASCII characters, or a quoted string`);
  }
  return key;
}

/** The header as an OpenAPI parameter of the writes that accept it. */
export const idempotencyKeyParameter = {
  name: IDEMPOTENCY_KEY_HEADER,
  in: "header" as const,
  required: false,
  description:
    "Makes retries of this write safe: the first request under a key is executed and its answer (a success, " +
    "404 or 409 email-taken) stored for `IDEMPOTENCY_TTL_S` (24 h by default); a retry with the same key and the " +
    "same request gets that answer again with `Idempotent-Replayed: true`, and writes nothing. The same key with " +
    "another method, path or body → 422; while the first is still running → 409. 1 to 255 visible ASCII " +
    'characters, bare or as a quoted string (`"…"`). A 503 or 504 is never stored: retry it with the same key.',
  schema: { type: "string" as const, minLength: 1, maxLength: MAX_KEY_LENGTH, example: "8e03978e-40d5-43e8-bc93" },
};
