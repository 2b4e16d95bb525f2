/**
 * `npm run bench:fleet`: a fleet of service instances on a 3-member etcd, behind one PgBouncer in
 * transaction pooling, measured: fleet-wide propagation of toggles, `maint on/off --wait`, an
 * instance killed mid-drain, an etcd member killed, and what the fleet costs etcd. See bench/README.md.
 *
 * Knobs (environment): FLEET_INSTANCES (12), FLEET_TOGGLES (20 on/off pairs), FLEET_CLI_RUNS (3),
 * FLEET_MEMBER_TOGGLES (10 pairs after a member is killed), FLEET_BASELINE_SECONDS (10),
 * FLEET_IDLE_SECONDS (30), FLEET_POLL_GAP_MS (5), FLEET_PROBE_WRITES (2000), FLEET_DIRECT (1: instances connect to PostgreSQL
 * directly, no PgBouncer), BENCH_OUT (bench/out).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Etcd3, type Watcher } from "etcd3";
import { assess, type WaitTarget } from "../src/cli/fleet-wait.ts";
import type { Acknowledgement } from "../src/maintenance/fleet.ts";
import { TestEtcdCluster } from "../tests/helpers/etcd-cluster.ts";
import { type FleetInstance, startFleet, stopFleet } from "../tests/helpers/fleet.ts";
import { runMaint, spawnMaint } from "../tests/helpers/maint.ts";
import { lockUsersTable } from "../tests/helpers/maintenance.ts";
import { createTestDatabase, TEST_DATABASE_URL } from "../tests/helpers/postgres.ts";
import { exported, ratePerSecond, type Scrape, scrape, total } from "./etcd-metrics.ts";
import { commandOutput, fmt, knob, log, median, onCleanup, percentile, ROOT, runMain, table } from "./lib.ts";
import { startPgBouncer } from "./pgbouncer.ts";

const INSTANCES = knob("FLEET_INSTANCES", 12);
const TOGGLES = knob("FLEET_TOGGLES", 20);
const CLI_RUNS = knob("FLEET_CLI_RUNS", 3);
const MEMBER_TOGGLES = knob("FLEET_MEMBER_TOGGLES", 10);
const BASELINE_SECONDS = knob("FLEET_BASELINE_SECONDS", 10);
const IDLE_SECONDS = knob("FLEET_IDLE_SECONDS", 30);
const POLL_GAP_MS = knob("FLEET_POLL_GAP_MS", 5);
const PROBE_WRITES = knob("FLEET_PROBE_WRITES", 2000);
const PROBE_IN_FLIGHT = 50;
const DIRECT = process.env.FLEET_DIRECT === "1";
const OUT = process.env.BENCH_OUT ?? join(ROOT, "bench/out");

const KEY = "/maintenance/database-service";
const ON_VALUE = '{"mode":"full"}';
/** Longest any single step may take before the run is declared broken (a hang, not a measurement). */
const STEP_LIMIT_MS = 60_000;

/**
 * Every acknowledgement, kept current by one watch (no polling of etcd), so waiting for the fleet
 * to settle between toggles adds one watcher to etcd's load and no reads.
 */
class AcknowledgementView {
  readonly acks = new Map<string, Acknowledgement>();
  private watcher: Watcher | undefined;

  constructor(private readonly client: Etcd3) {}

  async start(): Promise<void> {
    const prefix = `${KEY}/instances/`;
    const response = await this.client.getAll().prefix(prefix).exec();
    for (const kv of response.kvs) this.take(kv.value.toString());
    this.watcher = await this.client
      .watch()
      .prefix(prefix)
      .startRevision(String(Number(response.header.revision) + 1))
      .create();
    this.watcher.on("put", (kv) => this.take(kv.value.toString()));
    this.watcher.on("delete", (kv) => this.acks.delete(kv.key.toString().slice(prefix.length)));
  }

  /** Resolves once no instance in the view is behind `target`; throws after STEP_LIMIT_MS. */
  async settled(target: WaitTarget): Promise<void> {
    const started = performance.now();
    for (;;) {
      const entries = [...this.acks.values()].map((ack) => ({ name: ack.instance, ack, problem: null }));
      if (entries.length > 0 && assess(entries, target).length === 0) return;
      if (performance.now() - started > STEP_LIMIT_MS)
        throw new Error(`the fleet did not settle: ${JSON.stringify(target)}`);
      await Bun.sleep(10);
    }
  }

