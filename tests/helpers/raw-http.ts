import { connect, type Socket } from "node:net";

/** One HTTP/1.x response read off a raw connection. */
export interface RawResponse {
  status: number;
  /** Header names in lower case. */
  headers: Map<string, string>;
  body: string;
}

/**
 * A TCP connection to an HTTP server, written to byte by byte as a test
 * likes (slow bodies, pipelining, HTTP/1.0), with everything it received.
 */
export class RawConnection {
  private data = "";
  private ended = false;
  /** Resolves when the server (or the test) closed the connection. */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.data += chunk;
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.once("close", () => {
        this.ended = true;
        resolve();
      }),
    );
  }

  /** Connects to `127.0.0.1:port`. */
  static async open(port: number): Promise<RawConnection> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawConnection(socket);
  }

  /** Sends `text` as bytes, one char a byte (latin1): write UTF-8 text through {@link Buffer} first. */
  write(text: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(typeof text === "string" ? Buffer.from(text, "latin1") : text, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  }

  /** Whether the connection is closed. */
  get isClosed(): boolean {
    return this.ended;
  }

  /** Everything received so far, one char a byte. */
  get received(): string {
    return this.data;
  }

  /** The complete responses received so far, in order. */
  responses(): RawResponse[] {
    const out: RawResponse[] = [];
    let rest = this.data;
    for (;;) {
      const end = rest.indexOf("\r\n\r\n");
      if (end < 0) return out;
      const [statusLine = "", ...lines] = rest.slice(0, end).split("\r\n");
      const headers = new Map<string, string>();
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      const length = Number(headers.get("content-length") ?? 0);
      if (rest.length < end + 4 + length) return out;
      const body = Buffer.from(rest.slice(end + 4, end + 4 + length), "latin1").toString("utf8");
      out.push({ status: Number(statusLine.split(" ")[1]), headers, body });
      rest = rest.slice(end + 4 + length);
    }
  }

  /** Closes the connection from this side at once. */
  destroy(): void {
    this.socket.destroy();
  }
}

/** The head of a request with a JSON body of `length` bytes, ready for the body to follow. */
export const jsonRequestHead = (method: string, path: string, length: number) =>
  `${method} ${path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
