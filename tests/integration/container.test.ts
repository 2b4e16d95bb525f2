import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { TEST_TIMEOUT_MS } from "../helpers/wait.ts";

setDefaultTimeout(TEST_TIMEOUT_MS);

const root = fileURLToPath(new URL("../..", import.meta.url));

/** A service as `docker-compose config` prints it (v1 or v2 normal form). */
interface ComposeService {
  image?: string;
  build?: { context: string } | string;
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | null>;
  healthcheck?: { test?: string[] | string };
  depends_on?: Record<string, { condition?: string }> | string[];
  ports?: (string | { published?: string | number; target?: string | number })[];
  volumes?: (string | { type?: string; source?: string; target?: string })[];
  restart?: string;
  stop_grace_period?: string;
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

let resolved: ComposeFile | undefined;

/**
 * compose.yaml as docker-compose resolves and validates it (with `env` added
 * to the environment it interpolates from). Fails (never skips) when
 * docker-compose is not installed.
 */
function composeConfig(env: Record<string, string> = {}): ComposeFile {
  const plain = Object.keys(env).length === 0;
  if (plain && resolved) return resolved;
  const binary = Bun.which("docker-compose");
  if (!binary) {
    throw new Error(
      "docker-compose is not on PATH, so compose.yaml cannot be validated. " +
        "Install it: `bash scripts/provision.sh` as root",
    );
  }
  const run = Bun.spawnSync([binary, "-f", "compose.yaml", "config"], {
    cwd: root,
    env: { ...process.env, POSTGRES_PORT: "", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (run.exitCode !== 0) {
    throw new Error(`docker-compose -f compose.yaml config failed (${run.exitCode}):\n${run.stderr.toString()}`);
  }
  const parsed = Bun.YAML.parse(run.stdout.toString()) as ComposeFile;
  if (plain) resolved = parsed;
  return parsed;
}

/** A Compose duration ("1m30s", "35s", "500ms") in milliseconds. */
function durationMs(text: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001 };
  let total = 0;
  for (const [, amount, unit = "s"] of text.matchAll(/(\d+(?:\.\d+)?)(h|ms|us|m|s)?/g))
    total += Number(amount) * (units[unit] ?? 1000);
  return total;
}

function service(name: string): ComposeService {
  const found = composeConfig().services[name];
  if (!found) throw new Error(`compose.yaml has no service ${name}`);
  return found;
}

/** Ports as "published:target", whichever form docker-compose printed. */
const ports = (s: ComposeService) =>
  (s.ports ?? []).map((p) => (typeof p === "string" ? p : `${p.published}:${p.target}`));

/** Volumes as "source:target" (mode dropped), whichever form docker-compose printed. */
const volumes = (s: ComposeService) =>
  (s.volumes ?? []).map((v) =>
    typeof v === "string" ? v.split(":").slice(0, 2).join(":") : `${v.source}:${v.target}`,
  );

const asList = (value: string[] | string | undefined) => (typeof value === "string" ? value.split(/\s+/) : value);

/** The seed README's manual etcd setup, with its data in the named volume. */
const SEED_ETCD_COMMAND = [
  "/usr/local/bin/etcd",
  "--name=etcd0",
  "--data-dir=/etcd-data",
  "--listen-client-urls=http://0.0.0.0:2379",
  "--advertise-client-urls=http://0.0.0.0:2379",
  "--listen-peer-urls=http://0.0.0.0:2380",
  "--initial-advertise-peer-urls=http://0.0.0.0:2380",
  "--initial-cluster=etcd0=http://0.0.0.0:2380",
  "--initial-cluster-token=etcd-cluster-1",
  "--initial-cluster-state=new",
];

describe("compose.yaml", () => {
  test("docker-compose accepts it and it defines postgres, etcd, etcdctl and database-service", () => {
    expect(Object.keys(composeConfig().services).sort()).toEqual(["database-service", "etcd", "etcdctl", "postgres"]);
    expect(Object.keys(composeConfig().volumes ?? {}).sort()).toEqual(["etcd-data", "postgres-data"]);
  });

  test("postgres is postgres:15-alpine with testdb, a pg_isready healthcheck, a named volume and port 5432", () => {
    const postgres = service("postgres");
    expect(postgres.image).toBe("postgres:15-alpine");
    expect(postgres.environment).toMatchObject({
      POSTGRES_DB: "testdb",
      POSTGRES_USER: "postgres",
      POSTGRES_PASSWORD: "postgres",
    });
    expect(asList(postgres.healthcheck?.test)).toEqual(["CMD", "pg_isready", "-U", "postgres", "-d", "testdb"]);
    expect(volumes(postgres)).toEqual(["postgres-data:/var/lib/postgresql/data"]);
    expect(ports(postgres)).toEqual(["5432:5432"]);
  });

  test("POSTGRES_PORT moves postgres's published port", () => {
    expect(ports(composeConfig({ POSTGRES_PORT: "15432" }).services.postgres ?? {})).toEqual(["15432:5432"]);
  });

  test("etcd runs v3.5.9 with the seed README's flags, data in a named volume, an etcdctl healthcheck, port 2379", () => {
    const etcd = service("etcd");
    expect(etcd.image).toBe("quay.io/coreos/etcd:v3.5.9");
    expect(asList(etcd.command)).toEqual(SEED_ETCD_COMMAND);
    expect(volumes(etcd)).toEqual(["etcd-data:/etcd-data"]);
    // The image is distroless (no shell): the check must be exec form.
    const check = asList(etcd.healthcheck?.test) ?? [];
    expect(check[0]).toBe("CMD");
    expect(check.slice(1).join(" ")).toMatch(/etcdctl .*endpoint health$/);
    expect(ports(etcd)).toEqual(["2379:2379"]);
  });

  test("etcdctl stays up, pointed at etcd:2379 with API v3, once etcd is healthy", () => {
    const etcdctl = service("etcdctl");
    expect(etcdctl.image).toBe("quay.io/coreos/etcd:v3.5.9");
    expect(etcdctl.environment).toMatchObject({ ETCDCTL_API: "3", ETCDCTL_ENDPOINTS: "etcd:2379" });
    // Something long-running that exists in a distroless etcd image.
    expect(asList(etcdctl.entrypoint)?.slice(0, 2)).toEqual(["/usr/local/bin/etcdctl", "watch"]);
    expect(etcdctl.depends_on).toMatchObject({ etcd: { condition: "service_healthy" } });
  });

  test("database-service builds this Dockerfile, reaches postgres and etcd by name, and waits for both to be healthy", () => {
    const app = service("database-service");
    const context = typeof app.build === "string" ? app.build : app.build?.context;
    expect(context?.replace(/\/$/, "")).toBe(root.replace(/\/$/, ""));
    expect(app.environment).toMatchObject({
      DATABASE_URL: "host=postgres user=postgres password=postgres dbname=testdb port=5432 sslmode=disable",
      ETCD_ENDPOINTS: "etcd:2379",
    });
    expect(app.depends_on).toMatchObject({
      postgres: { condition: "service_healthy" },
      etcd: { condition: "service_healthy" },
    });
    expect(ports(app)).toEqual(["8080:8080"]);
    expect(app.restart).toBe("unless-stopped");
  });

  test("database-service is given longer than its own shutdown deadline before Docker kills it", () => {
    const app = service("database-service");
    const deadlineMs = Number(app.environment?.SHUTDOWN_TIMEOUT_MS);
    expect(deadlineMs).toBeGreaterThan(0);
    expect(durationMs(app.stop_grace_period ?? "10s")).toBeGreaterThan(deadlineMs);
  });
});

/** Dockerfile instructions, continuation lines joined and comments dropped. */
function dockerfile(): { instruction: string; args: string }[] {
  const text = readFileSync(`${root}/Dockerfile`, "utf8").replace(/\\\r?\n/g, " ");
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const [instruction = "", ...rest] = line.split(/\s+/);
      return { instruction: instruction.toUpperCase(), args: rest.join(" ") };
    });
}

/** Instructions of the last stage: what the image runs. */
function finalStage() {
  const all = dockerfile();
  const lastFrom = all.map((i) => i.instruction).lastIndexOf("FROM");
  return all.slice(lastFrom);
}

const args = (instruction: string) =>
  finalStage()
    .filter((i) => i.instruction === instruction)
    .map((i) => i.args);

describe("Dockerfile", () => {
  test("names no BuildKit frontend: a build pulls no image beyond its FROM lines", () => {
    expect(readFileSync(`${root}/Dockerfile`, "utf8")).not.toMatch(/^#\s*syntax\s*=/im);
  });

  test("runs on oven/bun pinned to the minor version of the bun devDependency", () => {
    const pkg = JSON.parse(readFileSync(`${root}/package.json`, "utf8")) as { devDependencies: Record<string, string> };
    const minor = pkg.devDependencies.bun?.match(/^\d+\.\d+/)?.[0];
    expect(minor).toBeDefined();
    const [image] = (args("FROM")[0] ?? "").split(/\s+/);
    expect(image).toMatch(new RegExp(`^oven/bun:${minor?.replace(".", "\\.")}(-[a-z]+)?$`));
  });

  test("installs dependencies from the lockfile, without dev dependencies", () => {
    const installs = dockerfile()
      .filter((i) => i.instruction === "RUN")
      .map((i) => i.args)
      .join("\n");
    expect(installs).toMatch(/npm ci\b[^\n]*--omit=dev/);
  });

  test("runs as a non-root user", () => {
    const user = args("USER").at(-1);
    expect(user).toBeDefined();
    expect(user?.split(":")[0]).not.toMatch(/^(root|0)$/);
  });

  test("checks /health/live, exposes 8080 and starts bun src/index.ts in exec form", () => {
    const [healthcheck] = args("HEALTHCHECK");
    expect(healthcheck).toContain("http://127.0.0.1:8080/health/live");
    expect(healthcheck).toMatch(/\bCMD \["bun",/);
    expect(args("EXPOSE")).toEqual(["8080"]);
    const cmd = args("CMD");
    expect(cmd).toHaveLength(1);
    expect(JSON.parse(cmd[0] ?? "null")).toEqual(["bun", "src/index.ts"]);
  });
});
