/**
 * Does throughput hold under sustained load? For each workload (reads; reads mixed with writes), a
 * fresh process of the service and of the bare Hono app each take, after DECAY_WARMUP (5) seconds of
 * unreported load, DECAY_SECONDS (60) of back-to-back wrk runs of DECAY_STEP (5) seconds at
 * BENCH_CONNECTIONS (32), and every step's req/s is reported. The verdict compares the last 10 s with
 * the first 10 s: a steady process keeps ≥ 0.95 of its start. A section of `npm run bench`, and on
 * its own `npm run bench:decay`. See bench/README.md.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Child, CONNECTIONS, fmt, knob, log, ROOT, runMain, type Stack, startStack, table } from "./lib.ts";
import { honoTarget, serviceTarget, type Target } from "./targets.ts";
import { MIXED_WRITE_EVERY, requireWrk, type WrkOptions, type WrkResult, wrk } from "./wrk.ts";

const SECONDS = knob("DECAY_SECONDS", 60);
/** Load before the measured series, not reported: the first seconds of a process are its JIT's. */
const WARMUP = knob("DECAY_WARMUP", 5);
const STEP = knob("DECAY_STEP", 5);
/** The last and first stretch compared, seconds. */
const WINDOW = 10;
/** The verdict: the last WINDOW seconds keep at least this share of the first. */
const STEADY = 0.95;
const OUT = process.env.BENCH_OUT ?? join(ROOT, "bench/out");
const WORKLOADS: WrkOptions["workload"][] = ["read", "mixed"];

/** One target's req/s, step by step, under one workload. */
export interface Series {
  target: string;
  workload: WrkOptions["workload"];
  steps: WrkResult[];
}

async function sustain(child: Child, workload: WrkOptions["workload"]): Promise<Series> {
  const options = (seconds: number, run: string) => ({ seconds, connections: CONNECTIONS, workload, run });
  if (WARMUP > 0) await wrk(child.url, options(WARMUP, `${child.name}-${workload}-warmup`));
  const steps: WrkResult[] = [];
  for (let at = 0; at < SECONDS; at += STEP) {
    const result = await wrk(child.url, options(STEP, `${child.name}-${workload}-${at}`));
    steps.push(result);
    log(`${child.name} ${workload} ${at}-${at + STEP} s: ${fmt(result.rps, 0)} req/s, p99 ${fmt(result.p99)} ms`);
    if (result.non2xx > 0 || result.errors > 0) log(`  !! non-2xx ${result.non2xx}, socket errors ${result.errors}`);
  }
  return { target: child.name, workload, steps };
}

/** Every workload against a fresh process of the service and of the bare Hono app. */
export async function decay(stack: Stack): Promise<Series[]> {
  const targets: Target[] = [serviceTarget(stack), honoTarget(stack)];
  const all: Series[] = [];
  for (const workload of WORKLOADS) {
    for (const target of targets) {
      const child = await target.start();
      try {
        all.push(await sustain(child, workload));
      } finally {
        await child.stop();
      }
    }
  }
  return all;
}

/** Mean req/s over the first or last WINDOW seconds. */
function windowRps(series: Series, from: "first" | "last"): number {
  const count = Math.max(1, Math.round(WINDOW / STEP));
  const steps = from === "first" ? series.steps.slice(0, count) : series.steps.slice(-count);
  return steps.reduce((sum, s) => sum + s.rps, 0) / steps.length;
}

/** The per-step table and the verdict table. */
export function decayReport(all: Series[]): string {
  const perStep = table(
    ["seconds", ...all.map((s) => `${s.target} ${s.workload}`)],
    (all[0]?.steps ?? []).map((_, i) => [
      `${i * STEP}–${(i + 1) * STEP}`,
      ...all.map((s) => fmt(s.steps[i]?.rps ?? Number.NaN, 0)),
    ]),
  );
  const verdict = table(
    ["target", "workload", `first ${WINDOW} s req/s`, `last ${WINDOW} s req/s`, "last / first", `≥ ${STEADY}`],
    all.map((s) => {
      const first = windowRps(s, "first");
      const last = windowRps(s, "last");
      return [
        s.target,
        s.workload,
        fmt(first, 0),
        fmt(last, 0),
        fmt(last / first, 2),
        last / first >= STEADY ? "yes" : "NO",
      ];
    }),
  );
  return [
    `### Throughput over ${SECONDS} s of sustained load (req/s per ${STEP} s; wrk -t2 -c${CONNECTIONS})\n`,
    `Each series is a fresh process after ${WARMUP} s of unreported load; mixed sends one POST /users in ${MIXED_WRITE_EVERY}.\n`,
    perStep,
    "",
    verdict,
    "",
  ].join("\n");
}

if (import.meta.main) {
  await runMain(async () => {
    requireWrk();
    const stack = await startStack();
    await stack.service.stop();
    const text = decayReport(await decay(stack));
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, "decay.md"), text);
    console.log(`\n${text}`);
  });
}
