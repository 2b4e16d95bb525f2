import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { TestEtcdCluster } from "../helpers/etcd-cluster.ts";
import { acknowledgements, type FleetInstance, startFleet, stopFleet } from "../helpers/fleet.ts";
import { runMaint, spawnMaint, writtenRevision } from "../helpers/maint.ts";
import { lockUsersTable, type TableLock, waitForLockWaiters } from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { waitFor } from "../helpers/wait.ts";

const KEY = "/maintenance/fleet-test";
const INSTANCES = 4;

let cluster: TestEtcdCluster;
let database: TestDatabase;
let client: Etcd3;
let fleet: FleetInstance[] = [];
let userId = 0;
let lock: TableLock | undefined;

const maintEnv = () => ({ ETCD_ENDPOINTS: cluster.endpoints, MAINTENANCE_KEY: KEY, MAINTENANCE_GLOBAL_KEY: "" });
const maint = (...args: string[]) => runMaint(args, maintEnv());
const acks = () => acknowledgements(client, KEY);
const running = () => fleet.filter(({ service }) => !service.proc.killed && service.proc.exitCode === null);

/** The status `GET /users/{id}` answers on each running instance now. */
const statuses = () =>
  Promise.all(running().map(async ({ service }) => (await fetch(`${service.baseUrl}/users/${userId}`)).status));

/** A `GET /users/{id}` to `instance`, to be held by the table lock; resolves with its status, or the error's name. */
const heldRequest = ({ service }: FleetInstance) =>
  fetch(`${service.baseUrl}/users/${userId}`).then(
    (r) => r.status,
    (error: Error) => error.name,
  );

beforeAll(async () => {
  [cluster, database] = await Promise.all([TestEtcdCluster.start(), createTestDatabase("fleet")]);
  client = new Etcd3({ hosts: cluster.endpoints.split(",") });
  // Every instance gets every member: etcd3 picks one itself, and moves when it dies.
  fleet = await startFleet(INSTANCES, () => ({
    DATABASE_URL: database.url,
    ETCD_ENDPOINTS: cluster.endpoints,
    MAINTENANCE_KEY: KEY,
    MAINTENANCE_GLOBAL_KEY: "",
    LOG_LEVEL: "warn",
  }));
  await waitFor(`${INSTANCES} acknowledgements`, async () => (await acks()).size === INSTANCES, 10_000);
  const created = await fetch(`${fleet[0]?.service.baseUrl}/users`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "Held", email: "held@example.com" }),
  });
  expect(created.status).toBe(201);
  userId = ((await created.json()) as { id: number }).id;
}, 90_000);

afterAll(async () => {
  await lock?.release();
  await stopFleet(fleet);
  client?.close();
  await cluster?.stop();
  await database?.drop();
}, 30_000);

describe(`a fleet of ${INSTANCES} instances on a 3-member etcd`, () => {
  test("`maint on --wait` returns only once every instance drained, the last one after its held request ended", async () => {
    const [first] = fleet as [FleetInstance];
    lock = await lockUsersTable(database.url);
    const held = heldRequest(first);
    await waitForLockWaiters(database.sql, "database-service:", 1);

    const cli = spawnMaint(["on", "--wait", "--timeout", "60s"], maintEnv());
    await waitFor(
      "the first instance to be draining",
      async () => (await acks()).get(first.name)?.phase === "entering",
    );
    expect(cli.proc.exitCode).toBeNull();
    const releasedAt = performance.now();
    await lock.release();
    const code = await cli.exited;
    const exitedAt = performance.now();

    expect({ code, stderr: cli.stderr() }).toEqual({ code: 0, stderr: "" });
    expect(exitedAt).toBeGreaterThan(releasedAt);
    expect(await held).toBe(200);
    expect(cli.stdout()).toContain(`all ${INSTANCES} instances drained after`);
    const revision = writtenRevision({ stdout: cli.stdout(), stderr: cli.stderr() });
    for (const { name } of fleet) {
      const ack = (await acks()).get(name);
      expect(ack).toMatchObject({ mode: "full", phase: "maintenance", drained: true, in_flight: 0 });
      expect(ack?.revision).toBeGreaterThanOrEqual(revision);
    }
    expect(await statuses()).toEqual(fleet.map(() => 503));

    const off = await maint("off", "--wait", "--timeout", "60s");
    expect({ code: off.code, stderr: off.stderr }).toEqual({ code: 0, stderr: "" });
    expect(await statuses()).toEqual(fleet.map(() => 200));
  }, 60_000);

  test("an instance killed with SIGKILL mid-drain: `maint on --wait` names it once its acknowledgement expires", async () => {
    const victim = fleet[INSTANCES - 1] as FleetInstance;
    lock = await lockUsersTable(database.url);
    const held = heldRequest(victim);
    await waitForLockWaiters(database.sql, "database-service:", 1);

    const cli = spawnMaint(["on", "--wait", "--timeout", "60s"], maintEnv());
    await waitFor("the victim to be draining", async () => (await acks()).get(victim.name)?.phase === "entering");
    victim.service.proc.kill("SIGKILL");
    await victim.service.exited;
    const code = await cli.exited;
    await lock.release();
    await held;

    expect(code).toBe(1);
    expect(cli.stdout()).toContain(
      `${victim.name}: acknowledgement gone before it was drained (its lease expired, or it stopped)`,
    );
    expect(cli.stdout()).toContain(`the other ${INSTANCES - 1} instances drained after`);
    expect(cli.stderr()).toBe(
      `maint: 1 instance left before it was drained: ${victim.name} (last: not drained (phase entering, 1 in flight)); ` +
        "an acknowledgement goes with its lease when its instance is killed or cut off from etcd (then it may still " +
        "serve on its last state): check them before counting on the fleet\n",
    );
    expect([...(await acks()).keys()].sort()).toEqual(
      running()
        .map(({ name }) => name)
        .sort(),
    );

    const off = await maint("off", "--wait", "--timeout", "60s");
    expect({ code: off.code, stderr: off.stderr }).toEqual({ code: 0, stderr: "" });
  }, 60_000);

  test("the etcd member serving the most watch streams is killed: toggles still reach every instance", async () => {
    const streams = await Promise.all(Array.from({ length: cluster.size }, (_, i) => cluster.watchStreams(i)));
    const busiest = streams.indexOf(Math.max(...streams));
    expect(streams[busiest]).toBeGreaterThan(0);
    await cluster.kill(busiest);

    const on = await maint("on", "--wait", "--timeout", "60s");
    expect({ code: on.code, stderr: on.stderr }).toEqual({ code: 0, stderr: "" });
    expect(on.stdout).toContain(`all ${running().length} instances drained after`);
    expect(await statuses()).toEqual(running().map(() => 503));

    const off = await maint("off", "--wait", "--timeout", "60s");
    expect({ code: off.code, stderr: off.stderr }).toEqual({ code: 0, stderr: "" });
    expect(await statuses()).toEqual(running().map(() => 200));
  }, 60_000);
});
