import { isIPv6 } from "node:net";
import parseConnectionString from "@databases/pg-connection-string";
import type postgres from "postgres";

/** Where and how to reach PostgreSQL, in the shape postgres.js takes. */
export interface ConnectionTarget {
  /** Host names, IP addresses (IPv6 without brackets) or one socket directory. */
  host: string[];
  /** One port per host, each 1–65535. */
  port: number[];
  database: string;
  username: string;
  password?: string;
  /** postgres.js `ssl`: false, or a libpq sslmode it understands. */
  ssl: false | "prefer" | "require" | "verify-full";
  /** Seconds; from libpq `connect_timeout` when the string gives one. */
  connectTimeoutSeconds?: number;
}

/** Thrown when a DATABASE_URL cannot be understood; the message says why. */
export class InvalidDatabaseUrlError extends Error {}

const sslModes: Record<string, ConnectionTarget["ssl"]> = {
  disable: false,
  allow: "prefer",
  prefer: "prefer",
  require: "require",
  "verify-ca": "verify-full",
  "verify-full": "verify-full",
  "no-verify": "require",
};

/**
 * Parses a PostgreSQL connection string, in either the libpq keyword/value form
 * (`host=localhost user=postgres dbname=testdb sslmode=disable`) or the URL form
 * (`postgres://user:pass@host:5432/db?sslmode=require`).
 *
 * postgres.js throws "Invalid URL" on the keyword form, and pg-connection-string
 * silently mis-parses it (brianc/node-postgres#2125), so both go through
 * @databases/pg-connection-string. PG* environment variables are not consulted:
 * the string alone decides.
 */
export function parseDatabaseUrl(value: string): ConnectionTarget {
  // The library reads neither IPv6 literals nor positional ports in a URL's host list: we read that part ourselves.
  const { rest, hosts } = splitUriHosts(value.trim());
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(rest, {
      env: {},
      invalidOptionMode: "error",
      unrecognisedOptionMode: "error",
    });
  } catch (error) {
    throw new InvalidDatabaseUrlError(error instanceof Error ? error.message : String(error));
  }
  const { host, port } = hosts ?? pairPorts(parsed.host, parsed.port);
  const username = parsed.user ?? "postgres";
  const sslmode = parsed.sslmode ?? "prefer";
  const ssl = sslModes[sslmode];
  if (ssl === undefined) throw new InvalidDatabaseUrlError(`unsupported sslmode "${sslmode}"`);
  const connectTimeout = parsed.connect_timeout;
  return {
    host,
    port,
    database: parsed.dbname ?? username,
    username,
    ...(parsed.password !== undefined && { password: parsed.password }),
    ssl,
    ...(connectTimeout !== undefined && connectTimeout > 0 && { connectTimeoutSeconds: connectTimeout }),
  };
}

const DEFAULT_PORT = 5432;

/** A port as libpq takes it (`""` for the default), checked to be 1–65535. */
function parsePort(text: string): number {
  if (text === "") return DEFAULT_PORT;
  if (!/^\d+$/.test(text)) throw new InvalidDatabaseUrlError(`port "${text}" is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new InvalidDatabaseUrlError(`port ${text} is out of range (1–65535)`);
  return port;
}

/**
 * The keyword form's `host` and `port` lists paired as libpq pairs them: no
 * port means 5432 for every host, one port applies to every host, otherwise
 * one port per host.
 */
function pairPorts(hosts: string[], ports: (number | null)[]): { host: string[]; port: number[] } {
  const host = hosts.filter((h) => h !== "");
  if (host.length === 0) throw new InvalidDatabaseUrlError("no host given");
  const given = ports.map((p) => parsePort(p === null ? "" : String(p)));
  if (given.length > 1 && given.length !== host.length) {
    throw new InvalidDatabaseUrlError(`${given.length} ports given for ${host.length} hosts`);
  }
  return { host, port: host.map((_, i) => given[given.length === 1 ? 0 : i] ?? DEFAULT_PORT) };
}

/** One `host[:port]` entry of a URL's host list; an IPv6 literal is bracketed (`[::1]:5432`). */
const URI_HOST = /^(?:\[(?<v6>[^\]]*)\]|(?<name>[^:[\]]*))(?::(?<port>[^:]*))?$/;

/**
 * For the URL form: its host list (`postgres://u@h1:5433,[::1]/db`), read as
 * libpq reads it, and the string with that list replaced by `localhost` for
 * the library to read the rest. `hosts` is null for the keyword form, or a URL
 * without hosts. The library splits hosts at every `:` and keeps ports apart
 * from the hosts they follow, so `[::1]` fails and `h1,h2:5433` would put h1 on 5433.
 */
function splitUriHosts(value: string): { rest: string; hosts: { host: string[]; port: number[] } | null } {
  const scheme = /^postgres(?:ql)?:\/\//.exec(value)?.[0];
  if (scheme === undefined) return { rest: value, hosts: null };
  const authorityEnd = value.slice(scheme.length).search(/[/?]|$/) + scheme.length;
  const listStart = value.lastIndexOf("@", authorityEnd) + 1 || scheme.length;
  const list = value.slice(listStart, authorityEnd);
  if (list === "") return { rest: value, hosts: null };
  const host: string[] = [];
  const port: number[] = [];
  for (const entry of list.split(",")) {
    const match = URI_HOST.exec(entry)?.groups;
    if (!match) throw new InvalidDatabaseUrlError(`host "${entry}": write an IPv6 address in brackets, [::1]`);
    const name = decodeURIComponent(match.v6 ?? match.name ?? "");
    if (match.v6 !== undefined && !isIPv6(name)) {
      throw new InvalidDatabaseUrlError(`host "[${match.v6}]" is not an IPv6 address`);
    }
    if (name === "") throw new InvalidDatabaseUrlError(`empty host in "${list}"`);
    host.push(name);
    port.push(parsePort(match.port ?? ""));
  }
  const rest = `${value.slice(0, listStart)}localhost${value.slice(authorityEnd)}`;
  return { rest, hosts: { host, port } };
}

/**
 * The `host`/`port` (or `path`, for a socket directory) options postgres.js
 * takes for `target`. Arrays, not its `h1:p1,h2:p2` string: postgres.js splits
 * that string at every `:`, which breaks IPv6 literals
 * (porsager/postgres#663), while it keeps arrays as given (`parseOptions`; its
 * `BaseOptions` type allows them, `Options` narrows them to one).
 */
export function hostOptions(target: ConnectionTarget): Pick<postgres.Options<never>, "host" | "port" | "path"> {
  const [first = "localhost"] = target.host;
  const firstPort = target.port[0] ?? DEFAULT_PORT;
  if (target.host.length === 1 && first.startsWith("/")) return { path: `${first}/.s.PGSQL.${firstPort}` };
  return { host: target.host as unknown as string, port: target.port as unknown as number };
}
