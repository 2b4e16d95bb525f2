// node:util's parseArgs: built in (no dependency), small and well kept, and the same on Node, Bun and Deno.
import { parseArgs } from "node:util";
import { type Mode, parseMaintenanceValue } from "../maintenance/value.ts";
import { DurationError, parseDuration } from "./duration.ts";
import { LOCK_LEASE_SECONDS } from "./operation-lock.ts";

export const USAGE = `Usage: maint <command> [options]

Turns maintenance on and off through etcd and shows how every instance follows.

Commands:
  on       write the maintenance key (full maintenance unless --read-only)
  off      delete the maintenance key (maintenance off)
  status   show both keys, the operation locks and every instance's acknowledgement
  unlock   break the operation lock, when its holder is gone or stuck (see below)

Options of on:
  --reason <text>          the 503's detail
  --retry-after <seconds>  the 503's Retry-After (whole seconds)
  --read-only              serve GET and HEAD, refuse writes (default: full maintenance)
  --ttl <duration>         attach an etcd lease: the key disappears (maintenance off) after it
  --start <RFC 3339>       a window: maintenance from this instant ...
  --end <RFC 3339>         ... until this one (each instance applies it on its own clock)
Options of on, off and unlock:
  --global                 the fleet key (MAINTENANCE_GLOBAL_KEY) instead of the service key
Options of on and off:
  --wait                   wait until every instance acknowledges: drained (on) or out of maintenance (off)
  --timeout <duration>     how long --wait waits (default 60s); exit 1 naming the instances not there
Options of status:
  --json                   machine-readable output
Options of every command:
  --endpoints <list>       etcd endpoints, comma-separated (overrides ETCD_ENDPOINTS)
  -h, --help               this help

Durations: 90s, 30m, 2h, 1h30m (a bare number means seconds).
Environment: ETCD_ENDPOINTS, ETCD_USERNAME/ETCD_PASSWORD, ETCD_CA_FILE, ETCD_CERT_FILE/ETCD_KEY_FILE,
MAINTENANCE_KEY (default /maintenance/database-service), MAINTENANCE_GLOBAL_KEY (default /maintenance/global).

One operation at a time: on and off hold a lock (<key>/lock, under a ${LOCK_LEASE_SECONDS} s etcd lease kept alive
while they run, --wait included); meanwhile another on or off on that key exits 3 naming the holder. A holder
that is killed loses the lock with its lease; \`maint unlock\` breaks one whose holder is alive but stuck.
Ctrl-C during --wait detaches and cancels nothing: the write stands and the instances go on acting on it;
\`maint status\` shows where each one is. A second Ctrl-C exits at once.

Exit codes: 0 done; 1 etcd unreachable, or --wait not satisfied (timed out, or an instance left before it got
there); 2 bad usage; 3 another operation holds the lock; 4 detached from --wait by Ctrl-C (the write stands);
130 interrupted before anything was written.`;

/** One line pointing at the usage, printed after a usage error. */
export const USAGE_HINT = "Run `maint --help` for usage.";

/** Bad command line: exit 2. */
export class UsageError extends Error {}

/** Default of `--timeout`. */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** What `maint on` writes: the JSON form of a maintenance value. */
export interface OnValue {
  mode: Exclude<Mode, "off">;
  reason?: string;
  retry_after?: number;
  start?: string;
  end?: string;
}

interface Common {
  /** `--endpoints`, when given. */
  endpoints: string | undefined;
}

interface Waiting {
  global: boolean;
  wait: boolean;
  timeoutMs: number;
}

/** A parsed command line. */
export type Invocation =
  | { command: "help" }
  | (Common & Waiting & { command: "on"; value: OnValue; ttlSeconds: number | null })
  | (Common & Waiting & { command: "off" })
  | (Common & { command: "status"; json: boolean })
  | (Common & { command: "unlock"; global: boolean });

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  endpoints: { type: "string" },
  reason: { type: "string" },
  "retry-after": { type: "string" },
  "read-only": { type: "boolean" },
  ttl: { type: "string" },
  start: { type: "string" },
  end: { type: "string" },
  global: { type: "boolean" },
  wait: { type: "boolean" },
  timeout: { type: "string" },
  json: { type: "boolean" },
} as const;

type OptionName = keyof typeof OPTIONS;

