/**
 * Property-based tests (fast-check) over the HTTP API: random bodies, paths,
 * methods, query strings and maintenance values must never produce a 5xx, a
 * non-problem error body, a hang or a dead process.
 *
 * Bounded by run counts, never by time: each property makes all its runs
 * (about 1 s for them all on an idle machine; a busy one takes longer and
 * checks as much). Replaying a failure: the failing property prints its
 * seed and counterexample path; run
 *   FUZZ_SEED=<seed> FUZZ_PATH=<path> bun test tests/integration/fuzz.test.ts -t '<name>:'
 * FUZZ_SCALE=<n> multiplies run counts, for longer local fuzzing.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { connect } from "node:net";
import fc from "fast-check";
import { z } from "zod";
import { modeAt, parseMaintenanceValue } from "../../src/maintenance/value.ts";
import type { Service } from "../../src/service.ts";
import {
  type BodySpec,
  bodyBytes,
  bodySpec,
  bodyText,
  contentType,
  MAX_BODY_BYTES,
  maintenanceValue,
  method,
  nastyString,
  numberish,
  requestTarget,
  segment,
  usersQuery,
  validEmail,
  wellFormed,
} from "../helpers/arbitraries.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { PROBLEM_TYPE_PREFIX, type UserJson } from "../helpers/http.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { startTestService } from "../helpers/service.ts";
import { PATIENCE_MS, settledWithin, TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

// ---------------------------------------------------------------------------
// Running properties: bounded, reproducible, loud on failure.

const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const REPLAY_PATH = process.env.FUZZ_PATH;
const SCALE = Number(process.env.FUZZ_SCALE ?? "1");

/**
 * Runs of each property (the name begins its test's title): a property passes
 * only once it has made all of them, however long they take.
 */
const RUNS = {
  p1a: 400,
  p1b: 200,
  p2a: 600,
  p2b: 300,
  p3: 300,
  p4a: 200,
  p4b: 30,
  p5: 300,
  p6: 60,
} as const;

/** How long a single request may take before it counts as a hang: generous, a busy machine is slow, not hung. */
const HANG_MS = PATIENCE_MS;

/**
 * Checks `property` with its {@link RUNS}. On failure prints the seed and
 * path to replay it, then fails with fast-check's report (counterexample and
 * error included). Fails too when fewer runs than that were made (a replay
 * makes one).
 */
async function runProperty<Ts extends [unknown, ...unknown[]]>(
  name: keyof typeof RUNS,
  property: fc.IAsyncPropertyWithHooks<Ts>,
): Promise<void> {
  const numRuns = Math.max(1, Math.round(RUNS[name] * SCALE));
  const started = performance.now();
  const details = await fc.check(property, {
    numRuns,
    includeErrorInReport: true,
    ...(REPLAY_PATH !== undefined && { path: REPLAY_PATH }),
  });
  const ms = Math.round(performance.now() - started);
  if (tallies.size > 0)
    console.log(`[fuzz] ${name} outcomes: ${JSON.stringify(Object.fromEntries([...tallies].sort()))}`);
  tallies.clear();
  console.log(`[fuzz] ${name}: ${details.numRuns} runs in ${ms} ms (seed ${details.seed})`);
  if (details.failed) {
    console.error(
      `[fuzz] ${name} FAILED; replay with: FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath} ` +
        `bun test tests/integration/fuzz.test.ts -t '${name}:'`,
    );
    throw new Error(await fc.asyncDefaultReportMessage(details));
  }
  expect(details.numRuns).toBeGreaterThanOrEqual(REPLAY_PATH === undefined ? numRuns : 1);
}

/** With FUZZ_DEBUG set: how often each outcome occurred in the running property, printed after it. */
const tallies = new Map<string, number>();
const tally = (label: string) => {
  if (process.env.FUZZ_DEBUG) tallies.set(label, (tallies.get(label) ?? 0) + 1);
};

/** Fails the current run with `message` unless `condition` holds. */
function check(condition: unknown, message: () => string): asserts condition {
  if (!condition) throw new Error(message());
}

// ---------------------------------------------------------------------------
// The invariants every response must meet.

