import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { runMaint } from "../../src/cli/commands.ts";
import type { Output } from "../../src/cli/output.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { servingAcknowledgement } from "../helpers/maintenance.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const KEY = "/maintenance/cli-escaping";
/** Clears the screen, homes the cursor, and writes a line of its own; then a right-to-left override. */
const HOSTILE_VALUE = "\u001b[2J\u001b[Hmaintenance off\r\nall clear\u202e\u009b31m";
const HOSTILE_VALUE_SHOWN = "\\x1b[2J\\x1b[Hmaintenance off\\r\\nall clear\\u202e\\x9b31m";
/** An instance id that sets the terminal's title, and a DEL. */
const HOSTILE_INSTANCE = "host\u001b]0;pwned\u0007\u007f";
const HOSTILE_INSTANCE_SHOWN = "host\\x1b]0;pwned\\x07\\x7f";
/** Anything a terminal would act on, but the line breaks between the CLI's own lines. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for control characters.
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

let etcd: TestEtcd;

beforeAll(async () => {
  etcd = await TestEtcd.start();
  const ack = servingAcknowledgement({ instance: HOSTILE_INSTANCE });
  await etcd.put(`${KEY}/instances/${HOSTILE_INSTANCE}`, JSON.stringify(ack));
  await etcd.put(`${KEY}/instances/unreadable\u001b[5m`, "not json");
});
afterAll(async () => {
  await etcd?.stop();
});

async function maint(...args: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const out: Output = { out: (line) => stdout.push(line), err: (line) => stderr.push(line) };
  const env = { ETCD_ENDPOINTS: etcd.endpoint, MAINTENANCE_KEY: KEY, MAINTENANCE_GLOBAL_KEY: "" };
  const code = await runMaint(args, env, out);
  return { code, stdout: stdout.join("\n"), stderr: stderr.join("\n") };
}

describe("maint prints what etcd holds without letting it control the terminal", () => {
  test("`maint status` shows control characters in the value and in instance ids as escapes", async () => {
    await etcd.put(KEY, HOSTILE_VALUE);
    const { code, stdout, stderr } = await maint("status");
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(stdout).not.toMatch(UNSAFE);
    const lines = stdout.split("\n");
    expect(lines[0]).toStartWith(`service key ${KEY} = ${HOSTILE_VALUE_SHOWN} (revision `);
    expect(lines.filter((line) => line.startsWith(HOSTILE_INSTANCE_SHOWN))).toEqual([
      expect.stringMatching(/^host\\x1b\]0;pwned\\x07\\x7f +off +serving /),
    ]);
    expect(lines.filter((line) => line.startsWith("unreadable"))).toEqual([
      expect.stringMatching(/^unreadable\\x1b\[5m +unreadable: not JSON$/),
    ]);
  });

  test("`maint status --json` escapes them too, and reads back as the raw values", async () => {
    await etcd.put(KEY, HOSTILE_VALUE);
    const { code, stdout } = await maint("status", "--json");
    expect(code).toBe(0);
    expect(stdout).not.toMatch(UNSAFE);
    const report = JSON.parse(stdout) as {
      service_key: { value: string };
      instances: { instance: string }[];
    };
    expect(report.service_key.value).toBe(HOSTILE_VALUE);
    expect(report.instances.map((i) => i.instance).sort()).toEqual([HOSTILE_INSTANCE, "unreadable\u001b[5m"].sort());
  });

  test("`maint off` shows the deleted value with escapes", async () => {
    await etcd.put(KEY, HOSTILE_VALUE);
    const { code, stdout } = await maint("off");
    expect(code).toBe(0);
    expect(stdout).toStartWith(`maintenance off: deleted ${KEY} (it held ${HOSTILE_VALUE_SHOWN}) at revision `);
    expect(stdout).not.toMatch(UNSAFE);
  });
});
