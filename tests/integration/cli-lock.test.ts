import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hostname, userInfo } from "node:os";
import { TestEtcd } from "../helpers/etcd.ts";
import { type RunningMaint, runMaint, spawnMaint } from "../helpers/maint.ts";
import { servingAcknowledgement } from "../helpers/maintenance.ts";
import { waitFor } from "../helpers/wait.ts";

const KEY = "/maintenance/cli-lock";
const LOCK = `${KEY}/lock`;
const OPERATOR = `${userInfo().username}@${hostname()}`;
const NOTHING_WRITTEN =
  "maint: nothing written; wait for it to end, or break the lock with `maint unlock` if its holder is stuck";

let etcd: TestEtcd;

beforeAll(async () => {
  etcd = await TestEtcd.start();
  // An instance that never reads anything new: a `--wait` on this key waits until it is stopped.
  const ack = servingAcknowledgement({ instance: "laggard" });
  await etcd.put(`${KEY}/instances/laggard`, JSON.stringify(ack));
});
afterAll(async () => {
  await etcd?.stop();
});

/** The CLI's environment: the test's etcd and key. */
const maintEnv = () => ({ ETCD_ENDPOINTS: etcd.endpoint, MAINTENANCE_KEY: KEY, MAINTENANCE_GLOBAL_KEY: "" });
const spawn = (args: string[]) => spawnMaint(args, maintEnv());
const maint = (...args: string[]) => runMaint(args, maintEnv());

/** `maint on --wait` held up by the laggard, once it is waiting (so it holds the lock). */
async function waitingOperation(): Promise<RunningMaint> {
  const run = spawn(["on", "--wait", "--timeout", "5m", "--reason", "disk upgrade"]);
  await waitFor("maint to be waiting", () => run.stdout().includes("waiting up to 5m"));
  return run;
}

async function storedValue(key: string): Promise<string | null> {
  return etcd.client.get(key).string();
}

describe("maint holds one operation lock per key", () => {
  test("a second operation exits 3 naming the holder; Ctrl-C detaches the first: exit 4, the key as written, the lock released", async () => {
    const first = await waitingOperation();
    const holder = new RegExp(
      `^maint: another operation holds ${LOCK}: ${OPERATOR} \\(pid ${first.proc.pid}\\) running ` +
        "`maint on --wait --timeout 5m --reason 'disk upgrade'`, since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(\\S+ ago\\), lease [0-9a-f]+$",
    );

    const second = await maint("off");
    expect(second.code).toBe(3);
    expect(second.stdout).toBe("");
    expect(second.stderr.trimEnd().split("\n")).toEqual([expect.stringMatching(holder), NOTHING_WRITTEN]);
    expect(await storedValue(KEY)).toBe('{"mode":"full","reason":"disk upgrade"}');

    const status = await maint("status");
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(
      new RegExp(`^operation lock ${LOCK}: held by ${OPERATOR} \\(pid ${first.proc.pid}\\) running `, "m"),
    );
    const json = JSON.parse((await maint("status", "--json")).stdout) as {
      service_key: { operation_lock: { key: string; holder: { operator: string; pid: number; command: string } } };
    };
    expect(json.service_key.operation_lock).toMatchObject({
      key: LOCK,
      holder: { operator: OPERATOR, pid: first.proc.pid, command: "on --wait --timeout 5m --reason 'disk upgrade'" },
    });

    first.proc.kill("SIGINT");
    expect(await first.exited).toBe(4);
    expect(first.stderr().trimEnd().split("\n")).toEqual([
      expect.stringMatching(
        new RegExp(
          `^maint: detached after \\S+; nothing is cancelled: ${KEY} stays as written and every instance goes on acting on it$`,
        ),
      ),
      "maint: follow it with `maint status`; the operation lock is released",
    ]);
    expect(await storedValue(KEY)).toBe('{"mode":"full","reason":"disk upgrade"}');
    expect(await storedValue(LOCK)).toBeNull();

    const again = await maint("off");
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: "" });
    expect(await storedValue(KEY)).toBeNull();
  }, 30_000);

  test("a stale lock: `maint unlock` breaks it naming its holder, and the next operation runs", async () => {
    const since = "2026-11-30T22:00:00.000Z";
    const stale = JSON.stringify({ operator: "bob@bastion", pid: 99, command: "on --wait", since });
    const lease = (await etcd.etcdctl("lease", "grant", "600")).split(" ")[1] ?? "";
    await etcd.etcdctl("put", `--lease=${lease}`, LOCK, stale);
    const described = `bob@bastion (pid 99) running \`maint on --wait\`, since ${since} (`;

    const refused = await maint("on");
    expect(refused.code).toBe(3);
    expect(refused.stderr).toStartWith(`maint: another operation holds ${LOCK}: ${described}`);
    expect(refused.stderr).toContain(`ago), lease ${lease}\n${NOTHING_WRITTEN}\n`);
    expect(await storedValue(KEY)).toBeNull();

    const broken = await maint("unlock");
    expect(broken.code).toBe(0);
    expect(broken.stdout).toStartWith(`broke ${LOCK}, held by ${described}`);
    expect(broken.stdout).toEndWith(`ago), lease ${lease}\n`);
    expect(await storedValue(LOCK)).toBeNull();
    expect(await etcd.etcdctl("lease", "timetolive", lease)).toContain("already expired");

    const on = await maint("on");
    expect({ code: on.code, stderr: on.stderr }).toEqual({ code: 0, stderr: "" });
    expect(await storedValue(LOCK)).toBeNull();
    expect((await maint("unlock")).stdout).toBe(`no operation holds ${LOCK}\n`);
    expect((await maint("off")).code).toBe(0);
  }, 30_000);

  test("a holder whose lock was broken carries on waiting, and says at its end that the lock was lost", async () => {
    const first = await waitingOperation();
    expect((await maint("unlock")).stdout).toStartWith(`broke ${LOCK}, held by ${OPERATOR} (pid ${first.proc.pid})`);
    const second = await maint("on", "--reason", "second");
    expect({ code: second.code, stderr: second.stderr }).toEqual({ code: 0, stderr: "" });
    expect(first.proc.exitCode).toBeNull();

    first.proc.kill("SIGINT");
    expect(await first.exited).toBe(4);
    expect(first.stderr().trimEnd().split("\n").at(-1)).toBe(
      `maint: the operation lock ${LOCK} had been lost before the end (broken with \`maint unlock\`, or its lease ` +
        "expired while etcd was out of reach): another operation may have run alongside this one",
    );
    expect((await maint("off")).code).toBe(0);
  }, 30_000);

  test("a holder killed with SIGKILL loses the lock with its lease", async () => {
    const first = await waitingOperation();
    first.proc.kill("SIGKILL");
    await first.exited;
    expect(await storedValue(LOCK)).not.toBeNull();
    await waitFor("the lock's lease to expire", async () => (await storedValue(LOCK)) === null, 20_000);
    const off = await maint("off");
    expect({ code: off.code, stderr: off.stderr }).toEqual({ code: 0, stderr: "" });
  }, 30_000);
});
