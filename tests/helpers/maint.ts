/** The repository root: where `src/cli/maint.ts` is. */
const ROOT = new URL("../../", import.meta.url).pathname;

/** `bun src/cli/maint.ts …` running as a child process, its output read as it comes. */
export interface RunningMaint {
  proc: ReturnType<typeof Bun.spawn>;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code once its output is read. */
  exited: Promise<number>;
}

/** A finished run of `maint`. */
export interface MaintRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Spawns `maint <args>` with exactly `env` (plus PATH and HOME), as an operator's shell would run it. */
export function spawnMaint(args: string[], env: Record<string, string>): RunningMaint {
  const proc = Bun.spawn([process.execPath, "src/cli/maint.ts", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out: string[] = [];
  const err: string[] = [];
  const collect = async (stream: ReadableStream<Uint8Array>, into: string[]) => {
    const decoder = new TextDecoder();
    const reader = stream.getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      into.push(decoder.decode(read.value, { stream: true }));
    }
  };
  const reading = Promise.all([collect(proc.stdout, out), collect(proc.stderr, err)]);
  return {
    proc,
    stdout: () => out.join(""),
    stderr: () => err.join(""),
    exited: proc.exited.then(async (code) => {
      await reading;
      return code;
    }),
  };
}

/** Runs `maint <args>` to its end. */
export async function runMaint(args: string[], env: Record<string, string>): Promise<MaintRun> {
  const running = spawnMaint(args, env);
  const code = await running.exited;
  return { code, stdout: running.stdout(), stderr: running.stderr() };
}

/** The revision `maint on`/`off` reports for its write. */
export function writtenRevision(run: Pick<MaintRun, "stdout" | "stderr">): number {
  const match = /revision (\d+)/.exec(run.stdout);
  if (!match?.[1]) throw new Error(`no revision in the output:\n${run.stdout}\n${run.stderr}`);
  return Number(match[1]);
}
