import { describe, expect, test } from "bun:test";
import { preferredWaitMs } from "../../src/http/prefer.ts";

describe("preferredWaitMs (RFC 7240 Prefer: wait)", () => {
  test.each([
    ["wait=5", 5000],
    ["wait=0", 0],
    ["WAIT = 3", 3000],
    ['wait="4"', 4000],
    ["respond-async, wait=10", 10_000],
    ["return=minimal; foo=bar, wait=2; x=y", 2000],
    ['handling=lenient, foo="a, wait=9", wait=1', 1000],
    // The first instance of a preference counts.
    ["wait=7, wait=1", 7000],
  ])("%p is %p ms", (header, ms) => {
    expect(preferredWaitMs(header)).toBe(ms);
  });

  test.each([
    [undefined],
    [""],
    ["respond-async"],
    ["wait"],
    ["wait=-1"],
    ["wait=1.5"],
    ["wait=soon"],
    ["waiting=3"],
    // An invalid first wait is the one that counts.
    ["wait=x, wait=3"],
  ])("%p gives no wait", (header) => {
    expect(preferredWaitMs(header)).toBeNull();
  });
});
