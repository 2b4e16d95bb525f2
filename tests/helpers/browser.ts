import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { PATIENCE_MS } from "./wait.ts";

/** Debian's Chromium; playwright-core drives it and never downloads a browser of its own. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Headless, and nothing that would reach beyond this machine or depend on a GPU or a profile. */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Launches {@link CHROMIUM_PATH} with a fresh temporary profile (Playwright
 * makes one per launch and removes it on close). Fails, never skips, when
 * Chromium is missing, saying how to install it.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is not installed (no ${CHROMIUM_PATH}): run \`bash scripts/provision.sh\` as root, then the tests again`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: PATIENCE_MS });
}

/** One console error, uncaught exception, CSP violation or failed request that a page reported. */
export interface PageProblem {
  kind: "console.error" | "pageerror" | "csp-violation" | "requestfailed";
  text: string;
  /** The script, resource or request the problem is about, when known. */
  url: string;
}

/**
 * Records everything on `page` that a person would see as broken: console
 * errors (which include Chromium's own "Refused to ..." CSP messages and
 * "Failed to load resource" network messages), uncaught exceptions,
 * `securitypolicyviolation` events, and requests that failed outright.
 * Call before the first navigation; the returned array fills as they happen.
 */
export async function watchPage(page: Page): Promise<PageProblem[]> {
  const problems: PageProblem[] = [];
  await page.exposeFunction("__reportCspViolation", (text: string, url: string) => {
    problems.push({ kind: "csp-violation", text, url });
  });
  await page.addInitScript(() => {
    const report = (window as unknown as { __reportCspViolation: (text: string, url: string) => void })
      .__reportCspViolation;
    document.addEventListener("securitypolicyviolation", (event) => {
      report(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`, event.sourceFile);
    });
  });
  page.on("console", (message) => {
    if (message.type() === "error")
      problems.push({ kind: "console.error", text: message.text(), url: message.location().url });
  });
  page.on("pageerror", (error) => {
    problems.push({ kind: "pageerror", text: error.stack ?? error.message, url: page.url() });
  });
  page.on("requestfailed", (request) => {
    problems.push({ kind: "requestfailed", text: request.failure()?.errorText ?? "failed", url: request.url() });
  });
  return problems;
}
