import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { silentLogger } from "../../src/logger.ts";
import { type Service, startService } from "../../src/service.ts";
import type { TestEtcd } from "../helpers/etcd.ts";
import { type EtcdAndDatabase, startEtcdAndDatabase } from "../helpers/fixture.ts";
import type { TestDatabase } from "../helpers/postgres.ts";
import { testConfig } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const TOKEN = "admin-token-for-tests";
const KEY = "/maintenance/database-service";

let fixture: EtcdAndDatabase;
let database: TestDatabase;
let etcd: TestEtcd;
const services: Service[] = [];

async function start(env: Record<string, string>): Promise<Service> {
  const service = startService(testConfig(database.url, env), silentLogger);
  services.push(service);
  await service.schemaApplied;
  return service;
}

const put = (service: Service, body: string, headers: Record<string, string> = {}) =>
  service.app.request("/admin/maintenance", {
    method: "PUT",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain", ...headers },
    body,
  });

/** The 401 problem body with `detail`, carrying the request id `response` was answered under. */
const unauthorized = (response: Response, detail: string) => ({
  type: "urn:problem:database-service:unauthorized",
  title: "Unauthorized",
  status: 401,
  detail,
  instance: "/admin/maintenance",
  request_id: response.headers.get("x-request-id"),
});

beforeAll(async () => {
  fixture = await startEtcdAndDatabase("admin");
  ({ database, etcd } = fixture);
});
afterAll(async () => {
  await Promise.all(services.map((s) => s.stop()));
  await fixture?.stop();
});

describe("admin API with the in-process key (ETCD_ENDPOINTS=memory)", () => {
  let service: Service;
  beforeAll(async () => {
    service = await start({ ETCD_ENDPOINTS: "memory", ADMIN_TOKEN: TOKEN, DRAIN_TIMEOUT_MS: "1000" });
  });

  test("without a token it answers 401 with a Bearer challenge", async () => {
    const response = await service.app.request("/admin/maintenance");
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Bearer realm="admin"');
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expect(await response.json()).toEqual(unauthorized(response, "Send Authorization: Bearer <ADMIN_TOKEN>."));
  });

  test("a header that is not a bearer credential answers the same 401 as none", async () => {
    for (const authorization of ["Basic Zm9vOmJhcg==", "Bearer", `Bearer ${TOKEN} extra`, "Bearer t%ken"]) {
      const response = await put(service, "true", { authorization });
      expect(response.status).toBe(401);
      expect(response.headers.get("www-authenticate")).toBe('Bearer realm="admin"');
      expect(response.headers.get("content-type")).toBe("application/problem+json");
      expect(await response.json()).toEqual(unauthorized(response, "Send Authorization: Bearer <ADMIN_TOKEN>."));
    }
    expect((await service.app.request("/users")).status).toBe(200);
  });

  test("with a wrong token it answers 401 invalid_token and changes nothing", async () => {
    for (const token of ["wrong", `${TOKEN}x`, TOKEN.slice(0, -1), ""]) {
      const response = await put(service, "true", { authorization: `Bearer ${token}` });
      expect(response.status).toBe(401);
    }
    const wrong = await put(service, "true", { authorization: "Bearer wrong" });
    expect(wrong.headers.get("www-authenticate")).toBe('Bearer realm="admin", error="invalid_token"');
    expect(await wrong.json()).toEqual(unauthorized(wrong, "The bearer token is not valid."));
    expect((await service.app.request("/users")).status).toBe(200);
  });

  test("with the right token PUT true enters maintenance and PUT false leaves it", async () => {
    const on = await put(service, "true");
    expect(on.status).toBe(200);
    expect(await on.json()).toMatchObject({ key: KEY, value: "true", maintenance: { enabled: true } });
    const refused = await service.app.request("/users");
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("60");

    const off = await put(service, "false");
    expect(off.status).toBe(200);
    await service.maintenance.settled();
    expect((await service.app.request("/users")).status).toBe(200);
  });

  test("PUT takes the JSON form, and GET shows the stored value and the state", async () => {
    const body = '{"enabled":true,"reason":"disk upgrade","retry_after":120}';
    expect((await put(service, body, { "content-type": "application/json" })).status).toBe(200);
    const refused = await service.app.request("/users/1");
    expect(refused.headers.get("retry-after")).toBe("120");
    expect(await refused.json()).toMatchObject({ detail: "disk upgrade" });
    const read = await service.app.request("/admin/maintenance", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await read.json()).toMatchObject({
      value: body,
      maintenance: { enabled: true, reason: "disk upgrade", retry_after_seconds: 120 },
    });
  });

  test("DELETE removes the key: maintenance off", async () => {
    const response = await service.app.request("/admin/maintenance", {
      method: "DELETE",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ value: null });
    await service.maintenance.settled();
    expect((await service.app.request("/users")).status).toBe(200);
  });

  test("a value the key would not understand is refused with 400 and not stored", async () => {
    const response = await put(service, "perhaps");
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({
      type: "urn:problem:database-service:invalid-maintenance-value",
      errors: [{ field: "body", message: "not a known word or a JSON object" }],
    });
    const read = await service.app.request("/admin/maintenance", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await read.json()).toMatchObject({ value: null });
  });

  test("a body that is neither text nor JSON answers 415", async () => {
    const response = await put(service, "true", { "content-type": "application/x-www-form-urlencoded" });
    expect(response.status).toBe(415);
  });
});

describe("admin API with etcd", () => {
  test("PUT writes the etcd key itself, so every instance follows", async () => {
    const env = { ETCD_ENDPOINTS: etcd.endpoint, ADMIN_TOKEN: TOKEN, DRAIN_TIMEOUT_MS: "1000" };
    const [writer, other] = await Promise.all([start(env), start(env)]);
    await waitFor("etcd connected", () => other.maintenance.status().source.status === "connected");
    expect((await put(writer, "on")).status).toBe(200);
    expect(await etcd.etcdctl("get", "--print-value-only", KEY)).toBe("on\n");
    await waitFor("the other instance to refuse", async () => (await other.app.request("/users")).status === 503);
    const off = await writer.app.request("/admin/maintenance", {
      method: "DELETE",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(off.status).toBe(200);
    expect(await etcd.etcdctl("get", KEY)).toBe("");
    await waitFor("the other instance to serve", async () => (await other.app.request("/users")).status === 200);
  });
});

describe("without ADMIN_TOKEN", () => {
  test("the admin API does not exist: 404, and it is left out of /openapi.json", async () => {
    const service = await start({ ETCD_ENDPOINTS: "memory" });
    const response = await service.app.request("/admin/maintenance", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(response.status).toBe(404);
    const document = (await (await service.app.request("/openapi.json")).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(document.paths)).not.toContain("/admin/maintenance");
  });
});
