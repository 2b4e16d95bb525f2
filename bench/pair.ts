/**
 * Two targets measured at the same time, to tell a difference of a few µs of
 * CPU per request on a machine whose speed drifts (bench/README.md, "Why
 * pair.ts", says why and what it can mislead about). Each round starts both
 * fresh, warms them up together, then loads both at once (one wrk each, half of
 * BENCH_CONNECTIONS) and reads each one's CPU time, kernel time and page faults
 * from /proc.
 *
 *   BENCH_PAIR=hono,service BENCH_ROUNDS=8 bun bench/pair.ts
 *
 * Names: service, hono, elysia, fastify, and the rungs of bench/variants.ts
 * (holder, openapi, observe, gate). Reads only (GET /users/{id}).
 */
import { type ProcessUse, processUse } from "./cpu.ts";
import { type Child, CONNECTIONS, fmt, knob, log, median, runMain, startStack, table } from "./lib.ts";
import { namedTarget } from "./targets.ts";
import { requireWrk, type WrkResult, wrk } from "./wrk.ts";

const ROUNDS = knob("BENCH_ROUNDS", 8);
const SECONDS = knob("BENCH_SECONDS", 8);
const WARMUP = knob("BENCH_WARMUP", 3);
const PER_TARGET = Math.max(1, Math.floor(CONNECTIONS / 2));
const [first = "hono", second = "service"] = (process.env.BENCH_PAIR ?? "hono,service").split(",");

/** One target's share of a round. */
interface Side {
  rps: number;
  cpuUs: number;
  systemUs: number;
  faults: number;
}

/** Loads both children at once for `seconds`; each side's rate and per-request use. */
async function loadBoth(children: Child[], seconds: number, run: string): Promise<Side[]> {
  const before = children.map((c) => processUse(c.proc.pid));
  const results = await Promise.all(
    children.map((c) => wrk(c.url, { seconds, connections: PER_TARGET, workload: "read", run: `${run}-${c.name}` })),
  );
  return children.map((c, i) => {
    const result = results[i] as WrkResult;
    // Every read is of a seeded id: anything but 200 means the comparison measures something else.
    if (result.non2xx > 0 || result.errors > 0)
      throw new Error(`${c.name}: ${result.non2xx} answers not 2xx, ${result.errors} socket errors\n${c.tail()}`);
    const used = processUse(c.proc.pid);
    const was = before[i] as ProcessUse;
    const requests = result.rps * seconds;
    return {
      rps: result.rps,
      cpuUs: (used.cpuUs - was.cpuUs) / requests,
      systemUs: (used.systemUs - was.systemUs) / requests,
      faults: (used.minorFaults - was.minorFaults) / requests,
    };
  });
}

await runMain(async () => {
  requireWrk();
  const stack = await startStack();
  await stack.service.stop();
  const targets = [namedTarget(stack, first), namedTarget(stack, second)];
  const rounds: Side[][] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const children = await Promise.all(targets.map((t) => t.start()));
    try {
      await loadBoth(children, WARMUP, `pair-r${round}-warmup`);
      const sides = await loadBoth(children, SECONDS, `pair-r${round}`);
      const [a, b] = sides as [Side, Side];
      log(
        `r${round}: ${first} ${fmt(a.rps, 0)} req/s ${fmt(a.cpuUs)} µs, ${second} ${fmt(b.rps, 0)} req/s ` +
          `${fmt(b.cpuUs)} µs, difference ${fmt(b.cpuUs - a.cpuUs)} µs`,
      );
      rounds.push(sides);
    } finally {
      await Promise.all(children.map((c) => c.stop()));
    }
  }
  const side = (i: number, pick: (s: Side) => number) => rounds.map((r) => pick(r[i] as Side));
  const differences = rounds.map(([a, b]) => (b as Side).cpuUs - (a as Side).cpuUs);
  const row = (i: number) => [
    targets[i]?.name ?? "",
    fmt(median(side(i, (s) => s.rps)), 0),
    fmt(median(side(i, (s) => s.cpuUs))),
    fmt(median(side(i, (s) => s.systemUs))),
    fmt(median(side(i, (s) => s.faults)), 2),
  ];
  const head = ["target", "req/s", "CPU µs/req", "of which kernel µs/req", "page faults/req"];
  console.log(
    [
      `## ${second} against ${first}, side by side (${new Date().toISOString()})\n`,
      `${ROUNDS} rounds, each: both fresh, ${WARMUP} s warm-up, ${SECONDS} s of \`wrk -c${PER_TARGET}\` on each at once. Medians:\n`,
      table(head, [row(0), row(1)]),
      `\n${second} − ${first}, CPU µs per request: median **${fmt(median(differences))}**; ` +
        `by round ${differences.map((d) => fmt(d)).join(", ")}; ${second} costs more in ` +
        `${differences.filter((d) => d > 0).length} of ${ROUNDS}.`,
    ].join("\n"),
  );
});
