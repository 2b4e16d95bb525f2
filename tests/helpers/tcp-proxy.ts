import net from "node:net";

/** A TCP proxy in front of one target whose link a test can cut, restore, partition and heal. */
export interface TcpProxy {
  /** Port the proxy listens on (127.0.0.1); stays the same across cut/restore. */
  readonly port: number;
  /** Destroys every proxied connection and stops listening, so new connections are refused. */
  cut(): Promise<void>;
  /** Listens again on the same port and forwards new connections to the target. */
  restore(): Promise<void>;
  /**
   * A network partition (a blackhole): connections stay open, new ones are
   * accepted, but no byte passes in either direction. Bytes, and closes, are
   * held as TCP's retransmissions would hold them, and delivered in order by
   * {@link TcpProxy.heal}.
   */
  partition(): void;
  /** Ends the partition: delivers what was held, in order, then forwards again. */
  heal(): void;
  /**
   * Resolves once the target has closed every connection open now. The
   * target reads a connection's bytes in order before its end, so by then it
   * has acted on everything sent through those connections.
   */
  settled(): Promise<void>;
  /** Destroys every connection and stops listening for good. */
  close(): Promise<void>;
}

/** One direction of a proxied connection: forwards, or holds while partitioned. */
class Flow {
  private held: Buffer[] = [];
  private sourceEnded = false;

  constructor(
    source: net.Socket,
    private readonly sink: net.Socket,
    private readonly partitioned: () => boolean,
  ) {
    source.on("data", (chunk: Buffer) => (this.partitioned() ? this.held.push(chunk) : this.write(chunk)));
    // "end" is a FIN; "close" also covers a reset, which reaches the other side as a FIN.
    const ended = () => {
      if (this.sourceEnded) return;
      this.sourceEnded = true;
      if (!this.partitioned()) this.sink.end();
    };
    source.on("end", ended);
    source.on("close", ended);
  }

  /** Delivers what was held (and a close that came meanwhile). */
  flush(): void {
    for (const chunk of this.held) this.write(chunk);
    this.held = [];
    if (this.sourceEnded) this.sink.end();
  }

  private write(chunk: Buffer): void {
    if (!this.sink.destroyed) this.sink.write(chunk);
  }
}

/**
 * Starts a proxy on `listenHost` forwarding to `targetHost:targetPort`. Cutting it
 * looks to clients like the server going away: open connections are closed
 * under them and new ones are refused (ECONNREFUSED), until {@link TcpProxy.restore}.
 * Partitioning it looks like a network that silently stops delivering, until
 * {@link TcpProxy.heal}.
 */
export async function startTcpProxy(
  targetHost: string,
  targetPort: number,
  listenHost = "127.0.0.1",
): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const upstreams = new Set<net.Socket>();
  const flows = new Set<Flow>();
  let partitioned = false;
  const isPartitioned = () => partitioned;
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // A reset from either side is expected when the link is cut.
    socket.on("error", () => {});
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ port: targetPort, host: targetHost, allowHalfOpen: true });
    track(client);
    track(upstream);
    upstreams.add(upstream);
    upstream.on("close", () => upstreams.delete(upstream));
    const up = new Flow(client, upstream, isPartitioned);
    const down = new Flow(upstream, client, isPartitioned);
    flows.add(up).add(down);
    const forget = () => {
      if (!client.destroyed || !upstream.destroyed) return;
      flows.delete(up);
      flows.delete(down);
    };
    client.on("close", forget);
    upstream.on("close", forget);
  });

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, listenHost, () => {
        server.off("error", reject);
        resolve();
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      partitioned = false;
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });

  await listen(0);
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    cut: stopListening,
    restore: () => (server.listening ? Promise.resolve() : listen(port)),
    partition() {
      partitioned = true;
    },
    heal() {
      partitioned = false;
      for (const flow of flows) flow.flush();
    },
    settled: () =>
      Promise.all([...upstreams].map((socket) => new Promise((resolve) => socket.once("close", resolve)))).then(
        () => {},
      ),
    close: stopListening,
  };
}

/** A proxy in front of the PostgreSQL that `databaseUrl` names, and the same URL through the proxy. */
export async function proxyDatabase(databaseUrl: string): Promise<{ proxy: TcpProxy; url: string }> {
  const target = new URL(databaseUrl);
  const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  const through = new URL(databaseUrl);
  through.hostname = "127.0.0.1";
  through.port = String(proxy.port);
  return { proxy, url: through.toString() };
}
