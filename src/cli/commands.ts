import { hostname, userInfo } from "node:os";
import { pid } from "node:process";
import { type Config, ConfigError, loadConfig } from "../config.ts";
import { createEtcdClient } from "../maintenance/etcd-client.ts";
import { instancesPrefix } from "../maintenance/fleet.ts";
import { type MaintenanceRequest, modeAt, parseMaintenanceValue } from "../maintenance/value.ts";
import { instancesTable } from "./acks.ts";
import { type Invocation, parseCommandLine, USAGE, USAGE_HINT, UsageError } from "./args.ts";
import { formatDuration } from "./duration.ts";
import { EXIT } from "./exit-codes.ts";
import { type Pending, waitForFleet } from "./fleet-wait.ts";
import {
  describeHolder,
  LOCK_LEASE_SECONDS,
  type LockHolder,
  operationLockKey,
  parseHolder,
} from "./operation-lock.ts";
import { type Output, printable, printableJson } from "./output.ts";
import { EtcdCallError, MaintenanceStore, type StoredKey } from "./store.ts";

/** The variables the CLI reads; others (PORT, DATABASE_URL, …) are the service's business, not the CLI's. */
const CLI_VARIABLES = [
  "ETCD_ENDPOINTS",
  "ETCD_USERNAME",
  "ETCD_PASSWORD",
  "ETCD_CA_FILE",
  "ETCD_CERT_FILE",
  "ETCD_KEY_FILE",
  "MAINTENANCE_KEY",
  "MAINTENANCE_GLOBAL_KEY",
] as const;

/** The keys a command works on. */
interface Keys {
  service: string;
  /** null when MAINTENANCE_GLOBAL_KEY is empty. */
  global: string | null;
}

/** What a command needs beside its store and keys. */
interface Context {
  out: Output;
  /** The command line, for the lock's holder. */
  argv: string[];
  /** Aborted on Ctrl-C. */
  interrupt: AbortSignal;
}

/**
 * Runs `maint` with `argv` (the arguments after the script) and `env`;
 * resolves with the exit code: 0 done, 1 etcd unreachable or --wait not
 * satisfied, 2 bad usage or configuration, and those of {@link EXIT}.
 * `interrupt` is Ctrl-C: before the write it stops the command, during
 * `--wait` it detaches. Always releases its lock and closes its etcd client.
 */
export async function runMaint(
  argv: string[],
  env: Record<string, string | undefined>,
  out: Output,
  interrupt: AbortSignal = new AbortController().signal,
): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    out.err(`maint: ${error.message}`);
    out.err(USAGE_HINT);
    return 2;
  }
  if (invocation.command === "help") {
    out.out(USAGE);
    return 0;
  }

  let config: Config;
  try {
    // The service's own parser: the CLI reads the same variables the same way.
    const own = Object.fromEntries(CLI_VARIABLES.map((name) => [name, env[name]]));
    if (invocation.endpoints !== undefined) own.ETCD_ENDPOINTS = invocation.endpoints;
    config = loadConfig(own);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    out.err(`maint: ${error.message}`);
    return 2;
  }
  const etcd = config.maintenanceSource;
  if (etcd.kind === "memory") {
    out.err("maint: ETCD_ENDPOINTS=memory is one process's in-process key: use that instance's admin API instead");
    return 2;
  }
  const keys: Keys = { service: config.maintenance.key, global: config.maintenance.globalKey };
  if ((invocation.command === "status" ? false : invocation.global) && keys.global === null) {
    out.err("maint: --global needs a fleet key, but MAINTENANCE_GLOBAL_KEY is empty");
    return 2;
  }

  const endpoints = etcd.endpoints.join(",");
  const client = createEtcdClient(etcd);
  const store = new MaintenanceStore(client);
  const context: Context = { out, argv, interrupt };
  try {
    switch (invocation.command) {
      case "on":
        return await underLock(store, keys, invocation, context, () => on(store, keys, invocation, context));
      case "off":
        return await underLock(store, keys, invocation, context, () => off(store, keys, invocation, context));
      case "status":
        return await status(store, keys, invocation.json, out);
      case "unlock":
        return await unlock(store, writtenKey(keys, invocation), out);
    }
  } catch (error) {
    if (!(error instanceof EtcdCallError)) throw error;
    out.err(
      error.unreachable
        ? `maint: cannot reach etcd at ${endpoints}: ${printable(error.message)}`
        : `maint: etcd at ${endpoints} refused the request: ${printable(error.message)}`,
    );
    return 1;
  } finally {
    client.close();
  }
}

type OnInvocation = Extract<Invocation, { command: "on" }>;
type OffInvocation = Extract<Invocation, { command: "off" }>;

