/**
 * `npm run bench`: throughput of the service against a bare Hono app and two peers, throughput over
 * 60 s of sustained load, speed of maintenance propagation, and time to drain the pool. See bench/README.md.
 *
 * Knobs (environment): BENCH_ROUNDS (3), BENCH_SECONDS (8), BENCH_WARMUP (3), BENCH_CONNECTIONS (32),
 * BENCH_TOGGLES (30 per put method), BENCH_DRAIN_RUNS (5 per mode), BENCH_ONLY
 * (comma list of throughput,decay,propagation,drain), BENCH_TARGETS (service,hono,hono-tx,elysia,fastify), BENCH_OUT (bench/out), and decay.ts's.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import type { TestEtcd } from "../tests/helpers/etcd.ts";
import { decay, decayReport } from "./decay.ts";
import {
  type Child,
  CONNECTIONS,
  commandOutput,
  fmt,
  knob,
  log,
  median,
  onCleanup,
  percentile,
  ROOT,
  runMain,
  SEED_USERS,
  startStack,
  table,
  waitForStatus,
} from "./lib.ts";
import { elysiaTarget, fastifyTarget, honoTarget, honoTransactionTarget, serviceTarget } from "./targets.ts";
import { type Plan, type Sample, throughput, throughputReport } from "./throughput.ts";
import { requireWrk, startWrk } from "./wrk.ts";

const ROUNDS = knob("BENCH_ROUNDS", 3);
const SECONDS = knob("BENCH_SECONDS", 8);
const TOGGLES = knob("BENCH_TOGGLES", 30);
const DRAIN_RUNS = knob("BENCH_DRAIN_RUNS", 5);
const PLAN: Plan = {
  rounds: ROUNDS,
  seconds: SECONDS,
  warmupSeconds: knob("BENCH_WARMUP", 3),
  workloads: ["read", "write"],
};
const TARGETS = (process.env.BENCH_TARGETS ?? "service,hono,hono-tx,elysia,fastify").split(",");
const ONLY = (process.env.BENCH_ONLY ?? "throughput,decay,propagation,drain").split(",");
const OUT = process.env.BENCH_OUT ?? join(ROOT, "bench/out");
const KEY = "/maintenance/database-service";
const MAINTENANCE_POOL_MAX = 1;

/** Concurrent tight loops of GET /users/1; `until(status)` resolves with when that status was first received. */
function startPollers(url: string, count: number) {
  let running = true;
  let waiter: { status: number; after: number; resolve: (at: number) => void } | undefined;
  let requests = 0;
  const loop = async () => {
    while (running) {
      try {
        const response = await fetch(`${url}/users/1`);
        await response.arrayBuffer();
        const at = performance.now();
        requests++;
        if (waiter && response.status === waiter.status && at >= waiter.after) {
          waiter.resolve(at);
          waiter = undefined;
        }
      } catch {
        await Bun.sleep(1);
      }
    }
  };
  const loops = Array.from({ length: count }, loop);
  return {
    until(status: number, after: number, timeoutMs = 10_000): Promise<number> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${status} within ${timeoutMs} ms`)), timeoutMs);
        waiter = {
          status,
          after,
          resolve: (at) => {
            clearTimeout(timer);
            resolve(at);
          },
        };
      });
    },
    get requests() {
      return requests;
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Waits until the service's /stats shows `phase` (the transition finished). */
async function settled(service: Child, phase: "serving" | "maintenance"): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const stats = (await (await fetch(`${service.url}/stats`)).json()) as { maintenance_status: { phase: string } };
    if (stats.maintenance_status.phase === phase) return;
    await Bun.sleep(10);
  }
  throw new Error(`service did not reach phase ${phase}\n${service.tail()}`);
}

interface Toggle {
  method: "etcdctl" | "etcd3";
  to: "on" | "off";
  /** Put duration, ms. */
  put: number;
  /** First expected status seen at the edge, ms after the put returned (negative: before it returned). */
  fromReturn: number;
  /** The same, ms after the put started. */
  fromStart: number;
}

async function propagation(service: Child, etcd: TestEtcd): Promise<Toggle[]> {
  const pollers = startPollers(service.url, 4);
  const toggles: Toggle[] = [];
  const puts = {
    etcdctl: (value: string) => etcd.etcdctl("put", KEY, value),
    etcd3: (value: string) => etcd.put(KEY, value),
  };
  try {
    await puts.etcd3("false");
    await puts.etcdctl("false");
    await settled(service, "serving");
    for (let i = 0; i < TOGGLES * 2; i++) {
      const method = i % 2 === 0 ? "etcdctl" : "etcd3";
      for (const [to, value, status, phase] of [
        ["on", "true", 503, "maintenance"],
        ["off", "false", 200, "serving"],
      ] as const) {
        const start = performance.now();
        const seen = pollers.until(status, start);
        await puts[method](value);
        const returned = performance.now();
        const at = await seen;
        toggles.push({ method, to, put: returned - start, fromReturn: at - returned, fromStart: at - start });
        await settled(service, phase);
        await Bun.sleep(50);
      }
    }
    log(`propagation: ${toggles.length} transitions, ${pollers.requests} polling requests`);
  } finally {
    await pollers.stop();
  }
  return toggles;
}

interface Drain {
  load: boolean;
  run: number;
  /** Connections of the service before the put. */
  before: number;
  /** ms from the put returning to connections <= MAINTENANCE_POOL_MAX (first poll that saw it). */
  ms: number;
  polls: number;
}

async function drain(service: Child, etcd: TestEtcd, dbName: string, adminUrl: string): Promise<Drain[]> {
  const monitor = postgres(adminUrl, { max: 1, onnotice: () => {}, connection: { application_name: "bench-monitor" } });
  onCleanup("monitor client", () => monitor.end({ timeout: 1 }));
  const count = async () => {
    const [row] = await monitor<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = ${dbName} AND application_name LIKE 'database-service:%'`;
    return row?.n ?? 0;
  };
  const results: Drain[] = [];
  for (let run = 1; run <= DRAIN_RUNS; run++) {
    for (const withLoad of [false, true]) {
      await settled(service, "serving");
      // Open the whole pool: bursts of concurrent reads.
      for (let i = 0; i < 5; i++) {
        await Promise.all(
          Array.from({ length: 40 }, (_, j) => fetch(`${service.url}/users/${j + 1}`).then((r) => r.arrayBuffer())),
        );
      }
      const background = withLoad
        ? startWrk(service.url, { seconds: 30, connections: CONNECTIONS, workload: "read", run: `drain-${run}` })
        : undefined;
      if (withLoad) await Bun.sleep(2000);
      const before = await count();
      const start = performance.now();
      await etcd.put(KEY, "true");
      const returned = performance.now();
      let polls = 0;
      let drainedAt = Number.NaN;
      while (performance.now() - start < 30_000) {
        const tick = performance.now();
        const n = await count();
        polls++;
        if (n <= MAINTENANCE_POOL_MAX) {
          drainedAt = performance.now();
          break;
        }
        await Bun.sleep(Math.max(0, 5 - (performance.now() - tick)));
      }
      background?.stop();
      await background?.done;
      const result = { load: withLoad, run, before, ms: drainedAt - returned, polls };
      log(`drain ${withLoad ? "under load" : "idle"} #${run}: ${before} connections -> <=1 in ${fmt(result.ms)} ms`);
      results.push(result);
      await settled(service, "maintenance");
      await etcd.put(KEY, "false");
      await waitForStatus(service, "/users/1", [200]);
    }
  }
  return results;
}

