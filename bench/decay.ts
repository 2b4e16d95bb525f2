/**
 * `npm run bench:decay`: does throughput hold under sustained load? For each workload (reads;
 * reads mixed with writes), a fresh process of the service and of the bare baseline each take,
 * after DECAY_WARMUP (5) seconds of unreported load, DECAY_SECONDS (60) of back-to-back wrk runs of DECAY_STEP (5) seconds at BENCH_CONNECTIONS (32),
 * and every step's req/s is reported. The verdict compares the last 10 s with the first 10 s:
 * a steady process keeps ≥ 0.95 of its start. See bench/README.md.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Child,
  CONNECTIONS,
  fmt,
  freePort,
  knob,
  log,
  ROOT,
  runMain,
  spawnBun,
  startStack,
  table,
  waitForStatus,
} from "./lib.ts";
import { requireWrk, type WrkResult, wrk } from "./wrk.ts";

const SECONDS = knob("DECAY_SECONDS", 60);
/** Load before the measured series, not reported: the first seconds of a process are its JIT's. */
const WARMUP = knob("DECAY_WARMUP", 5);
const STEP = knob("DECAY_STEP", 5);
/** In the mixed workload, one request in this many is a POST. */
const WRITE_EVERY = knob("DECAY_WRITE_EVERY", 5);
/** The last and first stretch compared, seconds. */
const WINDOW = 10;
/** The verdict: the last WINDOW seconds keep at least this share of the first. */
const STEADY = 0.95;
const OUT = process.env.BENCH_OUT ?? join(ROOT, "bench/out");

const WORKLOADS = [
  { name: "read", writeEvery: 0 },
  { name: "mixed", writeEvery: WRITE_EVERY },
] as const;

interface Series {
  target: string;
  workload: string;
  steps: WrkResult[];
}

async function sustain(child: Child, workload: (typeof WORKLOADS)[number]): Promise<Series> {
  await waitForStatus(child, "/users/1", [200]);
  const warm = { seconds: WARMUP, connections: CONNECTIONS, writeEvery: workload.writeEvery };
  if (WARMUP > 0) await wrk(child.url, { ...warm, run: `${child.name.replace(/[^a-z0-9]/gi, "-")}-warmup` });
  const steps: WrkResult[] = [];
  for (let at = 0; at < SECONDS; at += STEP) {
    const result = await wrk(child.url, {
      seconds: STEP,
      connections: CONNECTIONS,
      writeEvery: workload.writeEvery,
      run: `${child.name.replace(/[^a-z0-9]/gi, "-")}-${at}`,
    });
    steps.push(result);
    log(`${child.name} ${at}-${at + STEP} s: ${fmt(result.rps, 0)} req/s, p99 ${fmt(result.p99)} ms`);
    if (result.non2xx > 0 || result.errors > 0) log(`  !! non-2xx ${result.non2xx}, socket errors ${result.errors}`);
  }
  return { target: child.name.split(":")[0] as string, workload: workload.name, steps };
}

/** Mean req/s over the first or last WINDOW seconds. */
function windowRps(series: Series, from: "first" | "last"): number {
  const count = Math.max(1, Math.round(WINDOW / STEP));
  const steps = from === "first" ? series.steps.slice(0, count) : series.steps.slice(-count);
  return steps.reduce((sum, s) => sum + s.rps, 0) / steps.length;
}

function report(all: Series[]): string {
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
  return `## Throughput over ${SECONDS} s of sustained load (req/s per ${STEP} s; wrk -t2 -c${CONNECTIONS})\n\n${perStep}\n\n${verdict}\n`;
}

await runMain(async () => {
  requireWrk();
  const stack = await startStack();
  // Every series starts from a fresh process.
  await stack.service.stop();
  const all: Series[] = [];
  for (const workload of WORKLOADS) {
    const targets = [
      async () =>
        spawnBun(
          `service:${workload.name}`,
          ["src/index.ts"],
          stack.serviceEnv("warn", await freePort()),
          stack.logDir,
        ),
      async () =>
        spawnBun(
          `baseline:${workload.name}`,
          ["bench/baseline.ts"],
          { DATABASE_URL: stack.url, PORT: String(await freePort()) },
          stack.logDir,
        ),
    ];
    for (const start of targets) {
      const child = await start();
      all.push(await sustain(child, workload));
      await child.stop();
    }
  }
  const text = report(all);
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "decay.md"), text);
  console.log(`\n${text}`);
});
