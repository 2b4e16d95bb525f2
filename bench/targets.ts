/** The processes the throughput benchmarks compare: the service and its peers, each started fresh on demand. */
import { type Child, freePort, type Stack, spawnBun, spawnServer, type Workload, waitForStatus } from "./lib.ts";

/** A server the benchmark can start, measure and stop; `start` resolves once it answers GET /users/1. */
export interface Target {
  name: string;
  /** What it is, for the report. */
  what: string;
  /** The workloads it is measured on; all of the plan's when absent. */
  workloads?: Workload[];
  start(): Promise<Child>;
}

/** Starts `spawn(port)` and waits until it serves a seeded user. */
async function ready(spawn: (port: number) => Child): Promise<Child> {
  const child = spawn(await freePort());
  await waitForStatus(child, "/users/1", [200]);
  return child;
}

/** The service as operators run it (`bun src/index.ts`, etcd source) at `LOG_LEVEL=warn`, every feature on. */
export const serviceTarget = (stack: Stack, name = "service", level = "warn"): Target => ({
  name,
  what: `this service, \`bun src/index.ts\`, LOG_LEVEL=${level}, etcd source`,
  start: () => ready((port) => spawnBun(name, ["src/index.ts"], stack.serviceEnv(level, port), stack.logDir)),
});

/** The bare reference: Hono on Bun with postgres.js and the same two queries, nothing else (bench/baseline.ts). */
export const honoTarget = (stack: Stack): Target => ({
  name: "hono",
  what: "bare Hono + postgres.js on Bun (bench/baseline.ts): no validation, gate, metrics, log or request id",
  start: () =>
    ready((port) =>
      spawnBun("hono", ["bench/baseline.ts"], { DATABASE_URL: stack.url, PORT: String(port) }, stack.logDir),
    ),
});

/**
 * The bare reference with its insert in a transaction (`sql.begin`): what any write that can still be rolled
 * back at its deadline costs, as the service's writes can (a 503 means not done). Measured on writes only.
 */
export const honoTransactionTarget = (stack: Stack): Target => ({
  name: "hono-tx",
  what: "bench/baseline.ts with WRITE_TRANSACTION=1: the same bare Hono app, its insert in `sql.begin`",
  workloads: ["write"],
  start: () =>
    ready((port) =>
      spawnBun(
        "hono-tx",
        ["bench/baseline.ts"],
        { DATABASE_URL: stack.url, PORT: String(port), WRITE_TRANSACTION: "1" },
        stack.logDir,
      ),
    ),
});

/** Elysia on Bun with postgres.js and `t` schemas (bench/peers/elysia.ts). */
export const elysiaTarget = (stack: Stack): Target => ({
  name: "elysia",
  what: "Elysia + postgres.js on Bun, `t` schemas (bench/peers/elysia.ts)",
  start: () =>
    ready((port) =>
      spawnBun("elysia", ["bench/peers/elysia.ts"], { DATABASE_URL: stack.url, PORT: String(port) }, stack.logDir),
    ),
});

/** Fastify 5 on Node with pg and JSON schemas (bench/peers/fastify-pg.mjs). */
export const fastifyTarget = (stack: Stack): Target => ({
  name: "fastify",
  what: `Fastify + pg on Node ${nodeVersion()}, JSON schemas (bench/peers/fastify-pg.mjs)`,
  start: () =>
    ready((port) =>
      spawnServer(
        "fastify",
        ["node", "bench/peers/fastify-pg.mjs"],
        { DATABASE_URL: stack.url, PORT: String(port) },
        stack.logDir,
      ),
    ),
});

/** The rungs of bench/variants.ts, each adding one layer of the service to the one before. */
export const VARIANTS = ["holder", "openapi", "observe", "gate"];

/** The service's request path rebuilt up to one layer (bench/variants.ts, VARIANT=`name`). */
export const variantTarget = (stack: Stack, name: string): Target => ({
  name,
  what: `bench/variants.ts VARIANT=${name}`,
  start: () =>
    ready((port) =>
      spawnBun(
        name,
        ["bench/variants.ts"],
        { DATABASE_URL: stack.url, PORT: String(port), VARIANT: name, LOG_LEVEL: "warn" },
        stack.logDir,
      ),
    ),
});

/** The targets a name given on the command line or in BENCH_PAIR may mean. */
export function namedTarget(stack: Stack, name: string): Target {
  const known: Record<string, (stack: Stack) => Target> = {
    service: serviceTarget,
    hono: honoTarget,
    elysia: elysiaTarget,
    fastify: fastifyTarget,
  };
  const target = known[name];
  if (target) return target(stack);
  if (VARIANTS.includes(name)) return variantTarget(stack, name);
  throw new Error(`unknown target ${name}: one of ${[...Object.keys(known), ...VARIANTS].join(", ")}`);
}

function nodeVersion(): string {
  return Bun.spawnSync(["node", "--version"]).stdout.toString().trim();
}