interface ProblemJson {
  type: string;
  title: string;
  status: number;
  detail: string;
  errors?: { field: string; message: string }[];
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

interface Expectation {
  method: string;
  target: string;
  /** Statuses allowed besides the universal rules. */
  allowed?: readonly number[];
}

const describeRequest = (e: Expectation) => `${e.method} ${JSON.stringify(e.target)}`;

/**
 * The universal invariants: no 5xx (the service here is neither in
 * maintenance nor without its database), an allowed status, and every non-2xx a
 * problem+json whose `status` is the HTTP status; 400s list `errors`; HEAD has
 * no body.
 */
function expectSane(answer: Answer, e: Expectation): ProblemJson | null {
  const what = () => `${describeRequest(e)} answered ${answer.status} ${answer.text.slice(0, 300)}`;
  const isHead = e.method.toUpperCase() === "HEAD";
  if (isHead) check(answer.text === "", () => `HEAD with a body: ${what()}`);
  if (e.allowed) check(e.allowed.includes(answer.status), () => `status not in [${e.allowed}]: ${what()}`);
  if (answer.status >= 200 && answer.status < 300) return null;
  check(answer.headers.get("content-type") === "application/problem+json", () => `not problem+json: ${what()}`);
  check(answer.headers.get("x-request-id"), () => `no X-Request-Id: ${what()}`);
  if (answer.status >= 500) throw new Error(`5xx: ${what()}`);
  if (isHead) return null;
  let problem: ProblemJson;
  try {
    problem = JSON.parse(answer.text) as ProblemJson;
  } catch {
    throw new Error(`problem body is not JSON: ${what()}`);
  }
  check(typeof problem.type === "string" && problem.type.startsWith(PROBLEM_TYPE_PREFIX), () => `type: ${what()}`);
  check(typeof problem.title === "string" && problem.title !== "", () => `title: ${what()}`);
  check(typeof problem.detail === "string", () => `detail: ${what()}`);
  check(problem.status === answer.status, () => `body status differs: ${what()}`);
  if (answer.status === 400) {
    check(Array.isArray(problem.errors) && problem.errors.length > 0, () => `400 without errors: ${what()}`);
    for (const error of problem.errors) {
      check(typeof error.field === "string" && typeof error.message === "string", () => `bad errors entry: ${what()}`);
    }
  }
  return problem;
}

/** Sends one request in-process, within the hang limit, and reads the whole answer. */
async function send(service: Service, target: string, init: RequestInit = {}): Promise<Answer> {
  const what = `${init.method ?? "GET"} ${JSON.stringify(target)}`;
  return settledWithin(
    `an answer to ${what}`,
    (async () => {
      const response = await service.app.request(target, init);
      tally(`${(init.method ?? "GET").toUpperCase()} ${response.status}`);
      return { status: response.status, headers: response.headers, text: await response.text() };
    })(),
  );
}

/** The RequestInit of a body spec (headers only when given). */
function initOf(methodName: string, spec: BodySpec | undefined, extra: Record<string, string> = {}): RequestInit {
  const headers: Record<string, string> = { ...extra };
  if (spec?.contentType !== undefined) headers["content-type"] = spec.contentType;
  if (spec?.contentLength !== undefined) headers["content-length"] = spec.contentLength;
  return { method: methodName, headers, ...(spec && { body: spec.body }) };
}

/** The Content-Types @hono/zod-openapi takes as JSON (any `+json`, any case, parameters after `;`). */
const JSON_MEDIA_TYPE = /^application\/([a-z-.]+\+)?json(;\s*[a-zA-Z0-9-]+=([^;]+))*$/i;
const USER_PATTERN = /^[a-z0-9]{1,16}@(example\.com|example\.org|mail\.example\.net)$/;
const codePoints = (text: string) => [...text].length;

/** A `charset` parameter, as the server reads it; bodies in any charset but UTF-8 are refused. */
const CHARSET = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i;

/** The user a body holds as the server reads it (JSON media type, UTF-8, limit not announced as exceeded), or null. */
function userIn(spec: BodySpec): { name: string; email: string } | null {
  const type = (spec.contentType ?? "").replace(/^[ \t]+|[ \t]+$/g, "");
  if (!JSON_MEDIA_TYPE.test(type)) return null;
  const charset = CHARSET.exec(type);
  if (charset && (charset[1] ?? charset[2] ?? "").toLowerCase() !== "utf-8") return null;
  // In-process, the whole body is read whatever Content-Length says; only an announced size over the limit stops it.
  if (declaredSize(spec) > MAX_BODY_BYTES) return null;
  let value: unknown;
  try {
    // Bytes that are not UTF-8 are refused, never decoded with U+FFFD.
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bodyBytes(spec.body)));
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const { name, email } = value as { name?: unknown; email?: unknown };
  if (typeof name !== "string" || typeof email !== "string") return null;
  const trimmed = name.trim();
  if (trimmed === "" || codePoints(trimmed) > 255 || trimmed.includes("\u0000") || email.length > 255) return null;
  return { name: trimmed, email };
}

/** An address any validator takes (the arbitraries' own shape): a body with it must be accepted. */
const surelyValidEmail = (email: string) => USER_PATTERN.test(email);
/** An address zod's default email check takes: the most the API may accept. */
const possiblyValidEmail = (email: string) => z.email().safeParse(email).success;

/** The Content-Length the body limit goes by: the header when sent (parsed as Hono does), else the real size. */
function declaredSize(spec: BodySpec): number {
  if (spec.contentLength === undefined) return bodyBytes(spec.body).byteLength;
  return Number.parseInt(spec.contentLength || "0", 10);
}

// ---------------------------------------------------------------------------
// Services.

const ADMIN_TOKEN = "fuzz-admin-token-0123456789";
const AUTH = { authorization: `Bearer ${ADMIN_TOKEN}` };
const RETRY_AFTER_SECONDS = 17;
const ETCD_KEY = "/maintenance/fuzz-test";

