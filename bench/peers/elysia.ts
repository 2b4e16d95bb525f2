/**
 * A peer of the throughput benchmark: Elysia on Bun with postgres.js, written the way Elysia's users
 * write it: `t` schemas for the params and the body, one client with a pool of 10. The service's two
 * hot queries, nothing else.
 *
 *   PORT=8084 DATABASE_URL=postgres://postgres@127.0.0.1:5432/db bun bench/peers/elysia.ts
 */
import { Elysia, t } from "elysia";
import postgres from "postgres";

interface User {
  id: number;
  name: string;
  email: string;
  created_at: Date;
  updated_at: Date;
}

const sql = postgres(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres", {
  max: 10,
  fetch_types: false,
  connection: { application_name: "bench-elysia", TimeZone: "UTC" },
});

const app = new Elysia()
  .get(
    "/users/:id",
    async ({ params, status }) => {
      const [user] = await sql<
        User[]
      >`SELECT id, name, email, created_at, updated_at FROM users WHERE id = ${params.id}`;
      return user ?? status(404, { error: "not found" });
    },
    { params: t.Object({ id: t.Numeric({ minimum: 1 }) }) },
  )
  .post(
    "/users",
    async ({ body, set, status }) => {
      const [user] = await sql<User[]>`
        INSERT INTO users (name, email) VALUES (${body.name}, ${body.email})
        RETURNING id, name, email, created_at, updated_at`;
      set.headers.location = `/users/${user?.id}`;
      return status(201, user);
    },
    {
      body: t.Object(
        {
          name: t.String({ minLength: 1, maxLength: 255 }),
          email: t.String({ format: "email", maxLength: 255 }),
        },
        { additionalProperties: false },
      ),
    },
  )
  .listen({ port: Number(process.env.PORT ?? 8084), hostname: "127.0.0.1" });

console.log(JSON.stringify({ event: "elysia.listening", port: app.server?.port }));

const stop = async () => {
  await app.stop();
  await sql.end({ timeout: 1 });
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
