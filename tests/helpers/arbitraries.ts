/**
 * fast-check arbitraries for fuzzing the HTTP API: hostile text, JSON values,
 * raw bodies with their headers, paths, query strings and maintenance values.
 */
import fc from "fast-check";

/** Largest request body the service accepts (src/http/read-body.ts). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Single code units that are invalid on their own: lone high and low surrogates. */
export const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));

/** `text` with each lone surrogate replaced by U+FFFD, as a UTF-8 encoder writes it. */
export const wellFormed = (text: string): string =>
  text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd");

/** Characters that tend to break text handling. */
const awkward = fc.constantFrom(
  "\u0000",
  "\u0001",
  "\u007f",
  "\ud800",
  "\udfff",
  "\u202e", // RIGHT-TO-LEFT OVERRIDE
  "\u200f", // RIGHT-TO-LEFT MARK
  "\u061c", // ARABIC LETTER MARK
  "שלום",
  "مرحبا",
  "\ufeff", // BOM / zero-width no-break space
  "\u200b",
  "e\u0301", // combining acute
  "😀",
  "👩‍👩‍👧‍👦",
  "🇺🇳",
  "\u2028",
  "\u2029",
  "\r\n",
  "\t",
  "\\",
  '"',
  "'",
  "<script>",
  "%",
  "%00",
  "%zz",
  "\u00a0",
  "\u3000",
  "ﷺ",
  "ß",
  "İ",
  "Ⅻ",
  "\udbff\udfff", // U+10FFFF
);

/** Any text: every code point, lone surrogates, NUL, RTL marks, emoji, combining marks. */
export const nastyString = (maxLength = 32): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: "binary", maxLength }),
    fc.string({ unit: "grapheme", maxLength }),
    fc.string({
      unit: fc.oneof(awkward, loneSurrogate, fc.string({ unit: "binary", minLength: 1, maxLength: 1 })),
      maxLength,
    }),
  );

/** Long text, from a few KiB to past the body limit, of one- to four-byte characters. */
export const hugeString = fc
  .tuple(fc.constantFrom("x", "é", "€", "😀", "\u0000", " ", "\ud800"), fc.integer({ min: 4_000, max: 70_000 }))
  .map(([unit, count]) => unit.repeat(count));

/** Addresses the API accepts, made unique enough by a random local part. */
export const validEmail = fc
  .tuple(fc.stringMatching(/^[a-z0-9]{1,16}$/), fc.constantFrom("example.com", "example.org", "mail.example.net"))
  .map(([local, domain]) => `${local}@${domain}`);

/** Any JSON value, with unicode strings and some depth. */
export const anyJson = fc.jsonValue({ maxDepth: 4, stringUnit: "binary" });

/** A value for `name` or `email`: sometimes right, often of the wrong type, length or content. */
export const fieldValue = fc.oneof(
  { arbitrary: nastyString(), weight: 4 },
  { arbitrary: validEmail, weight: 3 },
  { arbitrary: fc.emailAddress(), weight: 1 },
  { arbitrary: fc.constantFrom("", " ", "   \t ", "a", "x".repeat(255), "x".repeat(256), "😀".repeat(255)), weight: 1 },
  { arbitrary: anyJson, weight: 2 },
  { arbitrary: hugeString, weight: 1 },
);

/** Objects shaped like a user body: name and email (each maybe missing or of any type), maybe extra keys. */
export const userLikeObject = fc
  .tuple(
    fc.record({ name: fieldValue, email: fieldValue }, { requiredKeys: [] }),
    fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("__proto__", "constructor", "id")), anyJson, {
      maxKeys: 3,
    }),
  )
  .map(([fields, extra]) => ({ ...extra, ...fields }));