  async stop(): Promise<void> {
    await this.watcher?.cancel();
  }

  private take(raw: string): void {
    const ack = JSON.parse(raw) as Acknowledgement;
    this.acks.set(ack.instance, ack);
  }
}

/** Polls `GET url` every POLL_GAP_MS until it answers `want`; resolves with ms since `since`. */
async function answers(url: string, want: (status: number) => boolean, since: number): Promise<number> {
  for (;;) {
    const status = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      async (r) => {
        await r.arrayBuffer();
        return r.status;
      },
      () => 0,
    );
    const now = performance.now();
    if (want(status)) return now - since;
    if (now - since > STEP_LIMIT_MS) throw new Error(`${url} never answered as wanted (last ${status})`);
    await Bun.sleep(POLL_GAP_MS);
  }
}

/** One toggle: the write's own latency, and when each instance answered as wanted, from the write's return. */
interface Toggle {
  /** performance.now() when the write returned. */
  writtenAt: number;
  putMs: number;
  perInstanceMs: number[];
  fleetMs: number;
}

const stats = (values: number[]) =>
  `${fmt(percentile(values, 50))} / ${fmt(percentile(values, 99))} / ${fmt(Math.max(...values))}`;

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const cluster = await TestEtcdCluster.start();
  onCleanup("etcd cluster", () => cluster.stop());
  const endpoints = cluster.endpoints.split(",");
  const client = new Etcd3({ hosts: endpoints });
  onCleanup("etcd client", () => client.close());
  log(`etcd cluster: ${cluster.endpoints}`);

  log(`baseline: etcd with no instance for ${BASELINE_SECONDS} s`);
  const baseline0 = await scrape(endpoints);
  await Bun.sleep(BASELINE_SECONDS * 1000);
  const baseline1 = await scrape(endpoints);

  const db = await createTestDatabase("bench_fleet");
  onCleanup(`database ${db.name}`, () => db.drop());
  const direct = new URL(TEST_DATABASE_URL);
  let databaseUrl = `${db.url}?sslmode=disable`;
  let poolerEnv: Record<string, string> = {};
  if (!DIRECT) {
    const bouncer = await startPgBouncer(direct.hostname, Number(direct.port || 5432), direct.username || "postgres");
    databaseUrl = bouncer.through(databaseUrl);
    poolerEnv = { DB_POOLER: "pgbouncer" };
  }

  log(`starting ${INSTANCES} instances (${DIRECT ? "PostgreSQL directly" : "through PgBouncer"})`);
  const fleet = await startFleet(INSTANCES, () => ({
    DATABASE_URL: databaseUrl,
    ...poolerEnv,
    // Every member to every instance: etcd3 picks one (it shuffles), and moves on when it dies.
    ETCD_ENDPOINTS: cluster.endpoints,
    MAINTENANCE_KEY: KEY,
    LOG_LEVEL: "warn",
  }));
  onCleanup("fleet", () => stopFleet(fleet));
  const [{ id: userId }] =
    (await db.sql`INSERT INTO users (name, email) VALUES ('Fleet', 'fleet@example.com') RETURNING id`) as unknown as [
      { id: number },
    ];
  const view = new AcknowledgementView(client);
  await view.start();
  onCleanup("acknowledgement watch", () => view.stop());
  await waitUntil(`${INSTANCES} acknowledgements`, () => view.acks.size === INSTANCES);
  await view.settled({ goal: "off", field: "revision", revision: null });
  const url = ({ service }: FleetInstance) => `${service.baseUrl}/users/${userId}`;
  // The default keys, as deployed: each instance follows its service key and the fleet key.
  const maintEnv = { ETCD_ENDPOINTS: cluster.endpoints, MAINTENANCE_KEY: KEY };

  log(`idle: the fleet following etcd for ${IDLE_SECONDS} s`);
  const idle0 = await scrape(endpoints);
  await Bun.sleep(IDLE_SECONDS * 1000);
  const idle1 = await scrape(endpoints);
  const leases = commandOutput(["etcdctl", `--endpoints=${cluster.endpoints}`, "lease", "list"])
    .split("\n")
    .filter((line) => /^[0-9a-f]+$/.test(line.trim())).length;

  /** Writes on or off with the bench's client, polls every instance until it answers so, then waits for the acks. */
  async function toggle(on: boolean, instances: FleetInstance[]): Promise<Toggle> {
    const started = performance.now();
    const response = on ? await client.put(KEY).value(ON_VALUE).exec() : await client.delete().key(KEY).exec();
    const written = performance.now();
    const want = on ? (status: number) => status === 503 : (status: number) => status === 200;
    const perInstanceMs = await Promise.all(instances.map((instance) => answers(url(instance), want, written)));
    const revision = Number(response.header.revision);
    await view.settled({ goal: on ? "on" : "off", field: "revision", revision });
    return { writtenAt: written, putMs: written - started, perInstanceMs, fleetMs: Math.max(...perInstanceMs) };
  }

  log(`${TOGGLES} toggle pairs, put → every instance answering 503 / 200`);
  const toggles0 = await scrape(endpoints);
  const ons: Toggle[] = [];
  const offs: Toggle[] = [];
  for (let i = 0; i < TOGGLES; i++) {
    ons.push(await toggle(true, fleet));
    offs.push(await toggle(false, fleet));
  }
  const toggles1 = await scrape(endpoints);

  log(`${CLI_RUNS} runs of maint on --wait / off --wait`);
  const startup = performance.now();
  await runMaint(["--help"], maintEnv);
  const startupMs = performance.now() - startup;
  const cliOn: number[] = [];
  const cliOff: number[] = [];
  let confirmed = 0;
  let checked = 0;
  for (let i = 0; i < CLI_RUNS; i++) {
    for (const on of [true, false]) {
      const began = performance.now();
      const run = await runMaint([on ? "on" : "off", "--wait", "--timeout", "60s"], maintEnv);
      (on ? cliOn : cliOff).push(performance.now() - began);
      if (run.code !== 0) throw new Error(`maint ${on ? "on" : "off"} --wait exited ${run.code}: ${run.stderr}`);
      // At its return every instance must already be there: read each one's answer at once.
      const statuses = await Promise.all(fleet.map((instance) => fetch(url(instance)).then((r) => r.status)));
      checked += statuses.length;
      confirmed += statuses.filter((status) => status === (on ? 503 : 200)).length;
    }
  }

  log("an instance killed with SIGKILL mid-drain");
  const victim = fleet[fleet.length - 1] as FleetInstance;
  const lock = await lockUsersTable(`${db.url}?sslmode=disable`);
  onCleanup("users table lock", () => lock.release());
  const held = fetch(url(victim)).catch(() => null);
  await waitUntil("a query held by the lock", async () => {
    const [row] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = ${db.name}`;
    return (row?.n ?? 0) >= 1;
  });
  const waiting = spawnMaint(["on", "--wait", "--timeout", "60s"], maintEnv);
  await waitUntil("the victim to be draining", () => view.acks.get(victim.name)?.phase === "entering");
  victim.service.proc.kill("SIGKILL");
  const killedAt = performance.now();
  await victim.service.exited;
  const killCode = await waiting.exited;
  const namedAfterMs = performance.now() - killedAt;
  const named = killCode === 1 && waiting.stderr().includes(`left before it was drained: ${victim.name}`);
  await lock.release();
  await held;
  const survivors = fleet.filter((instance) => instance !== victim);
  const offAfterKill = await runMaint(["off", "--wait", "--timeout", "60s"], maintEnv);
  if (offAfterKill.code !== 0) throw new Error(`maint off --wait after the kill: ${offAfterKill.stderr}`);

  log("the etcd member serving the most watch streams, killed");
  const members = Array.from({ length: cluster.size }, (_, i) => i);
  const usage = await Promise.all(members.map((i) => cluster.watchStreams(i)));
  const busiest = usage.indexOf(Math.max(...usage));
  await cluster.kill(busiest);
  const memberKilledAt = performance.now();
  const first = await toggle(true, survivors);
  const convergedFromKillMs = first.writtenAt + first.fleetMs - memberKilledAt;
  const afterKillOns: Toggle[] = [first];
  const afterKillOffs: Toggle[] = [await toggle(false, survivors)];
  for (let i = 1; i < MEMBER_TOGGLES; i++) {
    afterKillOns.push(await toggle(true, survivors));
    afterKillOffs.push(await toggle(false, survivors));
  }
  const usageAfter = await Promise.all(members.map((i) => cluster.watchStreams(i)));
  await cluster.resume(busiest);

  log(`etcd's write throughput: ${PROBE_WRITES} acknowledgement-sized puts, ${PROBE_IN_FLIGHT} in flight`);
  const probeValue = JSON.stringify([...view.acks.values()][0] ?? {});
  const probeStarted = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: PROBE_IN_FLIGHT }, async () => {
      while (next < PROBE_WRITES) await client.put(`/bench/probe/${next++}`).value(probeValue);
    }),
  );
  const writesPerSecond = PROBE_WRITES / ((performance.now() - probeStarted) / 1000);
  await client.delete().prefix("/bench/probe/");

  // etcd's cost, from its own metrics.
  const idleRate = (name: string, labels: Record<string, string> = {}) =>
    ratePerSecond(idle0, idle1, name, labels) - ratePerSecond(baseline0, baseline1, name, labels);
  const perToggle = (name: string, labels: Record<string, string> = {}) =>
    (total(toggles1, name, labels) - total(toggles0, name, labels)) / (2 * TOGGLES);
  const gauge = (s: Scrape, name: string) => total(s, name);
  const keepalive = { grpc_method: "LeaseKeepAlive" };
  const required = [
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_watch_stream_total",
    "etcd_debugging_mvcc_events_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_granted_total",
    "grpc_server_msg_received_total",
    "grpc_server_handled_total",
    "etcd_server_proposals_committed_total",
    "process_cpu_seconds_total",
    "etcd_network_client_grpc_received_bytes_total",
  ];
  const missing = required.filter((name) => !exported(idle1, name));
  const n = INSTANCES;
  const cpuIdle = idleRate("process_cpu_seconds_total") * 100;
  const rows: (string | number)[][] = [
    [
      "fleet",
      `${n} instances, 3 etcd members, ${DIRECT ? "PostgreSQL directly (FLEET_DIRECT=1)" : "one PgBouncer 1.18, transaction pooling"}`,
    ],
    [
      "watch streams per etcd member before the kill (m0 / m1 / m2; one per instance, one the bench's)",
      usage.join(" / "),
    ],
    [
      `put → every instance answers 503, ms from the put's return (p50 / p99 / max, ${TOGGLES} toggles)`,
      stats(ons.map((t) => t.fleetMs)),
    ],
    [
      `delete → every instance answers 200, ms (p50 / p99 / max, ${TOGGLES} toggles)`,
      stats(offs.map((t) => t.fleetMs)),
    ],
    [
      "put → one instance answers 503, ms (p50 / p99 / max over all instances and toggles)",
      stats(ons.flatMap((t) => t.perInstanceMs)),
    ],
    ["the put itself (etcd write, 3 members), ms (p50 / p99 / max)", stats([...ons, ...offs].map((t) => t.putMs))],
    [
      `\`maint on --wait\`, wall time incl. process start, ms (p50 / max, ${CLI_RUNS} runs)`,
      `${fmt(median(cliOn), 0)} / ${fmt(Math.max(...cliOn), 0)}`,
    ],
    [
      `\`maint off --wait\`, ms (p50 / max, ${CLI_RUNS} runs)`,
      `${fmt(median(cliOff), 0)} / ${fmt(Math.max(...cliOff), 0)}`,
    ],
    ["`maint --help` (the process start alone), ms", fmt(startupMs, 0)],
    ["instances already there when `--wait` returned", `${confirmed} of ${checked}`],
    [
      "SIGKILL mid-drain → `maint on --wait` exits 1 naming it, s after the kill (ack lease 10 s)",
      `${fmt(namedAfterMs / 1000)} (exit ${killCode}, named: ${named ? "yes" : "no"})`,
    ],
    [
      `member m${busiest} (${usage[busiest]} watch streams) killed → first toggle reaches all ${survivors.length}, ms from the put / from the kill`,
      `${fmt(first.fleetMs)} / ${fmt(convergedFromKillMs)}`,
    ],
    [
      `after the kill: put → all answer 503 / 200, ms (p50 / p99 / max, ${MEMBER_TOGGLES} each)`,
      `${stats(afterKillOns.map((t) => t.fleetMs))} — ${stats(afterKillOffs.map((t) => t.fleetMs))}`,
    ],
    ["watch streams per member after the kill", usageAfter.join(" / ")],
    [
      "etcd watchers (gauge, all members): no fleet → fleet",
      `${gauge(baseline1, "etcd_debugging_mvcc_watcher_total")} → ${gauge(idle1, "etcd_debugging_mvcc_watcher_total")}`,
    ],
    [
      "etcd watch streams: no fleet → fleet",
      `${gauge(baseline1, "etcd_debugging_mvcc_watch_stream_total")} → ${gauge(idle1, "etcd_debugging_mvcc_watch_stream_total")}`,
    ],
    ["live leases (`etcdctl lease list`), with the fleet", leases],
    ["lease keep-alives received /s (fleet − no fleet)", fmt(idleRate("grpc_server_msg_received_total", keepalive), 2)],
    ["leases renewed /s (etcd_debugging_lease_renewed_total)", fmt(idleRate("etcd_debugging_lease_renewed_total"), 2)],
    ["Range calls /s, idle", fmt(idleRate("grpc_server_handled_total", { grpc_method: "Range" }), 2)],
    [
      "Put + Txn calls /s, idle",
      fmt(
        idleRate("grpc_server_handled_total", { grpc_method: "Put" }) +
          idleRate("grpc_server_handled_total", { grpc_method: "Txn" }),
        2,
      ),
    ],
    // A gauge of the committed index on each member: the sum over three members counts each proposal three times.
    ["raft proposals committed /s, idle", fmt(idleRate("etcd_server_proposals_committed_total") / 3, 2)],
    ["etcd CPU, idle (3 members, fleet − no fleet), % of a core", fmt(cpuIdle, 2)],
    ["client bytes received /s, idle", fmt(idleRate("etcd_network_client_grpc_received_bytes_total"), 0)],
    [
      "per toggle (half a pair): Put + Txn calls, all / per instance",
      `${fmt(perToggle("grpc_server_handled_total", { grpc_method: "Put" }) + perToggle("grpc_server_handled_total", { grpc_method: "Txn" }), 1)} / ${fmt((perToggle("grpc_server_handled_total", { grpc_method: "Put" }) + perToggle("grpc_server_handled_total", { grpc_method: "Txn" })) / n, 2)}`,
    ],
    ["per toggle: raft proposals committed", fmt(perToggle("etcd_server_proposals_committed_total") / 3, 1)],
    [
      "per toggle: watch events sent (incl. the bench's own ack watch)",
      fmt(perToggle("etcd_debugging_mvcc_events_total"), 1),
    ],
    ["per toggle: etcd CPU, ms (3 members)", fmt(perToggle("process_cpu_seconds_total") * 1000, 1)],
  ];
  rows.push([
    `etcd write throughput on this machine: ${PROBE_WRITES} puts of ${probeValue.length} bytes, ${PROBE_IN_FLIGHT} in flight, /s`,
    fmt(writesPerSecond, 0),
  ]);
  if (missing.length > 0) rows.push(["metrics this etcd does not export", missing.join(", ")]);
  const report = [
    `Fleet run of ${new Date().toISOString()} (${commandOutput(["etcd", "--version"]).split("\n")[0]}, bun ${Bun.version})`,
    "",
    table(["measure", "value"], rows),
  ].join("\n");
  console.log(report);
  writeFileSync(join(OUT, "fleet.md"), `${report}\n`);
}

/** Polls `check` every 10 ms until true; throws after STEP_LIMIT_MS naming `what`. */
async function waitUntil(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > STEP_LIMIT_MS) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

await runMain(main);