const WAITING: OptionName[] = ["global", "wait", "timeout"];
const COMMANDS = ["on", "off", "status", "unlock"] as const;
type Command = (typeof COMMANDS)[number];
const isCommand = (word: string): word is Command => (COMMANDS as readonly string[]).includes(word);
const ALLOWED: Record<Command, OptionName[]> = {
  on: ["reason", "retry-after", "read-only", "ttl", "start", "end", ...WAITING],
  off: WAITING,
  status: ["json"],
  unlock: ["global"],
};

/**
 * Parses `argv` (without the runtime and script): a command, then its
 * options. Throws {@link UsageError} for anything it does not understand,
 * including a value the maintenance key would refuse.
 */
export function parseCommandLine(argv: string[]): Invocation {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: "help" };
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError("missing command: on, off, status or unlock");
  if (!isCommand(command)) {
    throw new UsageError(`unknown command "${command}": use on, off, status or unlock`);
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  for (const name of Object.keys(values) as OptionName[]) {
    if (name !== "endpoints" && name !== "help" && !ALLOWED[command].includes(name)) {
      throw new UsageError(`option --${name} does not apply to \`maint ${command}\``);
    }
  }
  const endpoints = values.endpoints;
  if (endpoints !== undefined && endpoints.trim() === "") throw new UsageError("--endpoints must not be empty");
  if (command === "status") return { command, endpoints, json: values.json ?? false };
  if (command === "unlock") return { command, endpoints, global: values.global ?? false };

  if (values.timeout !== undefined && !values.wait) throw new UsageError("--timeout only applies with --wait");
  const waiting: Waiting = {
    global: values.global ?? false,
    wait: values.wait ?? false,
    timeoutMs: values.timeout === undefined ? DEFAULT_TIMEOUT_MS : duration("--timeout", values.timeout),
  };
  if (command === "off") return { command, endpoints, ...waiting };

  let ttlSeconds: number | null = null;
  if (values.ttl !== undefined) {
    const ms = duration("--ttl", values.ttl);
    if (ms % 1000 !== 0) throw new UsageError(`--ttl "${values.ttl}" must be whole seconds (an etcd lease's unit)`);
    ttlSeconds = ms / 1000;
  }
  const value: OnValue = { mode: values["read-only"] ? "read-only" : "full" };
  if (values.reason !== undefined) value.reason = values.reason;
  if (values["retry-after"] !== undefined) value.retry_after = retryAfter(values["retry-after"]);
  if (values.start !== undefined) value.start = timestamp("--start", values.start);
  if (values.end !== undefined) value.end = timestamp("--end", values.end);
  // The key's own parser decides what is valid: one source of truth for the CLI and the instances.
  const check = parseMaintenanceValue(JSON.stringify(value));
  if (!check.ok) {
    const problem = check.problem.replace("start must be before end", "--start must be before --end");
    throw new UsageError(`the value would be refused: ${problem}`);
  }
  if (value.end !== undefined && Date.parse(value.end) <= Date.now()) {
    throw new UsageError(`--end ${value.end} is in the past: the value would change nothing`);
  }
  return { command, endpoints, ...waiting, value, ttlSeconds };
}

function duration(flag: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    if (error instanceof DurationError) throw new UsageError(`${flag}: ${error.message}`);
    throw error;
  }
}

function retryAfter(text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`--retry-after "${text}" must be a whole number of seconds`);
  return Number(text.trim());
}

/**
 * Checks `text` as the key's parser does, and writes it normalized to UTC
 * (`toISOString`), so the value holds what the instances will understand.
 */
function timestamp(flag: string, text: string): string {
  const probe = parseMaintenanceValue(JSON.stringify({ mode: "full", start: text }));
  const start = probe.ok ? probe.request.start : null;
  if (!start || Number.isNaN(start.getTime())) {
    throw new UsageError(`${flag} "${text}" is not an RFC 3339 timestamp (e.g. 2030-01-31T22:00:00Z)`);
  }
  return start.toISOString();
}

/** parseArgs' messages, shortened to one line. */
function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && unknown) return `unknown option ${unknown[1]}`;
  const missing = /^Option '(--?[\w-]+)[^']*' argument missing/.exec(message);
  if (missing) return `option ${missing[1]} needs a value`;
  const ambiguous = /^Option '(--?[\w-]+)[^']*' argument is ambiguous/.exec(message);
  if (ambiguous)
    return `option ${ambiguous[1]} needs a value (write ${ambiguous[1]}=<value> for one starting with "-")`;
  return message.split("\n")[0] ?? message;
}
