import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { type FollowingService, startFollowingService } from "../helpers/fixture.ts";
import { captureLogs } from "../helpers/logs.ts";
import { sourceStatus, startMaintenanceService } from "../helpers/maintenance.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const TOKEN = "admin-token-for-tests";
const KEY = "/maintenance/admin-etcd-down";
const logs = captureLogs();

let fixture: FollowingService;
let service: Service;

beforeAll(async () => {
  fixture = await startFollowingService({ prefix: "admindown", key: KEY, env: { ADMIN_TOKEN: TOKEN }, logger: logs });
  service = fixture.service;
  await waitFor("the source to connect", () => sourceStatus(service) === "connected");
  await fixture.etcd.kill();
});
afterAll(() => fixture?.stop());

const admin = (method: string, body?: string) =>
  service.app.request("/admin/maintenance", {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain" },
    ...(body !== undefined && { body }),
  });

describe("admin API while etcd is down", () => {
  for (const [method, body, detail] of [
    ["GET", undefined, "etcd, which holds the maintenance key, is not reachable right now."],
    ["PUT", "true", "etcd, which holds the maintenance key, is not reachable right now: nothing was written."],
    ["DELETE", undefined, "etcd, which holds the maintenance key, is not reachable right now: nothing was written."],
  ] as const) {
    test(`${method} /admin/maintenance answers 503 problem+json with Retry-After`, async () => {
      const response = await admin(method, body);
      const text = await response.text();
      expect({ status: response.status, contentType: response.headers.get("content-type") }).toEqual({
        status: 503,
        contentType: "application/problem+json",
      });
      expect(response.headers.get("retry-after")).toBe("5");
      expect(JSON.parse(text)).toEqual({
        type: "urn:problem:database-service:maintenance-store-unavailable",
        title: "Service Unavailable",
        status: 503,
        detail,
        instance: "/admin/maintenance",
        request_id: expect.any(String),
      });
    });
  }

  test("nothing is logged as an unhandled error, and the service keeps serving", async () => {
    expect(logs.events("http.unhandled_error")).toEqual([]);
    expect((await service.app.request("/users")).status).toBe(200);
  });
});

describe("admin API while etcd takes calls but does not answer", () => {
  test("PUT answers 503 maintenance-write-outcome-unknown with Retry-After: the write was sent and never confirmed", async () => {
    const silent = await TestEtcd.start();
    const frozen = await startMaintenanceService(fixture.database.url, silent.endpoint, KEY, { ADMIN_TOKEN: TOKEN });
    try {
      await waitFor("the source to connect", () => sourceStatus(frozen) === "connected");
      await silent.freeze();
      const response = await frozen.app.request("/admin/maintenance", {
        method: "PUT",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain" },
        body: "true",
      });
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toBe("5");
      expect(await response.json()).toEqual({
        type: "urn:problem:database-service:maintenance-write-outcome-unknown",
        title: "Service Unavailable",
        status: 503,
        detail:
          "etcd, which holds the maintenance key, did not confirm the write: it may or may not have been applied. " +
          "Read the key before writing again.",
        instance: "/admin/maintenance",
        request_id: expect.any(String),
      });
    } finally {
      silent.thaw();
      await frozen.stop();
      await silent.stop();
    }
  });
});
