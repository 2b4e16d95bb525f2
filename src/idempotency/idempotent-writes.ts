import type { Context } from "hono";
import type postgres from "postgres";
import type { Sql } from "../db/db-holder.ts";
import type { AppEnv } from "../http/context.ts";
import { clientProblem } from "../http/errors.ts";
import { HttpProblem, problemResponse } from "../http/problem.ts";
import { requestFingerprint } from "./fingerprint.ts";
import { IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER } from "./idempotency-key.ts";
import { claimKey, findKey, type KeyedRequest, type StoredResponse, saveKey } from "./idempotency-store.ts";

/** The headers that belong to an answer, stored and replayed with it; others (request id, gate) are per request. */
const STORED_HEADERS = ["content-type", "location"];

/** Seconds a client is asked to wait before retrying a request whose key is in use. */
const KEY_IN_USE_RETRY_AFTER_SECONDS = 1;

const keyInUse = () =>
  new HttpProblem({
    status: 409,
    slug: "idempotency-key-in-use",
    title: "Conflict",
    detail: `A request with this ${IDEMPOTENCY_KEY_HEADER} is still running. Retry after Retry-After to get its answer.`,
    headers: { "Retry-After": String(KEY_IN_USE_RETRY_AFTER_SECONDS) },
  });

const keyReused = () =>
  new HttpProblem({
    status: 422,
    slug: "idempotency-key-reused",
    title: "Unprocessable Content",
    detail: `This ${IDEMPOTENCY_KEY_HEADER} was first used for another request (method, path or body). Use a new key for a new request.`,
  });

/**
 * Writes that run once per `Idempotency-Key`: the first request under a key
 * is executed and its answer stored in the same transaction as its write;
 * a retry of the same request gets that answer again and writes nothing.
 * Only final answers are stored (a success, or a 4xx the write itself gave:
 * 404, a taken email): a 503 or 504 leaves nothing, so its retry executes, or
 * replays what did commit.
 */
export class IdempotentWrites {
  constructor(
    /** How long an answer is kept, and its key bound to its request. */
    private readonly ttlSeconds: number,
  ) {}

  /** What the request of `c` under `key` is bound to: its method, path and a fingerprint of `body`. */
  async bind(c: Context<AppEnv>, key: string, body: unknown): Promise<KeyedRequest> {
    return { key, method: c.req.method, path: c.req.path, fingerprint: await requestFingerprint(body) };
  }

  /**
   * `work` (a write answering with its response) made once-only for
   * `request`, to run as one transaction (DbHolder.run). It takes the key
   * without waiting (409 while another request holds it), replays a stored
   * answer (422 when it was for another request), or runs `work` and stores
   * its answer. A problem `work` throws that is the client's (4xx) is stored
   * too, once `work`'s statements are undone; anything else rolls the
   * transaction back and is thrown.
   */
  once(c: Context<AppEnv>, request: KeyedRequest, work: (sql: Sql) => Promise<Response>) {
    return async (sql: Sql): Promise<Response> => {
      // Sent together, run in order: the lookup sees every row committed before the key was taken.
      const [claimed, stored] = await Promise.all([claimKey(sql, request.key), findKey(sql, request.key)]);
      if (!claimed) throw keyInUse();
      if (stored) {
        const same =
          stored.method === request.method &&
          stored.path === request.path &&
          stored.fingerprint === request.fingerprint;
        if (!same) throw keyReused();
        return toResponse(stored, { [IDEMPOTENT_REPLAYED_HEADER]: "true" });
      }
      let response: Response;
      try {
        response = await inSavepoint(sql, work);
      } catch (error) {
        const problem = clientProblem(error);
        if (!problem) throw error;
        response = problemResponse(c, problem);
      }
      const answer = await toStored(response);
      await saveKey(sql, request, answer, this.ttlSeconds);
      return toResponse(answer);
    };
  }
}

/**
 * Runs `work` in a savepoint, rolled back to when it throws, so the transaction can still store its answer.
 * postgres.js fails a whole transaction for any query that failed in it (even one whose error was caught),
 * unless the query ran in a savepoint of its own: `work`'s unique violation must.
 */
function inSavepoint<T>(sql: Sql, work: (sql: Sql) => Promise<T>): Promise<T> {
  // DbHolder.run gives a transaction's work its TransactionSql typed as Sql.
  const transaction = sql as unknown as postgres.TransactionSql;
  return transaction.savepoint((savepoint) => work(savepoint as unknown as Sql)) as Promise<T>;
}

async function toStored(response: Response): Promise<StoredResponse> {
  const headers: Record<string, string> = {};
  for (const name of STORED_HEADERS) {
    const value = response.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  const body = await response.text();
  return { status: response.status, headers, body: body === "" ? null : body };
}

function toResponse(answer: StoredResponse, extraHeaders: Record<string, string> = {}): Response {
  return new Response(answer.body, { status: answer.status, headers: { ...answer.headers, ...extraHeaders } });
}
