import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createUser, expectJson, expectProblem, type UserJson, validationProblem } from "../helpers/http.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

let database: TestDatabase;
let service: Service;

beforeAll(async () => {
  database = await createTestDatabase("validation");
  service = await startTestService(database.url);
});
afterAll(async () => {
  await service.stop();
  await database.drop();
});

const request = (path: string, init?: RequestInit) => service.app.request(path, init);
const raw = (
  method: string,
  body: BodyInit,
  headers: Record<string, string> = { "content-type": "application/json" },
) => ({
  method,
  headers,
  body,
});

/** Number of rows in users, to check a refused request stored nothing. */
const countUsers = async () => {
  const [row] = await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM users`;
  return row?.n ?? 0;
};

const KIB_64 = 64 * 1024;
const tooLarge = (instance: string) => ({
  status: 413,
  type: "payload-too-large",
  title: "Payload Too Large",
  detail: `Request body exceeds ${KIB_64} bytes.`,
  instance,
});
const unsupported = (instance: string) => ({
  status: 415,
  type: "unsupported-media-type",
  title: "Unsupported Media Type",
  detail: "Send the body as application/json.",
  instance,
});
const malformed = (instance: string) => ({
  status: 400,
  type: "malformed-request",
  title: "Bad Request",
  detail: "Malformed JSON in request body",
  instance,
  errors: [{ field: "body", message: "body is not well-formed JSON" }],
});

/** A JSON user body of exactly `size` bytes, padded with an ignored field. */
function userBodyOfSize(size: number, email: string): string {
  const base = JSON.stringify({ name: "Padded", email, pad: "" });
  return JSON.stringify({ name: "Padded", email, pad: "x".repeat(size - base.length) });
}

/** A body the client streams, so no Content-Length is announced. */
function streamed(text: string): RequestInit {
  const bytes = new TextEncoder().encode(text);
  const chunk = 8 * 1024;
  return {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: new ReadableStream<Uint8Array>({
      start(controller) {
        for (let at = 0; at < bytes.length; at += chunk) controller.enqueue(bytes.slice(at, at + chunk));
        controller.close();
      },
    }),
  };
}

describe("malformed JSON", () => {
  test("POST /users with malformed JSON answers 400 problem", async () => {
    const before = await countUsers();
    await expectProblem(await request("/users", raw("POST", '{"name": "Alice",')), malformed("/users"));
    expect(await countUsers()).toBe(before);
  });

  test("PUT /users/{id} with malformed JSON answers 400 problem and leaves the user unchanged", async () => {
    const user = await createUser(service.app, "Rupert", "rupert@example.com");
    await expectProblem(await request(`/users/${user.id}`, raw("PUT", "{bad json")), malformed(`/users/${user.id}`));
    expect(await expectJson<UserJson>(await request(`/users/${user.id}`), 200)).toEqual(user);
  });

  test("POST /users with an empty JSON body answers 400 problem", async () => {
    await expectProblem(await request("/users", raw("POST", "")), malformed("/users"));
  });
});

describe("invalid fields", () => {
  test("POST /users with {} answers 400 naming body.name and body.email", async () => {
    await expectProblem(
      await request("/users", jsonBody("POST", {})),
      validationProblem("/users", [
        { field: "body.name", message: "Invalid input: expected string, received undefined" },
        { field: "body.email", message: "email must be a valid address" },
      ]),
    );
  });

  test("POST /users without email answers 400 naming body.email only", async () => {
    await expectProblem(
      await request("/users", jsonBody("POST", { name: "Sybil" })),
      validationProblem("/users", [{ field: "body.email", message: "email must be a valid address" }]),
    );
  });

  test("POST /users without name answers 400 naming body.name only", async () => {
    await expectProblem(
      await request("/users", jsonBody("POST", { email: "noname@example.com" })),
      validationProblem("/users", [
        { field: "body.name", message: "Invalid input: expected string, received undefined" },
      ]),
    );
  });

  test("POST /users with a number for name answers 400 naming body.name", async () => {
    await expectProblem(
      await request("/users", jsonBody("POST", { name: 5, email: "five@example.com" })),
      validationProblem("/users", [{ field: "body.name", message: "Invalid input: expected string, received number" }]),
    );
  });

  test("POST /users with an invalid email answers 400 naming body.email", async () => {
    const before = await countUsers();
    await expectProblem(
      await request("/users", jsonBody("POST", { name: "Trent", email: "not-an-email" })),
      validationProblem("/users", [{ field: "body.email", message: "email must be a valid address" }]),
    );
    expect(await countUsers()).toBe(before);
  });

  test("POST /users with a number for name and a bad email answers 400 naming both", async () => {
    await expectProblem(
      await request("/users", jsonBody("POST", { name: 5, email: "nope" })),
      validationProblem("/users", [
        { field: "body.name", message: "Invalid input: expected string, received number" },
        { field: "body.email", message: "email must be a valid address" },
      ]),
    );
  });

  test("POST /users with an email over 255 characters answers 400 naming body.email", async () => {
    const email = `${"a".repeat(60)}@${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.${"e".repeat(8)}.com`;
    expect(email.length).toBe(256);
    await expectProblem(
      await request("/users", jsonBody("POST", { name: "Long", email })),
      validationProblem("/users", [{ field: "body.email", message: "email must be at most 255 characters" }]),
    );
  });

  test("POST /users with an email of exactly 255 characters answers 201", async () => {
    const email = `${"a".repeat(60)}@${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.${"e".repeat(7)}.com`;
    expect(email.length).toBe(255);
    const user = await createUser(service.app, "Longest", email);
    expect(user.email).toBe(email);
  });

  test("POST /users with a JSON array answers 400 naming body", async () => {
    await expectProblem(
      await request("/users", jsonBody("POST", [{ name: "A", email: "a@example.com" }])),
      validationProblem("/users", [{ field: "body", message: "Invalid input: expected object, received array" }]),
    );
  });

  test("POST /users with JSON null answers 400 naming body", async () => {
    await expectProblem(
      await request("/users", raw("POST", "null")),
      validationProblem("/users", [{ field: "body", message: "Invalid input: expected object, received null" }]),
    );
  });

  test("POST /users ignores fields it does not know, such as id", async () => {
    const response = await request(
      "/users",
      jsonBody("POST", { id: 999_999, name: "Uma", email: "uma@example.com", admin: true }),
    );
    const user = await expectJson<UserJson>(response, 201);
    expect(user.id).not.toBe(999_999);
    expect(Object.keys(user).sort()).toEqual(["created_at", "email", "id", "name", "updated_at"]);
  });

  test("PUT /users/{id} with a missing field answers 400 and leaves the user unchanged", async () => {
    const user = await createUser(service.app, "Victor", "victor@example.com");
    await expectProblem(
      await request(`/users/${user.id}`, jsonBody("PUT", { name: "Victor Only" })),
      validationProblem(`/users/${user.id}`, [{ field: "body.email", message: "email must be a valid address" }]),
    );
    expect(await expectJson<UserJson>(await request(`/users/${user.id}`), 200)).toEqual(user);
  });

  test("PUT /users/{id} with a whitespace-only name and a wrong-type email answers 400 naming both", async () => {
    const user = await createUser(service.app, "Walter", "walter@example.com");
    await expectProblem(
      await request(`/users/${user.id}`, jsonBody("PUT", { name: "   ", email: 42 })),
      validationProblem(`/users/${user.id}`, [
        { field: "body.name", message: "name must not be empty" },
        { field: "body.email", message: "email must be a valid address" },
      ]),
    );
  });

  test("PUT /users/{id} with a 256-character name answers 400 naming body.name", async () => {
    const user = await createUser(service.app, "Xavier", "xavier@example.com");
    await expectProblem(
      await request(`/users/${user.id}`, jsonBody("PUT", { name: "x".repeat(256), email: "xavier@example.com" })),
      validationProblem(`/users/${user.id}`, [{ field: "body.name", message: "name must be at most 255 characters" }]),
    );
  });
});

describe("content type", () => {
  test("POST /users with Content-Type text/plain answers 415 problem and stores nothing", async () => {
    const before = await countUsers();
    const body = JSON.stringify({ name: "Yolanda", email: "yolanda@example.com" });
    await expectProblem(
      await request("/users", raw("POST", body, { "content-type": "text/plain" })),
      unsupported("/users"),
    );
    expect(await countUsers()).toBe(before);
  });

  test("PUT /users/{id} with Content-Type text/plain answers 415 problem and leaves the user unchanged", async () => {
    const user = await createUser(service.app, "Zoe", "zoe@example.com");
    const body = JSON.stringify({ name: "Zed", email: "zed@example.com" });
    await expectProblem(
      await request(`/users/${user.id}`, raw("PUT", body, { "content-type": "text/plain" })),
      unsupported(`/users/${user.id}`),
    );
    expect(await expectJson<UserJson>(await request(`/users/${user.id}`), 200)).toEqual(user);
  });

  test("POST /users without a Content-Type answers 415 problem", async () => {
    const body = JSON.stringify({ name: "Anon", email: "anon@example.com" });
    await expectProblem(await request("/users", { method: "POST", body }), unsupported("/users"));
  });

  test("POST /users with application/json; charset=utf-8 is accepted", async () => {
    const body = JSON.stringify({ name: "Charset", email: "charset@example.com" });
    const response = await request("/users", raw("POST", body, { "content-type": "application/json; charset=utf-8" }));
    expect((await expectJson<UserJson>(response, 201)).name).toBe("Charset");
  });
});

describe("body size", () => {
  test("POST /users with a body of exactly 64 KiB is accepted", async () => {
    const body = userBodyOfSize(KIB_64, "exactly64k@example.com");
    expect(body.length).toBe(KIB_64);
    const response = await request(
      "/users",
      raw("POST", body, { "content-type": "application/json", "content-length": String(body.length) }),
    );
    expect((await expectJson<UserJson>(response, 201)).email).toBe("exactly64k@example.com");
  });

  test("POST /users with a body over 64 KiB and its Content-Length answers 413 problem and stores nothing", async () => {
    const body = userBodyOfSize(KIB_64 + 1, "over64k@example.com");
    const response = await request(
      "/users",
      raw("POST", body, { "content-type": "application/json", "content-length": String(body.length) }),
    );
    await expectProblem(response, tooLarge("/users"));
    expect(await database.sql`SELECT id FROM users WHERE email = 'over64k@example.com'`).toHaveLength(0);
  });

  test("POST /users with a valid JSON body over 64 KiB streamed without Content-Length answers 413 problem", async () => {
    const body = userBodyOfSize(200 * 1024, "streamed@example.com");
    await expectProblem(await request("/users", streamed(body)), tooLarge("/users"));
    expect(await database.sql`SELECT id FROM users WHERE email = 'streamed@example.com'`).toHaveLength(0);
  });

  test("POST /users with a body of exactly 64 KiB streamed without Content-Length is accepted", async () => {
    const body = userBodyOfSize(KIB_64, "streamed64k@example.com");
    const response = await request("/users", streamed(body));
    expect((await expectJson<UserJson>(response, 201)).email).toBe("streamed64k@example.com");
  });

  test("PUT /users/{id} with a body over 64 KiB answers 413 problem and leaves the user unchanged", async () => {
    const user = await createUser(service.app, "Bulky", "bulky@example.com");
    const body = userBodyOfSize(100 * 1024, "bulkier@example.com");
    await expectProblem(await request(`/users/${user.id}`, raw("PUT", body)), tooLarge(`/users/${user.id}`));
    expect(await expectJson<UserJson>(await request(`/users/${user.id}`), 200)).toEqual(user);
  });

  test("POST /users with a body over 64 KiB that is not JSON at all answers 413, not 400 or 415", async () => {
    const body = "z".repeat(KIB_64 + 100);
    await expectProblem(
      await request("/users", raw("POST", body, { "content-type": "text/plain" })),
      tooLarge("/users"),
    );
  });
});
