import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { instancesPrefix } from "../../src/maintenance/fleet.ts";
import type { Service } from "../../src/service.ts";
import { TestEtcd } from "../helpers/etcd.ts";
import { createUser, expectJson } from "../helpers/http.ts";
import { applied, etcdctlDel, etcdctlPut, sourceStatus, startMaintenanceService } from "../helpers/maintenance.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { jsonBody } from "../helpers/service.ts";
import { TEST_TIMEOUT_MS, waitFor } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const MONITORING = new URL("../../monitoring/", import.meta.url).pathname;
const RULES = `${MONITORING}alerts.yml`;
const RULE_TESTS = `${MONITORING}alerts.test.yml`;
const KEY = "/maintenance/alerts-test";

/** The parts of a Prometheus rule file these tests read. */
interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
}

/** The parts of a promtool unit test file these tests read. */
interface RuleTestFile {
  tests: { name: string; alert_rule_test?: { alertname: string }[] }[];
}

/** Runs promtool to its end; throws with everything it printed unless it exits 0. */
async function promtool(...args: string[]): Promise<void> {
  const binary = Bun.which("promtool");
  if (!binary) throw new Error("promtool is not installed: run `bash scripts/provision.sh` as root");
  const child = Bun.spawn([binary, ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  if (code !== 0) throw new Error(`promtool ${args.join(" ")} exited with ${code}:\n${out}${err}`);
}

const readYaml = async <T>(path: string) => Bun.YAML.parse(await Bun.file(path).text()) as T;

/** PromQL words that look like metric names but are not. */
const KEYWORDS = new Set("and or unless bool offset by without on ignoring group_left group_right inf nan".split(" "));

/**
 * The metric names a PromQL expression selects: its identifiers once strings, label matchers, ranges and
 * label lists (`by (…)`, `on (…)`) are gone, without functions and aggregations (followed by `(`) and keywords.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  // The lookbehind keeps the unit of a duration (5m) and the exponent of a number (1e3) out.
  for (const match of bare.matchAll(/(?<![\w:.])[a-zA-Z_:][\w:]*/g)) {
    const name = match[0];
    const called = bare
      .slice(match.index + name.length)
      .trimStart()
      .startsWith("(");
    if (!called && !KEYWORDS.has(name)) names.add(name);
  }
  return [...names].sort();
}

