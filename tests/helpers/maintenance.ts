import { expect } from "bun:test";
import postgres from "postgres";
import type { MaintenanceStatusJson, RejectedValueJson, SourceStatusJson } from "../../src/health/health.schemas.ts";
import { type Logger, silentLogger } from "../../src/logger.ts";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";
import { type Service, startService } from "../../src/service.ts";
import type { TestEtcd } from "./etcd.ts";
import { type ExpectedProblem, expectProblem, type Requester } from "./http.ts";
import { testConfig } from "./service.ts";
import { waitFor } from "./wait.ts";

/** The 503 detail when the key turns maintenance on without a reason. */
export const DEFAULT_MAINTENANCE_DETAIL = "The service is in maintenance. Please retry later.";

/** The 503 detail of a write refused in read-only maintenance without a reason. */
export const READ_ONLY_DETAIL =
  "The service is read-only during maintenance. Reads are served; please retry writes later.";

/** The detail while the `closed` start policy waits for etcd's first answer. */
export const START_CLOSED_DETAIL = "Maintenance state is not known yet: waiting for etcd.";

/** The maintenance 503 problem for a request to `instance`. */
export function maintenanceProblem(instance: string, detail = DEFAULT_MAINTENANCE_DETAIL): ExpectedProblem {
  return { status: 503, type: "maintenance", title: "Service Unavailable", detail, instance };
}

/**
 * Asserts `response` is exactly the maintenance 503: problem+json, the body
 * for `instance`, and `Retry-After: <retryAfter>`.
 */
export async function expectMaintenance(
  response: Response,
  instance: string,
  retryAfter: number,
  detail = DEFAULT_MAINTENANCE_DETAIL,
): Promise<void> {
  expect(response.headers.get("retry-after")).toBe(String(retryAfter));
  await expectProblem(response, maintenanceProblem(instance, detail));
}

/** An in-process service following `key` on `endpoints`; resolves once the schema is applied. */
export async function startMaintenanceService(
  databaseUrl: string,
  endpoints: string,
  key: string,
  env: Record<string, string> = {},
  logger: Logger = silentLogger,
): Promise<Service> {
  const config = testConfig(databaseUrl, { ETCD_ENDPOINTS: endpoints, MAINTENANCE_KEY: key, ...env });
  const service = startService(config, logger);
  await service.schemaApplied;
  return service;
}

/** Writes `value` to `key` with the test's own client; resolves with the write's revision. */
export async function put(etcd: TestEtcd, key: string, value: string): Promise<number> {
  const response = await etcd.client.put(key).value(value).exec();
  return Number(response.header.revision);
}

/** `etcdctl put <key> <value>`, as an operator types it; resolves with the write's revision. */
export async function etcdctlPut(etcd: TestEtcd, key: string, value: string, ...flags: string[]): Promise<number> {
  const out = await etcd.etcdctl("put", "-w", "json", ...flags, key, value);
  return (JSON.parse(out) as { header: { revision: number } }).header.revision;
}

/** `etcdctl del <key>`; resolves with the delete's revision. */
export async function etcdctlDel(etcd: TestEtcd, key: string): Promise<number> {
  const out = await etcd.etcdctl("del", "-w", "json", key);
  return (JSON.parse(out) as { header: { revision: number } }).header.revision;
}

/**
 * Waits until the service has taken a valid reading at `revision` or later and
 * every transition it started is over.
 */
export async function applied(service: Service, revision: number): Promise<void> {
  await waitFor(
    `the reading at revision ${revision}`,
    () => Number(service.maintenance.status().revision ?? -1) >= revision,
  );
  await service.maintenance.settled();
}

/** Like {@link applied}, for one of the keys the service follows (its own or the fleet key). */
export async function appliedKey(service: Service, key: string, revision: number): Promise<void> {
  await waitFor(
    `the reading of ${key} at revision ${revision}`,
    () => Number(service.maintenance.status().keys.find((k) => k.key === key)?.revision ?? -1) >= revision,
  );
  await service.maintenance.settled();
}

/** Attempts at {@link putDeliveredByWatch} before it calls the watch broken. */
const WATCH_ATTEMPTS = 3;

/**
 * Writes `value` to `key` (the service's own or the fleet key) and waits until
 * the service applied it, asserting that its watch delivered it: etcd served no
 * GET between the write and its application. The service also re-reads its keys
 * every 30 s; an attempt such a re-read happened to fall into proves nothing and
 * is made again. Resolves with the revision applied.
 */
