/** Interleaved throughput rounds against several targets, each started fresh, and their report. */
import { type CpuUse, cpuMeter } from "./cpu.ts";
import { type Child, CONNECTIONS, fmt, log, median, table, type Workload } from "./lib.ts";
import type { Target } from "./targets.ts";
import { wrk } from "./wrk.ts";

/** One wrk run against one target. */
export interface Sample {
  target: string;
  workload: Workload;
  round: number;
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  cpu: CpuUse;
}

export interface Plan {
  rounds: number;
  /** Measured seconds per workload and round. */
  seconds: number;
  /** Unreported load per workload before the measured runs of a fresh process: its JIT's first seconds. */
  warmupSeconds: number;
  workloads: Workload[];
}

async function measure(child: Child, workload: Workload, round: number, seconds: number): Promise<Sample> {
  const stop = cpuMeter(child.proc.pid);
  const r = await wrk(child.url, { seconds, connections: CONNECTIONS, workload, run: `${child.name}-r${round}` });
  const cpu = { ...stop(), loadgen: r.cpuSeconds / seconds };
  const sample = { target: child.name, workload, round, ...r, cpu };
  log(
    `${workload} ${child.name} r${round}: ${fmt(r.rps, 0)} req/s p50 ${fmt(r.p50, 2)} p99 ${fmt(r.p99, 2)} ms; ` +
      `cores: target ${fmt(cpu.target, 2)} postgres ${fmt(cpu.postgres, 2)} wrk ${fmt(cpu.loadgen, 2)}, ` +
      `machine busy ${fmt(cpu.machineBusy * 100, 0)}%`,
  );
  if (r.non2xx > 0 || r.errors > 0) log(`  !! non-2xx ${r.non2xx}, socket errors ${r.errors}`);
  return sample;
}

/**
 * `rounds` rounds; in each, every target in turn is started fresh, warmed up, measured on every
 * workload and stopped. The order rotates from round to round so that no target always runs first.
 */
export async function throughput(targets: Target[], plan: Plan): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let round = 1; round <= plan.rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as Target);
    for (const target of order) {
      const workloads = plan.workloads.filter((w) => target.workloads?.includes(w) ?? true);
      const child = await target.start();
      try {
        for (const workload of workloads) {
          const run = `${child.name}-r${round}-warmup`;
          await wrk(child.url, { seconds: plan.warmupSeconds, connections: CONNECTIONS, workload, run });
        }
        for (const workload of workloads) samples.push(await measure(child, workload, round, plan.seconds));
      } finally {
        await child.stop();
      }
    }
  }
  return samples;
}

const TITLES: Record<Workload, string> = { read: "GET /users/{id}", write: "POST /users" };

/**
 * One table: per target and workload, the medians over the rounds of req/s, latency and CPU time per
 * request, and the ratio to `baseline` (of the medians, and in each round); then every run.
 */
export function throughputReport(samples: Sample[], baseline: string, plan: Plan): string {
  const names = [...new Set(samples.map((s) => s.target))];
  const runsOf = (target: string, workload: Workload) =>
    samples.filter((s) => s.target === target && s.workload === workload);
  const rows = plan.workloads.flatMap((workload) => {
    const baseRuns = runsOf(baseline, workload);
    const base = median(baseRuns.map((s) => s.rps));
    const baseP99 = median(baseRuns.map((s) => s.p99));
    return names.flatMap((name) => {
      const runs = runsOf(name, workload);
      if (runs.length === 0) return [];
      const rps = median(runs.map((s) => s.rps));
      const p99 = median(runs.map((s) => s.p99));
      const perRequest = (pick: (c: CpuUse) => number) => fmt(median(runs.map((r) => (pick(r.cpu) * 1e6) / r.rps)), 0);
      const row = [
        TITLES[workload],
        name,
        fmt(rps, 0),
        fmt(rps / base, 2),
        runs.map((s) => fmt(s.rps / (baseRuns.find((b) => b.round === s.round)?.rps ?? Number.NaN), 2)).join(", "),
        fmt(median(runs.map((s) => s.p50)), 2),
        fmt(p99, 2),
        fmt(p99 / baseP99, 2),
        perRequest((c) => c.target),
        perRequest((c) => c.postgres),
        perRequest((c) => c.loadgen),
      ];
      return [row];
    });
  });
  const head = [
    "request",
    "target",
    "req/s",
    `× ${baseline}`,
    "× in each round",
    "p50 ms",
    "p99 ms",
    `p99 × ${baseline}`,
    "target CPU µs/req",
    "postgres CPU µs/req",
    "wrk CPU µs/req",
  ];
  const every = table(
    [
      "round",
      "workload",
      "target",
      "req/s",
      "p50 ms",
      "p99 ms",
      "non-2xx",
      "errors",
      "target cores",
      "postgres cores",
      "wrk cores",
      "machine busy",
    ],
    samples.map((s) => [
      s.round,
      s.workload,
      s.target,
      fmt(s.rps, 0),
      fmt(s.p50, 2),
      fmt(s.p99, 2),
      s.non2xx,
      s.errors,
      fmt(s.cpu.target, 2),
      fmt(s.cpu.postgres, 2),
      fmt(s.cpu.loadgen, 2),
      `${fmt(s.cpu.machineBusy * 100, 0)}%`,
    ]),
  );
  return [
    `Medians of ${plan.rounds} interleaved rounds; each round starts every target fresh, warms it up ${plan.warmupSeconds} s per workload, then runs \`wrk -t2 -c${CONNECTIONS} -d${plan.seconds}s\` per workload.\n`,
    table(head, rows),
    "",
    `<details><summary>Every run</summary>\n\n${every}\n\n</details>\n`,
  ].join("\n");
}