/** The samples of a Prometheus text exposition, as `name{labels}` → value. */
function samples(exposition: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of exposition.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

/** The metric name of a sample key (`name{labels}` or `name`). */
const nameOf = (sample: string) => sample.replace(/\{.*$/, "");

describe("monitoring/alerts.yml", () => {
  test("passes promtool check rules", async () => {
    await promtool("check", "rules", RULES);
  });

  test("passes its promtool unit tests", async () => {
    await promtool("test", "rules", RULE_TESTS);
  });

  test("every alert has a test group of its name, which tests that alert only", async () => {
    const alerts = (await readYaml<RuleFile>(RULES)).groups.flatMap((g) => g.rules.flatMap((r) => r.alert ?? []));
    const groups = (await readYaml<RuleTestFile>(RULE_TESTS)).tests;
    expect(groups.map((g) => g.name).sort()).toEqual([...alerts].sort());
    for (const group of groups) {
      expect(new Set(group.alert_rule_test?.map((t) => t.alertname))).toEqual(new Set([group.name]));
    }
  });

  test("metric names are read from expressions, not from functions, keywords, durations or label names", () => {
    const expr =
      'sum by (job) (rate(a_total{status=~"5.."}[5m])) - on (job) group_left (x) b_seconds' +
      " / ignoring(y) c offset 1m > 1e3 unless time() - d:ratio bool == 0 and max(e) > inf";
    expect(metricNames(expr)).toEqual(["a_total", "b_seconds", "c", "d:ratio", "e"]);
  });
});

describe("the series the alerts read, from the real service", () => {
  let etcd: TestEtcd;
  let database: TestDatabase;
  let service: Service;

  const scrape = async () => {
    const response = await service.app.request("/metrics");
    expect(response.status).toBe(200);
    return samples(await response.text());
  };

  /** Waits until the metrics say the instance's acknowledgement is written, and returns it as etcd holds it. */
  const acknowledgement = async () => {
    const written = async () => (await scrape()).get("maintenance_acknowledgement_pending") === 0;
    await waitFor("the acknowledgement to be written", written);
    const entries = Object.values(await etcd.client.getAll().prefix(instancesPrefix(KEY)).strings());
    expect(entries).toHaveLength(1);
    return JSON.parse(entries[0] as string) as { mode: string; drained: boolean };
  };

  beforeAll(async () => {
    etcd = await TestEtcd.start();
    database = await createTestDatabase("alerts");
    service = await startMaintenanceService(database.url, etcd.endpoint, KEY);
    await waitFor("the source to connect", () => sourceStatus(service) === "connected");
  });
  afterAll(async () => {
    await service?.stop();
    await etcd?.stop();
    await database?.drop();
  });

  test("a request mix and a maintenance window: every metric the rules name is exported, as they read it", async () => {
    // Serving: the user routes, found and not found.
    const alice = await createUser(service.app, "Alice", "alice@example.com");
    await expectJson(await service.app.request("/users"), 200);
    await expectJson(await service.app.request(`/users/${alice.id}`), 200);
    await expectJson(
      await service.app.request(`/users/${alice.id}`, jsonBody("PUT", { name: "Alice B", email: "alice@example.com" })),
      200,
    );
    expect((await service.app.request("/users/999999")).status).toBe(404);
    let metrics = await scrape();
    expect(metrics.get("maintenance_since_timestamp_seconds")).toBe(0);
    expect(metrics.get("maintenance_window_end_timestamp_seconds")).toBe(0);
    expect(metrics.get("maintenance_drained")).toBe(1);
    expect(metrics.get(`maintenance_source_up{key="${KEY}",kind="etcd",state="connected"}`)).toBe(1);

    // A maintenance window, written as an operator does: refused requests, and the window's end.
    const end = new Date(Math.ceil(Date.now() / 1000) * 1000 + 3_600_000);
    const on = await etcdctlPut(etcd, KEY, JSON.stringify({ mode: "full", end: end.toISOString() }));
    await applied(service, on);
    expect((await service.app.request("/users")).status).toBe(503);
    expect(
      (await service.app.request("/users", jsonBody("POST", { name: "Bob", email: "bob@example.com" }))).status,
    ).toBe(503);
    expect(await acknowledgement()).toMatchObject({ mode: "full", drained: true });
    metrics = await scrape();
    const since = service.maintenance.status().since as Date;
    expect(metrics.get("maintenance_enabled")).toBe(1);
    expect(metrics.get("maintenance_since_timestamp_seconds")).toBe(since.getTime() / 1000);
    expect(metrics.get("maintenance_window_end_timestamp_seconds")).toBe(end.getTime() / 1000);
    expect(metrics.get("maintenance_drained")).toBe(1);
    expect(metrics.get("maintenance_rejected_requests_total")).toBe(2);

    // Off again: served, and the maintenance timestamps back to 0.
    const off = await etcdctlDel(etcd, KEY);
    await applied(service, off);
    expect((await service.app.request(`/users/${alice.id}`, { method: "DELETE" })).status).toBe(204);
    expect(await acknowledgement()).toMatchObject({ mode: "off", drained: true });
    metrics = await scrape();
    expect(metrics.get("maintenance_enabled")).toBe(0);
    expect(metrics.get("maintenance_since_timestamp_seconds")).toBe(0);
    expect(metrics.get("maintenance_window_end_timestamp_seconds")).toBe(0);

    // The mix was free of server errors: every 5xx answered is a maintenance refusal, as the 5xx rule assumes.
    const serverErrors = [...metrics]
      .filter(([sample]) => nameOf(sample) === "http_requests_total" && /status="5\d\d"/.test(sample))
      .reduce((sum, [, value]) => sum + value, 0);
    expect(serverErrors).toBe(metrics.get("maintenance_rejected_requests_total") as number);

    // Every metric an alert reads is in the exposition: a rule on a series the service never exports fails here.
    const exported = new Set([...metrics.keys()].map(nameOf));
    const rules = (await readYaml<RuleFile>(RULES)).groups.flatMap((g) => g.rules);
    const used = [...new Set(rules.flatMap((rule) => metricNames(rule.expr)))].sort();
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((name) => !exported.has(name))).toEqual([]);
  });
});