// ---------------------------------------------------------------- report

function propagationReport(toggles: Toggle[]): string {
  const rows: (string | number)[][] = [];
  for (const method of ["etcdctl", "etcd3"] as const) {
    for (const to of ["on", "off"] as const) {
      const runs = toggles.filter((t) => t.method === method && t.to === to);
      const fromReturn = runs.map((t) => Math.max(0, t.fromReturn));
      rows.push([
        method === "etcdctl" ? "`etcdctl put` (process)" : "etcd3 client put",
        to === "on" ? "true → first 503" : "false → first 200",
        runs.length,
        fmt(median(runs.map((t) => t.put))),
        fmt(median(fromReturn)),
        fmt(percentile(fromReturn, 99)),
        fmt(Math.max(...fromReturn)),
        runs.filter((t) => t.fromReturn < 0).length,
        fmt(median(runs.map((t) => t.fromStart))),
        fmt(
          percentile(
            runs.map((t) => t.fromStart),
            99,
          ),
        ),
      ]);
    }
  }
  return [
    table(
      [
        "put by",
        "transition",
        "n",
        "put ms (p50)",
        "after return p50 ms",
        "p99 ms",
        "max ms",
        "seen before return",
        "after start p50 ms",
        "after start p99 ms",
      ],
      rows,
    ),
    "",
    "<details><summary>Every transition (ms after the put returned)</summary>\n",
    ...(["etcdctl", "etcd3"] as const).flatMap((method) =>
      (["on", "off"] as const).map(
        (to) =>
          `- ${method} ${to}: ${toggles
            .filter((t) => t.method === method && t.to === to)
            .map((t) => fmt(t.fromReturn))
            .join(", ")}`,
      ),
    ),
    "\n</details>\n",
  ].join("\n");
}

