import { describe, expect, test } from "bun:test";
import { parseEntry } from "../../src/cli/acks.ts";
import { DEFAULT_TIMEOUT_MS, parseCommandLine, UsageError } from "../../src/cli/args.ts";
import { runMaint } from "../../src/cli/commands.ts";
import { formatDuration, parseDuration } from "../../src/cli/duration.ts";
import { assess } from "../../src/cli/fleet-wait.ts";
import { renderTable } from "../../src/cli/table.ts";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";
import { drainedAcknowledgement, entryOf } from "../helpers/acknowledgement.ts";

describe("durations", () => {
  test.each([
    ["90s", 90_000],
    ["30m", 1_800_000],
    ["2h", 7_200_000],
    ["1h30m", 5_400_000],
    ["1d", 86_400_000],
    ["500ms", 500],
    ["1m500ms", 60_500],
    ["20", 20_000],
    [" 5S ", 5000],
  ])("%p is %p ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each(["", "0", "0s", "5x", "-5s", "1.5s", "s", "5 s", "m5", "1e3"])("%p is refused", (text) => {
    expect(() => parseDuration(text)).toThrow();
  });

  test.each([
    [250, "250ms"],
    [1500, "1.5s"],
    [59_000, "59s"],
    [90_000, "1m30s"],
    [7_200_000, "2h"],
    [90_061_000, "1d1h1m1s"],
  ])("%p ms reads %p", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe("parseCommandLine", () => {
  const common = { endpoints: undefined, global: false, wait: false, timeoutMs: DEFAULT_TIMEOUT_MS };

  test("`on` alone asks for full maintenance on the service key", () => {
    expect(parseCommandLine(["on"])).toEqual({ command: "on", ...common, value: { mode: "full" }, ttlSeconds: null });
  });

  test("`on` with every option", () => {
    expect(
      parseCommandLine([
        "on",
        "--read-only",
        "--reason",
        "disk upgrade",
        "--retry-after",
        "120",
        "--ttl",
        "30m",
        "--start",
        "2031-01-01T10:00:00+01:00",
        "--end=2031-01-01T12:00:00Z",
        "--global",
        "--wait",
        "--timeout",
        "2m",
        "--endpoints",
        "a:2379,b:2379",
      ]),
    ).toEqual({
      command: "on",
      endpoints: "a:2379,b:2379",
      global: true,
      wait: true,
      timeoutMs: 120_000,
      ttlSeconds: 1800,
      value: {
        mode: "read-only",
        reason: "disk upgrade",
        retry_after: 120,
        start: "2031-01-01T09:00:00.000Z",
        end: "2031-01-01T12:00:00.000Z",
      },
    });
  });

  test("`off`, `status` and `unlock`", () => {
    expect(parseCommandLine(["off", "--global", "--wait", "--timeout", "5s"])).toEqual({
      command: "off",
      endpoints: undefined,
      global: true,
      wait: true,
      timeoutMs: 5000,
    });
    expect(parseCommandLine(["status", "--json"])).toEqual({ command: "status", endpoints: undefined, json: true });
    expect(parseCommandLine(["unlock", "--global"])).toEqual({ command: "unlock", endpoints: undefined, global: true });
    expect(parseCommandLine(["unlock"])).toEqual({ command: "unlock", endpoints: undefined, global: false });
  });

  test("--help and -h win over everything else", () => {
    expect(parseCommandLine(["--help"])).toEqual({ command: "help" });
    expect(parseCommandLine(["on", "-h"])).toEqual({ command: "help" });
  });

  test.each([
    [["on", "--frobnicate"], "unknown option --frobnicate"],
    [["on", "-x"], "unknown option -x"],
    [["frobnicate"], 'unknown command "frobnicate": use on, off, status or unlock'],
    [[], "missing command: on, off, status or unlock"],
    [["on", "off"], 'unexpected argument "off"'],
    [["on", "--reason"], "option --reason needs a value"],
    [["on", "--retry-after", "-3"], "option --retry-after needs a value"],
    [["on", "--retry-after=-3"], '--retry-after "-3" must be a whole number of seconds'],
    [["on", "--retry-after", "1.5"], '--retry-after "1.5" must be a whole number of seconds'],
    [["on", "--retry-after", "999999999"], "the value would be refused: retry_after must be at most a week"],
    [["on", "--ttl", "10x"], '--ttl: "10x" is not a duration'],
    [["on", "--ttl", "0s"], '--ttl: "0s" must be longer than zero'],
    [["on", "--ttl", "1500ms"], '--ttl "1500ms" must be whole seconds'],
    [["on", "--wait", "--timeout", "soon"], '--timeout: "soon" is not a duration'],
    [["on", "--timeout", "3s"], "--timeout only applies with --wait"],
    [["on", "--start", "tomorrow"], '--start "tomorrow" is not an RFC 3339 timestamp'],
    [["on", "--start", "2031-02-30T10:00:00Z"], '--start "2031-02-30T10:00:00Z" is not an RFC 3339 timestamp'],
    [["on", "--end", "2031-01-01T10:00:00"], '--end "2031-01-01T10:00:00" is not an RFC 3339 timestamp'],
    [
      ["on", "--start", "2031-01-01T12:00:00Z", "--end", "2031-01-01T11:00:00Z"],
      "the value would be refused: --start must be before --end",
    ],
    [["on", "--end", "2001-01-01T00:00:00Z"], "--end 2001-01-01T00:00:00.000Z is in the past"],
    [["on", "--reason", "x".repeat(501)], "the value would be refused: reason is too long"],
    [["on", "--json"], "option --json does not apply to `maint on`"],
    [["off", "--read-only"], "option --read-only does not apply to `maint off`"],
    [["status", "--wait"], "option --wait does not apply to `maint status`"],
    [["unlock", "--wait"], "option --wait does not apply to `maint unlock`"],
    [["status", "--endpoints", " "], "--endpoints must not be empty"],
  ])("%p is a usage error", (argv, message) => {
    expect(() => parseCommandLine(argv)).toThrow(UsageError);
    expect(() => parseCommandLine(argv)).toThrow(message);
  });
});

describe("runMaint before it reaches etcd", () => {
  async function run(argv: string[], env: Record<string, string> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runMaint(argv, env, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out, err };
  }

  test("a usage error: exit 2, the message, and a hint", async () => {
    expect(await run(["on", "--ttl", "soon"])).toEqual({
      code: 2,
      out: [],
      err: ['maint: --ttl: "soon" is not a duration (use e.g. 90s, 30m, 2h or 1h30m)', "Run `maint --help` for usage."],
    });
  });

  test("--help: exit 0 with the usage", async () => {
    const { code, out } = await run(["--help"]);
    expect(code).toBe(0);
    expect(out.join("\n")).toContain("Usage: maint <command> [options]");
  });

  test("a bad variable is named, exit 2; variables the CLI does not read are ignored", async () => {
    expect(await run(["status"], { ETCD_USERNAME: "root", PORT: "not a port" })).toEqual({
      code: 2,
      out: [],
      err: ["maint: invalid configuration:\n  ETCD_USERNAME/ETCD_PASSWORD: set both or neither"],
    });
  });

  test("ETCD_ENDPOINTS=memory has no fleet to talk to: exit 2", async () => {
    const { code, err } = await run(["status"], { ETCD_ENDPOINTS: "memory" });
    expect(code).toBe(2);
    expect(err[0]).toContain("ETCD_ENDPOINTS=memory");
  });

  test("--global without a fleet key: exit 2", async () => {
    expect(await run(["on", "--global"], { MAINTENANCE_GLOBAL_KEY: "" })).toEqual({
      code: 2,
      out: [],
      err: ["maint: --global needs a fleet key, but MAINTENANCE_GLOBAL_KEY is empty"],
    });
  });
});

const ack = drainedAcknowledgement;
const entry = (fields: Partial<Acknowledgement>) => entryOf(ack(fields));

describe("assess", () => {
  const on = { goal: "on", field: "revision", revision: 10 } as const;

  test("`on`: ready when drained, in maintenance and at or past the revision", () => {
    expect(assess([entry({}), entry({ instance: "host-b", revision: 12 })], on)).toEqual([]);
  });

  test("`on`: names each instance not there, with why", () => {
    const pending = assess(
      [
        entry({ instance: "behind", revision: 9 }),
        entry({ instance: "draining", drained: false, phase: "entering", in_flight: 2 }),
        entry({ instance: "off", mode: "off" }),
        { name: "junk", ack: null, problem: "not JSON" },
      ],
      on,
    );
    expect(pending.map((p) => [p.name, p.why])).toEqual([
      ["behind", "has not read revision 10 yet (at 9)"],
      ["draining", "not drained (phase entering, 2 in flight)"],
      ["off", "mode off (a window not begun yet, or the value was replaced)"],
      ["junk", "unreadable acknowledgement: not JSON"],
    ]);
  });

  test("`--global` reads global_revision; an instance without a fleet key never gets there", () => {
    const target = { goal: "on", field: "global_revision", revision: 9 } as const;
    expect(assess([entry({ global_revision: 9 })], target)).toEqual([]);
    expect(assess([entry({ global_revision: null })], target)[0]?.why).toBe(
      "has not read revision 9 yet (does not follow that key)",
    );
  });

  test("`off`: ready when mode off; without a revision only the mode counts", () => {
    const off = { goal: "off", field: "revision", revision: null } as const;
    expect(assess([entry({ mode: "off", revision: 3 })], off)).toEqual([]);
    expect(assess([entry({ mode: "read-only" })], off)[0]?.why).toBe("mode read-only");
  });
});

describe("acknowledgement entries and tables", () => {
  test("an entry that is not an acknowledgement is reported, not thrown", () => {
    expect(parseEntry("x", "{")).toEqual({ name: "x", ack: null, problem: "not JSON" });
    expect(parseEntry("x", '{"instance":"x"}')).toMatchObject({ name: "x", ack: null });
    expect(parseEntry("key-name", JSON.stringify(ack({ instance: "host-z" })))).toMatchObject({
      name: "host-z",
      problem: null,
    });
  });

  test("renderTable pads columns and trims line ends", () => {
    expect(
      renderTable(
        ["A", "LONGER"],
        [
          ["wide cell", "x"],
          ["y", ""],
        ],
      ),
    ).toBe("A          LONGER\nwide cell  x\ny");
  });
});
