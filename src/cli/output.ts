/** Where the CLI writes: results on `out`, errors and failures on `err`. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

/** The process's stdout and stderr. */
export const consoleOutput: Output = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};

/** What a terminal would act on rather than show: C0 and C1 controls, DEL, line separators, bidi overrides. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same but C0 controls, which JSON.stringify escapes in strings (the raw ones left are its line breaks). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** The escape shown for one unsafe character: `\n`, `\x1b`, `\u202e`. */
const escaped = (char: string) => {
  const code = char.charCodeAt(0);
  return NAMED[char] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`);
};

/**
 * `text` from etcd (a value, an instance id) made safe to print: every character a terminal
 * would act on (clear the screen, move the cursor, start a line, reorder text) is shown as
 * an escape instead, so what etcd holds cannot rewrite or forge the CLI's output.
 */
export function printable(text: string): string {
  return text.replace(UNSAFE, escaped);
}

/**
 * `value` as indented JSON, safe to print: JSON.stringify escapes C0 controls but leaves DEL,
 * C1 controls and bidi overrides raw; those become `\u` escapes, which JSON readers decode back.
 */
export function printableJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    UNSAFE_IN_JSON,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
