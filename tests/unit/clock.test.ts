import { describe, expect, test } from "bun:test";
import { systemClock } from "../../src/util/clock.ts";

describe("systemClock", () => {
  test("a timer fires once its delay has passed, never before", async () => {
    const armedAt = systemClock.now();
    const firedAt = await new Promise<number>((resolve) => systemClock.after(20, () => resolve(systemClock.now())));
    expect(firedAt - armedAt).toBeGreaterThanOrEqual(20);
  });

  test("a cancelled timer never fires, not even after a later one", async () => {
    let fired = false;
    const cancel = systemClock.after(1, () => {
      fired = true;
    });
    cancel();
    await new Promise<void>((resolve) => systemClock.after(10, resolve));
    expect(fired).toBe(false);
  });
});
