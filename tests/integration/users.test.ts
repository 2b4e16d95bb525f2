import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import {
  createUser,
  expectJson,
  expectProblem,
  ISO_DATE_TIME,
  type UserJson,
  validationProblem,
} from "../helpers/http.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

let database: TestDatabase;
let service: Service;

beforeAll(async () => {
  database = await createTestDatabase("users");
  service = await startTestService(database.url);
});
afterAll(async () => {
  await service.stop();
  await database.drop();
});

const request = (path: string, init?: RequestInit) => service.app.request(path, init);
const notFound = (id: number | string) => ({
  status: 404,
  type: "not-found",
  title: "Not Found",
  detail: `No user with id ${id}.`,
  instance: `/users/${id}`,
});
const emailTaken = (email: string, instance: string) => ({
  status: 409,
  type: "email-taken",
  title: "Conflict",
  detail: `A user with email ${email} already exists.`,
  instance,
  errors: [{ field: "body.email", message: "email is already taken" }],
});

describe("POST /users", () => {
  test("POST /users answers 201 with the new user, its Location, and stores it", async () => {
    const before = Date.now();
    const response = await request("/users", jsonBody("POST", { name: "Alice", email: "alice@example.com" }));
    const after = Date.now();
    const user = await expectJson<UserJson>(response, 201);

    expect(Object.keys(user).sort()).toEqual(["created_at", "email", "id", "name", "updated_at"]);
    expect(user).toEqual({
      id: expect.any(Number),
      name: "Alice",
      email: "alice@example.com",
      created_at: expect.stringMatching(ISO_DATE_TIME),
      updated_at: expect.stringMatching(ISO_DATE_TIME),
    });
    expect(Number.isInteger(user.id) && user.id > 0).toBe(true);
    expect(user.updated_at).toBe(user.created_at);
    const created = Date.parse(user.created_at);
    expect(created).toBeGreaterThanOrEqual(before - 1000);
    expect(created).toBeLessThanOrEqual(after + 1000);
    expect(response.headers.get("location")).toBe(`/users/${user.id}`);

    const rows = await database.sql`SELECT name, email FROM users WHERE id = ${user.id}`;
    expect(rows.map((row) => ({ ...row }))).toEqual([{ name: "Alice", email: "alice@example.com" }]);
  });

  test("POST /users then GET its Location returns the same user", async () => {
    const created = await createUser(service.app, "Carol", "carol@example.com");
    const fetched = await expectJson<UserJson>(await request(`/users/${created.id}`), 200);
    expect(fetched).toEqual(created);
  });

  test("POST /users gives each new user a larger id", async () => {
    const first = await createUser(service.app, "First", "first@example.com");
    const second = await createUser(service.app, "Second", "second@example.com");
    expect(second.id).toBeGreaterThan(first.id);
  });

  test("POST /users trims spaces around the name", async () => {
    const user = await createUser(service.app, "  Dave Smith \t", "dave@example.com");
    expect(user.name).toBe("Dave Smith");
    const [row] = await database.sql`SELECT name FROM users WHERE id = ${user.id}`;
    expect(row?.name).toBe("Dave Smith");
  });

  test("POST /users accepts a name of exactly 255 characters", async () => {
    const name = "n".repeat(255);
    const user = await createUser(service.app, name, "long-name@example.com");
    expect(user.name).toBe(name);
  });

  test("POST /users accepts 255 characters of name once surrounding spaces are trimmed", async () => {
    const name = "m".repeat(255);
    const user = await createUser(service.app, `  ${name}  `, "padded-name@example.com");
    expect(user.name).toBe(name);
  });

  test("POST /users with a 256-character name answers 400 naming body.name", async () => {
    const response = await request("/users", jsonBody("POST", { name: "n".repeat(256), email: "n256@example.com" }));
    await expectProblem(
      response,
      validationProblem("/users", [{ field: "body.name", message: "name must be at most 255 characters" }]),
    );
  });

  test("POST /users with a whitespace-only name answers 400 naming body.name", async () => {
    const response = await request("/users", jsonBody("POST", { name: " \t\n ", email: "blank@example.com" }));
    await expectProblem(
      response,
      validationProblem("/users", [{ field: "body.name", message: "name must not be empty" }]),
    );
  });

  test("POST /users keeps the email's case as given", async () => {
    const user = await createUser(service.app, "Eve", "Eve.Adams@Example.COM");
    expect(user.email).toBe("Eve.Adams@Example.COM");
    const [row] = await database.sql`SELECT email FROM users WHERE id = ${user.id}`;
    expect(row?.email).toBe("Eve.Adams@Example.COM");
  });

  test("POST /users with an email that differs only in case answers 409 and creates nothing", async () => {
    await createUser(service.app, "Bob", "Bob@Example.com");
    const response = await request("/users", jsonBody("POST", { name: "Bobby", email: "bob@example.com" }));
    await expectProblem(response, emailTaken("bob@example.com", "/users"));
    const rows = await database.sql`SELECT email FROM users WHERE lower(email) = 'bob@example.com'`;
    expect(rows.map((row) => row.email)).toEqual(["Bob@Example.com"]);
  });

  test("POST /users with exactly the same email answers 409", async () => {
    await createUser(service.app, "Frank", "frank@example.com");
    const response = await request("/users", jsonBody("POST", { name: "Frank II", email: "frank@example.com" }));
    await expectProblem(response, emailTaken("frank@example.com", "/users"));
  });

  test("two concurrent POST /users with the same email: exactly one 201 and one 409, every time", async () => {
    for (let i = 0; i < 20; i++) {
      const email = `race-${i}@example.com`;
      const responses = await Promise.all([
        request("/users", jsonBody("POST", { name: "Racer A", email })),
        request("/users", jsonBody("POST", { name: "Racer B", email: email.toUpperCase() })),
      ]);
      expect(responses.map((response) => response.status).sort()).toEqual([201, 409]);
      const loser = responses.find((response) => response.status === 409);
      const body = (await loser?.json()) as { type: string };
      expect(body.type).toBe("urn:problem:database-service:email-taken");
      const rows = await database.sql`SELECT id FROM users WHERE lower(email) = ${email}`;
      expect(rows).toHaveLength(1);
    }
  });
});

