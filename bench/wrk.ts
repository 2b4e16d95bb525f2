/** wrk, the load generator of every benchmark: a C program, so not the bottleneck on 2 cores the way a Node or Bun generator is. */
import { join } from "node:path";
import { ROOT, SEED_USERS, type Workload } from "./lib.ts";

/** What one wrk run measured. */
export interface WrkResult {
  rps: number;
  /** Latency percentiles, ms. */
  p50: number;
  p99: number;
  /** Responses other than 2xx/3xx, and socket errors (connect, read, write, timeout). */
  non2xx: number;
  errors: number;
  /** CPU seconds wrk itself used. */
  cpuSeconds: number;
}

/** What wrk sends, and for how long. */
export interface WrkOptions {
  seconds: number;
  connections: number;
  /** `read`: GET /users/{random seeded id}; `write`: POST /users; `mixed`: one POST in `MIXED_WRITE_EVERY`. */
  workload: Workload | "mixed";
  /** Keeps emails unique across runs: a tag no other run uses. */
  run: string;
}

/** In the mixed workload, one request in this many is a POST. */
export const MIXED_WRITE_EVERY = 5;

const SCRIPT = join(ROOT, "bench/wrk/users.lua");
/** The shell reports wrk's CPU time after it exits: cutime and cstime of /proc/<shell>/stat (fields 16, 17), in ticks. */
const WITH_CPU = 'wrk "$@"; code=$?; echo "wrk-cpu-ticks $(cut -d" " -f16,17 /proc/$$/stat)"; exit $code';
const TICKS_PER_SECOND = 100;

/** Fails early, with the install line, when wrk is missing. */
export function requireWrk(): void {
  if (!Bun.which("wrk")) throw new Error("wrk is not installed: run `apt-get install -y wrk`");
}

const writeEvery = (workload: WrkOptions["workload"]) =>
  workload === "read" ? 0 : workload === "write" ? 1 : MIXED_WRITE_EVERY;

/** Starts `wrk -t2 -c<connections> -d<seconds>s` with bench/wrk/users.lua against `url`. */
export function startWrk(url: string, options: WrkOptions): { done: Promise<WrkResult>; stop(): void } {
  const { seconds, connections, workload, run } = options;
  const args = [`-c${connections}`, `-d${seconds}s`, "--latency", "-s", SCRIPT, url, "--"];
  const proc = Bun.spawn(
    ["sh", "-c", WITH_CPU, "wrk", "-t2", ...args, String(SEED_USERS), String(writeEvery(workload)), run],
    { stdout: "pipe", stderr: "pipe" },
  );
  const done = (async () => {
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`wrk exited ${code}: ${err}${out}`);
    return parseWrk(out);
  })();
  return { done, stop: () => proc.kill("SIGINT") };
}

/** Runs wrk to its end; see {@link startWrk}. */
export function wrk(url: string, options: WrkOptions): Promise<WrkResult> {
  return startWrk(url, options).done;
}

/** Reads wrk's `--latency` report (and the CPU line {@link startWrk} appends). */
export function parseWrk(out: string): WrkResult {
  const number = (pattern: RegExp) => Number(out.match(pattern)?.[1] ?? 0);
  const errors = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const ticks = out.match(/wrk-cpu-ticks (\d+) (\d+)/);
  return {
    rps: number(/Requests\/sec:\s+([\d.]+)/),
    p50: latencyMs(out, "50%"),
    p99: latencyMs(out, "99%"),
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/),
    errors: errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    cpuSeconds: ticks ? (Number(ticks[1]) + Number(ticks[2])) / TICKS_PER_SECOND : Number.NaN,
  };
}

/** A line of wrk's latency distribution (`  99%    6.40ms`), in ms. */
function latencyMs(out: string, percent: string): number {
  const match = out.match(new RegExp(`^\\s+${percent}\\s+([\\d.]+)(us|ms|s)\\s*$`, "m"));
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === "us" ? value / 1000 : match[2] === "s" ? value * 1000 : value;
}
