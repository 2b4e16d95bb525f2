import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";

let database: TestDatabase;
let service: Service;

beforeAll(async () => {
  database = await createTestDatabase();
  service = await startTestService(database.url);
});
afterAll(async () => {
  await service.stop();
  await database.drop();
});

describe("users", () => {
  test("POST /users creates Alice and GET /users/{id} returns her", async () => {
    const created = await service.app.request(
      "/users",
      jsonBody("POST", { name: "Alice", email: "alice@example.com" }),
    );
    expect(created.status).toBe(201);
    const alice = (await created.json()) as { id: number };
    expect(created.headers.get("location")).toBe(`/users/${alice.id}`);
    const fetched = await service.app.request(`/users/${alice.id}`);
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toMatchObject({ id: alice.id, name: "Alice", email: "alice@example.com" });
  });
});