/** Nesting `depth` arrays or objects deep, as JSON text (the value may go inside `name`). */
export const deepJsonText = fc
  .tuple(fc.integer({ min: 1, max: 40_000 }), fc.constantFrom("array", "object", "name"))
  .map(([depth, shape]) => {
    if (shape === "array") return "[".repeat(depth) + "]".repeat(depth);
    if (shape === "object") return `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
    return `{"name":${"[".repeat(depth)}${"]".repeat(depth)},"email":"deep@example.com"}`;
  });

/** JSON text with one byte cut, doubled or inserted somewhere: mostly malformed. */
export const mangledJsonText = fc
  .tuple(
    fc.oneof(
      userLikeObject.map((value) => JSON.stringify(value)),
      fc.json(),
    ),
    fc.nat(),
    fc.constantFrom("cut", "truncate", "insert"),
    fc.constantFrom("{", "}", '"', ",", ":", "\\", "\u0000", "x", "]"),
  )
  .map(([text, at, how, char]) => {
    const index = text.length === 0 ? 0 : at % text.length;
    if (how === "cut") return text.slice(0, index) + text.slice(index + 1);
    if (how === "truncate") return text.slice(0, index);
    return text.slice(0, index) + char + text.slice(index);
  });

/** Media types, from right to absurd; `undefined` sends no Content-Type. JSON ones are the most frequent. */
export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { arbitrary: fc.constant("application/json"), weight: 8 },
  {
    arbitrary: fc.constantFrom(
      "application/json; charset=utf-8",
      "application/json; charset=UTF-8",
      "application/json; charset=utf-16",
      "application/json;charset=latin1",
      "APPLICATION/JSON",
      "application/problem+json",
      "application/vnd.api+json",
      "application/json; boundary",
      "application/json ; charset=utf-8",
    ),
    weight: 4,
  },
  {
    arbitrary: fc.constantFrom(
      "application/jsonx",
      "text/json",
      "text/plain",
      "text/plain; charset=utf-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=xyz",
      "application/octet-stream",
      "json",
      "*/*",
      "",
    ),
    weight: 2,
  },
  { arbitrary: fc.constant(undefined), weight: 1 },
  // Any value a header can carry: visible ASCII and Latin-1, spaces inside.
  {
    arbitrary: fc.string({
      unit: fc
        .integer({ min: 0x20, max: 0xff })
        .filter((code) => code !== 0x7f)
        .map((code) => String.fromCharCode(code)),
      maxLength: 40,
    }),
    weight: 1,
  },
);

/** One body to send: bytes or text, the Content-Type to announce, and maybe a Content-Length (true or not). */
export interface BodySpec {
  body: string | Uint8Array<ArrayBuffer>;
  contentType: string | undefined;
  /** A Content-Length header to send, however wrong. */
  contentLength: string | undefined;
}

/** The bytes of a body as it goes on the wire (strings as UTF-8, lone surrogates as U+FFFD). */
export const bodyBytes = (body: string | Uint8Array): Uint8Array =>
  typeof body === "string" ? new TextEncoder().encode(body) : body;

/** Bodies for POST /users and PUT /users/{id}. */
export const bodyText: fc.Arbitrary<string | Uint8Array<ArrayBuffer>> = fc.oneof(
  { arbitrary: userLikeObject.map((value) => JSON.stringify(value)), weight: 8 },
  {
    arbitrary: fc.record({ name: nastyString(), email: validEmail }).map((value) => JSON.stringify(value)),
    weight: 4,
  },
  { arbitrary: anyJson.map((value) => JSON.stringify(value)), weight: 2 },
  { arbitrary: deepJsonText, weight: 1 },
  { arbitrary: mangledJsonText, weight: 2 },
  { arbitrary: nastyString(64), weight: 1 },
  { arbitrary: hugeString, weight: 1 },
  { arbitrary: fc.uint8Array({ maxLength: 512 }), weight: 1 },
  {
    // Right JSON, wrong encoding: UTF-16 with or without a BOM.
    arbitrary: fc
      .tuple(fc.record({ name: nastyString(), email: validEmail }), fc.boolean(), fc.constantFrom("utf16le", "latin1"))
      .map(([value, bom, encoding]) => {
        const text = (bom ? "\ufeff" : "") + JSON.stringify(value);
        return new Uint8Array(Buffer.from(text, encoding as BufferEncoding));
      }),
    weight: 1,
  },
);

/** A Content-Length for a body of `size` bytes: right, off by some, or not a number. */
export const contentLengthFor = (size: number): fc.Arbitrary<string | undefined> =>
  fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 6 },
    { arbitrary: fc.constant(String(size)), weight: 2 },
    {
      arbitrary: fc.integer({ min: -size, max: MAX_BODY_BYTES * 2 }).map((delta) => String(Math.max(0, size + delta))),
      weight: 2,
    },
    { arbitrary: fc.constantFrom("abc", "-1", "1e3", "0x10", "+5", " 7", "99999999999999999999", ""), weight: 1 },
  );

/** A complete body specification. */
export const bodySpec: fc.Arbitrary<BodySpec> = fc
  .tuple(bodyText, contentType)
  .chain(([body, type]) =>
    contentLengthFor(bodyBytes(body).byteLength).map((length) => ({ body, contentType: type, contentLength: length })),
  );

/** Methods of property 2: the usual seven and a couple of extension tokens. */
export const method = fc.oneof(
  { arbitrary: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"), weight: 10 },
  { arbitrary: fc.constantFrom("PURGE", "PROPFIND", "get", "pUt", "FOO-BAR"), weight: 1 },
);

/** Numbers as a client might spell an id: huge, negative, fractional, exponent, hex, padded. */
export const numberish = fc.oneof(
  fc.integer({ min: 1, max: 60 }).map(String),
  fc.integer({ min: -2_147_483_649, max: 4_294_967_297 }).map(String),
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc.double().map(String),
  fc.constantFrom(
    "0",
    "-0",
    "00001",
    "2147483647",
    "2147483648",
    "9007199254740993",
    "1e3",
    "1.0",
    "0x10",
    "1_000",
    "Infinity",
    "NaN",
    " 1",
    "1 ",
    "+1",
    "١٢٣", // Arabic-Indic digits
    "１", // fullwidth digit
  ),
);

/** One path segment: numbers, unicode, raw or percent-encoded, and broken escapes. */
export const segment = fc.oneof(
  { arbitrary: numberish, weight: 4 },
  { arbitrary: nastyString(16), weight: 3 },
  { arbitrary: nastyString(16).map((text) => encodeURIComponent(wellFormed(text))), weight: 2 },
  {
    arbitrary: fc
      .tuple(fc.string({ unit: fc.constantFrom("0", "9", "a", "F", "g", "Z", "%"), maxLength: 3 }))
      .map(([rest]) => `%${rest}`),
    weight: 2,
  },
  {
    arbitrary: fc.constantFrom("", ".", "..", "%2e%2e", "%2F", "%00", "~", "users", "1;x=2", "*", ":id", "{id}"),
    weight: 2,
  },
);

/** Where paths start: every route the app has, and near misses. */
const pathPrefix = fc.constantFrom(
  "/",
  "/users",
  "/users/",
  "/Users/",
  "/users//",
  "/usersx",
  "/health",
  "/health/live",
  "/health/",
  "/stats",
  "/openapi.json",
  "/docs",
  "/docs/assets/",
  "/admin/",
  "/admin/maintenance",
  "//",
);

/** A request target: a prefix, more segments, and maybe a query and a fragment. */
export const requestTarget = fc
  .tuple(
    pathPrefix,
    fc.array(segment, { maxLength: 3 }),
    fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    fc.boolean(),
  )
  .map(([prefix, segments, query, fragment]) => {
    const joined = segments.join("/");
    const path = prefix.endsWith("/") || joined === "" ? prefix + joined : `${prefix}/${joined}`;
    return `${path}${query === undefined ? "" : `?${query}`}${fragment ? "#frag" : ""}`;
  });

/** Query values for limit and after: right, wrong and garbage. */
const queryValue = fc.oneof(
  { arbitrary: fc.integer({ min: 1, max: 1000 }).map(String), weight: 3 },
  { arbitrary: numberish, weight: 3 },
  { arbitrary: nastyString(12).map((text) => encodeURIComponent(wellFormed(text))), weight: 2 },
  { arbitrary: fc.string({ maxLength: 12 }), weight: 2 },
  { arbitrary: fc.constantFrom("", "%", "%zz", "%31", "1%00", "+1", "1+", "1&limit=2", "1#x", "[]"), weight: 1 },
);

/** A query string for GET /users: limit/after (maybe repeated, maybe bare), other keys, garbage. */
export const usersQuery = fc
  .array(
    fc.oneof(
      { arbitrary: fc.tuple(fc.constantFrom("limit", "after"), queryValue).map(([k, v]) => `${k}=${v}`), weight: 6 },
      { arbitrary: fc.constantFrom("limit", "after", "limit=", "after=", "=", "&", "limit[]=1", "LIMIT=5"), weight: 1 },
      {
        arbitrary: fc
          .tuple(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }))
          .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`),
        weight: 1,
      },
    ),
    { maxLength: 4 },
  )
  .map((parts) => parts.join("&"));

