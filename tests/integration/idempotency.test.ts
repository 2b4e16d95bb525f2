import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createUser, expectJson, expectProblem, type UserJson, validationProblem } from "../helpers/http.ts";
import { lockUsersTable, waitForLockWaiters } from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { waitFor } from "../helpers/wait.ts";

let database: TestDatabase;
let service: Service;

beforeAll(async () => {
  database = await createTestDatabase("idempotency");
  service = await startTestService(database.url);
});
afterAll(async () => {
  await service?.stop();
  await database?.drop();
});

/** A request under `key`, with `body` as JSON when given. */
const keyed = (method: string, key: string, body?: unknown): RequestInit => ({
  method,
  headers: { "idempotency-key": key, ...(body !== undefined && { "content-type": "application/json" }) },
  ...(body !== undefined && { body: JSON.stringify(body) }),
});

const request = (path: string, init?: RequestInit) => service.app.request(path, init);

/** Status, the headers an answer carries, and the body text: what a replay must repeat exactly. */
async function answer(response: Response) {
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    location: response.headers.get("location"),
    body: await response.text(),
  };
}

/** Asserts `response` is a replay of `first`: the same answer, marked `Idempotent-Replayed: true`. */
async function expectReplay(response: Response, first: Awaited<ReturnType<typeof answer>>): Promise<void> {
  expect(response.headers.get("idempotent-replayed")).toBe("true");
  expect(response.headers.get("x-request-id")).toBeTruthy();
  expect(await answer(response)).toEqual(first);
}

const userRow = async (id: number) =>
  (await database.sql<{ name: string; email: string }[]>`SELECT name, email FROM users WHERE id = ${id}`)[0];
const countUsers = async (email: string) =>
  (await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM users WHERE email = ${email}`)[0]?.n;
const keyRows = async (key: string) =>
  (await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM idempotency_keys WHERE key = ${key}`)[0]?.n;

const keyReused = (instance: string) => ({
  status: 422,
  type: "idempotency-key-reused",
  title: "Unprocessable Content",
  detail:
    "This Idempotency-Key was first used for another request (method, path or body). Use a new key for a new request.",
  instance,
});

describe("a retry with the same key and request replays the first answer and writes nothing", () => {
  test("POST /users: the retry answers the same 201, Location and body, with Idempotent-Replayed; one user", async () => {
    const body = { name: "Alice", email: "alice@example.com" };
    const created = await request("/users", keyed("POST", "post-alice", body));
    expect(created.headers.get("idempotent-replayed")).toBeNull();
    const first = await answer(created);
    const user = JSON.parse(first.body) as UserJson;
    expect(first).toEqual({
      status: 201,
      contentType: "application/json",
      location: `/users/${user.id}`,
      body: first.body,
    });
    expect(user).toMatchObject(body);

    await expectReplay(await request("/users", keyed("POST", "post-alice", body)), first);
    // The same body with its keys in another order and the name padded (the service trims it) is the same request.
    const reordered = { email: "alice@example.com", name: "  Alice " };
    await expectReplay(await request("/users", keyed("POST", "post-alice", reordered)), first);
    // The draft's quoted form names the same key.
    await expectReplay(await request("/users", keyed("POST", '"post-alice"', body)), first);
    expect(await countUsers("alice@example.com")).toBe(1);
  });

  test("PUT /users/{id}: the retry answers the first 200 even after a later change, which it does not undo", async () => {
    const bob = await createUser(service.app, "Bob", "bob@example.com");
    const change = { name: "Robert", email: "robert@example.com" };
    const first = await answer(await request(`/users/${bob.id}`, keyed("PUT", "put-bob", change)));
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toMatchObject({ id: bob.id, ...change });
    const later = { name: "Bobby", email: "bobby@example.com" };
    await expectJson(await request(`/users/${bob.id}`, jsonBody("PUT", later)), 200);

    await expectReplay(await request(`/users/${bob.id}`, keyed("PUT", "put-bob", change)), first);
    expect(await userRow(bob.id)).toEqual(later);
  });

  test("DELETE /users/{id}: the retry answers 204 again, where a DELETE without a key would answer 404", async () => {
    const carol = await createUser(service.app, "Carol", "carol@example.com");
    const first = await answer(await request(`/users/${carol.id}`, keyed("DELETE", "delete-carol")));
    expect(first).toEqual({ status: 204, contentType: null, location: null, body: "" });

    await expectReplay(await request(`/users/${carol.id}`, keyed("DELETE", "delete-carol")), first);
    expect(await userRow(carol.id)).toBeUndefined();
  });

  test("a 404 is stored: its retry replays the first problem, its request_id included, after the id exists", async () => {
    const missing = 2_000_000_000;
    const change = { name: "Nobody", email: "nobody@example.com" };
    const response = await request(`/users/${missing}`, keyed("PUT", "put-missing", change));
    const requestId = response.headers.get("x-request-id");
    const first = await answer(response);
    expect(first.status).toBe(404);
    expect(JSON.parse(first.body)).toEqual({
      type: "urn:problem:database-service:not-found",
      title: "Not Found",
      status: 404,
      detail: `No user with id ${missing}.`,
      instance: `/users/${missing}`,
      request_id: requestId,
    });

    const replay = await request(`/users/${missing}`, keyed("PUT", "put-missing", change));
    expect(replay.headers.get("x-request-id")).not.toBe(requestId);
    await expectReplay(replay, first);
  });

  test("a taken email (409) is stored: its retry replays the 409 even once the email is free again", async () => {
    const dave = await createUser(service.app, "Dave", "dave@example.com");
    const body = { name: "Other Dave", email: "dave@example.com" };
    const first = await answer(await request("/users", keyed("POST", "post-dave-again", body)));
    expect(first.status).toBe(409);
    expect(JSON.parse(first.body)).toMatchObject({ type: "urn:problem:database-service:email-taken" });
    await request(`/users/${dave.id}`, { method: "DELETE" });

    await expectReplay(await request("/users", keyed("POST", "post-dave-again", body)), first);
    expect(await countUsers("dave@example.com")).toBe(0);
  });

  test("a write without a key stores nothing", async () => {
    const [before] = await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM idempotency_keys`;
    await createUser(service.app, "Erin", "erin@example.com");
    const [after] = await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM idempotency_keys`;
    expect(after).toEqual(before as { n: number });
  });
});

