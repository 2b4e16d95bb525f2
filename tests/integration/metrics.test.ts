import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { startTestService } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const TOKEN = "metrics-admin-token";
let database: TestDatabase;
let service: Service;

/** The samples of a Prometheus text exposition, as `name{labels}` → value. */
async function scrape(): Promise<Map<string, number>> {
  const response = await service.app.request("/metrics");
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

const setMaintenance = (value: string) =>
  service.app.request("/admin/maintenance", {
    method: "PUT",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain" },
    body: value,
  });

beforeAll(async () => {
  database = await createTestDatabase();
  service = await startTestService(database.url, { ETCD_ENDPOINTS: "memory", ADMIN_TOKEN: TOKEN, DB_POOL_MAX: "7" });
});
afterAll(async () => {
  await service.stop();
  await database.drop();
});

describe("GET /metrics", () => {
  test("counts requests by method, route pattern and status, with a latency histogram", async () => {
    await service.app.request("/users");
    await service.app.request("/users/12345");
    await service.app.request("/users/12345");
    await service.app.request("/no/such/route");
    const samples = await scrape();
    expect(samples.get('http_requests_total{method="GET",route="/users",status="200"}')).toBe(1);
    expect(samples.get('http_requests_total{method="GET",route="/users/:id",status="404"}')).toBe(2);
    expect(samples.get('http_requests_total{method="GET",route="unmatched",status="404"}')).toBe(1);
    expect(samples.get('http_request_duration_seconds_count{method="GET",route="/users/:id",status="404"}')).toBe(2);
    expect(
      samples.get('http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/users/:id",status="404"}'),
    ).toBe(2);
    // The scrape itself is in flight while it is collected.
    expect(samples.get("http_requests_in_flight")).toBe(1);
  });

  test("reports the pool: configured max and the connections PostgreSQL sees", async () => {
    const samples = await scrape();
    expect(samples.get("db_pool_max")).toBe(7);
    expect(samples.get("db_pool_open_connections")).toBeGreaterThanOrEqual(1);
    expect(samples.get("db_pool_open_connections")).toBeLessThanOrEqual(7);
  });

  test("follows maintenance: state, mode, transitions and refused requests, and is served in maintenance", async () => {
    let samples = await scrape();
    expect(samples.get("maintenance_enabled")).toBe(0);
    expect(samples.get('maintenance_mode{mode="off"}')).toBe(1);
    expect(
      samples.get('maintenance_source_up{key="/maintenance/database-service",kind="memory",state="connected"}'),
    ).toBe(1);

    expect((await setMaintenance("true")).status).toBe(200);
    await service.maintenance.settled();
    expect((await service.app.request("/users")).status).toBe(503);
    expect((await service.app.request("/users/1", { method: "DELETE" })).status).toBe(503);
    samples = await scrape();
    expect(samples.get("maintenance_enabled")).toBe(1);
    expect(samples.get('maintenance_mode{mode="full"}')).toBe(1);
    expect(samples.get('maintenance_transitions_total{kind="enter"}')).toBe(1);
    expect(samples.get("maintenance_rejected_requests_total")).toBe(2);
    expect(samples.get("db_pool_max")).toBe(1);
    expect(samples.get('http_requests_total{method="GET",route="/users",status="503"}')).toBe(1);

    expect((await setMaintenance("false")).status).toBe(200);
    await service.maintenance.settled();
    samples = await scrape();
    expect(samples.get("maintenance_enabled")).toBe(0);
    expect(samples.get('maintenance_transitions_total{kind="leave"}')).toBe(1);
    expect(samples.get("db_pool_max")).toBe(7);
  });
});
