/**
 * Hold mode through a short maintenance: what clients see, not throughput. For each scenario a fresh
 * service process (`bun src/index.ts`) serves HOLD_CLIENTS (32) clients over HTTP, each alternating
 * `POST /users` and `GET /users/{its last id}`; `etcdctl put` of `{"mode":"full","hold_ms":5000}`
 * turns maintenance on for HOLD_MAINTENANCE_MS (2000) ms, then `false` turns it off. Printed per
 * scenario: the answers by method and status, latency percentiles of all requests and of the held
 * ones, the service's hold outcomes (/stats), and whether every acknowledged write is in the table
 * exactly once. Scenarios: MAINTENANCE_HOLD_MAX 256 (all held) and 16 (half of the clients overflow).
 * Run by hand: `bun bench/hold.ts`.
 */
import { HELD_HEADER } from "../src/maintenance/gate.ts";
import { type HoldRun, runThroughMaintenance } from "../tests/helpers/hold-load.ts";
import { waitFor } from "../tests/helpers/wait.ts";
import {
  type Child,
  fmt,
  freePort,
  knob,
  log,
  percentile,
  runMain,
  type Stack,
  spawnBun,
  startStack,
  table,
  waitForStatus,
} from "./lib.ts";

const CLIENTS = knob("HOLD_CLIENTS", 32);
const MAINTENANCE_MS = knob("HOLD_MAINTENANCE_MS", 2000);
const KEY = "/maintenance/database-service";
const ON = '{"mode":"full","hold_ms":5000}';

interface Scenario {
  name: string;
  holdMax: number;
}

const SCENARIOS: Scenario[] = [
  { name: "all held", holdMax: 256 },
  { name: "overflow", holdMax: Math.floor(CLIENTS / 2) },
];

/** `/health`'s maintenance flag, polled until it is `enabled`. */
async function maintenanceIs(child: Child, enabled: boolean): Promise<void> {
  await waitFor(`maintenance ${enabled ? "on" : "off"}`, async () => {
    const health = (await (await fetch(`${child.url}/health`)).json()) as { maintenance: boolean };
    return health.maintenance === enabled;
  });
}

async function runScenario(stack: Stack, scenario: Scenario): Promise<string> {
  const port = await freePort();
  const env = { ...stack.serviceEnv("warn", port), MAINTENANCE_HOLD_MAX: String(scenario.holdMax) };
  const child = spawnBun(`service-hold-${scenario.holdMax}`, ["src/index.ts"], env, stack.logDir);
  await waitForStatus(child, "/health", [200]);
  const tag = `hold-${scenario.holdMax}`;
  log(
    `${scenario.name}: ${CLIENTS} clients, MAINTENANCE_HOLD_MAX ${scenario.holdMax}, ${MAINTENANCE_MS} ms maintenance`,
  );
  const run = await runThroughMaintenance({
    app: { request: (path, init) => fetch(`${child.url}${path}`, init) },
    clients: CLIENTS,
    tag,
    maintenanceMs: MAINTENANCE_MS,
    turnOn: async () => {
      await stack.etcd.etcdctl("put", KEY, ON);
      await maintenanceIs(child, true);
    },
    turnOff: async () => {
      await stack.etcd.etcdctl("put", KEY, "false");
      await maintenanceIs(child, false);
    },
  });
  const stats = (await (await fetch(`${child.url}/stats`)).json()) as { http: { hold_outcomes: object } };
  const exactlyOnce = await writesExactlyOnce(stack, run, tag);
  await child.stop();
  return [
    `## ${scenario.name}: ${CLIENTS} clients, MAINTENANCE_HOLD_MAX ${scenario.holdMax}, maintenance on for ${fmt(run.maintenanceMs, 0)} ms`,
    "",
    answersTable(run),
    "",
    latencyTable(run),
    "",
    `hold outcomes (/stats): ${JSON.stringify(stats.http.hold_outcomes)}`,
    `every acknowledged write in the table exactly once, and no other: ${exactlyOnce}`,
  ].join("\n");
}

function answersTable(run: HoldRun): string {
  const counts = new Map<string, { count: number; held: number }>();
  for (const answer of run.answers) {
    const key = `${answer.method} ${answer.status}`;
    const entry = counts.get(key) ?? { count: 0, held: 0 };
    entry.count++;
    if (answer.heldMs !== null) entry.held++;
    counts.set(key, entry);
  }
  const rows = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([key, c]) => [key, c.count, c.held]);
  return table(["answer", "count", `with ${HELD_HEADER}`], rows);
}

function latencyTable(run: HoldRun): string {
  const held = run.answers.filter((a) => a.heldMs !== null);
  const row = (name: string, values: number[]) => [
    name,
    values.length,
    ...[50, 90, 99, 100].map((p) => fmt(percentile(values, p))),
  ];
  return table(
    ["requests", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"],
    [
      row(
        "all",
        run.answers.map((a) => a.ms),
      ),
      row(
        "held: latency",
        held.map((a) => a.ms),
      ),
      row(
        `held: ${HELD_HEADER}`,
        held.map((a) => a.heldMs as number),
      ),
      row(
        "not held",
        run.answers.filter((a) => a.heldMs === null).map((a) => a.ms),
      ),
    ],
  );
}

/** Whether the rows written under `tag` are exactly the writes answered 201. */
async function writesExactlyOnce(stack: Stack, run: HoldRun, tag: string): Promise<boolean> {
  const rows = await stack.db.sql<{ id: number; email: string }[]>`
    SELECT id, email FROM users WHERE email LIKE ${`${tag}-%`}`;
  const stored = new Set(rows.map((r) => `${r.id} ${r.email}`));
  const acknowledged = run.answers.filter((a) => a.method === "POST" && a.status === 201);
  return rows.length === acknowledged.length && acknowledged.every((a) => stored.has(`${a.id} ${a.email}`));
}

await runMain(async () => {
  const stack = await startStack();
  // Each scenario starts its own service with its hold limit; the stack's own is not needed.
  await stack.service.stop();
  const sections: string[] = [];
  for (const scenario of SCENARIOS) sections.push(await runScenario(stack, scenario));
  console.log(`# Hold mode through a ${MAINTENANCE_MS} ms maintenance\n\n${sections.join("\n\n")}`);
});
