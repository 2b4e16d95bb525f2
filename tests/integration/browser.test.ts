/**
 * /docs in a real browser: Debian's Chromium (driven by playwright-core) opens
 * Swagger UI on the real entry (`bun src/index.ts`), which must render the
 * users operations under the page's strict CSP with no console error, and
 * whose "Try it out" → "Execute" on GET /users must show 200, then 503 once
 * maintenance is switched on through the admin API.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Locator, Page } from "playwright-core";
import { launchChromium, type PageProblem, watchPage } from "../helpers/browser.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.ts";
import { type ServiceProcess, spawnService, waitForStatus } from "../helpers/process.ts";
import { PATIENCE_MS, TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const TOKEN = "browser-test-admin-token";
/** The users operations Swagger UI must show, as [method, path]. */
const USERS_OPERATIONS = [
  ["get", "/users"],
  ["post", "/users"],
  ["get", "/users/{id}"],
  ["put", "/users/{id}"],
  ["delete", "/users/{id}"],
] as const;

const dir = mkdtempSync(join(tmpdir(), "browser-test-"));
const screenshotPath = join(dir, "docs.png");
let database: TestDatabase | undefined;
let service: ServiceProcess | undefined;
let browser: Browser | undefined;
let page: Page;
let problems: PageProblem[];

/** The operation block of `method path` in Swagger UI. */
const operation = (method: string, path: string): Locator =>
  page
    .locator(`.opblock.opblock-${method}`)
    .filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) });

/**
 * The status cell of `op`'s live response once it shows `code` (within
 * `timeoutMs`); otherwise whatever it shows then, so a failure names it.
 */
async function liveStatus(op: Locator, code: number, timeoutMs = PATIENCE_MS): Promise<string> {
  const cell = op.locator(".live-responses-table tbody .response-col_status");
  try {
    await cell.filter({ hasText: new RegExp(`^\\s*${code}\\b`) }).waitFor({ timeout: timeoutMs });
  } catch {
    // Fall through: report what the cell shows instead.
  }
  try {
    return ((await cell.first().textContent({ timeout: 500 })) ?? "").trim();
  } catch {
    return "(no live response rendered)";
  }
}

/** Problems as readable lines, for a failure message. */
const describeProblems = (list: PageProblem[]) => list.map((p) => `${p.kind}: ${p.text} (${p.url})`);

async function setMaintenance(on: boolean): Promise<void> {
  if (!service) throw new Error("service not started");
  const response = await fetch(`${service.baseUrl}/admin/maintenance`, {
    method: "PUT",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "text/plain" },
    body: String(on),
  });
  expect({ status: response.status, body: await response.text() }).toMatchObject({ status: 200 });
}

beforeAll(async () => {
  const launching = launchChromium();
  // Stop Chromium even when the service fails to start.
  launching.then((launched) => (browser = launched)).catch(() => {});
  database = await createTestDatabase("browser");
  service = await spawnService({
    DATABASE_URL: database.url,
    ETCD_ENDPOINTS: "memory",
    ADMIN_TOKEN: TOKEN,
    LOG_LEVEL: "error",
  });
  await waitForStatus(service, "/users", 200);
  browser = await launching;
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.setDefaultTimeout(PATIENCE_MS);
  problems = await watchPage(page);
});

afterAll(async () => {
  if (browser) {
    if (page && !existsSync(screenshotPath)) {
      // A test failed before its screenshot: keep one of what the page showed then.
      await page
        .screenshot({ path: screenshotPath, fullPage: true, timeout: 5000 })
        .then(() => console.error(`[browser test] screenshot at the failure: ${screenshotPath}`))
        .catch(() => {});
    }
    await browser.close().catch(() => {});
  }
  if (service && service.proc.exitCode === null) {
    service.proc.kill("SIGTERM");
    const stopped = await Promise.race([service.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!stopped) service.proc.kill("SIGKILL");
  }
  if (!existsSync(screenshotPath)) rmSync(dir, { recursive: true, force: true });
  await database?.drop();
});

describe("Swagger UI at /docs in Chromium", () => {
  test("renders every users operation with no console error, page error or CSP violation", async () => {
    if (!service) throw new Error("service not started");
    const response = await page.goto(`${service.baseUrl}/docs`, { waitUntil: "load" });
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'");

    for (const [method, path] of USERS_OPERATIONS) {
      const block = operation(method, path);
      await block.waitFor({ state: "visible" });
      expect(await block.count()).toBe(1);
      expect(await block.locator(".opblock-summary-method").textContent()).toBe(method.toUpperCase());
    }
    expect(await page.locator(".info .title").textContent()).toContain("database-service");
    // Let late script errors and violations arrive before judging.
    await page.waitForLoadState("networkidle");
    expect(describeProblems(problems)).toEqual([]);
  });

  test('GET /users "Try it out" → "Execute" shows the live 200 response', async () => {
    if (!service) throw new Error("service not started");
    const list = operation("get", "/users");
    await list.locator(".opblock-summary-control").click();
    await list.locator(".try-out__btn").click();
    await list.locator(".execute").click();

    expect(await liveStatus(list, 200)).toBe("200");
    expect(await list.locator(".request-url").textContent()).toContain(`${service.baseUrl}/users`);
    // A fresh database: an empty page of users.
    expect(
      (await list.locator(".live-responses-table tbody .response-col_description pre").first().textContent())?.trim(),
    ).toBe("[]");
    expect(describeProblems(problems)).toEqual([]);
  });

  test('in maintenance (admin API) "Execute" again shows the live 503 response', async () => {
    if (!service) throw new Error("service not started");
    await setMaintenance(true);
    const before = problems.length;
    const list = operation("get", "/users");
    await list.locator(".execute").click();

    expect(await liveStatus(list, 503)).toBe("503");
    expect(await list.locator(".live-responses-table tbody .response-col_description").textContent()).toContain(
      "Service Unavailable",
    );

    // Chromium logs every 5xx answer to the console; that line, for this request, is all there may be.
    const usersUrl = new URL("/users", service.baseUrl);
    const isThe503 = (p: PageProblem) =>
      p.kind === "console.error" &&
      URL.parse(p.url)?.origin === usersUrl.origin &&
      URL.parse(p.url)?.pathname === usersUrl.pathname &&
      p.text.includes("the server responded with a status of 503");
    const unexpected = problems.slice(before).filter((p) => !isThe503(p));
    expect(describeProblems(unexpected)).toEqual([]);
    expect(describeProblems(problems.slice(0, before))).toEqual([]);

    await page.screenshot({ path: screenshotPath, fullPage: true });
    const png = readFileSync(screenshotPath);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(statSync(screenshotPath).size).toBeGreaterThan(20_000);
    console.log(`[browser test] screenshot: ${screenshotPath}`);
  });
});
