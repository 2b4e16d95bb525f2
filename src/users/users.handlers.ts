import type { Context } from "hono";
import type { Sql } from "../db/db-holder.ts";
import type { AppEnv } from "../http/context.ts";
import { createRouter } from "../http/openapi.ts";
import { HttpProblem } from "../http/problem.ts";
import { IDEMPOTENCY_KEY_HEADER, parseIdempotencyKey } from "../idempotency/idempotency-key.ts";
import type { IdempotentWrites } from "../idempotency/idempotent-writes.ts";
import type { UsersRepository } from "./users.repository.ts";
import { createUser, deleteUser, getUser, listUsers, updateUser } from "./users.routes.ts";
import { PAGE, type User } from "./users.schemas.ts";

const toJson = (user: User) => ({
  id: user.id,
  name: user.name,
  email: user.email,
  created_at: user.created_at,
  updated_at: user.updated_at,
});

const userNotFound = (id: number) =>
  new HttpProblem({ status: 404, slug: "not-found", title: "Not Found", detail: `No user with id ${id}.` });

/**
 * The `/users` routes, backed by `users`. A write passes the request's own
 * admission (set by the gate for a bypassed request) so the repository asks
 * the right one when the write starts. A write with an `Idempotency-Key` runs
 * once through `keyed`, its answer built in its transaction; one without a
 * key costs nothing more than before.
 */
export function usersRoutes(users: UsersRepository, keyed: IdempotentWrites) {
  /**
   * Runs `work` once for the key (the header's value) in one write
   * transaction, or replays its stored answer. A replay is an answer of the
   * route rebuilt from its row, which the route's response types cannot follow.
   */
  const writeOnce = async <R extends Response>(
    c: Context<AppEnv>,
    header: string,
    body: unknown,
    work: (sql: Sql) => Promise<R>,
  ): Promise<R> => {
    const request = await keyed.bind(c, parseIdempotencyKey(header), body);
    return (await users.write(keyed.once(c, request, work), c.get("writeAdmission"))) as R;
  };

  return createRouter()
    .openapi(listUsers, async (c) => {
      const { limit = PAGE.default, after } = c.req.valid("query");
      const page = await users.list(limit, after);
      const last = page.users.at(-1);
      if (page.hasMore && last) c.header("Link", `</users?limit=${limit}&after=${last.id}>; rel="next"`);
      return c.json(page.users.map(toJson), 200);
    })
    .openapi(createUser, async (c) => {
      const input = c.req.valid("json");
      const created = (user: User) => {
        c.header("Location", `/users/${user.id}`);
        return c.json(toJson(user), 201);
      };
      const key = c.req.header(IDEMPOTENCY_KEY_HEADER);
      if (key !== undefined) return writeOnce(c, key, input, async (sql) => created(await users.insert(sql, input)));
      return created(await users.create(input, c.get("writeAdmission")));
    })
    .openapi(getUser, async (c) => {
      const { id } = c.req.valid("param");
      const user = await users.get(id);
      if (!user) throw userNotFound(id);
      return c.json(toJson(user), 200);
    })
    .openapi(updateUser, async (c) => {
      const { id } = c.req.valid("param");
      const input = c.req.valid("json");
      const updated = (user: User | undefined) => {
        if (!user) throw userNotFound(id);
        return c.json(toJson(user), 200);
      };
      const key = c.req.header(IDEMPOTENCY_KEY_HEADER);
      if (key !== undefined)
        return writeOnce(c, key, input, async (sql) => updated(await users.replace(sql, id, input)));
      return updated(await users.update(id, input, c.get("writeAdmission")));
    })
    .openapi(deleteUser, async (c) => {
      const { id } = c.req.valid("param");
      const deleted = (found: boolean) => {
        if (!found) throw userNotFound(id);
        return c.body(null, 204);
      };
      const key = c.req.header(IDEMPOTENCY_KEY_HEADER);
      if (key !== undefined) return writeOnce(c, key, undefined, async (sql) => deleted(await users.remove(sql, id)));
      return deleted(await users.delete(id, c.get("writeAdmission")));
    });
}