/** The key a command writes, or whose lock it breaks: the fleet key with --global (checked to exist). */
const writtenKey = (keys: Keys, { global }: { global: boolean }) => (global ? (keys.global as string) : keys.service);

/**
 * Runs `operation` holding the operation lock on the key it writes, so two operators' `on`/`off`
 * (and their waits) never interleave; exits {@link EXIT.locked} naming the holder when another has
 * it. A Ctrl-C that came while the lock was taken stops here, before anything is written.
 */
async function underLock(
  store: MaintenanceStore,
  keys: Keys,
  invocation: { global: boolean },
  { out, argv, interrupt }: Context,
  operation: () => Promise<number>,
): Promise<number> {
  const lockKey = operationLockKey(writtenKey(keys, invocation));
  const unlockCommand = invocation.global ? "`maint unlock --global`" : "`maint unlock`";
  const holder: LockHolder = {
    operator: operatorName(),
    pid,
    command: argv.map(shellWord).join(" "),
    since: new Date().toISOString(),
  };
  const attempt = await store.acquireLock(lockKey, JSON.stringify(holder), LOCK_LEASE_SECONDS);
  if (!attempt.acquired) {
    out.err(`maint: another operation holds ${lockKey}: ${describeHolder(attempt.holder, Date.now())}`);
    out.err(
      `maint: nothing written; wait for it to end, or break the lock with ${unlockCommand} if its holder is stuck`,
    );
    return EXIT.locked;
  }
  try {
    if (interrupt.aborted) {
      out.err("maint: interrupted: nothing written");
      return EXIT.interrupted;
    }
    return await operation();
  } finally {
    const { lost } = await attempt.lock.release();
    // A history gone back took every lease with it; the command has said so already.
    if (lost && !store.historyReset) {
      out.err(
        `maint: the operation lock ${lockKey} had been lost before the end (broken with ${unlockCommand}, or its ` +
          "lease expired while etcd was out of reach): another operation may have run alongside this one",
      );
    }
  }
}

/** `user@host` of whoever runs the command. */
function operatorName(): string {
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry for this uid (some containers).
    user = "unknown";
  }
  return `${user}@${hostname()}`;
}

/** `word` as a shell would need it written, to show the holder's command line. */
const shellWord = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`);

/** Breaks the operation lock on `key`: for a holder that is stuck, alive but not finishing. */
async function unlock(store: MaintenanceStore, key: string, out: Output): Promise<number> {
  const lockKey = operationLockKey(key);
  const broken = await store.breakLock(lockKey);
  if (broken.value === null) {
    out.out(`no operation holds ${lockKey}`);
    return 0;
  }
  out.out(`broke ${lockKey}, held by ${describeHolder(broken, Date.now())}`);
  return 0;
}

async function on(
  store: MaintenanceStore,
  keys: Keys,
  invocation: OnInvocation,
  { out, interrupt }: Context,
): Promise<number> {
  const key = writtenKey(keys, invocation);
  const value = JSON.stringify(invocation.value);
  const written = await store.write(key, value, invocation.ttlSeconds);
  out.out(`maintenance ${invocation.value.mode}: wrote ${key} = ${value} at revision ${written.revision}`);
  if (written.lease !== null && invocation.ttlSeconds !== null) {
    const expires = new Date(Date.now() + invocation.ttlSeconds * 1000).toISOString();
    out.out(
      `lease ${written.lease}: the key is deleted (maintenance off) in ${formatDuration(invocation.ttlSeconds * 1000)}, ` +
        `about ${expires}`,
    );
  }
  const { start, end } = invocation.value;
  if (start !== undefined || end !== undefined) {
    out.out(`window: from ${start ?? "now"} until ${end ?? "turned off"}, on each instance's clock`);
  }
  if (!invocation.wait) return 0;
  return waitForFleet(store, out, {
    serviceKey: keys.service,
    writtenKey: key,
    target: { goal: "on", field: invocation.global ? "global_revision" : "revision", revision: written.revision },
    timeoutMs: invocation.timeoutMs,
    interrupt,
  });
}

async function off(
  store: MaintenanceStore,
  keys: Keys,
  invocation: OffInvocation,
  { out, interrupt }: Context,
): Promise<number> {
  const key = writtenKey(keys, invocation);
  const other = invocation.global ? keys.service : keys.global;
  const deleted = await store.delete(key);
  out.out(
    deleted.previous === null
      ? `maintenance off: ${key} was not set (revision ${deleted.revision})`
      : `maintenance off: deleted ${key} (it held ${printable(deleted.previous)}) at revision ${deleted.revision}`,
  );
  const holding = other === null ? null : await stillOn(store, other);
  if (holding) out.out(`note: ${other} still asks for ${holding}: instances stay in maintenance until it is off too`);
  if (!invocation.wait) return 0;
  return waitForFleet(store, out, {
    serviceKey: keys.service,
    writtenKey: key,
    // A delete of nothing leaves no event to read: then only the mode counts.
    target: {
      goal: "off",
      field: invocation.global ? "global_revision" : "revision",
      revision: deleted.previous === null ? null : deleted.revision,
    },
    timeoutMs: invocation.timeoutMs,
    interrupt,
    explain: async () => {
      const cause = other === null ? null : await stillOn(store, other).catch(() => null);
      return (p: Pending) =>
        cause && p.ack && p.ack.mode !== "off" ? `mode ${p.ack.mode}: still in maintenance because of ${other}` : p.why;
    },
  });
}

