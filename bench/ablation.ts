/**
 * `bun bench/ablation.ts`: prices each layer of the service's request path.
 * Interleaved rounds (as in run.ts) against the bare Hono app, each cumulative
 * variant of bench/variants.ts, and the real service, all on one fresh
 * database. Knobs: BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_WARMUP (3), BENCH_CONNECTIONS (32),
 * ABLATION_WORKLOADS (read,write), BENCH_OUT (bench/out).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fmt, knob, log, median, ROOT, runMain, startStack, table, type Workload } from "./lib.ts";
import { honoTarget, serviceTarget, VARIANTS, variantTarget } from "./targets.ts";
import { type Plan, type Sample, throughput, throughputReport } from "./throughput.ts";

const OUT = process.env.BENCH_OUT ?? join(ROOT, "bench/out");
const PLAN: Plan = {
  rounds: knob("BENCH_ROUNDS", 3),
  seconds: knob("BENCH_SECONDS", 8),
  warmupSeconds: knob("BENCH_WARMUP", 3),
  workloads: (process.env.ABLATION_WORKLOADS ?? "read,write").split(",") as Workload[],
};

/**
 * Each rung's median CPU time per request in its own process (what the layer
 * costs; stable on a shared machine), what it adds to the rung above, and its
 * median req/s (noisy there).
 */
function ladder(samples: Sample[], names: string[]): string {
  return PLAN.workloads
    .map((workload) => {
      const runs = names.map((name) => samples.filter((s) => s.target === name && s.workload === workload));
      const cpu = runs.map((r) => median(r.map((s) => (s.cpu.target * 1e6) / s.rps)));
      const rps = runs.map((r) => median(r.map((s) => s.rps)));
      const rows = names.map((name, i) => [
        name,
        fmt(cpu[i] as number, 0),
        i === 0 ? "" : fmt((cpu[i] as number) - (cpu[i - 1] as number), 0),
        fmt((cpu[i] as number) - (cpu[0] as number), 0),
        fmt(rps[i] as number, 0),
        fmt((rps[i] as number) / (rps[0] as number), 3),
      ]);
      const head = ["rung", "CPU µs/req", "added µs", "vs baseline µs", "req/s", "req/s ratio"];
      return `#### ${workload}\n\n${table(head, rows)}\n`;
    })
    .join("\n");
}

await runMain(async () => {
  const stack = await startStack();
  await stack.service.stop();
  const targets = [honoTarget(stack), ...VARIANTS.map((name) => variantTarget(stack, name)), serviceTarget(stack)];
  const samples = await throughput(targets, PLAN);
  const names = targets.map((t) => t.name);
  const report = [
    `## Ablation of ${new Date().toISOString()}\n`,
    "### Ladder (each rung adds to the one above)\n",
    ladder(samples, names),
    "### Throughput\n",
    throughputReport(samples, "hono", PLAN),
  ].join("\n");
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "ablation.md"), report);
  writeFileSync(join(OUT, "ablation.json"), JSON.stringify(samples, null, 2));
  console.log(report);
  log(`written to ${join(OUT, "ablation.md")}`);
});
