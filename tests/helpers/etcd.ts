import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import { Etcd3 } from "etcd3";
import { freePort } from "./free-port.ts";

/** A real etcd server started for a test file, on free ports with a temporary data dir. */
export class TestEtcd {
  private process: Subprocess | undefined;
  private readonly dataDir = mkdtempSync(join(tmpdir(), "etcd-test-"));
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
      throw new Error("etcd is not installed: run `apt-get install -y etcd-server etcd-client` (or `bash .ci/run`)");
    }
    const etcd = new TestEtcd(clientPort ?? (await freePort()), await freePort());
    await etcd.resume();
    return etcd;
  }

  /** Starts etcd again on the same ports and data (after {@link kill}). */
  async resume(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
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
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const healthy = await fetch(`${client}/health`)
        .then((r) => r.ok)
        .catch(() => false);
      if (healthy) return;
      if (this.process.exitCode !== null) throw new Error(`etcd exited with ${this.process.exitCode}`);
      await Bun.sleep(50);
    }
    throw new Error("etcd did not become healthy within 15 s");
  }

  /** Kills etcd at once (SIGKILL), keeping its data for {@link resume}. */
  async kill(): Promise<void> {
    this.process?.kill("SIGKILL");
    await this.process?.exited;
    this.process = undefined;
  }

  async put(key: string, value: string): Promise<void> {
    await this.client.put(key).value(value);
  }

  async delete(key: string): Promise<void> {
    await this.client.delete().key(key);
  }

  /** Writes with the real etcdctl, as an operator would. */
  async etcdctl(...args: string[]): Promise<string> {
    const child = spawn(["etcdctl", `--endpoints=${this.endpoint}`, ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.exited,
    ]);
    if (code !== 0) throw new Error(`etcdctl ${args.join(" ")} failed: ${err}`);
    return out;
  }

  /** Stops etcd and removes its data. */
  async stop(): Promise<void> {
    this.client.close();
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
