import { describe, expect, test } from "bun:test";
import type { Sql } from "../../src/db/client-options.ts";
import { DatabaseUnavailableError } from "../../src/db/errors.ts";
import { Generation } from "../../src/db/generation.ts";
import { PendingRun } from "../../src/db/pending-run.ts";
import { silentLogger } from "../../src/logger.ts";

const CREATED_AT = Date.UTC(2030, 0, 1);
/** Long enough that a test waiting it out fails by the test timeout instead. */
const NEVER_MS = 600_000;

/** Stands in for a postgres.js client: only counts its `end()` calls. */
class EndCounter {
  ends = 0;
  async end(): Promise<void> {
    this.ends++;
  }
}

/** A generation on a client that only counts its `end()` calls. */
function generation() {
  const client = new EndCounter();
  const built = new Generation({
    id: 1,
    shape: { max: 2, readOnly: false },
    applicationName: "database-service:test:1",
    sql: client as unknown as Sql,
    transaction: { begin: "", setLocal: null },
    createdAt: CREATED_AT,
    logger: silentLogger,
  });
  return { generation: built, client };
}

/** A run on `generation` that settles when the test says, and leaves it when settled (as DbHolder.run does). */
function runOn(generation: Generation) {
  let finish!: (value: string) => void;
  const run = new PendingRun(() => new Promise<string>((resolve) => (finish = resolve)), CREATED_AT + NEVER_MS);
  generation.runs.add(run);
  const settled = run.settled.finally(() => generation.finished(run));
  return { finish, settled };
}

describe("Generation.retire", () => {
  test("with nothing running, the client ends at once and every run counts as drained", async () => {
    const { generation: g, client } = generation();
    expect(await g.retire(NEVER_MS)).toBe(true);
    expect(client.ends).toBe(1);
  });

  test("the client ends only after its last run, and every caller gets the same promise", async () => {
    const { generation: g, client } = generation();
    const first = runOn(g);
    const second = runOn(g);
    const retired = g.retire(NEVER_MS);
    const again = g.retire(NEVER_MS);
    expect(again).toBe(retired);

    first.finish("a");
    expect(await first.settled).toBe("a");
    expect(client.ends).toBe(0);
    second.finish("b");
    expect(await second.settled).toBe("b");
    expect(await retired).toBe(true);
    expect(client.ends).toBe(1);
  });

  test("a later call with a shorter timeout cuts the drain: the runs left are given up with a 503", async () => {
    const { generation: g, client } = generation();
    const stuck = runOn(g).settled.catch((e: unknown) => e);
    const swap = g.retire(NEVER_MS);
    const shutdown = g.retire(0);
    expect(shutdown).toBe(swap);
    expect(await swap).toBe(false);
    expect(client.ends).toBe(1);
    const error = await stuck;
    expect(error).toBeInstanceOf(DatabaseUnavailableError);
    expect((error as Error).message).toBe("database client ended");
  });

  test("a later call with a longer timeout does not lengthen the wait", async () => {
    const { generation: g } = generation();
    const stuck = runOn(g).settled.catch(() => {});
    const cut = g.retire(0);
    void g.retire(NEVER_MS);
    expect(await cut).toBe(false);
    await stuck;
  });

  test("a run that finishes before retirement leaves nothing to wait for", async () => {
    const { generation: g, client } = generation();
    const done = runOn(g);
    done.finish("x");
    await done.settled;
    expect(g.runs.size).toBe(0);
    expect(await g.retire(NEVER_MS)).toBe(true);
    expect(client.ends).toBe(1);
  });
});

describe("Generation.connectionsFailed: when a client is replaced after a connection failure", () => {
  const cases: [string, { age: number; lastConnectionError: number; lastSuccess: number }, boolean][] = [
    ["never failed", { age: 5000, lastConnectionError: 0, lastSuccess: 0 }, false],
    ["failed, nothing answered since, a second old", { age: 1000, lastConnectionError: 10, lastSuccess: 0 }, true],
    ["failed, but younger than a second", { age: 999, lastConnectionError: 10, lastSuccess: 0 }, false],
    ["failed, then answered a query", { age: 5000, lastConnectionError: 10, lastSuccess: 20 }, false],
    ["answered, then failed", { age: 5000, lastConnectionError: 20, lastSuccess: 10 }, true],
  ];
  for (const [name, { age, lastConnectionError, lastSuccess }, expected] of cases) {
    test(`${name}: ${expected ? "replaced" : "kept"}`, () => {
      const { generation: g } = generation();
      g.lastConnectionError = lastConnectionError === 0 ? 0 : CREATED_AT + lastConnectionError;
      g.lastSuccess = lastSuccess === 0 ? 0 : CREATED_AT + lastSuccess;
      expect(g.connectionsFailed(CREATED_AT + age)).toBe(expected);
    });
  }
});
