/** wrk, the load generator of the steady-state benchmarks: a C program, so not the bottleneck on 2 cores. */
import { join } from "node:path";
import { ROOT, SEED_USERS } from "./lib.ts";

/** What one wrk run measured. */
export interface WrkResult {
  rps: number;
  /** Latency percentiles, ms. */
  p50: number;
  p99: number;
  /** Responses other than 2xx/3xx, and socket errors (connect, read, write, timeout). */
  non2xx: number;
  errors: number;
}

const SCRIPT = join(ROOT, "bench/wrk/users.lua");

/** Fails early, with the install line, when wrk is missing. */
export function requireWrk(): void {
  if (!Bun.which("wrk")) throw new Error("wrk is not installed: run `apt-get install -y wrk`");
}

/**
 * `wrk -t2 -c<connections> -d<seconds>s` against `url` with bench/wrk/users.lua:
 * random reads of the seeded users, and a POST every `writeEvery` requests (0: none).
 * `run` keeps emails unique across runs.
 */
export async function wrk(
  url: string,
  options: { seconds: number; connections: number; writeEvery: number; run: string },
): Promise<WrkResult> {
  const { seconds, connections, writeEvery, run } = options;
  const proc = Bun.spawn(
    [
      "wrk",
      "-t2",
      `-c${connections}`,
      `-d${seconds}s`,
      "--latency",
      "-s",
      SCRIPT,
      url,
      "--",
      String(SEED_USERS),
      String(writeEvery),
      run,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`wrk exited ${code}: ${err}${out}`);
  return parseWrk(out);
}

/** Reads wrk's `--latency` report. */
export function parseWrk(out: string): WrkResult {
  const number = (pattern: RegExp) => Number(out.match(pattern)?.[1] ?? 0);
  const errors = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  return {
    rps: number(/Requests\/sec:\s+([\d.]+)/),
    p50: latencyMs(out, "50%"),
    p99: latencyMs(out, "99%"),
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/),
    errors: errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
  };
}

/** A line of wrk's latency distribution (`  99%    6.40ms`), in ms. */
function latencyMs(out: string, percent: string): number {
  const match = out.match(new RegExp(`^\\s+${percent}\\s+([\\d.]+)(us|ms|s)\\s*$`, "m"));
  if (!match) return Number.NaN;
  const value = Number(match[1]);
  return match[2] === "us" ? value / 1000 : match[2] === "s" ? value * 1000 : value;
}
