/** Interleaved throughput rounds against several targets, and their report. */
import { type CpuUse, cpuMeter } from "./cpu.ts";
import { type Child, CONNECTIONS, fmt, load, log, median, table, type Workload } from "./lib.ts";

/** One autocannon run against one target. */
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
  seconds: number;
  workloads: Workload[];
}

async function measure(target: Child, workload: Workload, round: number, seconds: number): Promise<Sample> {
  const stop = cpuMeter(target.proc.pid);
  const r = await load(target.url, workload, seconds);
  const cpu = stop();
  const sample = {
    target: target.name,
    workload,
    round,
    rps: r.requests.total / seconds,
    p50: r.latency.p50,
    p99: r.latency.p99,
    non2xx: r.non2xx,
    errors: r.errors,
    cpu,
  };
  log(
    `${workload} ${target.name} r${round}: ${fmt(sample.rps, 0)} req/s p50 ${sample.p50} p99 ${sample.p99} ms; ` +
      `cores: target ${fmt(cpu.target, 2)} postgres ${fmt(cpu.postgres, 2)} loadgen ${fmt(cpu.loadgen, 2)}, ` +
      `machine busy ${fmt(cpu.machineBusy * 100, 0)}% steal ${fmt(cpu.steal * 100, 0)}%`,
  );
  if (sample.non2xx > 0 || sample.errors > 0) log(`  !! non2xx ${sample.non2xx} errors ${sample.errors}`);
  return sample;
}

/**
 * A 3 s warm-up of each target and workload, then `rounds` rounds; in each, every
 * workload runs against every target in turn, the order of targets rotating from
 * round to round so that no target always runs first or right after another.
 */
export async function throughput(targets: Child[], plan: Plan): Promise<Sample[]> {
  for (const target of targets) {
    for (const workload of plan.workloads) await load(target.url, workload, 3);
  }
  const samples: Sample[] = [];
  for (let round = 1; round <= plan.rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as Child);
    for (const workload of plan.workloads) {
      for (const target of order) {
        await Bun.sleep(1000);
        samples.push(await measure(target, workload, round, plan.seconds));
      }
    }
  }
  return samples;
}

/** Medians per target with their ratio to `baseline` (also per round), then every run. */
export function throughputReport(samples: Sample[], baseline: string, plan: Plan): string {
  const names = [...new Set(samples.map((s) => s.target))];
  const pick = (target: string, workload: Workload) =>
    samples.filter((s) => s.target === target && s.workload === workload);
  const parts: string[] = [];
  for (const workload of plan.workloads) {
    const baseRuns = pick(baseline, workload);
    const base = median(baseRuns.map((s) => s.rps));
    const title = workload === "read" ? "GET /users/{random id}" : "POST /users (unique emails)";
    parts.push(
      `#### ${title}, ${CONNECTIONS} connections, ${plan.seconds} s per run — medians of ${plan.rounds} rounds\n`,
      table(
        [
          "target",
          "req/s",
          "p50 ms",
          "p99 ms",
          `ratio to ${baseline} (of medians)`,
          "ratio in each round",
          "target CPU µs/req",
          "postgres CPU µs/req",
          "loadgen CPU µs/req",
          "machine busy",
        ],
        names.map((name) => {
          const runs = pick(name, workload);
          const rps = median(runs.map((s) => s.rps));
          const perRequest = (pick: (c: CpuUse) => number) =>
            fmt(median(runs.map((r) => (pick(r.cpu) * 1e6) / r.rps)), 0);
          const perRound = runs.map((s) =>
            fmt(s.rps / (baseRuns.find((b) => b.round === s.round)?.rps ?? Number.NaN), 2),
          );
          return [
            name,
            fmt(rps, 0),
            fmt(median(runs.map((s) => s.p50))),
            fmt(median(runs.map((s) => s.p99))),
            fmt(rps / base, 3),
            perRound.join(", "),
            perRequest((c) => c.target),
            perRequest((c) => c.postgres),
            perRequest((c) => c.loadgen),
            `${fmt(median(runs.map((r) => r.cpu.machineBusy * 100)), 0)}%`,
          ];
        }),
      ),
      "",
    );
  }
  parts.push(
    "<details><summary>Every run</summary>\n",
    table(
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
        "loadgen cores",
        "machine busy",
        "steal",
      ],
      samples.map((s) => [
        s.round,
        s.workload,
        s.target,
        fmt(s.rps, 0),
        s.p50,
        s.p99,
        s.non2xx,
        s.errors,
        fmt(s.cpu.target, 2),
        fmt(s.cpu.postgres, 2),
        fmt(s.cpu.loadgen, 2),
        `${fmt(s.cpu.machineBusy * 100, 0)}%`,
        `${fmt(s.cpu.steal * 100, 1)}%`,
      ]),
    ),
    "\n</details>\n",
  );
  return parts.join("\n");
}