/**
 * The manager's own `ms` per transition, from the service's log lines
 * `maintenance.*` that carry one (only at LOG_LEVEL=info or debug), by event and kind.
 */
function transitionTimes(service: Child): string {
  const ms = new Map<string, number[]>();
  for (const line of readFileSync(service.stdoutPath, "utf8").split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { event?: string; kind?: string; ms?: number };
    if (!entry.event?.startsWith("maintenance.") || typeof entry.ms !== "number") continue;
    const name = entry.kind ? `${entry.event} (${entry.kind})` : entry.event;
    ms.set(name, [...(ms.get(name) ?? []), entry.ms]);
  }
  const rows = [...ms].map(([event, values]) => [
    event,
    values.length,
    fmt(median(values)),
    fmt(percentile(values, 99)),
  ]);
  if (rows.length === 0) return "(Transition times inside the service: run with BENCH_SERVICE_LOG_LEVEL=info.)\n";
  return `Inside the service (the manager's logged \`ms\`, gate to gate):\n\n${table(["event", "n", "p50 ms", "p99 ms"], rows)}\n`;
}

function drainReport(drains: Drain[]): string {
  const rows = [false, true].map((withLoad) => {
    const runs = drains.filter((d) => d.load === withLoad);
    return [
      withLoad ? `${CONNECTIONS}-connection read load` : "no load",
      runs.length,
      fmt(median(runs.map((d) => d.before)), 0),
      fmt(median(runs.map((d) => d.ms))),
      fmt(Math.min(...runs.map((d) => d.ms))),
      fmt(Math.max(...runs.map((d) => d.ms))),
      runs.map((d) => fmt(d.ms)).join(", "),
    ];
  });
  return table(["mode", "runs", "connections before", "median ms", "min ms", "max ms", "per run ms"], rows);
}

