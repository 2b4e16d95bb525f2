import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import { Etcd3 } from "etcd3";
import { freePort } from "./free-port.ts";
import { PATIENCE_MS, waitFor } from "./wait.ts";

/** A real etcd server started for a test file, on free ports with a temporary data dir. */
export class TestEtcd {
  private process: Subprocess | undefined;
  /** Holds the data dir and the snapshots; removed by {@link stop}. */
  private readonly workDir = mkdtempSync(join(tmpdir(), "etcd-test-"));
  private dataDir = join(this.workDir, "data");
  private generation = 0;
  /** A client for the test's own writes. */
  readonly client: Etcd3;

  private constructor(
    readonly clientPort: number,
    private readonly peerPort: number,
  ) {
    this.client = new Etcd3({ hosts: this.endpoint });
  }

  /** `127.0.0.1:<port>`, as ETCD_ENDPOINTS takes it. */
  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  /**
   * Starts etcd and waits until it answers; fails loudly when the binary is missing.
   * `clientPort` picks the client port (a free one by default), e.g. one a service already points at.
   */
  static async start(clientPort?: number): Promise<TestEtcd> {
    if (!Bun.which("etcd")) {
      throw new Error("etcd is not installed: run `bash scripts/provision.sh` as root");
    }
    const etcd = new TestEtcd(clientPort ?? (await freePort()), await freePort());
    await etcd.resume();
    return etcd;
  }

  /** Starts etcd again on the same ports and data (after {@link kill}). */
  async resume(): Promise<void> {
    const peer = this.peerUrl;
    const client = `http://127.0.0.1:${this.clientPort}`;
    this.process = spawn(
      [
        "etcd",
        "--name=test",
        `--data-dir=${this.dataDir}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=test=${peer}`,
        "--log-level=error",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    const deadline = Date.now() + PATIENCE_MS;
    while (Date.now() < deadline) {
      const healthy = await fetch(`${client}/health`)
        .then((r) => r.ok)
        .catch(() => false);
      if (healthy) return;
      if (this.process.exitCode !== null) throw new Error(`etcd exited with ${this.process.exitCode}`);
      await Bun.sleep(50);
    }
    throw new Error(`etcd did not become healthy within ${PATIENCE_MS} ms`);
  }

  /** Kills etcd at once (SIGKILL), keeping its data for {@link resume}. */
  async kill(): Promise<void> {
    this.process?.kill("SIGKILL");
    await this.process?.exited;
    this.process = undefined;
  }

  /**
   * Stops etcd (SIGSTOP) without closing its connections: calls are taken and never answered.
   * Resolves once every etcd thread is stopped: kill(2) only queues the stop, and each thread
   * takes it when next scheduled, so on a loaded machine etcd kept answering calls for a while.
   */
  async freeze(): Promise<void> {
    const pid = this.process?.pid;
    if (pid === undefined) throw new Error("etcd is not running");
    this.process?.kill("SIGSTOP");
    await waitFor(`etcd (pid ${pid}) to stop`, () => threadStates(pid).every((state) => state === "T"));
  }

  /** Lets a {@link freeze}d etcd run again (SIGCONT). */
  thaw(): void {
    this.process?.kill("SIGCONT");
  }

  /** Saves a snapshot of the live store (`etcdctl snapshot save`); resolves with its file. */
  async snapshot(): Promise<string> {
    const file = join(this.workDir, `snapshot-${++this.generation}.db`);
    await this.etcdctl("snapshot", "save", file);
    return file;
  }

  /**
   * etcd's disaster recovery: kills etcd, `etcdctl snapshot restore`s `file` into a new data dir,
   * and starts etcd on it, on the same client port. The history goes back to the snapshot's revision.
   */
  async restore(file: string): Promise<void> {
    await this.kill();
    const dataDir = join(this.workDir, `data-${++this.generation}`);
    await run([
      "etcdctl",
      "snapshot",
      "restore",
      file,
      `--data-dir=${dataDir}`,
      "--name=test",
      `--initial-cluster=test=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
    ]);
    this.dataDir = dataDir;
    await this.resume();
  }

  /** Kills etcd and starts it on a new, empty data dir on the same client port: the history starts over. */
  async rebuildEmpty(): Promise<void> {
    await this.kill();
    this.dataDir = join(this.workDir, `data-${++this.generation}`);
    await this.resume();
  }

  async put(key: string, value: string): Promise<void> {
    await this.client.put(key).value(value);
  }

  async delete(key: string): Promise<void> {
    await this.client.delete().key(key);
  }

  /**
   * How many range requests (GETs) etcd has served since it started, from its
   * `etcd_mvcc_range_total` metric. Writes and watches do not count.
   */
  async rangeRequests(): Promise<number> {
    const metrics = await (await fetch(`http://${this.endpoint}/metrics`)).text();
    const line = metrics.split("\n").find((l) => l.startsWith("etcd_mvcc_range_total "));
    if (line === undefined) throw new Error("etcd's /metrics has no etcd_mvcc_range_total");
    return Number(line.split(" ")[1]);
  }

  /** Writes with the real etcdctl, as an operator would. */
  etcdctl(...args: string[]): Promise<string> {
    return run(["etcdctl", `--endpoints=${this.endpoint}`, ...args]);
  }

  /** Stops etcd and removes its data and snapshots. */
  async stop(): Promise<void> {
    this.client.close();
    await this.kill();
    rmSync(this.workDir, { recursive: true, force: true });
  }

  private get peerUrl(): string {
    return `http://127.0.0.1:${this.peerPort}`;
  }
}

/** The state letter of each thread of process `pid` (`T` when stopped), from /proc/<pid>/task/<tid>/stat. */
function threadStates(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      return []; // the thread ended since the listing: it answers nothing
    }
    // The state follows the command name, which is in parentheses and may itself contain ") ".
    return [stat.charAt(stat.lastIndexOf(") ") + 2)];
  });
}

/** Runs an etcd tool (API v3) to its end; resolves with its stdout, throws with its stderr. */
async function run(command: string[]): Promise<string> {
  const child = spawn(command, { env: { ...process.env, ETCDCTL_API: "3" }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  if (code !== 0) throw new Error(`${command.join(" ")} failed: ${err}`);
  return out;
}