let database: TestDatabase;
/** Properties 1-3: in-process key, admin API mounted, maintenance never turned on. */
let main: Service;
/** Properties 4-5: the admin API writes its in-process key. */
let admin: Service;
/** Property 4 (etcd): follows a real etcd key. */
let follower: Service;
let etcd: TestEtcd;
let spawned: ServiceProcess;
const seededUsers: UserJson[] = [];

beforeAll(async () => {
  if (SEED !== undefined) fc.configureGlobal({ seed: SEED });
  database = await createTestDatabase("fuzz");
  etcd = await TestEtcd.start();
  // One after the other: each applies the schema, and they share the database.
  main = await startTestService(database.url, { ETCD_ENDPOINTS: "memory", ADMIN_TOKEN });
  admin = await startTestService(database.url, {
    ETCD_ENDPOINTS: "memory",
    ADMIN_TOKEN,
    DRAIN_TIMEOUT_MS: "200",
    RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
  });
  follower = await startTestService(database.url, {
    ETCD_ENDPOINTS: etcd.endpoint,
    MAINTENANCE_KEY: ETCD_KEY,
    ADMIN_TOKEN,
    DRAIN_TIMEOUT_MS: "100",
    RETRY_AFTER_SECONDS: String(RETRY_AFTER_SECONDS),
  });
  spawned = await spawnService({
    DATABASE_URL: database.url,
    ETCD_ENDPOINTS: "memory",
    LOG_LEVEL: "error",
    IDLE_TIMEOUT_S: "1",
  });
  for (let i = 0; i < 5; i++) {
    const answer = await send(main, "/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: `Seed ${i}`, email: `seed${i}@fuzz.example.com` }),
    });
    expect(answer.status).toBe(201);
    seededUsers.push(JSON.parse(answer.text) as UserJson);
  }
  await waitForStatus(spawned, "/health", 200);
});

afterAll(async () => {
  fc.resetConfigureGlobal();
  spawned?.proc.kill();
  await spawned?.exited;
  await Promise.all([main?.stop(), admin?.stop(), follower?.stop()]);
  await etcd?.stop();
  await database?.drop();
});

/** The service still serves: liveness 200, GET /users 200, and no request left counted in flight. */
async function expectAlive(service: Service): Promise<void> {
  expect((await send(service, "/health/live")).status).toBe(200);
  const users = await send(service, "/users");
  expect(users.status).toBe(200);
  expect(Array.isArray(JSON.parse(users.text))).toBe(true);
  expect(service.gate.inFlight).toBe(0);
}

// ---------------------------------------------------------------------------
// Property 1: random bodies to POST /users and PUT /users/{id}.

describe("property 1: random bodies to POST /users and PUT /users/{id}", () => {
  test("p1a: no 5xx, problem+json errors, the right status for what was sent", async () => {
    const idArb = fc.oneof(
      fc.constantFrom(...seededUsers.map((user) => String(user.id))),
      fc.integer({ min: 1, max: 2_147_483_647 }).map(String),
    );
    await runProperty(
      "p1a",
      fc.asyncProperty(fc.constantFrom("POST", "PUT"), idArb, bodySpec, async (verb, id, spec) => {
        const target = verb === "POST" ? "/users" : `/users/${id}`;
        const answer = await send(main, target, initOf(verb, spec));
        const allowed = verb === "POST" ? [201, 400, 409, 413, 415] : [200, 400, 404, 409, 413, 415];
        expectSane(answer, { method: verb, target, allowed });

        const what = () => `${verb} ${target} ${JSON.stringify(spec).slice(0, 300)} → ${answer.status} ${answer.text}`;
        // The body limit: announced or real size over 64 KiB is 413, and 413 means it was.
        const declared = declaredSize(spec);
        if (declared > MAX_BODY_BYTES) check(answer.status === 413, () => `over the limit, not 413: ${what()}`);
        if (answer.status === 413) {
          check(
            declared > MAX_BODY_BYTES || bodyBytes(spec.body).byteLength > MAX_BODY_BYTES,
            () => `413 for a small body: ${what()}`,
          );
        }
        // A well-formed user in JSON is accepted (or conflicts, or has no such id).
        const wanted = userIn(spec);
        if (wanted && surelyValidEmail(wanted.email)) {
          const ok = verb === "POST" ? [201, 409] : [200, 404, 409];
          check(ok.includes(answer.status), () => `a valid user refused: ${what()}`);
        }
        // What was accepted is what is stored: the trimmed name (lone surrogates become U+FFFD) and the email.
        if (answer.status === 200 || answer.status === 201) {
          check(answer.headers.get("content-type")?.startsWith("application/json"), () => `2xx not JSON: ${what()}`);
          check(
            wanted && possiblyValidEmail(wanted.email),
            () => `accepted a body that is not a valid user: ${what()}`,
          );
          const user = JSON.parse(answer.text) as UserJson;
          check(user.name === wellFormed(wanted.name), () => `stored name differs: ${what()}`);
          check(user.email === wanted.email, () => `stored email differs: ${what()}`);
          if (verb === "PUT") check(String(user.id) === id, () => `PUT changed the id: ${what()}`);
          const again = await send(main, `/users/${user.id}`);
          check(again.status === 200 && JSON.parse(again.text).name === user.name, () => `re-read: ${what()}`);
        }
      }),
    );
    await expectAlive(main);
  });

  test("p1b: every kind of text in name and email (NUL, lone surrogates, RTL, emoji, astral, too long)", async () => {
    const text = fc.oneof(
      nastyString(64),
      fc.constantFrom("\u0000", "a\u0000b", "\ud800", "\u202eevil", "😀".repeat(300)),
    );
    await runProperty(
      "p1b",
      fc.asyncProperty(text, fc.oneof(validEmail, text), async (name, email) => {
        const body = JSON.stringify({ name, email });
        const answer = await send(
          main,
          "/users",
          initOf("POST", { body, contentType: "application/json", contentLength: undefined }),
        );
        expectSane(answer, { method: "POST", target: "/users", allowed: [201, 400, 409, 413] });
        if (answer.status === 201) {
          const user = JSON.parse(answer.text) as UserJson;
          const what = () => `POST ${JSON.stringify(body)} → ${answer.text}`;
          check(user.name === wellFormed(name.trim()) && user.email === email, () => `stored differently: ${what()}`);
        }
      }),
    );
  });
});

