import { createRouter } from "../http/openapi.ts";
import { HttpProblem } from "../http/problem.ts";
import type { UsersRepository } from "./users.repository.ts";
import { createUser, deleteUser, getUser, listUsers, updateUser } from "./users.routes.ts";
import { PAGE, type User } from "./users.schemas.ts";

const toJson = (user: User) => ({
  id: user.id,
  name: user.name,
  email: user.email,
  created_at: user.created_at.toISOString(),
  updated_at: user.updated_at.toISOString(),
});

const userNotFound = (id: number) =>
  new HttpProblem({ status: 404, slug: "not-found", title: "Not Found", detail: `No user with id ${id}.` });

/**
 * The `/users` routes, backed by `users`. A write passes the request's own
 * admission (set by the gate for a bypassed request) so the repository asks
 * the right one when the write starts.
 */
export function usersRoutes(users: UsersRepository) {
  return createRouter()
    .openapi(listUsers, async (c) => {
      const { limit = PAGE.default, after } = c.req.valid("query");
      const page = await users.list(limit, after);
      const last = page.users.at(-1);
      if (page.hasMore && last) c.header("Link", `</users?limit=${limit}&after=${last.id}>; rel="next"`);
      return c.json(page.users.map(toJson), 200);
    })
    .openapi(createUser, async (c) => {
      const user = await users.create(c.req.valid("json"), c.get("writeAdmission"));
      c.header("Location", `/users/${user.id}`);
      return c.json(toJson(user), 201);
    })
    .openapi(getUser, async (c) => {
      const { id } = c.req.valid("param");
      const user = await users.get(id);
      if (!user) throw userNotFound(id);
      return c.json(toJson(user), 200);
    })
    .openapi(updateUser, async (c) => {
      const { id } = c.req.valid("param");
      const user = await users.update(id, c.req.valid("json"), c.get("writeAdmission"));
      if (!user) throw userNotFound(id);
      return c.json(toJson(user), 200);
    })
    .openapi(deleteUser, async (c) => {
      const { id } = c.req.valid("param");
      if (!(await users.delete(id, c.get("writeAdmission")))) throw userNotFound(id);
      return c.body(null, 204);
    });
}
