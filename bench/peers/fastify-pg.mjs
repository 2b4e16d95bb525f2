/**
 * A peer of the throughput benchmark: Fastify 5 on Node with node-postgres (pg), written the way
 * Fastify's users write it: JSON schemas for the params and the body (validated by Ajv, serialized
 * by fast-json-stringify), one pg Pool of 10. The service's two hot queries, nothing else.
 *
 *   PORT=8083 DATABASE_URL=postgres://postgres@127.0.0.1:5432/db node bench/peers/fastify-pg.mjs
 */
import Fastify from "fastify";
import pg from "pg";

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres",
  max: 10,
  application_name: "bench-fastify",
  options: "-c TimeZone=UTC",
});

const user = {
  type: "object",
  properties: {
    id: { type: "integer" },
    name: { type: "string" },
    email: { type: "string" },
    created_at: { type: "string", format: "date-time" },
    updated_at: { type: "string", format: "date-time" },
  },
};
const notFound = { type: "object", properties: { error: { type: "string" } } };

const app = Fastify({ logger: false });

app.get(
  "/users/:id",
  {
    schema: {
      params: { type: "object", properties: { id: { type: "integer", minimum: 1 } }, required: ["id"] },
      response: { 200: user, 404: notFound },
    },
  },
  async (request, reply) => {
    const { rows } = await pool.query({
      name: "user-by-id",
      text: "SELECT id, name, email, created_at, updated_at FROM users WHERE id = $1",
      values: [request.params.id],
    });
    if (rows.length === 0) return reply.code(404).send({ error: "not found" });
    return rows[0];
  },
);

app.post(
  "/users",
  {
    schema: {
      body: {
        type: "object",
        properties: {
          name: { type: "string", minLength: 1, maxLength: 255 },
          email: { type: "string", format: "email", maxLength: 255 },
        },
        required: ["name", "email"],
        additionalProperties: false,
      },
      response: { 201: user },
    },
  },
  async (request, reply) => {
    const { rows } = await pool.query({
      name: "insert-user",
      text: "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id, name, email, created_at, updated_at",
      values: [request.body.name, request.body.email],
    });
    reply.code(201).header("Location", `/users/${rows[0].id}`);
    return rows[0];
  },
);

await app.listen({ port: Number(process.env.PORT ?? 8083), host: "127.0.0.1" });
console.log(JSON.stringify({ event: "fastify.listening", port: Number(process.env.PORT ?? 8083) }));

const stop = async () => {
  await app.close();
  await pool.end();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
