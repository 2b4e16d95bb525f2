import { createLogger, type Logger } from "../../src/logger.ts";

/** A logger that keeps every line (debug and up) for assertions. */
export interface CapturedLogger extends Logger {
  /** Every line so far, parsed. */
  readonly lines: Record<string, unknown>[];
  /** Lines whose `event` is `event`. */
  events(event: string): Record<string, unknown>[];
}

/** Creates a {@link CapturedLogger}. */
export function captureLogs(): CapturedLogger {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("debug", (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  return { ...logger, lines, events: (event) => lines.filter((line) => line.event === event) };
}