describe("a key is bound to its method, path and body", () => {
  test("the same key with another body answers 422 and writes nothing", async () => {
    await expectJson(
      await request("/users", keyed("POST", "post-frank", { name: "Frank", email: "frank@example.com" })),
      201,
    );
    const other = { name: "Frank", email: "frank2@example.com" };
    await expectProblem(await request("/users", keyed("POST", "post-frank", other)), keyReused("/users"));
    expect(await countUsers("frank2@example.com")).toBe(0);
  });

  test("the same key on another path or with another method answers 422, never the stored answer", async () => {
    const grace = await createUser(service.app, "Grace", "grace@example.com");
    const heidi = await createUser(service.app, "Heidi", "heidi@example.com");
    const change = { name: "Grace H.", email: "grace@example.com" };
    await expectJson(await request(`/users/${grace.id}`, keyed("PUT", "put-grace", change)), 200);

    await expectProblem(
      await request(`/users/${heidi.id}`, keyed("PUT", "put-grace", change)),
      keyReused(`/users/${heidi.id}`),
    );
    await expectProblem(
      await request(`/users/${grace.id}`, keyed("DELETE", "put-grace")),
      keyReused(`/users/${grace.id}`),
    );
    expect(await userRow(heidi.id)).toEqual({ name: "Heidi", email: "heidi@example.com" });
    expect(await userRow(grace.id)).toEqual({ name: "Grace H.", email: "grace@example.com" });
  });
});

describe("the same key while its first request is still running", () => {
  test("answers 409 idempotency-key-in-use with Retry-After; once the first is done, a retry replays it", async () => {
    const lock = await lockUsersTable(database.url);
    const body = { name: "Ivan", email: "ivan@example.com" };
    try {
      const running = request("/users", keyed("POST", "post-ivan", body));
      await waitForLockWaiters(database.sql, service.db.applicationNamePrefix, 1);

      const second = await request("/users", keyed("POST", "post-ivan", body));
      expect(second.headers.get("retry-after")).toBe("1");
      await expectProblem(second, {
        status: 409,
        type: "idempotency-key-in-use",
        title: "Conflict",
        detail: "A request with this Idempotency-Key is still running. Retry after Retry-After to get its answer.",
        instance: "/users",
      });

      await lock.release();
      const first = await answer(await running);
      expect(first.status).toBe(201);
      await expectReplay(await request("/users", keyed("POST", "post-ivan", body)), first);
    } finally {
      await lock.release();
    }
    expect(await countUsers("ivan@example.com")).toBe(1);
  });

  test("of many requests sent at once under one key, one executes and the others get 409 or its replay", async () => {
    const body = { name: "Judy", email: "judy@example.com" };
    const answers = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const response = await request("/users", keyed("POST", "post-judy", body));
        return { replayed: response.headers.get("idempotent-replayed") === "true", ...(await answer(response)) };
      }),
    );
    const executed = answers.filter((a) => a.status === 201 && !a.replayed);
    expect(executed).toHaveLength(1);
    for (const other of answers.filter((a) => a !== executed[0])) {
      if (other.status === 201) expect(other.body).toBe(executed[0]?.body as string);
      else expect(other.status).toBe(409);
    }
    expect(await countUsers("judy@example.com")).toBe(1);
  });
});

describe("bad keys", () => {
  test.each([
    ["an empty key", "", "Idempotency-Key must not be empty"],
    ["a key of 256 characters", "k".repeat(256), "Idempotency-Key must be at most 255 characters"],
    ["a key with a space", "two words", "Idempotency-Key must be visible ASCII characters, or a quoted string"],
    ["a key with a tab", "tab\there", "Idempotency-Key must be visible ASCII characters, or a quoted string"],
  ])("%s answers 400 naming the header, and nothing is written", async (_, key, message) => {
    const email = `bad-key-${key.length}@example.com`;
    await expectProblem(
      await request("/users", keyed("POST", key, { name: "Bad Key", email })),
      validationProblem("/users", [{ field: "header.idempotency-key", message }]),
    );
    expect(await countUsers(email)).toBe(0);
  });
});

describe("expiry", () => {
  test("after IDEMPOTENCY_TTL_S the key is swept, and a new request under it executes", async () => {
    const shortLived = await startTestService(database.url, { IDEMPOTENCY_TTL_S: "1" });
    try {
      const first = { name: "Ken", email: "ken@example.com" };
      await expectJson(await shortLived.app.request("/users", keyed("POST", "post-ken", first)), 201);
      expect(await keyRows("post-ken")).toBe(1);

      await waitFor("the expired key to be swept", async () => (await keyRows("post-ken")) === 0, 10_000);
      const second = { name: "Ken", email: "ken2@example.com" };
      const response = await shortLived.app.request("/users", keyed("POST", "post-ken", second));
      expect(response.headers.get("idempotent-replayed")).toBeNull();
      expect(await expectJson<UserJson>(response, 201)).toMatchObject(second);
      expect(await keyRows("post-ken")).toBe(1);
    } finally {
      await shortLived.stop();
    }
  });
});