/** The throughput goals of the service, each with the measured ratio of medians; a peer not run is left out. */
function goalsReport(samples: Sample[]): string {
  const rps = (target: string, workload: "read" | "write") =>
    median(samples.filter((s) => s.target === target && s.workload === workload).map((s) => s.rps));
  const p99 = (target: string) =>
    median(samples.filter((s) => s.target === target && s.workload === "read").map((s) => s.p99));
  const goals = [
    ["GET req/s × hono", rps("service", "read") / rps("hono", "read"), 0.9, "≥"],
    ["GET req/s × fastify", rps("service", "read") / rps("fastify", "read"), 1.05, "≥"],
    ["GET p99 × hono", p99("service") / p99("hono"), 1.3, "≤"],
    ["POST req/s × hono", rps("service", "write") / rps("hono", "write"), 0.85, "≥"],
    ["POST req/s × hono-tx (insert in a transaction)", rps("service", "write") / rps("hono-tx", "write"), 0.85, "≥"],
  ] as const;
  const rows = goals.flatMap(([what, ratio, goal, sense]) =>
    Number.isNaN(ratio)
      ? []
      : [
          [
            what,
            fmt(ratio, 2),
            `${sense} ${goal}`,
            (sense === "≥" ? ratio >= goal : ratio <= goal) ? "met" : "**not met**",
          ],
        ],
  );
  return `The service's goals (ratios of medians):\n\n${table(["measure", "service", "goal", ""], rows)}\n`;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = new Date();
  const load1 = loadavg();
  log("starting etcd, a fresh database and the service");
  requireWrk();
  const stack = await startStack();
  const { etcd, db, service } = stack;

  const sections: string[] = [];
  const raw: Record<string, unknown> = {};
  if (ONLY.includes("throughput")) {
    // Every target starts fresh in every round; the long-running service is for the sections below.
    const targets = [
      serviceTarget(stack),
      honoTarget(stack),
      honoTransactionTarget(stack),
      elysiaTarget(stack),
      fastifyTarget(stack),
    ].filter((t) => TARGETS.includes(t.name));
    const samples = await throughput(targets, PLAN);
    raw.throughput = samples;
    sections.push(
      "### Throughput against peers\n",
      targets.map((t) => `- **${t.name}**: ${t.what}`).join("\n"),
      "",
      throughputReport(samples, "hono", PLAN),
      goalsReport(samples),
    );
  }
  if (ONLY.includes("decay")) {
    const series = await decay(stack);
    raw.decay = series;
    sections.push(decayReport(series));
  }
  if (ONLY.includes("propagation")) {
    log("maintenance propagation");
    const toggles = await propagation(service, etcd);
    raw.propagation = toggles;
    sections.push(
      "### Maintenance propagation (4 concurrent pollers of GET /users/1)\n",
      propagationReport(toggles),
      transitionTimes(service),
    );
  }
  if (ONLY.includes("drain")) {
    log("drain");
    const drains = await drain(service, etcd, db.name, db.url);
    raw.drain = drains;
    sections.push(
      `### Drain: put(true) returned → service's PostgreSQL connections ≤ ${MAINTENANCE_POOL_MAX}\n`,
      drainReport(drains),
    );
  }

  const [server] = await db.sql<{ server_version: string }[]>`SHOW server_version`;
  const header = [
    `## Run of ${started.toISOString()}`,
    "",
    `- machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), ${fmt(totalmem() / 2 ** 30)} GiB memory; load average at start ${load1.map((l) => fmt(l, 2)).join(" ")}, at end ${loadavg()
      .map((l) => fmt(l, 2))
      .join(" ")}`,
    `- code: commit ${commandOutput(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}, uncommitted changes under src/: ${commandOutput(["git", "-C", ROOT, "status", "--porcelain", "src"]).split("\n").filter(Boolean).length} files`,
    `- versions: bun ${Bun.version}, PostgreSQL ${server?.server_version}, ${commandOutput(["etcd", "--version"]).split("\n")[0]}, ${commandOutput(["wrk", "--version"]).split("\n")[0]}`,
    `- settings: ${ROUNDS} rounds × ${SECONDS} s after ${PLAN.warmupSeconds} s warm-up, ${CONNECTIONS} connections, ${TOGGLES} toggles per put method, ${DRAIN_RUNS} drain runs per mode, ${SEED_USERS} seeded users`,
    "",
  ].join("\n");
  const report = `${header}\n${sections.join("\n")}\n`;
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "last-run.md"), report);
  writeFileSync(join(OUT, "last-run.json"), JSON.stringify({ started, ...raw }, null, 2));
  console.log(report);
  log(`written to ${join(OUT, "last-run.md")}`);
}

await runMain(main);
