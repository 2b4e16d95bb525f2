import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { HttpProblem, problemResponse } from "../../src/http/problem.ts";
import { Gate, type GateSetting, HELD_HEADER, OPEN_SETTING } from "../../src/maintenance/gate.ts";
import type { HoldLimits } from "../../src/maintenance/hold-queue.ts";
import { FakeClock } from "../helpers/fake-clock.ts";
import { gatedApp } from "../helpers/gated-app.ts";
import { captureLogs } from "../helpers/logs.ts";

const FULL: GateSetting = {
  mode: "full",
  detail: "Closed for the test.",
  retryAfterSeconds: 7,
  retryUntil: null,
  holdMs: 0,
};
const HOLDING: GateSetting = { ...FULL, holdMs: 3000 };
const READ_ONLY_HOLDING: GateSetting = { ...HOLDING, mode: "read-only" };

/** A request sent to the test app, and whether its handler ran. */
interface Sent {
  response: Promise<Response>;
  /** Settles into a value the test can look at without awaiting it. */
  state: { done: boolean; response: Response | undefined };
}

/**
 * A gate with `limits` on a fake clock, in front of `GET /r` and `POST /w`. Each handler records the
 * request's `x-n` when it starts and, once `blocking`, runs until the test calls the release it left.
 */
function setup(limits: Partial<HoldLimits> = {}) {
  const clock = new FakeClock();
  const logs = captureLogs();
  const gate = new Gate(null, clock, { ...limits, logger: logs });
  const started: string[] = [];
  const releases: (() => void)[] = [];
  let blocking = false;
  const handle = async (n: string | undefined) => {
    started.push(n ?? "?");
    if (blocking) await new Promise<void>((resolve) => releases.push(resolve));
  };
  const app = new Hono()
    .use(gate.middleware())
    .get("/r", async (c) => {
      await handle(c.req.header("x-n"));
      return c.text("read");
    })
    .post("/w", async (c) => {
      await handle(c.req.header("x-n"));
      return c.text("written", 201);
    })
    .onError((error, c) =>
      error instanceof HttpProblem ? problemResponse(c, error) : new Response(null, { status: 500 }),
    );
  const send = (method: "GET" | "POST", n: number, init: RequestInit = {}): Sent => {
    const headers = { "x-n": String(n), ...(init.headers as Record<string, string>) };
    const response = Promise.resolve(app.request(method === "GET" ? "/r" : "/w", { ...init, method, headers }));
    const state: Sent["state"] = { done: false, response: undefined };
    void response.then((r) => Object.assign(state, { done: true, response: r }));
    return { response, state };
  };
  return {
    clock,
    gate,
    logs,
    started,
    send,
    /** From now on, handlers run until released. */
    block: () => {
      blocking = true;
    },
    /** Ends the oldest running handler. */
    releaseOldest: () => releases.shift()?.(),
  };
}

async function expectHeld503(response: Response, heldMs: number | null) {
  expect(response.status).toBe(503);
  expect(response.headers.get("retry-after")).toBe("7");
  expect(response.headers.get(HELD_HEADER)).toBe(heldMs === null ? null : String(heldMs));
  expect(((await response.json()) as { type: string; detail: string }).detail).toBe("Closed for the test.");
}

