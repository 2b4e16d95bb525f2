import type { MiddlewareHandler } from "hono";
import { within } from "../util/sleep.ts";
import { HttpProblem } from "./problem.ts";

/** Largest request body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Longest a client may take to send its whole body, counted from when the
 * request reaches the app. A constant, not configuration: 64 KiB in 10 s is
 * 6.4 KB/s, slower than any client we serve.
 */
const BODY_READ_TIMEOUT_MS = 10_000;

/**
 * The status counted and logged (never sent) for a client that closed the
 * connection before its body arrived: nginx's 499, so it is not a 5xx.
 */
const CLIENT_CLOSED_REQUEST = 499;

/** What {@link readDeclared}'s wait gives when the body did not arrive in time. */
const EXPIRED = Symbol("expired");

const utf8 = new TextDecoder("utf-8", { fatal: true });
const charsetParameter = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i;

const tooLarge = () =>
  new HttpProblem({
    status: 413,
    slug: "payload-too-large",
    title: "Payload Too Large",
    detail: `Request body exceeds ${MAX_BODY_BYTES} bytes.`,
  });

const timedOut = () =>
  new HttpProblem({
    status: 408,
    slug: "request-timeout",
    title: "Request Timeout",
    detail: `The request body did not arrive within ${BODY_READ_TIMEOUT_MS / 1000} s.`,
    headers: { Connection: "close" },
  });

const clientClosed = () =>
  new HttpProblem({
    status: CLIENT_CLOSED_REQUEST,
    slug: "client-closed-request",
    title: "Client Closed Request",
    detail: "The client closed the connection before sending the whole body.",
  });

/**
 * Reads the whole request body before the request goes further: at most
 * {@link MAX_BODY_BYTES} (413), within {@link BODY_READ_TIMEOUT_MS} (408),
 * in UTF-8 (415 for another charset, 400 for bytes that are not UTF-8). The
 * text is left in Hono's body cache, where the route's validator reads it.
 *
 * It runs before the maintenance gate, so a request counts as in flight only
 * once its body is here: a slow upload cannot hold a drain open, and a body
 * that completes during maintenance meets the gate as it is then.
 */
export function readBody(): MiddlewareHandler {
  return async (c, next) => {
    const request = c.req.raw;
    const declared = request.headers.get("content-length");
    if (declared !== null && Number(declared) > MAX_BODY_BYTES) throw tooLarge();
    // Hono's RegExpRouter matches a "/users/*" middleware twice for the literal path "/users/*"
    // (no upstream report found): the body is read once.
    if (request.body === null || request.bodyUsed) return next();
    // Size first, whatever the media type says: a body over the limit is a 413.
    const bytes = declared === null ? await readChunked(request.body) : await readDeclared(request);
    const contentType = request.headers.get("content-type");
    if (contentType !== null) requireUtf8(contentType);
    // Hono types the cache as values, but its json() and text() await what is there.
    (c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(decode(bytes));
    await next();
  };
}

/** 415 unless `contentType` names no charset or UTF-8: the body is only ever decoded as UTF-8. */
function requireUtf8(contentType: string): void {
  const match = charsetParameter.exec(contentType);
  if (match === null) return;
  const charset = match[1] ?? match[2] ?? "";
  if (charset.toLowerCase() !== "utf-8") {
    throw new HttpProblem({
      status: 415,
      slug: "unsupported-media-type",
      title: "Unsupported Media Type",
      detail: `Send the body in UTF-8 (charset=utf-8 or no charset), not charset=${charset}.`,
    });
  }
}

function decode(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new HttpProblem({
      status: 400,
      slug: "malformed-request",
      title: "Bad Request",
      detail: "The request body is not valid UTF-8.",
      errors: [{ field: "body", message: "body is not valid UTF-8" }],
    });
  }
}

/**
 * A body of a declared length (at most the limit, checked before): read whole by the runtime, which
 * stops at Content-Length. Much cheaper than a stream reader (Bun resolves it natively, without
 * a ReadableStream round trip per chunk). 408 past the deadline, 499 when the client went away.
 */
async function readDeclared(request: Request): Promise<Uint8Array> {
  let body: ArrayBuffer | typeof EXPIRED;
  try {
    body = await within(request.arrayBuffer(), BODY_READ_TIMEOUT_MS, EXPIRED);
  } catch {
    throw clientClosed();
  }
  // A read past the deadline stays pending until the connection closes; within() has handled its rejection.
  if (body === EXPIRED) throw timedOut();
  return new Uint8Array(body);
}

/** A body without a declared length, chunk by chunk: 413 past the limit, 408 past the deadline, 499 when the client went away. */
async function readChunked(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = body.getReader();
  let expired = false;
  // Cancelling ends the pending read (done), which the loop then reports as the timeout.
  const timer = setTimeout(() => {
    expired = true;
    reader.cancel().catch(() => {});
  }, BODY_READ_TIMEOUT_MS);
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      let read: Awaited<ReturnType<typeof reader.read>>;
      try {
        read = await reader.read();
      } catch {
        throw expired ? timedOut() : clientClosed();
      }
      if (expired) throw timedOut();
      if (read.done) break;
      size += read.value.byteLength;
      if (size > MAX_BODY_BYTES) {
        reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(read.value);
    }
  } finally {
    clearTimeout(timer);
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
