/**
 * `maint`: the operator's command for maintenance through etcd (`bun src/cli/maint.ts`,
 * `bun run maint …`, `npm run maint -- …`). See `maint --help`.
 * An entry like `src/index.ts`: the only CLI file that reads the process's environment.
 */
import { runMaint } from "./commands.ts";
import { consoleOutput } from "./output.ts";

if (import.meta.main) {
  process.exitCode = await runMaint(process.argv.slice(2), process.env, consoleOutput);
  // The etcd client is closed; should anything still hold the event loop, do not hang on it.
  setTimeout(() => process.exit(), 250).unref();
}
