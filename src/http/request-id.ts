/** Header carrying the request id, accepted from clients and always echoed. */
export const REQUEST_ID_HEADER = "X-Request-Id";

const acceptable = /^[\w.:@/+=-]{1,128}$/;

/** The client's `X-Request-Id` when it is sane, else a new UUID. */
export function requestIdFrom(given: string | undefined): string {
  return given !== undefined && acceptable.test(given) ? given : crypto.randomUUID();
}