// ---------------------------------------------------------------------------
// Property 2: random methods on random paths.

describe("property 2: random methods on random paths", () => {
  const authorization = fc.option(
    fc.oneof(
      fc.constantFrom(
        "Bearer",
        "Bearer ",
        "bearer x",
        "Basic Zm9vOmJhcg==",
        `Bearer ${ADMIN_TOKEN}x`,
        `Bearer  ${ADMIN_TOKEN.slice(1)}`,
      ),
      fc.string({ maxLength: 30 }).map((token) => `Bearer ${token}`),
    ),
    { nil: undefined },
  );

  test("p2a: only 2xx, 400, 401, 404, 405, 409, 413, 415, always problem+json errors, HEAD bodies empty", async () => {
    await runProperty(
      "p2a",
      fc.asyncProperty(
        method,
        requestTarget,
        fc.option(bodySpec, { nil: undefined }),
        authorization,
        async (verb, target, spec, auth) => {
          const canHaveBody = !["GET", "HEAD"].includes(verb.toUpperCase());
          const init = initOf(verb, canHaveBody ? spec : undefined, auth === undefined ? {} : { authorization: auth });
          const answer = await send(main, target, init);
          expectSane(answer, {
            method: verb,
            target,
            allowed: [200, 201, 204, 400, 401, 404, 405, 409, 413, 415],
          });
        },
      ),
    );
    await expectAlive(main);
  });

  test("p2b: ids of every shape on GET/PUT/DELETE /users/{id}", async () => {
    await runProperty(
      "p2b",
      fc.asyncProperty(
        fc.constantFrom("GET", "DELETE", "HEAD", "PUT"),
        fc.oneof(numberish, segment),
        async (verb, id) => {
          const target = `/users/${id}`;
          const init =
            verb === "PUT"
              ? initOf(verb, {
                  body: '{"name":"Id","email":"id@example.com"}',
                  contentType: "application/json",
                  contentLength: undefined,
                })
              : { method: verb };
          const answer = await send(main, target, init);
          const problem = expectSane(answer, { method: verb, target, allowed: [200, 204, 400, 404, 409] });
          // An id that is not a positive int4 in decimal is a 400 on path.id, never a 404 or a query.
          const pathname = new URL(target, "http://localhost").pathname;
          const rawId = pathname.slice("/users/".length);
          if (
            pathname.startsWith("/users/") &&
            !rawId.includes("/") &&
            rawId !== "" &&
            answer.status === 400 &&
            problem
          ) {
            check(
              problem.errors?.some((error) => error.field === "path.id"),
              () => `400 not naming path.id: ${verb} ${target} ${answer.text}`,
            );
          }
        },
      ),
    );
  });
});

// ---------------------------------------------------------------------------
// Property 3: random query strings on GET /users.

const MAX_ID = 2_147_483_647;

/** Whether the query's limit/after values are what GET /users takes (absent, or once and in range). */
function validQuery(query: string): { valid: boolean; limit: number; after: number } {
  const params = new URL(`http://localhost/users?${query}`).searchParams;
  const limits = params.getAll("limit");
  const afters = params.getAll("after");
  const limitOk = limits.length === 0 || (limits.length === 1 && /^\d{1,4}$/.test(limits[0] ?? ""));
  const afterOk = afters.length === 0 || (afters.length === 1 && /^\d{1,10}$/.test(afters[0] ?? ""));
  const limit = limits.length === 1 ? Number(limits[0]) : 100;
  const after = afters.length === 1 ? Number(afters[0]) : 0;
  const inRange = limit >= 1 && limit <= 1000 && (afters.length === 0 || (after >= 1 && after <= MAX_ID));
  return { valid: limitOk && afterOk && inRange, limit, after };
}

