import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Server } from "bun";
import { Hono } from "hono";
import { DbHolder } from "../../src/db/db-holder.ts";
import { parseDatabaseUrl } from "../../src/db/dsn.ts";
import type { AppEnv } from "../../src/http/context.ts";
import { errorHandler } from "../../src/http/errors.ts";
import { silentLogger } from "../../src/logger.ts";
import { Gate } from "../../src/maintenance/gate.ts";
import type { Service } from "../../src/service.ts";
import { UsersRepository } from "../../src/users/users.repository.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type FollowingService, startFollowingService } from "../helpers/fixture.ts";
import { expectProblem } from "../helpers/http.ts";
import { applied, maintenanceProblem, put } from "../helpers/maintenance.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { jsonRequestHead, RawConnection, type RawResponse } from "../helpers/raw-http.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/body-before-gate";
const POOL_MAX = 10;
const DRAIN_TIMEOUT_MS = 2000;

let fixture: FollowingService;
let etcd: TestEtcd;
let database: TestDatabase;
let service: Service;
let server: Server<undefined>;

beforeAll(async () => {
  fixture = await startFollowingService({
    prefix: "bodygate",
    key: KEY,
    initial: "false",
    env: { DB_POOL_MAX: String(POOL_MAX), DB_MAINTENANCE_POOL_MAX: "1", DRAIN_TIMEOUT_MS: String(DRAIN_TIMEOUT_MS) },
  });
  ({ etcd, database, service } = fixture);
  // A real listener: slow bodies only exist on a socket.
  server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 60, fetch: (r) => service.app.fetch(r) });
});
afterAll(async () => {
  await server?.stop(true);
  await fixture?.stop();
});