/** An ISO timestamp at least an hour from `now`, before or after it. */
const farTimestamp = fc
  .tuple(fc.boolean(), fc.integer({ min: 3_600, max: 86_400 * 365 }))
  .map(([past, seconds]) => new Date(Date.now() + (past ? -1 : 1) * seconds * 1000).toISOString());

/** A JSON object close to what the maintenance key takes, valid or not. */
const maintenanceObject = fc
  .tuple(
    fc.record(
      {
        enabled: fc.oneof(fc.boolean(), anyJson),
        mode: fc.oneof(fc.constantFrom("off", "read-only", "full", "FULL", "readonly", ""), anyJson),
        reason: fc.oneof(nastyString(24), fc.constantFrom("", "  disk upgrade  ", "r".repeat(501)), anyJson),
        retry_after: fc.oneof(
          fc.integer({ min: -5, max: 86_400 * 7 + 5 }),
          fc.double(),
          fc.constantFrom(0, 1.5, 604_800, 604_801, "60"),
          anyJson,
        ),
        start: fc.oneof(farTimestamp, fc.constantFrom("yesterday", "2026-13-01T00:00:00Z", ""), anyJson),
        end: fc.oneof(farTimestamp, fc.constantFrom("tomorrow", "2026-02-30T00:00:00Z"), anyJson),
      },
      { requiredKeys: [] },
    ),
    fc.dictionary(fc.string({ maxLength: 6 }), anyJson, { maxKeys: 1 }),
    fc.boolean(),
  )
  .map(([fields, extra, withExtra]) => (withExtra ? { ...extra, ...fields } : fields));