describe("property 3: random query strings on GET /users", () => {
  test("p3: 200 with a page of users in id order, or 400 naming query fields", async () => {
    await runProperty(
      "p3",
      fc.asyncProperty(usersQuery, fc.boolean(), async (query, head) => {
        const target = `/users?${query}`;
        const verb = head ? "HEAD" : "GET";
        const answer = await send(main, target, { method: verb });
        const problem = expectSane(answer, { method: verb, target, allowed: [200, 400] });
        const expected = validQuery(query);
        const what = () => `${verb} ${target} → ${answer.status} ${answer.text.slice(0, 300)}`;
        check((answer.status === 200) === expected.valid, () => `expected ${expected.valid ? 200 : 400}: ${what()}`);
        if (head) return;
        if (problem) {
          for (const error of problem.errors ?? []) {
            check(error.field === "query.limit" || error.field === "query.after", () => `odd field: ${what()}`);
          }
          return;
        }
        const users = JSON.parse(answer.text) as UserJson[];
        check(Array.isArray(users) && users.length <= expected.limit, () => `page too long: ${what()}`);
        for (const [index, user] of users.entries()) {
          check(user.id > expected.after, () => `id not after ${expected.after}: ${what()}`);
          check(index === 0 || user.id > (users[index - 1] as UserJson).id, () => `not in id order: ${what()}`);
        }
      }),
    );
  });
});

// ---------------------------------------------------------------------------
// Property 4: random values of the maintenance key.

interface MaintenanceKeyJson {
  value: string | null;
  revision: string;
  maintenance: { enabled: boolean; mode: string; retry_after_seconds: number | null };
}

async function readKey(service: Service): Promise<MaintenanceKeyJson> {
  const answer = await send(service, "/admin/maintenance", { headers: AUTH });
  expect(answer.status).toBe(200);
  return JSON.parse(answer.text) as MaintenanceKeyJson;
}

/** The mode `value` asks for now per the oracle, or `previous` when the value is not understood. */
function expectedMode(value: string, previous: string): string {
  const parsed = parseMaintenanceValue(value);
  return parsed.ok ? modeAt(parsed.request, Date.now()) : previous;
}

/** GET /users answers 200, or 503 problem+json with Retry-After; which one must match `mode` when it is clear. */
async function expectUsersFollow(service: Service, mode: string, context: string): Promise<void> {
  const answer = await send(service, "/users");
  const what = () => `${context}: GET /users in mode ${mode} → ${answer.status} ${answer.text.slice(0, 200)}`;
  check(answer.status === 200 || answer.status === 503, what);
  if (answer.status === 503) {
    check(answer.headers.get("content-type") === "application/problem+json", what);
    check(/^\d+$/.test(answer.headers.get("retry-after") ?? ""), () => `no Retry-After: ${what()}`);
  }
  if (mode === "off" || mode === "read-only") check(answer.status === 200, what);
  if (mode === "full") check(answer.status === 503, what);
}

/** The text the server reads from a body sent as UTF-8 (lone surrogates replaced, a leading BOM dropped). */
const asReceived = (value: string) => new TextDecoder().decode(new TextEncoder().encode(value));

