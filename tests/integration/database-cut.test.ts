import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody, startTestService } from "../helpers/service.ts";
import { proxyDatabase, type TcpProxy } from "../helpers/tcp-proxy.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const WRITERS = 8;
const CUTS = 5;

let database: TestDatabase;
let proxy: TcpProxy;
let service: Service;

beforeAll(async () => {
  database = await createTestDatabase("dbcut");
  const through = await proxyDatabase(database.url);
  proxy = through.proxy;
  service = await startTestService(through.url, { ETCD_ENDPOINTS: "memory", DB_QUERY_TIMEOUT_MS: "3000" });
});

afterAll(async () => {
  await service?.stop();
  await proxy?.close();
  await database?.drop();
});

// In-process on purpose: a crash of the service (postgres.js writing to a closed socket from a
// timer, porsager/postgres#1154) would take the test runner down with it.
test("the database's link cut again and again under concurrent writes: the process lives, every 201 is stored and no 503 is", async () => {
  const answers: { email: string; status: number }[] = [];
  let running = true;
  let sequence = 0;
  const writer = async (id: number) => {
    while (running) {
      const email = `w${id}-${sequence++}@example.com`;
      const response = await service.app.request("/users", jsonBody("POST", { name: "Writer", email }));
      await response.arrayBuffer();
      answers.push({ email, status: response.status });
    }
  };
  const writers = Array.from({ length: WRITERS }, (_, id) => writer(id));

  for (let cut = 0; cut < CUTS; cut++) {
    const before = answers.length;
    await waitFor("writes to go through before the cut", () => answers.length >= before + 20);
    await proxy.cut();
    await waitFor("a write to be refused while cut", () => answers.slice(before).some((a) => a.status === 503));
    await proxy.restore();
  }
  const afterLastCut = answers.length;
  await waitFor("writes to be stored again", () => answers.slice(afterLastCut).some((answer) => answer.status === 201));
  running = false;
  await Promise.all(writers);

  const statuses = new Set(answers.map((a) => a.status));
  expect([...statuses].every((status) => [201, 503, 504].includes(status))).toBe(true);
  const stored = new Set((await database.sql<{ email: string }[]>`SELECT email FROM users`).map((row) => row.email));
  const created = answers.filter((a) => a.status === 201);
  const refused = answers.filter((a) => a.status === 503);
  expect(created.length).toBeGreaterThan(0);
  expect(refused.length).toBeGreaterThan(0);
  expect(created.filter((a) => !stored.has(a.email))).toEqual([]);
  expect(refused.filter((a) => stored.has(a.email))).toEqual([]);
});