describe("GET /users/{id}", () => {
  test("GET /users/{id} answers 200 with exactly the stored user", async () => {
    const created = await createUser(service.app, "Grace", "grace@example.com");
    const response = await request(`/users/${created.id}`);
    expect(await expectJson<UserJson>(response, 200)).toEqual(created);
  });

  test("GET /users/{id} of a user that never existed answers 404", async () => {
    await expectProblem(await request("/users/2147483647"), notFound(2147483647));
  });
});

describe("PUT /users/{id}", () => {
  test("PUT /users/{id} replaces name and email, keeps created_at, and moves updated_at later", async () => {
    const created = await createUser(service.app, "Heidi", "heidi@example.com");
    const response = await request(
      `/users/${created.id}`,
      jsonBody("PUT", { name: "  Heidi Klum ", email: "Heidi.K@Example.com" }),
    );
    const updated = await expectJson<UserJson>(response, 200);
    expect(updated).toEqual({
      id: created.id,
      name: "Heidi Klum",
      email: "Heidi.K@Example.com",
      created_at: created.created_at,
      updated_at: expect.stringMatching(ISO_DATE_TIME),
    });
    expect(Date.parse(updated.updated_at)).toBeGreaterThan(Date.parse(created.updated_at));

    expect(await expectJson<UserJson>(await request(`/users/${created.id}`), 200)).toEqual(updated);
  });

  test("PUT /users/{id} several times in a row gives a strictly later updated_at each time", async () => {
    let previous = await createUser(service.app, "Ivan", "ivan@example.com");
    for (let i = 1; i <= 25; i++) {
      const response = await request(
        `/users/${previous.id}`,
        jsonBody("PUT", { name: `Ivan ${i}`, email: "ivan@example.com" }),
      );
      const updated = await expectJson<UserJson>(response, 200);
      expect(updated.name).toBe(`Ivan ${i}`);
      expect(updated.created_at).toBe(previous.created_at);
      expect(Date.parse(updated.updated_at)).toBeGreaterThan(Date.parse(previous.updated_at));
      previous = updated;
    }
  });

  test("concurrent PUT /users/{id} on one user each answer with a different updated_at", async () => {
    const created = await createUser(service.app, "Ivy", "ivy@example.com");
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(`/users/${created.id}`, jsonBody("PUT", { name: `Ivy ${i}`, email: "ivy@example.com" })),
      ),
    );
    const users = await Promise.all(responses.map((response) => expectJson<UserJson>(response, 200)));
    const stamps = users.map((user) => user.updated_at);
    expect(new Set(stamps).size).toBe(stamps.length);
    for (const stamp of stamps) expect(Date.parse(stamp)).toBeGreaterThan(Date.parse(created.updated_at));
    const latest = users.reduce((a, b) => (Date.parse(a.updated_at) > Date.parse(b.updated_at) ? a : b));
    expect(await expectJson<UserJson>(await request(`/users/${created.id}`), 200)).toEqual(latest);
  });

  test("PUT /users/{id} with another user's email in a different case answers 409 and changes nothing", async () => {
    const judy = await createUser(service.app, "Judy", "Judy@Example.com");
    const ken = await createUser(service.app, "Ken", "ken@example.com");
    const response = await request(`/users/${ken.id}`, jsonBody("PUT", { name: "Ken", email: "judy@EXAMPLE.com" }));
    await expectProblem(response, emailTaken("judy@EXAMPLE.com", `/users/${ken.id}`));
    expect(await expectJson<UserJson>(await request(`/users/${ken.id}`), 200)).toEqual(ken);
    expect(await expectJson<UserJson>(await request(`/users/${judy.id}`), 200)).toEqual(judy);
  });

  test("PUT /users/{id} with the user's own email in a different case answers 200 and stores the new case", async () => {
    const leo = await createUser(service.app, "Leo", "leo@example.com");
    const response = await request(`/users/${leo.id}`, jsonBody("PUT", { name: "Leo", email: "LEO@example.com" }));
    const updated = await expectJson<UserJson>(response, 200);
    expect(updated.email).toBe("LEO@example.com");
    expect(updated.created_at).toBe(leo.created_at);
  });

  test("PUT /users/{id} of a user that does not exist answers 404 and creates nothing", async () => {
    const response = await request(
      "/users/2147483647",
      jsonBody("PUT", { name: "Nobody", email: "nobody@example.com" }),
    );
    await expectProblem(response, notFound(2147483647));
    const rows = await database.sql`SELECT id FROM users WHERE email = 'nobody@example.com'`;
    expect(rows).toHaveLength(0);
  });
});

