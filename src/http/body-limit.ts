import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HttpProblem } from "./problem.ts";

/** Largest request body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Rejects bodies over {@link MAX_BODY_BYTES} with a 413 problem, whether announced or streamed. */
export function limitBody(): MiddlewareHandler {
  return bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new HttpProblem(
        413,
        "payload-too-large",
        "Payload Too Large",
        `Request body exceeds ${MAX_BODY_BYTES} bytes.`,
      );
    },
  });
}
