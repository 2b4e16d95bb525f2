import { describe, expect, test } from "bun:test";
import { BrokenCircuitError } from "cockatiel";
import { GRPCDeadlineExceededError, GRPCUnavailableError, type IPutResponse } from "etcd3";
import { deleteKey, type KeyClient, readKey, writeKey } from "../../src/maintenance/etcd-key.ts";
import { EtcdWriter, StoreUnavailableError } from "../../src/maintenance/writer.ts";

const KEY = "/maintenance/unit";
const header = (revision: number) => ({ cluster_id: "1", member_id: "1", revision: String(revision), raft_term: "1" });
const kv = (value: string, modRevision: number, lease = "0") => ({
  key: Buffer.from(KEY),
  value: Buffer.from(value),
  mod_revision: String(modRevision),
  create_revision: String(modRevision),
  version: "1",
  lease,
});

/** One key in a store at `revision`, and every request made, as etcd's KV and lease services take them. */
function fakeEtcd(stored: { value: string; revision: number; lease?: string } | null, revision = 20) {
  const requests: { call: string; request: unknown }[] = [];
  const client: KeyClient = {
    kv: {
      range: async (request) => {
        requests.push({ call: "range", request });
        const kvs = stored ? [kv(stored.value, stored.revision, stored.lease)] : [];
        return { header: header(revision), kvs, more: false, count: String(kvs.length) };
      },
      put: async (request) => {
        requests.push({ call: "put", request });
        // etcd3 types prev_kv as always there; etcd sends it only when asked for.
        return { header: header(revision + 1) } as IPutResponse;
      },
      deleteRange: async (request) => {
        requests.push({ call: "deleteRange", request });
        const prev_kvs = stored ? [kv(stored.value, stored.revision)] : [];
        return { header: header(stored ? revision + 1 : revision), deleted: String(prev_kvs.length), prev_kvs };
      },
    },
    leaseClient: {
      leaseGrant: async (request) => {
        requests.push({ call: "leaseGrant", request });
        return { header: header(revision), ID: "1234", TTL: String(request.TTL), error: "" };
      },
    },
  };
  return { client, requests };
}

/** A client whose every call fails with `error`. */
function failingEtcd(error: Error): KeyClient {
  const fail = async (): Promise<never> => {
    throw error;
  };
  return { kv: { range: fail, put: fail, deleteRange: fail }, leaseClient: { leaseGrant: fail } };
}

describe("the maintenance key in etcd", () => {
  test("a read gives the value, its mod_revision and its lease in hex, with the answer's header", async () => {
    const { client, requests } = fakeEtcd({ value: '{"mode":"full"}', revision: 12, lease: "1234" });
    expect(await readKey(client, KEY)).toEqual({
      header: header(20),
      value: '{"mode":"full"}',
      revision: 12,
      lease: "00000000000004d2",
    });
    expect(requests).toEqual([{ call: "range", request: { key: Buffer.from(KEY) } }]);
  });

  test("an absent key reads as null value, revision and lease", async () => {
    expect(await readKey(fakeEtcd(null).client, KEY)).toEqual({
      header: header(20),
      value: null,
      revision: null,
      lease: null,
    });
  });

  test("a write without a TTL is one put; with a TTL, the value is put under a lease granted for it", async () => {
    const plain = fakeEtcd(null);
    expect(await writeKey(plain.client, KEY, "true")).toEqual({ header: header(21), revision: 21, lease: null });
    expect(plain.requests).toEqual([{ call: "put", request: { key: Buffer.from(KEY), value: Buffer.from("true") } }]);

    const leased = fakeEtcd(null);
    expect(await writeKey(leased.client, KEY, "true", 30)).toMatchObject({ revision: 21, lease: "00000000000004d2" });
    expect(leased.requests).toEqual([
      { call: "leaseGrant", request: { TTL: 30 } },
      { call: "put", request: { key: Buffer.from(KEY), value: Buffer.from("true"), lease: "1234" } },
    ]);
  });

  test("a delete says what the key held, or null when there was nothing to delete", async () => {
    const held = fakeEtcd({ value: "true", revision: 12 });
    expect(await deleteKey(held.client, KEY)).toEqual({ header: header(21), revision: 21, previous: "true" });
    expect(held.requests).toEqual([{ call: "deleteRange", request: { key: Buffer.from(KEY), prev_kv: true } }]);
    expect(await deleteKey(fakeEtcd(null).client, KEY)).toEqual({ header: header(20), revision: 20, previous: null });
  });
});

describe("EtcdWriter (the admin API's side of the key)", () => {
  test("reads the key's revision, or the store's when the key is absent; writes and deletes answer their revision", async () => {
    expect(await new EtcdWriter(fakeEtcd({ value: "true", revision: 12 }).client, KEY).read()).toEqual({
      value: "true",
      revision: 12,
    });
    const absent = new EtcdWriter(fakeEtcd(null).client, KEY);
    expect(await absent.read()).toEqual({ value: null, revision: 20 });
    expect(await absent.write("true")).toBe(21);
    expect(await new EtcdWriter(fakeEtcd({ value: "true", revision: 12 }).client, KEY).clear()).toBe(21);
  });

  test("etcd not answering: a write sent is `unknown`, one never sent and a read are `not-done`", async () => {
    const outcome = async (error: Error, call: (writer: EtcdWriter) => Promise<unknown>) => {
      const failure = await call(new EtcdWriter(failingEtcd(error), KEY)).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(StoreUnavailableError);
      return (failure as StoreUnavailableError).outcome;
    };
    const deadline = new GRPCDeadlineExceededError("Deadline exceeded");
    expect(await outcome(deadline, (w) => w.write("true"))).toBe("unknown");
    expect(await outcome(deadline, (w) => w.clear())).toBe("unknown");
    expect(await outcome(deadline, (w) => w.read())).toBe("not-done");
    expect(await outcome(new BrokenCircuitError(), (w) => w.write("true"))).toBe("not-done");
    const noConnection = new GRPCUnavailableError("14 UNAVAILABLE: No connection established");
    expect(await outcome(noConnection, (w) => w.clear())).toBe("not-done");
  });

  test("an answer refusing the call (not a missing answer) is passed on as it is", async () => {
    const refused = new Error("etcdserver: permission denied");
    expect(await new EtcdWriter(failingEtcd(refused), KEY).write("true").catch((e: unknown) => e)).toBe(refused);
  });
});
