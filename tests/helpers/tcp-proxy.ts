import net from "node:net";

/** A TCP proxy in front of one target whose link a test can cut and restore. */
export interface TcpProxy {
  /** Port the proxy listens on (127.0.0.1); stays the same across cut/restore. */
  readonly port: number;
  /** Destroys every proxied connection and stops listening, so new connections are refused. */
  cut(): Promise<void>;
  /** Listens again on the same port and forwards new connections to the target. */
  restore(): Promise<void>;
  /** Destroys every connection and stops listening for good. */
  close(): Promise<void>;
}

/**
 * Starts a proxy on `listenHost` forwarding to `targetHost:targetPort`. Cutting it
 * looks to clients like the server going away: open connections are closed
 * under them and new ones are refused (ECONNREFUSED), until {@link TcpProxy.restore}.
 */
export async function startTcpProxy(
  targetHost: string,
  targetPort: number,
  listenHost = "127.0.0.1",
): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    // A reset from either side is expected when the link is cut.
    socket.on("error", () => {});
  };

  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    track(client);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
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
    close: stopListening,
  };
}