describe("Gate hold mode", () => {
  test("without holdMs a refused request gets the 503 at once, and nothing is held", async () => {
    const { gate, send, started } = setup();
    gate.set(FULL);
    await expectHeld503(await send("GET", 1).response, null);
    expect(gate.held).toBe(0);
    expect(gate.holdOutcomes).toEqual({ released: 0, timed_out: 0, overflow: 0, client_gone: 0 });
    expect(started).toEqual([]);
  });

  test("a held request waits, not in flight, and runs once the gate opens; its response says how long it waited", async () => {
    const { clock, gate, send, started } = setup();
    gate.set(HOLDING);
    const held = send("POST", 1);
    await clock.advance(1200);
    expect(held.state.done).toBe(false);
    expect(started).toEqual([]);
    expect(gate.held).toBe(1);
    expect(gate.inFlight).toBe(0);
    gate.set(OPEN_SETTING);
    const response = await held.response;
    expect(response.status).toBe(201);
    expect(await response.text()).toBe("written");
    expect(response.headers.get(HELD_HEADER)).toBe("1200");
    expect(gate.held).toBe(0);
    expect(gate.holdOutcomes).toMatchObject({ released: 1 });
    expect(clock.pending).toBe(0);
  });

  test("a request not admitted within holdMs gets the 503 with Retry-After, to the millisecond", async () => {
    const { clock, gate, send, started } = setup();
    gate.set(HOLDING);
    const held = send("GET", 1);
    await clock.advance(2999);
    expect(held.state.done).toBe(false);
    await clock.advance(1);
    expect(held.state.done).toBe(true);
    await expectHeld503(await held.response, 3000);
    expect(gate.holdOutcomes).toMatchObject({ released: 0, timed_out: 1 });
    expect(started).toEqual([]);
    expect(gate.refusedTotal).toBe(1);
  });

  test("the wait is the least of holdMs, the 8 s cap and the client's Prefer: wait; wait=0 asks for the 503 at once", async () => {
    const { clock, gate, send } = setup();
    gate.set({ ...FULL, holdMs: 60_000 });
    const capped = send("GET", 1);
    const preferring = send("GET", 2, { headers: { Prefer: "respond-async, wait=2" } });
    await clock.advance(1999);
    expect(preferring.state.done).toBe(false);
    await clock.advance(1);
    await expectHeld503(await preferring.response, 2000);
    await clock.advance(5999);
    expect(capped.state.done).toBe(false);
    await clock.advance(1);
    await expectHeld503(await capped.response, 8000);
    await expectHeld503(await send("GET", 3, { headers: { Prefer: "wait=0" } }).response, null);
    expect(gate.holdOutcomes).toMatchObject({ timed_out: 2 });
  });

  test("in read-only mode reads are served at once and only writes are held", async () => {
    const { clock, gate, send, started } = setup();
    gate.set(READ_ONLY_HOLDING);
    expect((await send("GET", 1).response).status).toBe(200);
    const write = send("POST", 2);
    await clock.advance(10);
    expect(write.state.done).toBe(false);
    expect(gate.held).toBe(1);
    gate.set(OPEN_SETTING);
    expect((await write.response).status).toBe(201);
    expect(started).toEqual(["1", "2"]);
  });

  test("a change from full to read-only releases the held reads and keeps holding the writes", async () => {
    const { clock, gate, send, started } = setup();
    gate.set(HOLDING);
    const write = send("POST", 1);
    const read = send("GET", 2);
    await clock.advance(500);
    gate.set(READ_ONLY_HOLDING);
    expect((await read.response).headers.get(HELD_HEADER)).toBe("500");
    expect(write.state.done).toBe(false);
    expect(started).toEqual(["2"]);
    gate.set(OPEN_SETTING);
    expect((await write.response).headers.get(HELD_HEADER)).toBe("500");
  });

  test("held requests are released in arrival order, no more running at once than releaseConcurrency", async () => {
    const { clock, gate, send, started, block, releaseOldest } = setup({ releaseConcurrency: 2 });
    gate.set(HOLDING);
    const sent = [1, 2, 3, 4, 5].map((n) => send(n % 2 ? "GET" : "POST", n));
    await clock.advance(100);
    block();
    gate.set(OPEN_SETTING);
    await clock.advance(0);
    expect(started).toEqual(["1", "2"]);
    expect(gate.held).toBe(3);
    releaseOldest();
    await clock.advance(0);
    expect(started).toEqual(["1", "2", "3"]);
    releaseOldest();
    releaseOldest();
    await clock.advance(0);
    expect(started).toEqual(["1", "2", "3", "4", "5"]);
    releaseOldest();
    releaseOldest();
    const responses = await Promise.all(sent.map((s) => s.response));
    expect(responses.map((r) => r.status)).toEqual([200, 201, 200, 201, 200]);
    expect(gate.holdOutcomes).toMatchObject({ released: 5 });
  });

  test("a request waiting only for a place when its own deadline comes runs then, the gate being open", async () => {
    const { clock, gate, send, started, block, releaseOldest } = setup({ releaseConcurrency: 1 });
    gate.set(HOLDING);
    const first = send("GET", 1);
    const second = send("GET", 2);
    await clock.advance(2000);
    block();
    gate.set(OPEN_SETTING);
    await clock.advance(999);
    expect(started).toEqual(["1"]);
    await clock.advance(1);
    expect(started).toEqual(["1", "2"]);
    releaseOldest();
    releaseOldest();
    expect((await first.response).status).toBe(200);
    expect((await second.response).headers.get(HELD_HEADER)).toBe("3000");
    expect(gate.holdOutcomes).toMatchObject({ released: 2, timed_out: 0 });
  });

  test("beyond maxHeld a refused request gets the 503 at once (overflow); those held are unaffected", async () => {
    const { clock, gate, send } = setup({ maxHeld: 2 });
    gate.set(HOLDING);
    const held = [send("GET", 1), send("POST", 2)];
    await clock.advance(0);
    await expectHeld503(await send("GET", 3).response, null);
    expect(gate.held).toBe(2);
    gate.set(OPEN_SETTING);
    expect((await Promise.all(held.map((h) => h.response))).map((r) => r.status)).toEqual([200, 201]);
    expect(gate.holdOutcomes).toEqual({ released: 2, timed_out: 0, overflow: 1, client_gone: 0 });
  });

  test("once the episode's budget is spent every held request gets the 503, and nobody new is held until the gate opens", async () => {
    const { clock, gate, send } = setup({ budgetMs: 1000 });
    gate.set({ ...FULL, holdMs: 5000 });
    const first = send("GET", 1);
    await clock.advance(600);
    const second = send("POST", 2);
    await clock.advance(399);
    expect(second.state.done).toBe(false);
    await clock.advance(1);
    await expectHeld503(await first.response, 1000);
    await expectHeld503(await second.response, 400);
    await expectHeld503(await send("GET", 3).response, null);
    expect(gate.holdOutcomes).toEqual({ released: 0, timed_out: 2, overflow: 0, client_gone: 0 });
    // The next episode holds again.
    gate.set(OPEN_SETTING);
    gate.set({ ...FULL, holdMs: 5000 });
    const next = send("GET", 4);
    await clock.advance(10);
    expect(gate.held).toBe(1);
    gate.set(OPEN_SETTING);
    expect((await next.response).status).toBe(200);
  });

  test("a held request whose client went away is dropped and never runs", async () => {
    const { clock, gate, send, started } = setup();
    gate.set(HOLDING);
    const client = new AbortController();
    const gone = send("POST", 1, { signal: client.signal });
    await clock.advance(100);
    client.abort();
    const response = await gone.response;
    expect(response.status).toBe(499);
    expect(gate.held).toBe(0);
    gate.set(OPEN_SETTING);
    await clock.advance(0);
    expect(started).toEqual([]);
    expect(gate.holdOutcomes).toEqual({ released: 0, timed_out: 0, overflow: 0, client_gone: 1 });
  });

  test("a drain does not wait for held requests", async () => {
    const { clock, gate, send } = setup();
    gate.set(HOLDING);
    const held = send("GET", 1);
    await clock.advance(0);
    expect(await gate.drain(1000, new AbortController().signal)).toBe(true);
    gate.set(OPEN_SETTING);
    expect((await held.response).status).toBe(200);
  });

  test("each episode that held requests logs one line with its outcomes, once the last held request left", async () => {
    const { clock, gate, send, logs } = setup({ maxHeld: 1 });
    gate.set(HOLDING);
    const held = send("GET", 1);
    await clock.advance(0);
    await send("GET", 2).response;
    await clock.advance(700);
    expect(logs.events("maintenance.hold_episode")).toEqual([]);
    gate.set(OPEN_SETTING);
    await held.response;
    // An episode that held nothing logs nothing.
    gate.set(HOLDING);
    gate.set(OPEN_SETTING);
    expect(logs.events("maintenance.hold_episode")).toEqual([
      expect.objectContaining({
        held: 1,
        peak_held: 1,
        longest_held_ms: 700,
        budget_spent: false,
        released: 1,
        timed_out: 0,
        overflow: 1,
        client_gone: 0,
      }),
    ]);
  });
});

describe("Gate writes of requests admitted before a close", () => {
  test("with holding, they start during the drain that follows, and are refused once it timed out", async () => {
    const clock = new FakeClock();
    const gate = new Gate(null, clock);
    const { admit } = gatedApp(gate);
    const request = await admit();
    gate.set(HOLDING);
    expect(() => gate.admitWrite()).not.toThrow();
    const drained = gate.drain(1000, new AbortController().signal);
    await clock.advance(1000);
    expect(await drained).toBe(false);
    expect(() => gate.admitWrite()).toThrow(HttpProblem);
    request.release();
    await request.response;
  });

  test("without holding, they are refused as soon as the gate closes", async () => {
    const gate = new Gate(null, new FakeClock());
    gate.set(FULL);
    expect(() => gate.admitWrite()).toThrow(HttpProblem);
  });
});
