/**
 * `maint`: the operator's command for maintenance through etcd (`bun src/cli/maint.ts`,
 * `bun run maint …`, `npm run maint -- …`). See `maint --help`.
 * An entry like `src/index.ts`: the only CLI file that reads the process's environment and signals.
 */
import { runMaint } from "./commands.ts";
import { EXIT } from "./exit-codes.ts";
import { consoleOutput } from "./output.ts";

if (import.meta.main) {
  // The first Ctrl-C is the command's to handle (--wait detaches); a second one exits at once.
  const interrupt = new AbortController();
  process.on("SIGINT", () => {
    if (interrupt.signal.aborted) process.exit(EXIT.interrupted);
    interrupt.abort();
  });
  process.exitCode = await runMaint(process.argv.slice(2), process.env, consoleOutput, interrupt.signal);
  // The etcd client is closed; should anything still hold the event loop, do not hang on it.
  setTimeout(() => process.exit(), 250).unref();
}
