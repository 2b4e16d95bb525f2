import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { EventEmitter } from "node:events";
import type { Etcd3 } from "etcd3";
import { silentLogger } from "../../src/logger.ts";
import { EtcdHistory } from "../../src/maintenance/etcd-history.ts";
import { EtcdSource, type EtcdSourceTimings } from "../../src/maintenance/etcd-source.ts";
import type { Observation } from "../../src/maintenance/source.ts";
import { TEST_TIMEOUT_MS, waitFor, waitForValue } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/unit";
const header = (revision: number, cluster_id = "1") => ({ revision: String(revision), cluster_id });

/** A watcher that delivers only what the test emits on it. */
class FakeWatcher extends EventEmitter {
  cancelled = false;
  constructor(readonly startRevision: number) {
    super();
  }
  async cancel() {
    this.cancelled = true;
  }
}

/** The calls EtcdSource makes on etcd3, answered from fields the test sets. */
class FakeEtcd {
  value: string | null = "false";
  revision = 1;
  /** While true, GETs never answer (and never fail). */
  silent = false;
  readonly watchers: FakeWatcher[] = [];

  /** Changes the key without telling any watcher: a watch etcd stopped feeding. */
  writeUnseen(value: string) {
    this.value = value;
    this.revision++;
  }

  readonly kv = {
    range: ({ key }: { key: Buffer }) => {
      if (this.silent) return new Promise(() => {});
      const kvs =
        this.value === null
          ? []
          : [{ key, value: Buffer.from(this.value), mod_revision: String(this.revision), lease: "0" }];
      return Promise.resolve({ header: header(this.revision), kvs });
    },
  };

  watch() {
    let start = 0;
    const builder = {
      key: () => builder,
      startRevision: (revision: string) => {
        start = Number(revision);
        return builder;
      },
      watcher: () => {
        const watcher = new FakeWatcher(start);
        this.watchers.push(watcher);
        return watcher;
      },
    };
    return builder;
  }
}

function startSource(timings: Partial<EtcdSourceTimings>) {
  const etcd = new FakeEtcd();
  const source = new EtcdSource(etcd as unknown as Etcd3, KEY, silentLogger, timings);
  const observations: Observation[] = [];
  source.start((observation) => observations.push(observation));
  return { etcd, source, observations };
}

const HOUR = 3_600_000;

describe("EtcdSource watch recycling", () => {
  test("a watch etcd silently stopped feeding is rebuilt from a fresh GET, which delivers the value it missed", async () => {
    const { etcd, source, observations } = startSource({ resyncMs: HOUR, watchRecycleMs: 200 });
    try {
      await waitFor("the first watch", () => etcd.watchers.length === 1);
      expect(observations).toEqual([{ value: "false", revision: 1 }]);

      etcd.writeUnseen("true");
      await waitFor("the missed value", () => observations.some((o) => o.value === "true"));
      expect(observations.at(-1)).toEqual({ value: "true", revision: 2 });
      expect(etcd.watchers[0]?.cancelled).toBe(true);
      await waitFor("the new watch", () => etcd.watchers.length >= 2);
      expect(etcd.watchers[1]?.startRevision).toBe(3);
    } finally {
      await source.close();
    }
  });
});

describe("EtcdSource status", () => {
  test("is connected only while etcd confirmed the state within the window, unavailable (with its age) after", async () => {
    const { etcd, source } = startSource({ resyncMs: 50, watchRecycleMs: HOUR, confirmedWithinMs: 300 });
    try {
      // Each status is judged as read when it satisfied the wait: 300 ms later it may rightly have changed.
      const status = () => source.status();
      const connected = await waitForValue("the source to connect", status, (s) => s.status === "connected");
      expect(connected).toMatchObject({ status: "connected", staleSeconds: null, lastError: null });

      etcd.silent = true;
      const unconfirmed = await waitForValue("the state to be unconfirmed", status, (s) => s.status !== "connected");
      expect(unconfirmed).toMatchObject({
        kind: "etcd",
        status: "unavailable",
        staleSeconds: expect.any(Number),
        lastError: "etcd has not confirmed the state for over 0.3 s",
      });

      etcd.silent = false;
      const again = await waitForValue("the source to be confirmed again", status, (s) => s.status === "connected");
      expect(again).toMatchObject({ staleSeconds: null, lastError: null });
    } finally {
      etcd.silent = false;
      await source.close();
    }
  });
});

describe("EtcdHistory", () => {
  test("an answer below the revision seen when its request left is a reset; crossed answers are not", () => {
    const history = new EtcdHistory();
    expect(history.check(header(10), history.mark())).toBeNull();
    const early = history.mark();
    history.saw(header(20));
    // Sent at 10, answered at 15 after a watch event at 20 arrived: old, not a reset.
    expect(history.check(header(15), early)).toBeNull();
    expect(history.check(header(5), history.mark())).toEqual({ revision: 5, seen: 20, cause: "revision" });
    // The new history is the one followed from now on.
    expect(history.check(header(6), history.mark())).toBeNull();
  });

  test("a reset is reported once, however many requests were out when it happened", () => {
    const history = new EtcdHistory();
    history.saw(header(50));
    const [first, second] = [history.mark(), history.mark()];
    expect(history.check(header(3), first)?.cause).toBe("revision");
    expect(history.check(header(4), second)).toBeNull();
  });

  test("a key's mod_revision going back, or another cluster id, is a reset even when the revision is ahead", () => {
    const history = new EtcdHistory();
    expect(history.check(header(100), history.mark(), { seen: -1, now: 90 })).toBeNull();
    expect(history.check(header(120), history.mark(), { seen: 90, now: 70 })).toEqual({
      revision: 120,
      seen: 90,
      cause: "key revision",
    });
    history.saw(header(500, "2"));
    expect(history.check(header(130, "2"), history.mark())).toEqual({ revision: 130, seen: 120, cause: "cluster id" });
  });
});
