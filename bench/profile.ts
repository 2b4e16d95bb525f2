/**
 * `bun bench/profile.ts [read|write]`: CPU profiles (bun --cpu-prof-md) of the
 * service and then of the baseline, each under 3 s of warm-up and
 * PROFILE_SECONDS (10) of load, each stopped right after its run. Prints each
 * profile's samples by package or file; the profiles are kept in
 * bench/out/profile/ (their "Hot Functions" tables name the functions).
 * Idle time is sampled too and lands in whatever frame was last on the stack
 * (e.g. `abort` or postgres' queue `push`), so read shares, not absolutes.
 */
import { mkdirSync, readFileSync } from "node:fs";
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
  type Workload,
  waitForStatus,
} from "./lib.ts";
import { wrk } from "./wrk.ts";

const workload = (process.argv[2] ?? "read") as Workload;
const SECONDS = knob("PROFILE_SECONDS", 10);
const DIR = join(process.env.BENCH_OUT ?? join(ROOT, "bench/out"), "profile");
const profileArgs = (name: string) => ["--cpu-prof-md", `--cpu-prof-dir=${DIR}`, `--cpu-prof-name=${name}.md`];

/** Self-time share (%) of each package (node_modules/<pkg>) or file of a --cpu-prof-md profile. */
function shareByPackage(path: string): Map<string, number> {
  const text = readFileSync(path, "utf8");
  const shares = new Map<string, number>();
  for (const match of text.slice(text.indexOf("## Files")).matchAll(/^\|\s*([\d.]+)%\s*\|[^|]*\|\s*`([^`]*)`/gm)) {
    const [, share, file = ""] = match;
    const key = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ?? file.replace(ROOT, "");
    shares.set(key, (shares.get(key) ?? 0) + Number(share));
  }
  return shares;
}

async function profiled(target: Child): Promise<void> {
  const options = (seconds: number, run: string) => ({ seconds, connections: CONNECTIONS, workload, run });
  await wrk(target.url, options(3, `${target.name}-warmup`));
  const run = await wrk(target.url, options(SECONDS, target.name));
  log(`${target.name}: ${fmt(run.rps, 0)} req/s while profiled`);
  await target.stop();
}

await runMain(async () => {
  mkdirSync(DIR, { recursive: true });
  const { url, logDir, service } = await startStack(profileArgs(`service-${workload}`));
  await profiled(service);
  const env = { DATABASE_URL: url, PORT: String(await freePort()) };
  const baseline = spawnBun("baseline", [...profileArgs(`baseline-${workload}`), "bench/baseline.ts"], env, logDir);
  await waitForStatus(baseline, "/users/1", [200]);
  await profiled(baseline);
  const s = shareByPackage(join(DIR, `service-${workload}.md`));
  const b = shareByPackage(join(DIR, `baseline-${workload}.md`));
  const keys = [...new Set([...s.keys(), ...b.keys()])].sort((x, y) => (s.get(y) ?? 0) - (s.get(x) ?? 0));
  const rows = keys
    .map((k) => [`\`${k}\``, fmt(s.get(k) ?? 0, 1), fmt(b.get(k) ?? 0, 1)])
    .filter((r) => r[1] !== "0.0" || r[2] !== "0.0");
  console.log(
    `### Share of samples by package or file, ${workload} (%)\n\n${table(["package or file", "service", "baseline"], rows)}\n\nProfiles: ${DIR}/{service,baseline}-${workload}.md`,
  );
});