describe("DELETE /users/{id}", () => {
  test("DELETE /users/{id} answers 204 with an empty body; then GET and DELETE answer 404", async () => {
    const mallory = await createUser(service.app, "Mallory", "mallory@example.com");
    const response = await request(`/users/${mallory.id}`, { method: "DELETE" });
    expect(response.status).toBe(204);
    expect(await response.text()).toBe("");
    expect(response.headers.get("content-type")).toBeNull();

    await expectProblem(await request(`/users/${mallory.id}`), notFound(mallory.id));
    await expectProblem(await request(`/users/${mallory.id}`, { method: "DELETE" }), notFound(mallory.id));
    const rows = await database.sql`SELECT id FROM users WHERE id = ${mallory.id}`;
    expect(rows).toHaveLength(0);
  });

  test("DELETE /users/{id} frees the email for a new user", async () => {
    const first = await createUser(service.app, "Niaj", "niaj@example.com");
    expect((await request(`/users/${first.id}`, { method: "DELETE" })).status).toBe(204);
    const second = await createUser(service.app, "Niaj again", "NIAJ@example.com");
    expect(second.id).not.toBe(first.id);
  });

  test("DELETE /users/{id} leaves other users in place", async () => {
    const olivia = await createUser(service.app, "Olivia", "olivia@example.com");
    const peggy = await createUser(service.app, "Peggy", "peggy@example.com");
    expect((await request(`/users/${olivia.id}`, { method: "DELETE" })).status).toBe(204);
    expect(await expectJson<UserJson>(await request(`/users/${peggy.id}`), 200)).toEqual(peggy);
  });
});