describe("property 4: random maintenance values", () => {
  test("p4a: through the admin API (in-process key): 200 and applied as the oracle says, or 400 and nothing changes", async () => {
    const media = fc.constantFrom("text/plain", "text/plain; charset=utf-8", "application/json");
    await runProperty(
      "p4a",
      fc.asyncProperty(maintenanceValue, media, async (value, type) => {
        const before = await readKey(admin);
        const answer = await send(admin, "/admin/maintenance", {
          method: "PUT",
          headers: { ...AUTH, "content-type": type },
          body: value,
        });
        const received = asReceived(value);
        const what = () =>
          `PUT ${JSON.stringify(value).slice(0, 200)} as ${type} → ${answer.status} ${answer.text.slice(0, 300)}`;
        expectSane(answer, { method: "PUT", target: "/admin/maintenance", allowed: [200, 400, 413] });
        let mustReject = new TextEncoder().encode(value).byteLength > MAX_BODY_BYTES;
        if (type === "application/json") {
          try {
            JSON.parse(received);
          } catch {
            mustReject = true;
          }
        }
        const parsed = parseMaintenanceValue(received);
        check(
          (answer.status === 200) === (parsed.ok && !mustReject),
          () => `oracle says ${parsed.ok && !mustReject ? 200 : "4xx"}: ${what()}`,
        );
        if (answer.status === 200) {
          // The route answers once this instance has applied the write.
          const mode = expectedMode(received, before.maintenance.mode);
          const answered = JSON.parse(answer.text) as MaintenanceKeyJson;
          check(answered.maintenance.mode === mode, () => `answered before the gate moved: ${what()}`);
        }
        await admin.maintenance.settled();
        const after = await readKey(admin);
        if (answer.status === 200) {
          const mode = expectedMode(received, before.maintenance.mode);
          check(after.value === received, () => `stored ${JSON.stringify(after.value)}: ${what()}`);
          check(after.maintenance.mode === mode, () => `mode ${after.maintenance.mode}, oracle ${mode}: ${what()}`);
          check(
            after.maintenance.enabled === (mode !== "off"),
            () => `enabled ${after.maintenance.enabled}: ${what()}`,
          );
          await expectUsersFollow(admin, mode, what());
        } else {
          check(
            after.value === before.value &&
              after.revision === before.revision &&
              after.maintenance.enabled === before.maintenance.enabled &&
              after.maintenance.mode === before.maintenance.mode,
            () => `a rejected value changed the key or the state: ${what()}`,
          );
        }
      }),
    );
    // Leave maintenance off for the next tests.
    expect((await send(admin, "/admin/maintenance", { method: "DELETE", headers: AUTH })).status).toBe(200);
    await admin.maintenance.settled();
    await expectAlive(admin);
  });

  test("p4b: through a real etcd key: the state follows the oracle, /users only 200 or 503 with Retry-After", async () => {
    await waitFor("the follower to reach etcd", () => follower.maintenance.status().source.status === "connected");
    await runProperty(
      "p4b",
      fc.asyncProperty(maintenanceValue, async (value) => {
        const before = await readKey(follower);
        const response = await etcd.client.put(ETCD_KEY).value(value).exec();
        const revision = Number(response.header.revision);
        const seen = await follower.maintenance.observed(ETCD_KEY, revision, HANG_MS);
        const what = () => `etcd value ${JSON.stringify(value).slice(0, 200)} (revision ${revision})`;
        check(seen, () => `not observed within ${HANG_MS} ms: ${what()}`);
        await settledWithin(`settling after ${what()}`, follower.maintenance.settled());
        const after = await readKey(follower);
        // etcd stores UTF-8 bytes; the service decodes them without dropping a BOM.
        const stored = Buffer.from(value, "utf8").toString("utf8");
        const mode = expectedMode(stored, before.maintenance.mode);
        check(after.maintenance.mode === mode, () => `mode ${after.maintenance.mode}, oracle ${mode}: ${what()}`);
        check(after.maintenance.enabled === (mode !== "off"), () => `enabled ${after.maintenance.enabled}: ${what()}`);
        await expectUsersFollow(follower, mode, what());
      }),
    );
    await etcd.delete(ETCD_KEY);
    await waitFor("maintenance off after the key is deleted", () => !follower.gate.closed);
    await follower.maintenance.settled();
    await expectAlive(follower);
  });
});

// ---------------------------------------------------------------------------
// Property 5: in maintenance, every /users* request is a 503.

describe("property 5: in maintenance", () => {
  test("p5: random requests to /users* always answer 503 problem+json with Retry-After", async () => {
    const on = await send(admin, "/admin/maintenance", {
      method: "PUT",
      headers: { ...AUTH, "content-type": "text/plain" },
      body: "on",
    });
    expect(on.status).toBe(200);
    await admin.maintenance.settled();
    expect(admin.gate.closed).toBe(true);

    const usersTarget = fc
      .tuple(
        fc.array(segment, { maxLength: 3 }),
        fc.option(fc.string({ maxLength: 12 }), { nil: undefined }),
        fc.boolean(),
      )
      .map(([segments, query, slash]) => {
        const path = segments.length === 0 ? (slash ? "/users/" : "/users") : `/users/${segments.join("/")}`;
        return query === undefined ? path : `${path}?${query}`;
      });
    const headers = fc.dictionary(
      fc.constantFrom("x-maintenance-bypass", "x-request-id", "authorization", "accept", "x-forwarded-for"),
      fc.string({ maxLength: 20 }),
      { maxKeys: 3 },
    );
    await runProperty(
      "p5",
      fc.asyncProperty(
        method,
        usersTarget,
        fc.option(bodySpec, { nil: undefined }),
        headers,
        async (verb, target, spec, extra) => {
          const pathname = new URL(target, "http://localhost").pathname;
          // The URL parser resolves dot segments (/users/.. is /): only what still names /users* counts.
          fc.pre(pathname === "/users" || pathname.startsWith("/users/"));
          const canHaveBody = !["GET", "HEAD"].includes(verb.toUpperCase());
          const answer = await send(admin, target, initOf(verb, canHaveBody ? spec : undefined, extra));
          const what = () => `${verb} ${target} → ${answer.status} ${answer.text.slice(0, 200)}`;
          // A POST or PUT body is read before the gate: too large, not UTF-8 or in another charset is said first.
          const bodyRefused: Record<number, string> = {
            400: "malformed-request",
            413: "payload-too-large",
            415: "unsupported-media-type",
          };
          if (["POST", "PUT"].includes(verb.toUpperCase()) && spec && bodyRefused[answer.status]) {
            const problem = JSON.parse(answer.text) as ProblemJson;
            check(problem.type === `${PROBLEM_TYPE_PREFIX}${bodyRefused[answer.status]}`, () => `body: ${what()}`);
            if (answer.status === 400) check(problem.detail === "The request body is not valid UTF-8.", what);
            return;
          }
          check(answer.status === 503, () => `not 503 in maintenance: ${what()}`);
          check(answer.headers.get("content-type") === "application/problem+json", () => `not problem+json: ${what()}`);
          check(answer.headers.get("retry-after") === String(RETRY_AFTER_SECONDS), () => `Retry-After: ${what()}`);
          if (verb.toUpperCase() === "HEAD") {
            check(answer.text === "", () => `HEAD with a body: ${what()}`);
            return;
          }
          const problem = JSON.parse(answer.text) as ProblemJson;
          check(
            problem.status === 503 && problem.type === `${PROBLEM_TYPE_PREFIX}maintenance`,
            () => `body: ${what()}`,
          );
        },
      ),
    );
    expect((await send(admin, "/admin/maintenance", { method: "DELETE", headers: AUTH })).status).toBe(200);
    await admin.maintenance.settled();
    await expectAlive(admin);
  });
});

