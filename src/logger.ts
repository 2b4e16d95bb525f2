import type { LogLevel } from "./config.ts";

/** Fields attached to one log line. */
export type LogFields = Record<string, unknown>;

/** Structured logger: one JSON object per line, `event` naming what happened. */
export interface Logger {
  /** Whether lines at `level` are written: lets a hot path skip building fields. */
  enabled(level: LogLevel): boolean;
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * A logger writing JSON lines at or above `level` through `write`
 * (stdout by default).
 */
export function createLogger(level: LogLevel, write: (line: string) => void = console.log): Logger {
  const emit = (at: LogLevel) => (event: string, fields?: LogFields) => {
    if (rank[at] < rank[level]) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: at, event, ...fields }));
  };
  return {
    enabled: (at) => rank[at] >= rank[level],
    debug: emit("debug"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
  };
}

/** A logger that drops everything, for tests that do not read logs. */
export const silentLogger: Logger = createLogger("error", () => {});

/** Describes an unknown thrown value for a log line (never sent to clients). */
export function describeError(error: unknown): LogFields {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { error: error.message, ...(code !== undefined && { code }) };
  }
  return { error: String(error) };
}