/** A JSON object the key understands: enabled or mode, maybe a reason, a Retry-After and a window. */
const validMaintenanceObject = fc
  .tuple(
    fc.oneof(
      fc.record({ enabled: fc.boolean() }),
      fc.record({ mode: fc.constantFrom("off", "read-only", "full") }),
      fc.constantFrom(
        { enabled: true, mode: "full" },
        { enabled: false, mode: "off" },
        { enabled: true, mode: "read-only" },
      ),
    ),
    fc.record(
      {
        reason: fc.oneof(nastyString(24), fc.constantFrom("", "  disk upgrade  ", "r".repeat(500))),
        retry_after: fc.integer({ min: 0, max: 86_400 * 7 }),
      },
      { requiredKeys: [] },
    ),
    fc.option(
      fc.tuple(farTimestamp, farTimestamp).map(([a, b]) => (a < b ? { start: a, end: b } : { start: b, end: a })),
      { nil: undefined },
    ),
  )
  .map(([switchField, rest, window]) => ({ ...switchField, ...rest, ...window }));

/** Words the key understands, in odd case and with padding (trimmed by the parser). */
const maintenanceWord = fc
  .tuple(
    fc.mixedCase(
      fc.constantFrom("true", "1", "yes", "on", "enabled", "maintenance", "false", "0", "no", "off", "disabled", ""),
    ),
    fc.constantFrom("", " ", "\t", "\n", "\u00a0", "\ufeff", "\u3000"),
    fc.constantFrom("", " ", "\r\n", "\u2028", "\u200b"),
  )
  .map(([word, before, after]) => before + word + after);

/** Values written to the maintenance key: words, JSON objects (valid or near), any JSON, any text. */
export const maintenanceValue = fc.oneof(
  { arbitrary: maintenanceWord, weight: 4 },
  {
    arbitrary: fc
      .tuple(fc.oneof(validMaintenanceObject, maintenanceObject), fc.constantFrom(0, 2))
      .map(([value, indent]) => JSON.stringify(value, null, indent)),
    weight: 6,
  },
  { arbitrary: anyJson.map((value) => JSON.stringify(value)), weight: 1 },
  { arbitrary: nastyString(24), weight: 2 },
  { arbitrary: mangledJsonText.map((text) => `{${text}`), weight: 1 },
);