/** The mode `key` imposes now, or null when it imposes none (off, absent, or not understood). */
async function stillOn(store: MaintenanceStore, key: string): Promise<string | null> {
  const parsed = parseMaintenanceValue((await store.read(key)).value);
  if (!parsed.ok) return null;
  const mode = modeAt(parsed.request, Date.now());
  return mode === "off" ? null : mode;
}

async function status(store: MaintenanceStore, keys: Keys, json: boolean, out: Output): Promise<number> {
  const [service, global, { entries: instances }, serviceLock, globalLock] = await Promise.all([
    store.read(keys.service),
    keys.global === null ? Promise.resolve(null) : store.read(keys.global),
    store.instances(keys.service),
    store.read(operationLockKey(keys.service)),
    keys.global === null ? Promise.resolve(null) : store.read(operationLockKey(keys.global)),
  ]);
  const leaseLeft = async (stored: StoredKey | null) =>
    stored?.lease ? await store.leaseSecondsLeft(stored.lease).catch(() => null) : null;
  const [serviceLease, globalLease] = await Promise.all([leaseLeft(service), leaseLeft(global)]);
  const now = Date.now();

  if (json) {
    const describe = (stored: StoredKey, leaseSeconds: number | null, lock: StoredKey | null) => {
      const parsed = parseMaintenanceValue(stored.value);
      return {
        key: stored.key,
        value: stored.value,
        revision: stored.revision,
        lease: stored.lease,
        lease_seconds_left: leaseSeconds,
        mode_now: parsed.ok ? modeAt(parsed.request, now) : null,
        problem: parsed.ok ? null : parsed.problem,
        operation_lock:
          lock?.value == null
            ? null
            : { key: lock.key, lease: lock.lease, value: lock.value, holder: parseHolder(lock.value) },
      };
    };
    const report = {
      store_revision: service.storeRevision,
      service_key: describe(service, serviceLease, serviceLock),
      global_key: global && describe(global, globalLease, globalLock),
      instances: instances.map(({ name, ack, problem }) =>
        ack
          ? { ...ack, age_seconds: Math.max(0, Math.round((now - Date.parse(ack.updated_at)) / 100) / 10) }
          : { instance: name, problem },
      ),
    };
    out.out(printableJson(report));
    return 0;
  }

  const line = (role: string, stored: StoredKey, leaseSeconds: number | null) => {
    if (stored.value === null) return `${role} ${stored.key}: not set (off)`;
    const lease = stored.lease === null ? "" : `, lease ${stored.lease}, ${leaseSeconds ?? "?"}s left`;
    return `${role} ${stored.key} = ${printable(stored.value)} (revision ${stored.revision}${lease}): ${meaning(stored.value, now)}`;
  };
  out.out(line("service key", service, serviceLease));
  out.out(
    global === null ? "fleet key: none (MAINTENANCE_GLOBAL_KEY is empty)" : line("fleet key", global, globalLease),
  );
  for (const lock of [serviceLock, globalLock]) {
    if (lock?.value != null) out.out(`operation lock ${lock.key}: held by ${describeHolder(lock, now)}`);
  }
  const prefix = instancesPrefix(keys.service);
  if (instances.length === 0) {
    out.out(`no instance acknowledges under ${prefix}`);
    return 0;
  }
  out.out(`${instances.length} instance${instances.length === 1 ? "" : "s"} under ${prefix}:`);
  out.out(instancesTable(instances, now, "status"));
  return 0;
}

/** What a stored value asks for, in words. */
function meaning(raw: string, now: number): string {
  const parsed = parseMaintenanceValue(raw);
  if (!parsed.ok) return `not understood (${parsed.problem}); instances keep their state`;
  const request: MaintenanceRequest = parsed.request;
  if (request.mode === "off") return "off";
  if (!request.start && !request.end) return request.mode;
  const window = `${request.start?.toISOString() ?? "now"} until ${request.end?.toISOString() ?? "turned off"}`;
  const state =
    modeAt(request, now) !== "off" ? "in force" : request.start && now < request.start.getTime() ? "not begun" : "over";
  return `${request.mode} from ${window} (${state})`;
}
