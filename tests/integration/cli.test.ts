import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { hostname } from "node:os";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type EtcdAndDatabase, startEtcdAndDatabase } from "../helpers/fixture.ts";
import { freePort } from "../helpers/free-port.ts";
import { lockUsersTable, type TableLock, waitForLockWaiters } from "../helpers/maintenance.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const ROOT = new URL("../../", import.meta.url).pathname;
const KEY = "/maintenance/database-service";
const GLOBAL_KEY = "/maintenance/global";
const INSTANCES = `${KEY}/instances/`;

let etcd: TestEtcd;
let database: TestDatabase;

let fixture: EtcdAndDatabase;

beforeAll(async () => {
  fixture = await startEtcdAndDatabase("cli");
  ({ etcd, database } = fixture);
});
afterAll(() => fixture?.stop());

/** `--timeout` of a `maint --wait` expected to succeed: generous, the wait ends on the outcome long before. */
const SUCCEEDS_WITHIN = "1m";

/** One run of the CLI: exit code, output, and how long it took. */
interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `bun src/cli/maint.ts <args>` against the test's etcd (or `env`'s), with a clean environment. */
async function maint(args: string[], env: Record<string, string> = {}, command = ["src/cli/maint.ts"]): Promise<Run> {
  const started = performance.now();
  const child = Bun.spawn([process.execPath, ...command, ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ETCD_ENDPOINTS: etcd.endpoint,
      ...env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  const ms = performance.now() - started;
  console.error(`maint ${args.join(" ")} → ${code} in ${Math.round(ms)} ms`);
  return { code, stdout, stderr, ms };
}

/** The revision `maint on`/`off` reports for its write. */
function writtenRevision(run: Run): number {
  const match = /revision (\d+)/.exec(run.stdout);
  if (!match?.[1]) throw new Error(`no revision in the output:\n${run.stdout}\n${run.stderr}`);
  return Number(match[1]);
}

/** `etcdctl get <key> --print-value-only`: the value, or null when the key does not exist. */
async function etcdctlGet(key: string): Promise<string | null> {
  const out = await etcd.etcdctl("get", key, "--print-value-only");
  return out === "" ? null : out.replace(/\n$/, "");
}

/** Every acknowledgement in etcd now, by instance name. */
async function acknowledgements(): Promise<Map<string, Acknowledgement>> {
  const values = await etcd.client.getAll().prefix(INSTANCES).strings();
  return new Map(Object.values(values).map((raw) => [(JSON.parse(raw) as Acknowledgement).instance, JSON.parse(raw)]));
}

describe("maint against a real etcd", () => {
  afterAll(async () => {
    await etcd.delete(KEY);
    await etcd.delete(GLOBAL_KEY);
  });

  test("--help prints the usage and exits 0, also through `bun run maint`", async () => {
    const direct = await maint(["--help"]);
    expect(direct.code).toBe(0);
    expect(direct.stdout).toContain("Usage: maint <command> [options]");
    const script = await maint(["--help"], {}, ["run", "--silent", "maint"]);
    expect(script).toMatchObject({ code: 0, stdout: direct.stdout });
  });

  test("`maint on` writes full maintenance to the service key and prints the revision", async () => {
    const run = await maint(["on"]);
    expect(run).toMatchObject({ code: 0, stderr: "" });
    expect(await etcdctlGet(KEY)).toBe('{"mode":"full"}');
    const { kvs } = await etcd.client.get(KEY).exec();
    expect(writtenRevision(run)).toBe(Number(kvs[0]?.mod_revision));
    expect(run.stdout).toBe(`maintenance full: wrote ${KEY} = {"mode":"full"} at revision ${writtenRevision(run)}\n`);
  });

  test("`maint on --read-only --reason … --retry-after …` writes mode read-only with both", async () => {
    const run = await maint(["on", "--read-only", "--reason", "disk upgrade", "--retry-after", "120"]);
    expect(run.code).toBe(0);
    expect(JSON.parse((await etcdctlGet(KEY)) ?? "null")).toEqual({
      mode: "read-only",
      reason: "disk upgrade",
      retry_after: 120,
    });
  });

  test("`maint on --start … --end …` writes the window, normalized to UTC", async () => {
    const run = await maint(["on", "--start", "2031-03-04T10:00:00+02:00", "--end", "2031-03-04T12:30:00Z"]);
    expect(run.code).toBe(0);
    expect(JSON.parse((await etcdctlGet(KEY)) ?? "null")).toEqual({
      mode: "full",
      start: "2031-03-04T08:00:00.000Z",
      end: "2031-03-04T12:30:00.000Z",
    });
  });

  test("`maint off` deletes the key; a second `off` says it was not set", async () => {
    await maint(["on"]);
    const first = await maint(["off"]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`deleted ${KEY} (it held {"mode":"full"}) at revision ${writtenRevision(first)}`);
    expect(await etcdctlGet(KEY)).toBeNull();
    const second = await maint(["off"]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`${KEY} was not set`);
  });

  test("`maint on --global` writes /maintenance/global and leaves the service key alone", async () => {
    await etcd.delete(KEY);
    const run = await maint(["on", "--global", "--reason", "network"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`wrote ${GLOBAL_KEY} = `);
    expect(JSON.parse((await etcdctlGet(GLOBAL_KEY)) ?? "null")).toEqual({ mode: "full", reason: "network" });
    expect(await etcdctlGet(KEY)).toBeNull();

    const off = await maint(["off", "--global"]);
    expect(off.code).toBe(0);
    expect(await etcdctlGet(GLOBAL_KEY)).toBeNull();
  });

  test("`maint on --ttl 2s` attaches a 2 s lease: the key disappears with it, not before", async () => {
    // The lease runs from its grant, which comes after the CLI started.
    const started = performance.now();
    const run = await maint(["on", "--ttl", "2s"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/lease [0-9a-f]+: the key is deleted \(maintenance off\) in 2s/);
    expect(await etcdctlGet(KEY)).toBe('{"mode":"full"}');
    const lease = /lease ([0-9a-f]+)/.exec(run.stdout)?.[1];
    expect(await etcd.etcdctl("lease", "timetolive", lease ?? "")).toMatch(/granted with TTL\(2s\)/);

    await waitFor("the key to disappear with its lease", async () => (await etcdctlGet(KEY)) === null);
    // With a margin for etcd's lease clock.
    expect(performance.now() - started).toBeGreaterThan(1500);
  });

  test("`maint status` prints both keys' raw values and revisions; --json the same as JSON", async () => {
    const on = await maint(["on", "--reason", "upgrade"]);
    await etcd.delete(GLOBAL_KEY);
    const revision = writtenRevision(on);

    const text = await maint(["status"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(
      `service key ${KEY} = {"mode":"full","reason":"upgrade"} (revision ${revision}): full`,
    );
    expect(text.stdout).toContain(`fleet key ${GLOBAL_KEY}: not set (off)`);
    expect(text.stdout).toContain(`no instance acknowledges under ${INSTANCES}`);

    const json = await maint(["status", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      service_key: { key: KEY, value: '{"mode":"full","reason":"upgrade"}', revision, lease: null, mode_now: "full" },
      global_key: { key: GLOBAL_KEY, value: null, revision: null, mode_now: "off" },
      instances: [],
    });
  });

  test("`maint on --wait` with no instance at all exits 1 at once and says so, without waiting out its timeout", async () => {
    const run = await maint(["on", "--wait", "--timeout", "10m"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`no instance acknowledges under ${INSTANCES}`);
    expect(run.stderr).not.toContain("timed out");
  });

  test("usage errors exit 2 with one line and a hint, and write nothing", async () => {
    // The full matrix is in tests/unit/cli-args.test.ts; these go through the real entry.
    await etcd.delete(KEY);
    const cases: [string[], string][] = [
      [["on", "--frobnicate"], "maint: unknown option --frobnicate"],
      [["on", "--ttl", "10x"], 'maint: --ttl: "10x" is not a duration (use e.g. 90s, 30m, 2h or 1h30m)'],
      [["on", "--start", "tomorrow"], 'maint: --start "tomorrow" is not an RFC 3339 timestamp'],
    ];
    const runs = await Promise.all(cases.map(([args]) => maint(args)));
    for (const [i, [args, message]] of cases.entries()) {
      const run = runs[i] as Run;
      const lines = run.stderr.trimEnd().split("\n");
      expect({ args, code: run.code, stdout: run.stdout, lines: lines.length, hint: lines[1] }).toEqual({
        args,
        code: 2,
        stdout: "",
        lines: 2,
        hint: "Run `maint --help` for usage.",
      });
      expect(lines[0]).toStartWith(message);
    }
    expect(await etcdctlGet(KEY)).toBeNull();
  });

  test("etcd unreachable: exit 1 with `cannot reach etcd at …`: refused, or silent past the 5 s deadline", async () => {
    // A port nobody listens on, and a server that accepts connections but never answers.
    const refused = `127.0.0.1:${await freePort()}`;
    const silent = net.createServer((socket) => socket.on("error", () => {}));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const mute = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      const [fast, slow] = await Promise.all([
        maint(["status"], { ETCD_ENDPOINTS: refused }),
        // --endpoints overrides ETCD_ENDPOINTS (which points at the test's etcd).
        maint(["on", "--endpoints", mute]),
      ]);
      expect(fast.code).toBe(1);
      expect(fast.stderr).toStartWith(`maint: cannot reach etcd at ${refused}: `);
      expect(fast.stderr).toContain("ECONNREFUSED");

      expect(slow.code).toBe(1);
      expect(slow.stderr).toStartWith(`maint: cannot reach etcd at ${mute}: no answer within`);
      // It gave the silent server its whole deadline.
      expect(slow.ms).toBeGreaterThan(4500);
    } finally {
      silent.close();
    }
    expect(await etcdctlGet(KEY)).toBeNull();
  });
});

describe("maint with three instances of the service", () => {
  const services: ServiceProcess[] = [];
  /** Instance names (`<host>-<id>`), as their acknowledgements say, in spawn order. */
  const names: string[] = [];
  let userId = 0;
  let lock: TableLock | undefined;

  /** Instance name of a service: its application_name carries its id. */
  async function instanceName(service: ServiceProcess): Promise<string> {
    const stats = (await (await fetch(`${service.baseUrl}/stats`)).json()) as {
      database: { application_name: string };
    };
    const id = stats.database.application_name.split(":")[1];
    return `${hostname().slice(0, 40)}-${id}`;
  }

  /** Sends GET /users/{id} to `service`, to be held by the table lock; resolves with the status. */
  function heldRequest(service: ServiceProcess): Promise<number> {
    return fetch(`${service.baseUrl}/users/${userId}`).then((r) => r.status);
  }

  beforeAll(async () => {
    await etcd.delete(KEY);
    await etcd.delete(GLOBAL_KEY);
    const env = (drainTimeoutMs: number) => ({
      DATABASE_URL: database.url,
      ETCD_ENDPOINTS: etcd.endpoint,
      DRAIN_TIMEOUT_MS: String(drainTimeoutMs),
      LOG_LEVEL: "warn",
    });
    // The third cannot give up on a held request: its drain outlasts any wait here.
    services.push(
      ...(await Promise.all([spawnService(env(5000)), spawnService(env(5000)), spawnService(env(600_000))])),
    );
    await Promise.all(services.map((s) => waitForStatus(s, "/health", 200)));
    names.push(...(await Promise.all(services.map(instanceName))));
    await waitFor("three acknowledgements", async () => (await acknowledgements()).size === 3);
    const created = await fetch(`${services[0]?.baseUrl}/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Held", email: "held@example.com" }),
    });
    expect(created.status).toBe(201);
    userId = ((await created.json()) as { id: number }).id;
  });
  afterAll(async () => {
    await lock?.release();
    for (const service of services) if (service.proc.exitCode === null) service.proc.kill("SIGTERM");
    await Promise.all(services.map((s) => s.exited));
  });

  test("`maint status` lists all three acknowledgements", async () => {
    const text = await maint(["status"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`3 instances under ${INSTANCES}:`);
    expect(text.stdout).toContain("INSTANCE");
    for (const name of names) expect(text.stdout).toMatch(new RegExp(`^${name}\\s+off\\s+serving\\s+\\d+`, "m"));

    const json = JSON.parse((await maint(["status", "--json"])).stdout) as { instances: Acknowledgement[] };
    expect(json.instances.map((i) => i.instance).sort()).toEqual([...names].sort());
    for (const ack of json.instances) {
      expect(ack).toMatchObject({ mode: "off", phase: "serving", drained: true, in_flight: 0, pool_max: 10 });
    }
  });

  test("`maint on --wait` returns 0 only once all three drained the new revision", async () => {
    const [first] = services as [ServiceProcess];
    // A request held inside a query on the first instance: its drain waits for it.
    lock = await lockUsersTable(database.url);
    const held = heldRequest(first);
    await waitForLockWaiters(database.sql, "database-service:", 1);

    let exited = false;
    const cli = maint(["on", "--wait", "--timeout", SUCCEEDS_WITHIN]).finally(() => {
      exited = true;
    });
    // Every instance has acknowledged the write; only the first, draining, keeps the wait going.
    await waitFor("the others in maintenance, the first still draining", async () => {
      const acks = await acknowledgements();
      return (
        acks.get(names[0] as string)?.phase === "entering" &&
        names.slice(1).every((name) => acks.get(name)?.phase === "maintenance")
      );
    });
    expect(exited).toBe(false);
    await lock.release();
    const run = await cli;
    const acks = await acknowledgements();

    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
    expect(await held).toBe(200);
    const revision = writtenRevision(run);
    for (const name of names) {
      expect(acks.get(name)).toMatchObject({ mode: "full", phase: "maintenance", drained: true, in_flight: 0 });
      expect(acks.get(name)?.revision).toBeGreaterThanOrEqual(revision);
    }
    expect(run.stdout).toMatch(new RegExp(`^${names[0]}\\s+full\\s+entering\\s+${revision}\\s+\\S+\\s+no\\s+1$`, "m"));
    expect(run.stdout).toContain("all 3 instances drained after");

    const off = await maint(["off", "--wait", "--timeout", SUCCEEDS_WITHIN]);
    expect(off.code).toBe(0);
    expect(off.stdout).toContain("all 3 instances out of maintenance after");
    for (const ack of (await acknowledgements()).values()) expect(ack.mode).toBe("off");
  });

  test("`maint on --wait --timeout 10s` fails naming the instance that cannot drain", async () => {
    const third = services[2] as ServiceProcess;
    const stuck = names[2] as string;
    lock = await lockUsersTable(database.url);
    const held = heldRequest(third);
    await waitForLockWaiters(database.sql, "database-service:", 1);
    try {
      const run = await maint(["on", "--wait", "--timeout", "10s"]);
      expect(run.code).toBe(1);
      expect(run.stderr).toStartWith("maint: timed out after 10s: 1 of 3 instances not drained: ");
      expect(run.stderr).toContain(`${stuck} (not drained (phase entering, 1 in flight))`);
      for (const name of names.slice(0, 2)) expect(run.stderr).not.toContain(name);
      // It waited its whole timeout.
      expect(run.ms).toBeGreaterThan(10_000);
      const acks = await acknowledgements();
      expect(acks.get(stuck)).toMatchObject({ mode: "full", phase: "entering", drained: false, in_flight: 1 });
    } finally {
      await lock.release();
    }
    expect(await held).toBe(200);
    await waitFor(
      "the stuck instance to finish draining",
      async () => (await acknowledgements()).get(stuck)?.drained === true,
    );

    expect((await maint(["off", "--wait", "--timeout", SUCCEEDS_WITHIN])).code).toBe(0);
  });

  test("`--global --wait` follows global_revision; `off --wait` names the key that keeps maintenance on", async () => {
    const on = await maint(["on", "--global", "--read-only", "--wait", "--timeout", SUCCEEDS_WITHIN]);
    expect(on.code).toBe(0);
    const revision = writtenRevision(on);
    for (const ack of (await acknowledgements()).values()) {
      expect(ack.mode).toBe("read-only");
      expect(ack.global_revision).toBeGreaterThanOrEqual(revision);
    }

    const off = await maint(["off", "--wait", "--timeout", "2s"]);
    expect(off.code).toBe(1);
    expect(off.stdout).toContain(`note: ${GLOBAL_KEY} still asks for read-only`);
    expect(off.stderr).toStartWith("maint: timed out after 2s: 3 of 3 instances not out of maintenance: ");
    for (const name of names) {
      expect(off.stderr).toContain(`${name} (mode read-only: still in maintenance because of ${GLOBAL_KEY})`);
    }

    expect((await maint(["off", "--global", "--wait", "--timeout", SUCCEEDS_WITHIN])).code).toBe(0);
  });

  test("an instance killed with SIGKILL leaves the fleet when its 10 s lease expires, not before", async () => {
    const victim = services[1] as ServiceProcess;
    const name = names[1] as string;
    victim.proc.kill("SIGKILL");
    await victim.exited;
    const killed = performance.now();
    expect((await acknowledgements()).has(name)).toBe(true);

    await waitFor("the killed instance's acknowledgement to expire", async () => !(await acknowledgements()).has(name));
    expect(performance.now() - killed).toBeGreaterThan(4000);

    const status = await maint(["status"]);
    expect(status.stdout).toContain(`2 instances under ${INSTANCES}:`);
    expect(status.stdout).not.toContain(name);
  });
});
