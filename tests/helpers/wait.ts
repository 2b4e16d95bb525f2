/**
 * How long a test waits for something that must happen before it calls it
 * missing. Generous on purpose: a loaded machine is slow, not wrong; how fast
 * things happen is measured by bench/, never asserted here.
 */
export const PATIENCE_MS = 30_000;

/**
 * Per test and hook, far above what any needs, so that only a hang reaches it. Each
 * test file sets it with `setDefaultTimeout`: Bun 1.4.5 applies that to the calling
 * file only, and ignores bunfig's `timeout`.
 */
export const TEST_TIMEOUT_MS = 120_000;

/** Polls `check` every 10 ms until it returns true; throws after `timeoutMs` naming `what`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = PATIENCE_MS,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(10);
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms`);
}

/** Polls `read` until `accept` takes its value, and resolves with that value (judged as it was then). */
export async function waitForValue<T>(what: string, read: () => T, accept: (value: T) => boolean): Promise<T> {
  let value = read();
  await waitFor(what, () => {
    value = read();
    return accept(value);
  });
  return value;
}

/** Resolves with `promise`'s value, or throws naming `what` when it has not settled after `timeoutMs`. */
export async function settledWithin<T>(what: string, promise: Promise<T>, timeoutMs = PATIENCE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const missing = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, missing]);
  } finally {
    clearTimeout(timer);
  }
}
