/** CPU accounting from /proc (Linux): who burned the machine's cores during a run. */
import { readdirSync, readFileSync } from "node:fs";

const TICK_US = 10_000; // USER_HZ is 100 on Linux.

/** What /proc/<pid>/stat says `pid` (all threads) has used so far; zeros when it is gone. */
export interface ProcessUse {
  /** utime + stime, µs. */
  cpuUs: number;
  /** stime alone, µs: the kernel's share (page faults, syscalls). */
  systemUs: number;
  /** Minor page faults: pages the process touched that the kernel had to map (or map again). */
  minorFaults: number;
}

/** See {@link ProcessUse}. */
export function processUse(pid: number): ProcessUse {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, numbered from `state` (field 3 of proc(5)).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const systemUs = Number(fields[12]) * TICK_US;
    return { cpuUs: Number(fields[11]) * TICK_US + systemUs, systemUs, minorFaults: Number(fields[7]) };
  } catch {
    return { cpuUs: 0, systemUs: 0, minorFaults: 0 };
  }
}

/** utime + stime of `pid` (all threads), µs; 0 when it is gone. */
const processCpu = (pid: number): number => processUse(pid).cpuUs;

/** CPU of every process named `postgres` (server, backends, WAL writer...), µs, by pid. */
function postgresCpu(): Map<number, number> {
  const result = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "postgres")
        result.set(Number(entry), processCpu(Number(entry)));
    } catch {}
  }
  return result;
}

/** Busy, steal and total jiffies of the whole machine. */
function machine(): { busy: number; steal: number; total: number } {
  const [, ...values] = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = values.map(Number);
  return {
    busy: user + nice + system + irq + softirq,
    steal,
    total: user + nice + system + idle + iowait + irq + softirq + steal,
  };
}

/** Cores used during a run, each as CPU seconds per wall second. */
export interface CpuUse {
  /** The process under test. */
  target: number;
  /** All postgres processes (ours and any others on the machine). */
  postgres: number;
  /** The load generator (wrk), filled in from its own report. */
  loadgen: number;
  /** Share of the machine's CPU time busy, and stolen by the hypervisor (0–1). */
  machineBusy: number;
  steal: number;
}

/** Starts measuring; the returned function ends the measurement. */
export function cpuMeter(targetPid: number): () => Omit<CpuUse, "loadgen"> {
  const t0 = performance.now();
  const target0 = processCpu(targetPid);
  const pg0 = postgresCpu();
  const m0 = machine();
  return () => {
    const wallUs = (performance.now() - t0) * 1000;
    let pg = 0;
    for (const [pid, us] of postgresCpu()) pg += us - (pg0.get(pid) ?? 0);
    const m1 = machine();
    const total = m1.total - m0.total || 1;
    return {
      target: (processCpu(targetPid) - target0) / wallUs,
      postgres: pg / wallUs,
      machineBusy: (m1.busy - m0.busy) / total,
      steal: (m1.steal - m0.steal) / total,
    };
  };
}