/** `http_requests_in_flight` from /metrics, less the scrape itself: requests the app has begun to handle. */
async function requestsInApp(): Promise<number> {
  const text = await (await service.app.request("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith("http_requests_in_flight "));
  return Number(line?.split(" ")[1]) - 1;
}

const rowsWithEmail = async (pattern: string) =>
  (await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM users WHERE email LIKE ${pattern}`)[0]?.n;

/** Asserts a raw response is exactly the problem `expected` (status, media type, body). */
async function expectRawProblem(response: RawResponse | undefined, expected: Parameters<typeof expectProblem>[1]) {
  expect(response).toBeDefined();
  const { status, headers, body } = response as RawResponse;
  await expectProblem(new Response(body, { status, headers: Object.fromEntries(headers) }), expected);
}

describe("a request counts as in flight once its body has arrived", () => {
  test("20 slow uploaders do not hold the drain: maintenance is on, drained, with the small pool, while they still upload; they then get 503 or 408, never 201", async () => {
    await applied(service, await put(etcd, KEY, "false"));
    const uploaders = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const body = JSON.stringify({ name: `Slow ${i}`, email: `slow${i}@example.com` });
        // Even ones finish once maintenance is on (→ 503), odd ones trickle past the body deadline (→ 408).
        const trickled = i % 2 === 0 ? 4 : 14;
        const connection = await RawConnection.open(server.port as number);
        await connection.write(jsonRequestHead("POST", "/users", body.length) + body.slice(0, -trickled));
        return { connection, rest: body.slice(-trickled) };
      }),
    );
    await waitFor("the 20 uploads to reach the app", async () => (await requestsInApp()) >= 20);
    // A byte a second: slow clients whose connections never idle, so only the body deadline ends them.
    let trickling = true;
    const trickle = Promise.all(
      uploaders
        .filter((_, i) => i % 2 === 1)
        .map(async ({ connection, rest }) => {
          for (const byte of rest) {
            await Bun.sleep(1000);
            if (!trickling || connection.isClosed) return;
            await connection.write(byte).catch(() => {});
          }
        }),
    );

    await applied(service, await put(etcd, KEY, "true"));
    const answeredByThen = uploaders.filter(({ connection }) => connection.received !== "").length;
    const status = service.maintenance.status();
    expect({ phase: status.phase, mode: status.mode, answeredByThen }).toEqual({
      phase: "maintenance",
      mode: "full",
      answeredByThen: 0,
    });
    // Drained, not given up on after the drain timeout, and the pool shrunk.
    expect(service.maintenance.stableAndDrained).toBe(true);
    expect(service.gate.inFlight).toBe(0);
    expect(service.db.shape.max).toBe(1);

    for (const [i, { connection, rest }] of uploaders.entries()) if (i % 2 === 0) await connection.write(rest);
    await Promise.all(uploaders.map(({ connection }) => waitFor("an answer", () => connection.responses().length > 0)));
    trickling = false;
    await trickle;
    for (const [i, { connection }] of uploaders.entries()) {
      const [response] = connection.responses();
      if (i % 2 === 0) await expectRawProblem(response, maintenanceProblem("/users"));
      else {
        await expectRawProblem(response, {
          status: 408,
          type: "request-timeout",
          title: "Request Timeout",
          detail: "The request body did not arrive within 10 s.",
          instance: "/users",
        });
      }
      connection.destroy();
    }
    expect(await rowsWithEmail("slow%")).toBe(0);
  });

  test("a POST half-sent before maintenance and finished once the transition is over answers 503 and writes no row", async () => {
    await applied(service, await put(etcd, KEY, "false"));
    const body = JSON.stringify({ name: "Half", email: "half@example.com" });
    const connection = await RawConnection.open(server.port as number);
    await connection.write(jsonRequestHead("POST", "/users", body.length) + body.slice(0, 10));
    await waitFor("the POST to reach the app", async () => (await requestsInApp()) >= 1);

    // Settled: the drain is over (had the POST counted as in flight, only by the drain timeout) and the pool shrunk.
    await applied(service, await put(etcd, KEY, "true"));
    expect(service.db.shape.max).toBe(1);
    await connection.write(body.slice(10));
    await waitFor("the answer", () => connection.responses().length > 0);

    await expectRawProblem(connection.responses()[0], maintenanceProblem("/users"));
    connection.destroy();
    expect(await rowsWithEmail("half@example.com")).toBe(0);
  });
});

describe("the gate is asked again when a write starts", () => {
  /** A pool of `max` connections on the test database, apart from the service's. */
  const holder = (instanceId: string, max: number) =>
    new DbHolder(parseDatabaseUrl(database.url), {
      max,
      connectTimeoutMs: 2000,
      idleTimeoutSeconds: 5,
      queryTimeoutMs: 5000,
      instanceId,
      logger: silentLogger,
    });

  test("a request admitted before the gate closed, writing after, gets the maintenance 503 and writes nothing; a bypassed one writes", async () => {
    const db = holder("recheck", 2);
    const gate = new Gate("operator-bypass-token");
    const users = new UsersRepository(db, { ready: true }, gate);
    let admitted!: () => void;
    const inRoute = new Promise<void>((resolve) => {
      admitted = resolve;
    });
    let proceed!: () => void;
    const proceeding = new Promise<void>((resolve) => {
      proceed = resolve;
    });
    // The service's gate and error handler, and a route that waits between admission and its write.
    const app = new Hono<AppEnv>()
      .use("*", async (c, next) => {
        c.set("requestId", "recheck");
        await next();
      })
      .use("/users", gate.middleware())
      .post("/users", async (c) => {
        const { name, email } = await c.req.json();
        admitted();
        await proceeding;
        const user = await users.create({ name, email }, c.get("writeAdmission"));
        return c.json({ id: user.id }, 201);
      })
      .onError(errorHandler(silentLogger));
    try {
      const send = (email: string, headers: Record<string, string> = {}) =>
        app.request("/users", {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ name: "Late", email }),
        });
      const late = send("late@example.com");
      await inRoute;
      gate.set({ mode: "full", detail: "Closed for the test.", retryAfterSeconds: 7, retryUntil: null, holdMs: 0 });
      proceed();
      const response = await late;
      expect(response.headers.get("retry-after")).toBe("7");
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({
        type: "urn:problem:database-service:maintenance",
        detail: "Closed for the test.",
      });
      expect(await rowsWithEmail("late@example.com")).toBe(0);

      const bypassed = await send("bypass@example.com", { "X-Maintenance-Bypass": "operator-bypass-token" });
      expect(bypassed.status).toBe(201);
      expect(await rowsWithEmail("bypass@example.com")).toBe(1);
    } finally {
      await db.close(1000);
    }
  });

  test("a write waiting for a pooled connection when the gate closes gets the maintenance 503 and writes nothing", async () => {
    const db = holder("recheck-queued", 1);
    const gate = new Gate();
    const users = new UsersRepository(db, { ready: true }, gate);
    try {
      // The only connection is busy, so the write, admitted while the gate is open, waits for it.
      const busy = db.run((sql) => sql`SELECT pg_sleep(0.5)`, { idempotent: true });
      const write = users.create({ name: "Queued", email: "queued@example.com" }).then(
        () => "written",
        (error: unknown) => error,
      );
      gate.set({ mode: "full", detail: "Closed while queued.", retryAfterSeconds: 3, retryUntil: null, holdMs: 0 });
      await busy;
      const outcome = await write;
      expect(outcome).toMatchObject({ status: 503, slug: "maintenance", detail: "Closed while queued." });
      expect(await rowsWithEmail("queued@example.com")).toBe(0);
    } finally {
      await db.close(1000);
    }
  });
});
