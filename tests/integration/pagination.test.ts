import { afterAll, beforeAll, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createUser, expectJson, expectProblem, nextLink, type UserJson, validationProblem } from "../helpers/http.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { startTestService } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

let database: TestDatabase;
let service: Service;

beforeAll(async () => {
  database = await createTestDatabase("pagination");
  service = await startTestService(database.url);
});
afterAll(async () => {
  await service.stop();
  await database.drop();
});
// Listing sees the whole table, so every test starts from an empty one and makes its own users.
beforeEach(async () => {
  await database.sql`TRUNCATE users RESTART IDENTITY`;
});

const request = (path: string) => service.app.request(path);

/** Inserts users 1..count straight into the table (fast), named `User n`. */
async function insertUsers(count: number): Promise<void> {
  await database.sql`
    INSERT INTO users (name, email)
    SELECT 'User ' || n, 'user' || n || '@example.com' FROM generate_series(1, ${count}::int) AS n`;
}

/** Follows Link rel="next" from `first`, returning every page's ids and the URLs fetched. */
async function walk(first: string): Promise<{ ids: number[]; urls: string[]; pageSizes: number[] }> {
  const ids: number[] = [];
  const urls: string[] = [];
  const pageSizes: number[] = [];
  let url: string | null = first;
  while (url !== null) {
    if (urls.length > 100) throw new Error("too many pages: the Link chain does not end");
    urls.push(url);
    const response = await request(url);
    const page = await expectJson<UserJson[]>(response, 200);
    pageSizes.push(page.length);
    ids.push(...page.map((user) => user.id));
    url = nextLink(response);
  }
  return { ids, urls, pageSizes };
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("GET /users", () => {
  test("GET /users on an empty table answers 200 [] without a Link header", async () => {
    const response = await request("/users");
    expect(await expectJson<UserJson[]>(response, 200)).toEqual([]);
    expect(response.headers.get("link")).toBeNull();
  });

  test("GET /users answers every user exactly as created, in id order, without a Link header", async () => {
    const created = [
      await createUser(service.app, "Ann", "ann@example.com"),
      await createUser(service.app, "Ben", "ben@example.com"),
      await createUser(service.app, "Cat", "cat@example.com"),
    ];
    const response = await request("/users");
    expect(await expectJson<UserJson[]>(response, 200)).toEqual(created);
    expect(response.headers.get("link")).toBeNull();
  });

  test("GET /users orders by id, not by insertion order or name", async () => {
    await database.sql`
      INSERT INTO users (id, name, email) VALUES
        (50, 'Aaron', 'aaron@example.com'), (7, 'Zelda', 'zelda@example.com'), (23, 'Mia', 'mia@example.com')`;
    const page = await expectJson<UserJson[]>(await request("/users"), 200);
    expect(page.map((user) => [user.id, user.name])).toEqual([
      [7, "Zelda"],
      [23, "Mia"],
      [50, "Aaron"],
    ]);
  });

  test("GET /users without limit answers 100 users and a Link to the next page", async () => {
    await insertUsers(150);
    const response = await request("/users");
    const page = await expectJson<UserJson[]>(response, 200);
    expect(page.map((user) => user.id)).toEqual(range(1, 100));
    expect(response.headers.get("link")).toBe('</users?limit=100&after=100>; rel="next"');
  });

  test("GET /users with exactly 100 users answers them all without a Link header", async () => {
    await insertUsers(100);
    const response = await request("/users");
    expect((await expectJson<UserJson[]>(response, 200)).map((user) => user.id)).toEqual(range(1, 100));
    expect(response.headers.get("link")).toBeNull();
  });
});

describe("GET /users keyset pagination", () => {
  test("?limit=2 over 5 users: pages of 2, 2 and 1, each Link naming the last id, none on the last page", async () => {
    await insertUsers(5);
    const first = await request("/users?limit=2");
    expect((await expectJson<UserJson[]>(first, 200)).map((user) => user.id)).toEqual([1, 2]);
    expect(first.headers.get("link")).toBe('</users?limit=2&after=2>; rel="next"');

    const second = await request("/users?limit=2&after=2");
    expect((await expectJson<UserJson[]>(second, 200)).map((user) => user.id)).toEqual([3, 4]);
    expect(second.headers.get("link")).toBe('</users?limit=2&after=4>; rel="next"');

    const last = await request("/users?limit=2&after=4");
    expect((await expectJson<UserJson[]>(last, 200)).map((user) => user.id)).toEqual([5]);
    expect(last.headers.get("link")).toBeNull();
  });

  test("a page that ends exactly at the last user has no Link header", async () => {
    await insertUsers(3);
    const response = await request("/users?limit=3");
    expect((await expectJson<UserJson[]>(response, 200)).map((user) => user.id)).toEqual([1, 2, 3]);
    expect(response.headers.get("link")).toBeNull();
  });

  test("?after=<id> answers only users with a larger id, also when that id was deleted", async () => {
    await insertUsers(6);
    await database.sql`DELETE FROM users WHERE id IN (3, 4)`;
    const response = await request("/users?after=3");
    expect((await expectJson<UserJson[]>(response, 200)).map((user) => user.id)).toEqual([5, 6]);
    expect(response.headers.get("link")).toBeNull();
  });

  test("?after= past the last id answers 200 []", async () => {
    await insertUsers(3);
    const response = await request("/users?after=2147483647");
    expect(await expectJson<UserJson[]>(response, 200)).toEqual([]);
    expect(response.headers.get("link")).toBeNull();
  });

  test("?limit=1 answers one user and a Link; ?limit=1000 is accepted", async () => {
    await insertUsers(2);
    const one = await request("/users?limit=1");
    expect((await expectJson<UserJson[]>(one, 200)).map((user) => user.id)).toEqual([1]);
    expect(one.headers.get("link")).toBe('</users?limit=1&after=1>; rel="next"');
    const max = await request("/users?limit=1000");
    expect((await expectJson<UserJson[]>(max, 200)).map((user) => user.id)).toEqual([1, 2]);
    expect(max.headers.get("link")).toBeNull();
  });

  test("walking 1500 users by Link headers at the default limit visits every id once, in order", async () => {
    await insertUsers(1500);
    const { ids, urls, pageSizes } = await walk("/users");
    expect(ids).toEqual(range(1, 1500));
    expect(urls).toHaveLength(15);
    expect(urls[1]).toBe("/users?limit=100&after=100");
    expect(pageSizes.every((size) => size === 100)).toBe(true);
  });

  test("walking 1500 users at limit=1000 takes two pages and visits every id once, in order", async () => {
    await insertUsers(1500);
    const { ids, urls, pageSizes } = await walk("/users?limit=1000");
    expect(ids).toEqual(range(1, 1500));
    expect(urls).toEqual(["/users?limit=1000", "/users?limit=1000&after=1000"]);
    expect(pageSizes).toEqual([1000, 500]);
  });

  test("walking users with gaps in their ids visits each remaining id once, in order", async () => {
    await insertUsers(1200);
    await database.sql`DELETE FROM users WHERE id % 7 = 0 OR id BETWEEN 300 AND 450`;
    const remaining = range(1, 1200).filter((id) => id % 7 !== 0 && (id < 300 || id > 450));
    const { ids, pageSizes } = await walk("/users?limit=250");
    expect(ids).toEqual(remaining);
    expect(pageSizes.slice(0, -1).every((size) => size === 250)).toBe(true);
  });

  test("users created while walking, after the current page, show up on later pages", async () => {
    await insertUsers(3);
    const first = await request("/users?limit=2");
    expect((await expectJson<UserJson[]>(first, 200)).map((user) => user.id)).toEqual([1, 2]);
    const added = await createUser(service.app, "Late", "late@example.com");
    const { ids } = await walk(nextLink(first) as string);
    expect(ids).toEqual([3, added.id]);
  });
});

describe("GET /users with bad query parameters", () => {
  const cases: [string, string, string][] = [
    ["limit=0", "query.limit", "limit must be between 1 and 1000"],
    ["limit=1001", "query.limit", "limit must be between 1 and 1000"],
    ["limit=abc", "query.limit", "limit must be an integer"],
    ["limit=", "query.limit", "limit must be an integer"],
    ["limit=-1", "query.limit", "limit must be an integer"],
    ["limit=1.5", "query.limit", "limit must be an integer"],
    ["limit=99999", "query.limit", "limit must be an integer"],
    ["after=0", "query.after", "after must be between 1 and 2147483647"],
    ["after=abc", "query.after", "after must be a positive integer"],
    ["after=-5", "query.after", "after must be a positive integer"],
    ["after=2147483648", "query.after", "after must be between 1 and 2147483647"],
  ];
  for (const [query, field, message] of cases) {
    test(`GET /users?${query} answers 400 naming ${field}`, async () => {
      await expectProblem(await request(`/users?${query}`), validationProblem("/users", [{ field, message }]));
    });
  }

  test("GET /users?limit=0&after=abc answers 400 naming both query.limit and query.after", async () => {
    await expectProblem(
      await request("/users?limit=0&after=abc"),
      validationProblem("/users", [
        { field: "query.limit", message: "limit must be between 1 and 1000" },
        { field: "query.after", message: "after must be a positive integer" },
      ]),
    );
  });
});
