import { describe, expect, test } from "bun:test";
import { HttpProblem } from "../../src/http/problem.ts";
import { canonicalJson, requestFingerprint } from "../../src/idempotency/fingerprint.ts";
import { MAX_KEY_LENGTH, parseIdempotencyKey } from "../../src/idempotency/idempotency-key.ts";

/** The 400 problem's one field error for a bad key, as `parseIdempotencyKey` throws it. */
function rejection(value: string) {
  try {
    parseIdempotencyKey(value);
  } catch (error) {
    if (!(error instanceof HttpProblem)) throw error;
    return { status: error.status, slug: error.slug, detail: error.detail, errors: error.errors };
  }
  throw new Error(`${JSON.stringify(value)} was accepted`);
}

const invalid = (message: string) => ({
  status: 400,
  slug: "validation-error",
  detail: "The request has 1 invalid field.",
  errors: [{ field: "header.idempotency-key", message }],
});

describe("parseIdempotencyKey", () => {
  test("a bare token of visible ASCII is the key as it is", () => {
    expect(parseIdempotencyKey("8e03978e-40d5-43e8-bc93-6894a57f9324")).toBe("8e03978e-40d5-43e8-bc93-6894a57f9324");
    expect(parseIdempotencyKey("a:b/c=d~!")).toBe("a:b/c=d~!");
  });

  test("the draft's quoted string is unquoted, its escapes undone, spaces allowed inside", () => {
    expect(parseIdempotencyKey('"8e03978e-40d5"')).toBe("8e03978e-40d5");
    expect(parseIdempotencyKey('"order 42"')).toBe("order 42");
    expect(parseIdempotencyKey('"say \\"hi\\" \\\\ bye"')).toBe('say "hi" \\ bye');
  });

  test("a key of exactly the longest length is accepted, bare or quoted", () => {
    const longest = "k".repeat(MAX_KEY_LENGTH);
    expect(parseIdempotencyKey(longest)).toBe(longest);
    expect(parseIdempotencyKey(`"${longest}"`)).toBe(longest);
  });

  test("an empty key, bare or quoted, answers 400", () => {
    expect(rejection("")).toEqual(invalid("Idempotency-Key must not be empty"));
    expect(rejection('""')).toEqual(invalid("Idempotency-Key must not be empty"));
  });

  test("a key one character over the limit answers 400", () => {
    const tooLong = invalid(`Idempotency-Key must be at most ${MAX_KEY_LENGTH} characters`);
    expect(rejection("k".repeat(MAX_KEY_LENGTH + 1))).toEqual(tooLong);
    expect(rejection(`"${"k".repeat(MAX_KEY_LENGTH + 1)}"`)).toEqual(tooLong);
  });

  test("spaces, controls and characters beyond ASCII answer 400, as does a broken quoted string", () => {
    const unprintable = invalid("Idempotency-Key must be visible ASCII characters, or a quoted string");
    for (const value of [
      "a b",
      "a\tb",
      "a\u007fb",
      "a\u0000b",
      "clé",
      "a, b",
      '"open',
      '"bad \\x escape"',
      '"tab\there"',
    ]) {
      expect(rejection(value)).toEqual(unprintable);
    }
  });
});

describe("canonicalJson", () => {
  test("object keys are sorted at every depth; arrays keep their order", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: "x" } })).toBe(
      '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  test("primitives and null are as JSON writes them; undefined is null, and an undefined field is absent", () => {
    expect(canonicalJson('a"b')).toBe('"a\\"b"');
    expect(canonicalJson(1.5)).toBe("1.5");
    expect(canonicalJson(null)).toBe("null");
    expect(canonicalJson(undefined)).toBe("null");
    expect(canonicalJson({ a: undefined, b: true })).toBe('{"b":true}');
  });
});

describe("requestFingerprint", () => {
  test("is the hex SHA-256 of the canonical JSON", async () => {
    // sha256("null"), as `printf null | sha256sum` gives it.
    expect(await requestFingerprint(undefined)).toBe(
      "74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b",
    );
  });

  test("the same body in another key order has the same fingerprint; another body has another", async () => {
    const alice = await requestFingerprint({ name: "Alice", email: "alice@example.com" });
    expect(await requestFingerprint({ email: "alice@example.com", name: "Alice" })).toBe(alice);
    expect(await requestFingerprint({ name: "Alice", email: "alice2@example.com" })).not.toBe(alice);
  });
});
