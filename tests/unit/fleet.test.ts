import { describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import type { Etcd3 } from "etcd3";
import { type Logger, silentLogger } from "../../src/logger.ts";
import { type AcknowledgedParts, type Acknowledgement, startAcknowledging } from "../../src/maintenance/fleet.ts";
import type { MaintenanceStatus } from "../../src/maintenance/status.ts";
import { VERSION } from "../../src/version.ts";
import { captureLogs } from "../helpers/logs.ts";
import { waitFor } from "../helpers/wait.ts";

const KEY = "/maintenance/unit";
const GLOBAL_KEY = "/maintenance/unit-global";
const INSTANCE = `${hostname().slice(0, 40)}-abcd1234`;
const ISO_DATE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** etcd's side: every acknowledgement written, under one lease; the next `refuse` writes fail. */
function fakeEtcd() {
  const writes: { path: string; ack: Acknowledgement }[] = [];
  const state = { revoked: false, refuse: 0, refused: 0 };
  const lease = {
    put: (path: string) => ({
      value: async (json: string) => {
        if (state.refuse > 0) {
          state.refuse--;
          state.refused++;
          throw new Error("etcd is not answering");
        }
        writes.push({ path, ack: JSON.parse(json) as Acknowledgement });
      },
    }),
    revoke: async () => {
      state.revoked = true;
    },
    revoked: () => false,
    on: () => lease,
  };
  // etcd3's Lease is a class (its put answers a builder); the registration only awaits what put().value() returns.
  const client = { lease: () => lease } as unknown as Pick<Etcd3, "lease">;
  return { client, writes, state };
}

/** The manager, gate and pool as plain objects the test changes; `notify` is the manager reporting a step. */
function fakeParts() {
  const listeners: (() => void)[] = [];
  const counted = { queries: 0, open: 5 as number | Error };
  const status: Pick<MaintenanceStatus, "mode" | "phase" | "since"> = { mode: "off", phase: "serving", since: null };
  const parts = {
    maintenance: {
      status: () => status,
      observedThrough: (key: string) => (key === KEY ? 12 : 9),
      stableAndDrained: true,
      subscribe: (listener: () => void) => void listeners.push(listener),
    },
    gate: { inFlight: 0 },
    db: {
      shape: { max: 10, readOnly: false },
      openConnections: async () => {
        counted.queries++;
        if (counted.open instanceof Error) throw counted.open;
        return counted.open;
      },
    },
  } satisfies AcknowledgedParts;
  const notify = () => {
    for (const listener of listeners) listener();
  };
  return { parts, status, counted, notify };
}

function start(globalKey: string | null = GLOBAL_KEY, { refuse = 0, logger = silentLogger as Logger } = {}) {
  const etcd = fakeEtcd();
  etcd.state.refuse = refuse;
  const fake = fakeParts();
  const registration = startAcknowledging(
    etcd.client,
    fake.parts,
    { key: KEY, globalKey, instanceId: "abcd1234" },
    logger,
  );
  return { ...etcd, ...fake, registration };
}

describe("fleet acknowledgements", () => {
  test("published at once under <key>/instances/<host>-<id>, every field from the instance's parts", async () => {
    const { writes, registration } = start();
    await waitFor("the first acknowledgement", () => writes.length === 1);
    expect(writes[0]?.path).toBe(`${KEY}/instances/${INSTANCE}`);
    expect(Object.keys(writes[0]?.ack ?? {})).toEqual([
      "instance",
      "mode",
      "phase",
      "revision",
      "global_revision",
      "since",
      "drained",
      "in_flight",
      "pool_max",
      "open_connections",
      "version",
      "updated_at",
    ]);
    expect(writes[0]?.ack).toEqual({
      instance: INSTANCE,
      mode: "off",
      phase: "serving",
      revision: 12,
      global_revision: 9,
      since: null,
      drained: true,
      in_flight: 0,
      pool_max: 10,
      open_connections: 5,
      version: VERSION,
      updated_at: expect.stringMatching(ISO_DATE_TIME),
    });
    await registration.close();
  });

  test("without a fleet key, global_revision is null", async () => {
    const { writes, registration } = start(null);
    await waitFor("the first acknowledgement", () => writes.length === 1);
    expect(writes[0]?.ack.global_revision).toBeNull();
    await registration.close();
  });

  test("published again at every step; connections are counted only when settled, a transition carries the last count", async () => {
    const { writes, parts, status, counted, notify, registration } = start();
    await waitFor("the first acknowledgement", () => writes.length === 1);
    expect(counted.queries).toBe(1);

    Object.assign(status, { mode: "full", phase: "entering", since: new Date("2030-01-01T00:00:00.000Z") });
    Object.assign(parts.maintenance, { stableAndDrained: false });
    parts.gate.inFlight = 2;
    counted.open = 3;
    notify();
    await waitFor("the acknowledgement of the step", () => writes.length === 2);
    expect(writes[1]?.ack).toMatchObject({
      mode: "full",
      phase: "entering",
      since: "2030-01-01T00:00:00.000Z",
      drained: false,
      in_flight: 2,
      open_connections: 5,
    });
    expect(counted.queries).toBe(1);

    Object.assign(status, { phase: "maintenance" });
    Object.assign(parts.maintenance, { stableAndDrained: true });
    parts.gate.inFlight = 0;
    parts.db.shape = { max: 1, readOnly: false };
    counted.open = 1;
    notify();
    await waitFor("the acknowledgement once settled", () => writes.length === 3);
    expect(writes[2]?.ack).toMatchObject({ phase: "maintenance", drained: true, pool_max: 1, open_connections: 1 });
    expect(counted.queries).toBe(2);
    await registration.close();
  });

  test("a database that does not answer the count gives open_connections null; the acknowledgement still goes out", async () => {
    const etcd = fakeEtcd();
    const fake = fakeParts();
    fake.counted.open = new Error("database down");
    const registration = startAcknowledging(
      etcd.client,
      fake.parts,
      { key: KEY, globalKey: null, instanceId: "abcd1234" },
      silentLogger,
    );
    await waitFor("the first acknowledgement", () => etcd.writes.length === 1);
    expect(etcd.writes[0]?.ack.open_connections).toBeNull();
    await registration.close();
  });

  test("a write etcd refuses is retried until it goes out, pending meanwhile, and logged once for the outage", async () => {
    const logs = captureLogs();
    const { writes, state, registration } = start(GLOBAL_KEY, { refuse: 3, logger: logs });
    expect(registration.pending).toBe(true);
    // Three waits of the backoff (0.2, 0.4 and 0.8 s), with room for a loaded machine.
    await waitFor("the acknowledgement to go out after the refusals", () => writes.length === 1, 15_000);
    expect(state.refused).toBe(3);
    expect(logs.events("fleet.publish_failed")).toHaveLength(1);
    await waitFor("the registration to catch up", () => !registration.pending);
    await registration.close();
  });

  test("close revokes the lease (the entry goes at once) and nothing is published after", async () => {
    const { writes, state, notify, registration } = start();
    await waitFor("the first acknowledgement", () => writes.length === 1);
    await registration.close();
    expect(state.revoked).toBe(true);
    notify();
    await registration.close();
    expect(writes).toHaveLength(1);
  });
});
