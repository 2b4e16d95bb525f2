import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Subprocess, spawn } from "bun";
import { Etcd3 } from "etcd3";
import { freePort } from "./free-port.ts";
import { PATIENCE_MS } from "./wait.ts";

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  process?: Subprocess;
}

/** A real three-member etcd cluster on loopback, whose members a test can kill and restart one by one. */
export class TestEtcdCluster {
  private constructor(private readonly members: Member[]) {}

  /** Starts the members together and waits until each answers. */
  static async start(size = 3): Promise<TestEtcdCluster> {
    const members: Member[] = [];
    for (let i = 0; i < size; i++) {
      members.push({
        name: `m${i}`,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: mkdtempSync(join(tmpdir(), `etcd-cluster-m${i}-`)),
      });
    }
    const cluster = new TestEtcdCluster(members);
    await Promise.all(members.map((_, i) => cluster.resume(i)));
    return cluster;
  }

  /** Every member's `127.0.0.1:<port>`, comma-separated, as ETCD_ENDPOINTS takes them. */
  get endpoints(): string {
    return this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(",");
  }

  endpoint(i: number): string {
    return `127.0.0.1:${this.member(i).clientPort}`;
  }

  /**
   * How many watch streams member `i` serves now (its `etcd_debugging_mvcc_watch_stream_total`):
   * an etcd3 client keeps its watches on one stream to one member it picked, so this tells which
   * member the clients watching through it depend on. 0 when the member is down.
   */
  async watchStreams(i: number): Promise<number> {
    const metrics = await fetch(`http://${this.endpoint(i)}/metrics`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.text())
      .catch(() => "");
    const line = metrics.split("\n").find((l) => l.startsWith("etcd_debugging_mvcc_watch_stream_total "));
    return line ? Number(line.split(" ")[1]) : 0;
  }

  /** The number of members. */
  get size(): number {
    return this.members.length;
  }

  /** Starts member `i` (again, with its data) and waits until it answers. */
  async resume(i: number): Promise<void> {
    const m = this.member(i);
    const initialCluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(",");
    m.process = spawn(
      [
        "etcd",
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=http://127.0.0.1:${m.clientPort}`,
        `--advertise-client-urls=http://127.0.0.1:${m.clientPort}`,
        `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
        `--initial-cluster=${initialCluster}`,
        "--initial-cluster-state=new",
        "--initial-cluster-token=test-cluster",
        "--log-level=error",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    const deadline = Date.now() + PATIENCE_MS;
    while (Date.now() < deadline) {
      const healthy = await fetch(`http://127.0.0.1:${m.clientPort}/health`, {
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      })
        .then(async (r) => r.ok && ((await r.json()) as { health?: string }).health === "true")
        .catch(() => false);
      if (healthy) return;
      await Bun.sleep(100);
    }
    throw new Error(`etcd member ${m.name} did not become healthy within ${PATIENCE_MS} ms`);
  }

  /** Kills member `i` at once (SIGKILL). */
  async kill(i: number): Promise<void> {
    const m = this.member(i);
    m.process?.kill("SIGKILL");
    await m.process?.exited;
    m.process = undefined;
  }

  /** Writes `key` through member `i` only. */
  async put(i: number, key: string, value: string): Promise<void> {
    const client = new Etcd3({ hosts: this.endpoint(i) });
    try {
      await client.put(key).value(value);
    } finally {
      client.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.kill(i)));
    for (const m of this.members) rmSync(m.dataDir, { recursive: true, force: true });
  }

  private member(i: number): Member {
    const m = this.members[i];
    if (!m) throw new Error(`no member ${i}`);
    return m;
  }
}
