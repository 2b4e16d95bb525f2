import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { TestEtcd } from "../helpers/etcd.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/database-service";
const CLIENTS = 24;
const FLIPS = 10;
/** Answers of the new state the clients must see after each flip before the next one. */
const SEEN_PER_FLIP = 30;

let database: TestDatabase;
let etcd: TestEtcd;
let service: ServiceProcess;

beforeAll(async () => {
  [database, etcd] = await Promise.all([createTestDatabase(), TestEtcd.start()]);
  service = await spawnService({
    DATABASE_URL: database.url,
    ETCD_ENDPOINTS: etcd.endpoint,
    DRAIN_TIMEOUT_MS: "2000",
    RETRY_AFTER_SECONDS: "7",
    LOG_LEVEL: "warn",
  });
  await waitForStatus(service, "/health", 200);
});
afterAll(async () => {
  service.proc.kill("SIGTERM");
  await service.exited;
  await Promise.all([database.drop(), etcd.stop()]);
});

interface Outcome {
  kind: "read" | "write";
  status: number;
  retryAfter: string | null;
  email?: string;
}

describe("toggle-under-load audit", () => {
  test(`${CLIENTS} clients reading and writing while maintenance flips ${FLIPS} times lose nothing`, async () => {
    const outcomes: Outcome[] = [];
    const transportErrors: string[] = [];
    let running = true;
    let sequence = 0;

    const client = async (n: number) => {
      while (running) {
        const write = (sequence++ + n) % 2 === 0;
        const email = `audit-${n}-${sequence}@example.com`;
        try {
          const response = write
            ? await fetch(`${service.baseUrl}/users`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ name: `Audit ${n}`, email }),
              })
            : await fetch(`${service.baseUrl}/users?limit=5`);
          await response.arrayBuffer();
          outcomes.push({
            kind: write ? "write" : "read",
            status: response.status,
            retryAfter: response.headers.get("retry-after"),
            ...(write && { email }),
          });
        } catch (error) {
          transportErrors.push(String(error));
        }
      }
    };

    /** Waits until the clients got `count` answers with `status` since the `from`th outcome. */
    const seen = (status: number, from: number) =>
      waitFor(`${SEEN_PER_FLIP} answers ${status}`, () => {
        let count = 0;
        for (let i = from; i < outcomes.length; i++) if (outcomes[i]?.status === status) count++;
        return count >= SEEN_PER_FLIP;
      });

    const clients = Array.from({ length: CLIENTS }, (_, n) => client(n));
    // Each flip once the clients saw the state before it: writes served, then refused, and so on.
    await seen(201, 0);
    for (let flip = 0; flip < FLIPS; flip++) {
      const on = flip % 2 === 0;
      const from = outcomes.length;
      await etcd.put(KEY, on ? "true" : "false");
      await seen(on ? 503 : 201, from);
    }
    running = false;
    await Promise.all(clients);

    const statuses = new Map<number, number>();
    for (const o of outcomes) statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1);
    const writes = outcomes.filter((o) => o.kind === "write");
    const created = new Set(writes.filter((o) => o.status === 201).map((o) => o.email));
    const refused = new Set(writes.filter((o) => o.status === 503).map((o) => o.email));
    const stored = new Set(
      (await database.sql<{ email: string }[]>`SELECT email FROM users WHERE email LIKE 'audit-%'`).map((r) => r.email),
    );
    console.log(
      `[audit] ${outcomes.length} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `${created.size} writes created, ${refused.size} refused, ${stored.size} rows`,
    );

    expect(transportErrors).toEqual([]);
    expect([...statuses.keys()].filter((s) => ![200, 201, 503].includes(s))).toEqual([]);
    expect(outcomes.filter((o) => o.status === 503 && o.retryAfter !== "7")).toEqual([]);
    expect([...created].filter((email) => !stored.has(email as string))).toEqual([]);
    expect([...refused].filter((email) => stored.has(email as string))).toEqual([]);
    expect(stored.size).toBe(created.size);
  });
});
