import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

/** Where the HTTP listener binds, as HOST and PORT say. */
export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * The configuration problem (`VARIABLE: why`, one line) behind an error thrown
 * when listening on `address` failed, or null when the configuration does not
 * explain it. Bun and Deno both give such errors a Node-style `code`.
 */
export function listenProblem(error: unknown, { host, port }: ListenAddress): string | null {
  switch ((error as { code?: unknown } | null)?.code) {
    case "EADDRINUSE":
      return `PORT: port ${port} is already in use`;
    case "EACCES":
      return `PORT: port ${port} needs privileges this process does not have`;
    case "EADDRNOTAVAIL":
      return `HOST: ${host} is not an address of this machine`;
    default:
      return null;
  }
}

/**
 * Resolves `host` the way the listener will; the problem (`HOST: why`) when it
 * does not resolve, else null. Checked before listening because the runtimes
 * report it badly: Bun as EINVAL, Deno without a code.
 */
export async function hostProblem(host: string): Promise<string | null> {
  if (isIP(host) !== 0) return null;
  try {
    await lookup(host);
    return null;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    return `HOST: ${host} does not resolve${typeof code === "string" ? ` (${code})` : ""}`;
  }
}