// ---------------------------------------------------------------------------
// Over a real socket: framing the runtime parses (Content-Length and chunked).

interface RawAnswer {
  /** The first response, when one came before the connection closed. */
  status: number | null;
  headers: Map<string, string>;
  body: string;
  closed: boolean;
  ms: number;
}

/**
 * Writes `bytes` on a new connection and reads the first response (or the
 * close), for at most `timeoutMs`. Never half-closes: Bun drops a response
 * to a client that did.
 */
function exchange(port: number, bytes: Uint8Array, timeoutMs = HANG_MS): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const started = performance.now();
    let buffer = Buffer.alloc(0);
    let settled = false;
    const socket = connect(port, "127.0.0.1", () => socket.write(bytes));
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = buffer.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const head = end < 0 ? "" : text.slice(0, end);
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
      const length = Number(headers.get("content-length") ?? "0");
      const body =
        end < 0
          ? ""
          : buffer
              .subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1"))
              .subarray(0, length)
              .toString("utf8");
      resolve({
        status: match ? Number(match[1]) : null,
        headers,
        body,
        closed,
        ms: Math.round(performance.now() - started),
      });
    };
    const complete = () => {
      const text = buffer.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return false;
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end + 2));
      return length !== null && buffer.byteLength >= end + 4 + Number(length[1]);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (complete()) finish(false);
    });
    socket.on("close", () => finish(true));
    socket.on("error", () => finish(true));
  });
}

type Framing =
  | { kind: "length"; delta: number }
  | { kind: "bad-length"; value: string }
  | { kind: "chunked"; chunk: number; broken: boolean }
  | { kind: "chunked-and-length" }
  | { kind: "none" };

const framing: fc.Arbitrary<Framing> = fc.oneof(
  fc.record({ kind: fc.constant("length" as const), delta: fc.integer({ min: -40, max: 0 }) }),
  fc.record({
    kind: fc.constant("bad-length" as const),
    value: fc.constantFrom("abc", "-1", "+5", "1e2", "0x10", "99999999999999999999", "5, 6", ""),
  }),
  fc.record({ kind: fc.constant("chunked" as const), chunk: fc.integer({ min: 1, max: 4096 }), broken: fc.boolean() }),
  fc.constant({ kind: "chunked-and-length" as const }),
  fc.constant({ kind: "none" as const }),
);

/** A raw HTTP/1.1 request carrying `body` with the given framing (a lie or a protocol error, often). */
function rawRequest(
  verb: string,
  target: string,
  type: string | undefined,
  body: Uint8Array,
  how: Framing,
): Uint8Array {
  const lines = [`${verb} ${target} HTTP/1.1`, "Host: 127.0.0.1"];
  if (type !== undefined) lines.push(`Content-Type: ${type}`);
  let payload: Buffer = Buffer.from(body);
  if (how.kind === "length") lines.push(`Content-Length: ${Math.max(0, body.byteLength + how.delta)}`);
  if (how.kind === "bad-length") lines.push(`Content-Length: ${how.value}`);
  if (how.kind === "chunked" || how.kind === "chunked-and-length") {
    if (how.kind === "chunked-and-length") lines.push(`Content-Length: ${body.byteLength}`);
    lines.push("Transfer-Encoding: chunked");
    const size = how.kind === "chunked" ? how.chunk : 1024;
    const parts: Buffer[] = [];
    for (let at = 0; at < body.byteLength; at += size) {
      const chunk = body.subarray(at, at + size);
      const header = how.kind === "chunked" && how.broken ? "zz" : chunk.byteLength.toString(16);
      parts.push(Buffer.from(`${header}\r\n`), Buffer.from(chunk), Buffer.from("\r\n"));
    }
    parts.push(Buffer.from("0\r\n\r\n"));
    payload = Buffer.concat(parts);
  }
  return Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), payload]);
}

