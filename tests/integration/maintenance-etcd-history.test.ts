import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { runMaint } from "../../src/cli/commands.ts";
import type { Output } from "../../src/cli/output.ts";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { createUser, expectJson, type UserJson } from "../helpers/http.ts";
import { type CapturedLogger, captureLogs } from "../helpers/logs.ts";
import {
  applied,
  appliedKey,
  expectMaintenance,
  inMaintenance,
  put,
  putDeliveredByWatch,
  servingAcknowledgement,
  sourceStatus,
  startMaintenanceService,
} from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const RETRY_AFTER_SECONDS = 60;
/** `maint --wait --timeout`: generous, the waits here end on an outcome long before. */
const CLI_TIMEOUT = "1m";

let database: TestDatabase;
let alice: UserJson;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  database = await createTestDatabase("mhistory");
  const etcd = await TestEtcd.start();
  const seed = await startMaintenanceService(database.url, etcd.endpoint, "/maintenance/history-seed");
  alice = await createUser(seed.app, "Alice", "alice@example.com");
  await seed.stop();
  await etcd.stop();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  await database?.drop();
});

/** A fresh etcd per test: its history is what the test rewinds. */
async function startEtcd(): Promise<TestEtcd> {
  const etcd = await TestEtcd.start();
  cleanups.push(() => etcd.stop());
  return etcd;
}

async function start(etcd: TestEtcd, key: string, env: Record<string, string> = {}, logs = captureLogs()) {
  const service = await startMaintenanceService(database.url, etcd.endpoint, key, env, logs);
  cleanups.push(() => service.stop());
  await waitFor("the source to connect", () => sourceStatus(service) === "connected");
  return service;
}

/** Writes `count` other keys, so the history runs well past what a snapshot holds. */
async function writeOthers(etcd: TestEtcd, count: number): Promise<number> {
  let revision = 0;
  for (let i = 0; i < count; i++) revision = await put(etcd, `/other/${i}`, String(i));
  return revision;
}

async function expectServing(service: Service) {
  expect(await expectJson<UserJson>(await service.app.request(`/users/${alice.id}`), 200)).toEqual(alice);
}

async function expectRefusing(service: Service) {
  await expectMaintenance(await service.app.request("/users"), "/users", RETRY_AFTER_SECONDS);
}

/** Writes `value` ("true"/"false"), which the watch must deliver, and checks the gate follows it. */
async function toggle(etcd: TestEtcd, service: Service, key: string, value: "true" | "false") {
  await putDeliveredByWatch(etcd, service, key, value);
  expect(inMaintenance(service)).toBe(value === "true");
  await (value === "true" ? expectRefusing(service) : expectServing(service));
}

/** Once etcd answers again: the value it holds now applies, and later writes both ways, through the watch. */
async function expectFollowsNewHistory(
  etcd: TestEtcd,
  service: Service,
  key: string,
  nowHolds: "on" | "off",
  logs: CapturedLogger,
) {
  await waitFor("the value etcd holds now to apply", () => inMaintenance(service) === (nowHolds === "on"));
  await service.maintenance.settled();
  await (nowHolds === "on" ? expectRefusing(service) : expectServing(service));
  await toggle(etcd, service, key, "true");
  await toggle(etcd, service, key, "false");
  await toggle(etcd, service, key, "true");
  expect(sourceStatus(service)).toBe("connected");
  const resets = logs.events("etcd.history_reset").filter((line) => line.key === key);
  expect(resets).toHaveLength(1);
  expect(resets[0]).toMatchObject({ level: "warn", key, revision: expect.any(Number), seen: expect.any(Number) });
}

describe("etcd restored from a snapshot taken before later writes", () => {
  test("a service left in maintenance by the lost writes leaves it, then follows toggles both ways", async () => {
    const etcd = await startEtcd();
    const key = "/maintenance/history-restore-on";
    await put(etcd, key, "false");
    const logs = captureLogs();
    const service = await start(etcd, key, {}, logs);
    const snapshot = await etcd.snapshot();
    await applied(service, await put(etcd, key, "true"));
    await writeOthers(etcd, 30);
    await expectRefusing(service);

    await etcd.restore(snapshot);
    await expectFollowsNewHistory(etcd, service, key, "off", logs);
  });

  test("a serving service enters maintenance on `put true` after the restore", async () => {
    const etcd = await startEtcd();
    const key = "/maintenance/history-restore-off";
    await put(etcd, key, "false");
    await writeOthers(etcd, 5);
    const snapshot = await etcd.snapshot();
    const logs = captureLogs();
    const service = await start(etcd, key, {}, logs);
    await writeOthers(etcd, 30);
    // The service sees revisions the restored history does not reach: a put of its own key after the others.
    await applied(service, await put(etcd, key, "false"));

    await etcd.restore(snapshot);
    await toggle(etcd, service, key, "true");
    await toggle(etcd, service, key, "false");
    expect(logs.events("etcd.history_reset")).toHaveLength(1);
  });

  test("the fleet key follows the new history too", async () => {
    const etcd = await startEtcd();
    const key = "/maintenance/history-restore-own";
    const globalKey = "/maintenance/history-restore-global";
    await put(etcd, globalKey, "false");
    const logs = captureLogs();
    const service = await start(etcd, key, { MAINTENANCE_GLOBAL_KEY: globalKey }, logs);
    const snapshot = await etcd.snapshot();
    await appliedKey(service, globalKey, await put(etcd, globalKey, "true"));
    await writeOthers(etcd, 30);

    await etcd.restore(snapshot);
    await expectFollowsNewHistory(etcd, service, globalKey, "off", logs);
  });
});