export async function putDeliveredByWatch(etcd: TestEtcd, service: Service, key: string, value: string) {
  for (let attempt = 1; ; attempt++) {
    const before = await etcd.rangeRequests();
    const revision = await put(etcd, key, value);
    // This very revision: after etcd's history went back, the service may still hold a higher one of the old.
    await waitFor(
      `the reading of ${key} at revision ${revision}`,
      () => service.maintenance.status().keys.find((k) => k.key === key)?.revision === revision,
    );
    await service.maintenance.settled();
    const gets = (await etcd.rangeRequests()) - before;
    if (gets === 0) return revision;
    if (attempt === WATCH_ATTEMPTS) {
      throw new Error(
        `${key} = ${value} was applied only after etcd served ${gets} GET(s), ${WATCH_ATTEMPTS} times: no watch delivers it`,
      );
    }
  }
}

/** The source's connection state as the service reports it. */
export const sourceStatus = (service: Service) => service.maintenance.status().source.status;

/** `GET /stats`, asserted 200, parsed. */
export async function getStats(app: Requester): Promise<Stats> {
  const response = await app.request("/stats");
  expect(response.status).toBe(200);
  return (await response.json()) as Stats;
}

/** `GET /health` with its status and parsed body. */
export async function getHealth(app: Requester): Promise<{ status: number; body: Health }> {
  const response = await app.request("/health");
  return { status: response.status, body: (await response.json()) as Health };
}

/** What `/stats` answers (the fields the tests read). */
export interface Stats {
  maintenance: boolean;
  maintenance_status: MaintenanceStatusJson;
  database: {
    generation: number;
    max: number;
    application_name: string;
    open_connections: number | null;
    in_flight: number;
    queries_total: number;
    query_errors_total: number;
  };
  http: { in_flight: number; held: number; hold_outcomes: Record<string, number> };
}

/** What `/health` answers. */
export interface Health {
  status: "healthy" | "unhealthy" | "maintenance";
  maintenance: boolean;
  mode: "off" | "read-only" | "full";
  key: string;
  reason: string | null;
  since: string | null;
  retry_after_seconds: number | null;
  rejected: RejectedValueJson | null;
  checks: {
    database: { status: "up" | "down"; latency_ms?: number; detail?: string };
    schema: { status: "ready" | "pending" };
    maintenance_source: SourceStatusJson;
  };
  timestamp: string;
}

/** Connections whose application_name starts with `prefix`, by name, as pg_stat_activity lists them. */
export async function connectionsOf(sql: postgres.Sql, prefix: string): Promise<string[]> {
  const rows = await sql<{ application_name: string }[]>`
    SELECT application_name FROM pg_stat_activity WHERE starts_with(application_name, ${prefix})`;
  return rows.map((row) => row.application_name);
}

/** A transaction holding `LOCK TABLE users IN ACCESS EXCLUSIVE MODE`, so every query on users waits. */
export interface TableLock {
  /** Commits the transaction: waiting queries proceed. */
  release(): Promise<void>;
}

/** Takes the lock on its own connection and holds it until {@link TableLock.release}. */
export async function lockUsersTable(databaseUrl: string): Promise<TableLock> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked!: () => void;
  const holding = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const transaction = sql.begin(async (tx) => {
    await tx`LOCK TABLE users IN ACCESS EXCLUSIVE MODE`;
    locked();
    await released;
  });
  await Promise.race([holding, transaction]);
  let done = false;
  return {
    async release() {
      if (done) return;
      done = true;
      release();
      await transaction;
      await sql.end({ timeout: 1 });
    },
  };
}

/** Waits until `count` queries of connections named `prefix…` are waiting for a lock in PostgreSQL. */
export async function waitForLockWaiters(sql: postgres.Sql, prefix: string, count: number) {
  await waitFor(`${count} queries waiting on the users lock`, async () => {
    const [row] = await sql<{ waiting: number }[]>`
      SELECT count(*)::int AS waiting FROM pg_stat_activity
      WHERE starts_with(application_name, ${prefix}) AND wait_event_type = 'Lock'`;
    return (row?.waiting ?? 0) >= count;
  });
}

/** Whether the service is in maintenance now (its gate refuses requests). */
export const inMaintenance = (service: Service) => service.maintenance.status().enabled;

/** An instance's acknowledgement as a serving instance publishes it, with `fields` changed. */
export function servingAcknowledgement(
  fields: Partial<Acknowledgement> & Pick<Acknowledgement, "instance">,
): Acknowledgement {
  return {
    mode: "off",
    phase: "serving",
    revision: 1,
    global_revision: null,
    since: null,
    drained: true,
    in_flight: 0,
    pool_max: 10,
    open_connections: null,
    version: "test",
    updated_at: new Date().toISOString(),
    ...fields,
  };
}