describe("user ids", () => {
  const positive = "id must be a positive integer";
  const range = "id must be between 1 and 2147483647";
  const badIds: [string, string][] = [
    ["abc", positive],
    ["0", range],
    ["-1", positive],
    ["1.5", positive],
    ["99999999999999", positive],
    ["2147483648", range],
  ];
  const methods: [string, () => RequestInit][] = [
    ["GET", () => ({ method: "GET" })],
    ["PUT", () => jsonBody("PUT", { name: "Valid", email: "valid@example.com" })],
    ["DELETE", () => ({ method: "DELETE" })],
  ];

  for (const [method, init] of methods) {
    for (const [id, message] of badIds) {
      test(`${method} /users/${id} answers 400 naming path.id`, async () => {
        await expectProblem(
          await request(`/users/${id}`, init()),
          validationProblem(`/users/${id}`, [{ field: "path.id", message }]),
        );
      });
    }

    test(`${method} /users/2147483647 (the largest id) is valid and answers 404`, async () => {
      await expectProblem(await request("/users/2147483647", init()), notFound(2147483647));
    });
  }
});

describe("request ids", () => {
  test("a sane X-Request-Id is echoed on success", async () => {
    const response = await request("/users/2147483647", {
      headers: { "X-Request-Id": "client-42.retry:1@edge/a+b=c" },
    });
    expect(response.headers.get("x-request-id")).toBe("client-42.retry:1@edge/a+b=c");
  });

  test("a sane X-Request-Id is echoed and is the problem body's request_id", async () => {
    const response = await request("/users/abc", { headers: { "X-Request-Id": "trace-abc-123" } });
    expect(response.headers.get("x-request-id")).toBe("trace-abc-123");
    expect(((await response.json()) as { request_id: string }).request_id).toBe("trace-abc-123");
  });

  test("without X-Request-Id a fresh UUID is generated, echoed, and put in problem bodies", async () => {
    const first = await request("/users/0");
    const second = await request("/users/0");
    const id = first.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(((await first.json()) as { request_id: string }).request_id).toBe(id as string);
    expect(second.headers.get("x-request-id")).not.toBe(id);
  });

  test("an X-Request-Id with spaces is replaced by a generated UUID", async () => {
    const response = await request("/users/2147483647", { headers: { "X-Request-Id": "not sane at all" } });
    const id = response.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(((await response.json()) as { request_id: string }).request_id).toBe(id as string);
  });

  test("an X-Request-Id longer than 128 characters is replaced by a generated UUID", async () => {
    const response = await request("/users/2147483647", { headers: { "X-Request-Id": "a".repeat(129) } });
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("an X-Request-Id on a created user is echoed on the 201", async () => {
    const response = await request("/users", {
      ...jsonBody("POST", { name: "Quinn", email: "quinn@example.com" }),
      headers: { "content-type": "application/json", "X-Request-Id": "create-quinn" },
    });
    expect(response.status).toBe(201);
    expect(response.headers.get("x-request-id")).toBe("create-quinn");
  });
});

describe("unknown routes", () => {
  test("GET of an unknown path answers 404 problem naming the route", async () => {
    await expectProblem(await request("/nope"), {
      status: 404,
      type: "not-found",
      title: "Not Found",
      detail: "No route for GET /nope.",
      instance: "/nope",
    });
  });

  test("a path below a user answers 404 problem", async () => {
    await expectProblem(await request("/users/1/friends"), {
      status: 404,
      type: "not-found",
      title: "Not Found",
      detail: "No route for GET /users/1/friends.",
      instance: "/users/1/friends",
    });
  });

  test("PATCH /users/{id}, a method the API does not have, answers 405 problem with Allow", async () => {
    const response = await request("/users/1", jsonBody("PATCH", { name: "x" }));
    expect(response.headers.get("allow")).toBe("DELETE, GET, HEAD, PUT");
    await expectProblem(response, {
      status: 405,
      type: "method-not-allowed",
      title: "Method Not Allowed",
      detail: "PATCH is not served on /users/1; allowed: DELETE, GET, HEAD, PUT.",
      instance: "/users/1",
    });
  });
});