describe("etcd rebuilt on an empty data dir", () => {
  test("the key's absence applies (off), then toggles both ways apply", async () => {
    const etcd = await startEtcd();
    const key = "/maintenance/history-empty";
    await writeOthers(etcd, 30);
    const logs = captureLogs();
    const service = await start(etcd, key, {}, logs);
    await applied(service, await put(etcd, key, "true"));
    await expectRefusing(service);

    await etcd.rebuildEmpty();
    await expectFollowsNewHistory(etcd, service, key, "off", logs);
  });
});

/** Collects the CLI's output. */
function captureOutput(): Output & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
}

/** The acknowledgements in etcd now, each with the revision it was written at. */
async function acknowledgements(etcd: TestEtcd, key: string): Promise<{ ack: Acknowledgement; written: number }[]> {
  const response = await etcd.client.getAll().prefix(`${key}/instances/`).exec();
  return response.kvs.map((kv) => ({
    ack: JSON.parse(kv.value.toString("utf8")) as Acknowledgement,
    written: Number(kv.mod_revision),
  }));
}

describe("acknowledgements after etcd's history went back", () => {
  for (const how of ["restored from a snapshot", "rebuilt empty"] as const) {
    test(`etcd ${how}: the instance publishes its acknowledgement again in the new history and \`maint on --wait\` succeeds`, async () => {
      const etcd = await startEtcd();
      const key = `/maintenance/history-acks-${how === "rebuilt empty" ? "empty" : "restore"}`;
      await put(etcd, key, "false");
      const service = await start(etcd, key, { DRAIN_TIMEOUT_MS: "1000" });
      await waitFor("the acknowledgement", async () => (await acknowledgements(etcd, key)).length === 1);
      const snapshotRevision = Number((await etcd.client.get(key).exec()).header.revision);
      const snapshot = await etcd.snapshot();
      await writeOthers(etcd, 30);
      await applied(service, await put(etcd, key, "true"));

      if (how === "rebuilt empty") await etcd.rebuildEmpty();
      else await etcd.restore(snapshot);
      await waitFor("the gate to open (the key is off in the new history)", () => !inMaintenance(service));
      // Written in the new history (not the snapshot's copy), having read the key through a revision of it.
      const since = how === "rebuilt empty" ? 0 : snapshotRevision;
      await waitFor("an acknowledgement written in the new history", async () => {
        const entries = await acknowledgements(etcd, key);
        return entries.some(({ ack, written }) => written > since && ack.mode === "off" && ack.revision < written);
      });

      const out = captureOutput();
      const code = await runMaint(
        ["on", "--wait", "--timeout", CLI_TIMEOUT],
        { ETCD_ENDPOINTS: etcd.endpoint, MAINTENANCE_KEY: key },
        out,
      );
      expect({ code, stderr: out.stderr }).toEqual({ code: 0, stderr: [] });
      expect(out.stdout.at(-1)).toMatch(/^the one instance drained after /);
      await expectRefusing(service);
    });
  }
});

describe("maint --wait while etcd's history goes back", () => {
  test("exits 1 saying the history went back and what the key holds now, instead of waiting for revisions that will not come", async () => {
    const etcd = await startEtcd();
    const key = "/maintenance/history-cli";
    await put(etcd, key, "false");
    // An instance that does not read the write keeps the wait going.
    const stuck = servingAcknowledgement({ instance: "stuck", revision: 2 });
    const snapshotRevision = await put(etcd, `${key}/instances/stuck`, JSON.stringify(stuck));
    const snapshot = await etcd.snapshot();
    await writeOthers(etcd, 30);

    const out = captureOutput();
    const env = { ETCD_ENDPOINTS: etcd.endpoint, MAINTENANCE_KEY: key };
    const running = runMaint(["on", "--wait", "--timeout", CLI_TIMEOUT], env, out);
    await waitFor("the wait to begin", () => out.stdout.some((line) => line.startsWith("waiting up to")));
    const written = Number(/at revision (\d+)/.exec(out.stdout[0] ?? "")?.[1]);
    await etcd.restore(snapshot);

    expect(await running).toBe(1);
    expect(out.stderr).toEqual([
      `maint: etcd.history_reset: etcd answers at revision ${snapshotRevision} after ${written} had been seen ` +
        `(revision went back: restored from a snapshot or rebuilt); the write at revision ${written} may be gone`,
      `maint: ${key} holds false now: run the command again to write and wait in etcd's new history`,
    ]);
  });
});