describe("over a real socket (spawned service)", () => {
  const port = () => Number(new URL(spawned.baseUrl).port);

  test("p6: random framing of bodies: an answer (never 5xx) or a close, never a hang", async () => {
    await runProperty(
      "p6",
      fc.asyncProperty(
        fc.constantFrom("POST", "PUT"),
        fc.oneof(fc.constant("/users"), fc.constantFrom(...seededUsers.map((user) => `/users/${user.id}`))),
        contentType.filter((type) => type === undefined || !/[\r\n]/.test(type)),
        bodyText.filter((body) => bodyBytes(body).byteLength <= 80 * 1024),
        framing,
        async (verb, target, type, body, how) => {
          const answer = await exchange(port(), rawRequest(verb, target, type?.trim(), bodyBytes(body), how));
          const what = () =>
            `${verb} ${target} ${JSON.stringify(how)} (${bodyBytes(body).byteLength} bytes) → ${answer.status} after ${answer.ms} ms ${answer.body.slice(0, 200)}`;
          check(answer.status !== null || answer.closed, () => `neither an answer nor a close: ${what()}`);
          tally(`${how.kind} → ${answer.status ?? "closed"}`);
          if (process.env.FUZZ_DEBUG && answer.ms > 300) console.log(`[fuzz] slow: ${what()}`);
          if (answer.status === null) return;
          check(answer.status < 500, () => `5xx: ${what()}`);
          if (answer.headers.has("x-request-id")) {
            // The app answered: the usual invariants.
            expectSane(
              { status: answer.status, headers: new Headers([...answer.headers]), text: answer.body },
              { method: verb, target, allowed: [200, 201, 400, 404, 405, 409, 413, 415] },
            );
          } else {
            // The runtime refused the framing before the app saw it.
            check(answer.status === 400 || answer.status === 413 || answer.status === 431, () => `runtime: ${what()}`);
          }
        },
      ),
    );
    await waitForStatus(spawned, "/health/live", 200);
    await waitForStatus(spawned, "/users", 200);
  });

  test("a Content-Length longer than the body: no answer invented, the idle connection is closed, the server lives on", async () => {
    const body = Buffer.from(JSON.stringify({ name: "Short", email: "short@example.com" }));
    const answer = await exchange(
      port(),
      rawRequest("POST", "/users", "application/json", body, { kind: "length", delta: 25 }),
    );
    expect(answer.status === null || answer.status < 500).toBe(true);
    expect(answer.closed).toBe(true);
    expect(spawned.proc.exitCode).toBeNull();
    await waitForStatus(spawned, "/health/live", 200);
  });

  test("a Content-Length shorter than the body: the app reads that many bytes; the rest is not a second user", async () => {
    const email = "prefix@example.com";
    const body = Buffer.from(JSON.stringify({ name: "Prefix", email }));
    const answer = await exchange(
      port(),
      rawRequest("POST", "/users", "application/json", body, { kind: "length", delta: -3 }),
    );
    expect(answer.status).toBe(400);
    expect(answer.headers.get("content-type")).toBe("application/problem+json");
    const users = await fetch(`${spawned.baseUrl}/users?limit=1000`).then((r) => r.json() as Promise<UserJson[]>);
    expect(users.some((user) => user.email === email)).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// Bugs the properties found once, pinned.

describe("regressions found by fuzzing", () => {
  // Emails on a domain the arbitraries never produce, so no 409 can stand in for the 500.
  test("POST /users with U+0000 in the name answers 400, not 500", async () => {
    const answer = await send(main, "/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "a\u0000b", email: "nul-post@known.example" }),
    });
    expect(answer.status).toBe(400);
  });

  test("PUT /users/{id} with U+0000 in the name answers 400, not 500", async () => {
    const created = await send(main, "/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Nul", email: "nul-put@known.example" }),
    });
    const { id } = JSON.parse(created.text) as UserJson;
    const answer = await send(main, `/users/${id}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "\u0000", email: "nul-put@known.example" }),
    });
    expect(answer.status).toBe(400);
  });

  test("PUT /admin/maintenance turning maintenance off answers with the gate already open", async () => {
    const put = (body: string) =>
      send(admin, "/admin/maintenance", { method: "PUT", headers: { ...AUTH, "content-type": "text/plain" }, body });
    expect((await put("on")).status).toBe(200);
    await admin.maintenance.settled();
    const off = await put("off");
    await admin.maintenance.settled();
    expect(off.status).toBe(200);
    // Today: {"enabled":true,"mode":"full","phase":"leaving",...}, and a GET /users sent right away may get 503.
    expect((JSON.parse(off.text) as MaintenanceKeyJson).maintenance.enabled).toBe(false);
  });

  test("a malformed-JSON 400 lists its errors like every other 400", async () => {
    const answer = await send(main, "/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"name":',
    });
    expect(answer.status).toBe(400);
    expect((JSON.parse(answer.text) as ProblemJson).errors).toBeArray();
  });
});
