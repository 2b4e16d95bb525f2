import type { Subprocess } from "bun";
import { freePort } from "./free-port.ts";
import { PATIENCE_MS, settledWithin } from "./wait.ts";

/** The repository root: where `src/index.ts` is. */
const ROOT = new URL("../../", import.meta.url).pathname;

/** `bun src/index.ts` running as a child process, with its output collected. */
export interface ServiceProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** `http://127.0.0.1:<port>`. */
  readonly baseUrl: string;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** stdout's JSON log lines so far (other lines skipped). */
  logLines(): Record<string, unknown>[];
  /** Resolves with the exit code once the process ended and its output was read. */
  exited: Promise<number>;
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    into.push(decoder.decode(read.value, { stream: true }));
  }
}

/** `deno run -A src/index.ts`, with the Deno of node_modules. */
export const DENO_ENTRY = [`${ROOT}node_modules/.bin/deno`, "run", "-A", "src/index.ts"];

/**
 * Spawns the real entry (`bun src/index.ts` unless `command` says otherwise)
 * with exactly `env` (plus PATH and HOME, and PORT/HOST unless given), so
 * nothing from the test's own environment leaks into its configuration.
 */
export async function spawnService(
  env: Record<string, string>,
  command: string[] = [process.execPath, "src/index.ts"],
): Promise<ServiceProcess> {
  const port = env.PORT ?? String(await freePort());
  const proc = Bun.spawn(command, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      HOST: "127.0.0.1",
      ...env,
      PORT: port,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out: string[] = [];
  const err: string[] = [];
  const reading = Promise.all([collect(proc.stdout, out), collect(proc.stderr, err)]);
  const stdout = () => out.join("");
  return {
    proc,
    baseUrl: `http://127.0.0.1:${port}`,
    stdout,
    stderr: () => err.join(""),
    logLines: () =>
      stdout()
        .split("\n")
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
    exited: proc.exited.then(async (code) => {
      await reading;
      return code;
    }),
  };
}

/** Polls `url` until it answers `status`, or throws after `timeoutMs` with the process's output. */
export async function waitForStatus(service: ServiceProcess, path: string, status: number, timeoutMs = PATIENCE_MS) {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (service.proc.exitCode !== null) break;
    try {
      const response = await fetch(`${service.baseUrl}${path}`, {
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      if (response.status === status) return;
      last = `${response.status} ${await response.text()}`;
    } catch (error) {
      last = String(error);
    }
    await Bun.sleep(50);
  }
  throw new Error(
    `${path} did not answer ${status} (last: ${last}); exit ${service.proc.exitCode}\n` +
      `stdout:\n${service.stdout()}\nstderr:\n${service.stderr()}`,
  );
}

/**
 * Resolves with the exit code once the process has ended; when it has not
 * after {@link PATIENCE_MS}, kills it and throws with its output.
 */
export async function exitCode(service: ServiceProcess): Promise<number> {
  try {
    return await settledWithin("the process's exit", service.exited);
  } catch (error) {
    service.proc.kill("SIGKILL");
    throw new Error(`${(error as Error).message}\nstdout:\n${service.stdout()}\nstderr:\n${service.stderr()}`);
  }
}
