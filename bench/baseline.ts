/**
 * The reference point of the throughput benchmark: the service's two hot
 * queries behind a bare Hono app on postgres.js, same pool size (10), and
 * nothing else (no validation, gate, logging, metrics or request id).
 * With WRITE_TRANSACTION=1 the insert runs in a transaction (`sql.begin`), the
 * least a write costs when it must be able to roll back at its deadline, as the
 * service's writes do.
 *
 *   PORT=8081 DATABASE_URL=postgres://postgres@127.0.0.1:5432/db bun bench/baseline.ts
 */
import { Hono } from "hono";
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
  // Same session as the service's, so rows and JSON come out the same.
  connection: { application_name: "bench-baseline", TimeZone: "UTC" },
});

const insert = (db: postgres.Sql | postgres.TransactionSql, input: { name: string; email: string }) => db<User[]>`
  INSERT INTO users (name, email) VALUES (${input.name}, ${input.email})
  RETURNING id, name, email, created_at, updated_at`;
const inTransaction = process.env.WRITE_TRANSACTION === "1";

const app = new Hono()
  .get("/users/:id", async (c) => {
    const id = Number(c.req.param("id"));
    const [user] = await sql<User[]>`SELECT id, name, email, created_at, updated_at FROM users WHERE id = ${id}`;
    return user ? c.json(user) : c.json({ error: "not found" }, 404);
  })
  .post("/users", async (c) => {
    const input = await c.req.json<{ name: string; email: string }>();
    const [user] = inTransaction ? await sql.begin((tx) => insert(tx, input)) : await insert(sql, input);
    c.header("Location", `/users/${user?.id}`);
    return c.json(user, 201);
  });

const server = Bun.serve({ port: Number(process.env.PORT ?? 8081), hostname: "127.0.0.1", fetch: app.fetch });
console.log(JSON.stringify({ event: "baseline.listening", port: server.port }));

const stop = async () => {
  await server.stop();
  await sql.end({ timeout: 1 });
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
