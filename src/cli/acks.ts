import * as v from "valibot";
import type { Acknowledgement } from "../maintenance/fleet.ts";
import { formatDuration } from "./duration.ts";
import { printable } from "./output.ts";
import { renderTable } from "./table.ts";

/** An acknowledgement as `fleet.ts` writes it; other fields are ignored. */
const AcknowledgementSchema = v.object({
  instance: v.string(),
  mode: v.picklist(["off", "read-only", "full"]),
  phase: v.picklist(["serving", "entering", "maintenance", "leaving"]),
  revision: v.number(),
  global_revision: v.nullable(v.number()),
  since: v.nullable(v.string()),
  drained: v.boolean(),
  in_flight: v.number(),
  pool_max: v.number(),
  open_connections: v.nullable(v.number()),
  version: v.string(),
  updated_at: v.string(),
}) satisfies v.GenericSchema<unknown, Acknowledgement>;

/** One entry under `<key>/instances/`: the acknowledgement, or why it could not be read. */
export type InstanceEntry =
  | { name: string; ack: Acknowledgement; problem: null }
  | { name: string; ack: null; problem: string };

/** Reads one stored entry; `name` is the key's last segment. */
export function parseEntry(name: string, raw: string): InstanceEntry {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { name, ack: null, problem: "not JSON" };
  }
  const result = v.safeParse(AcknowledgementSchema, json);
  if (!result.success) {
    return { name, ack: null, problem: `not an acknowledgement (${v.getDotPath(result.issues[0]) ?? "value"})` };
  }
  return { name: result.output.instance, ack: result.output, problem: null };
}

const yesNo = (value: boolean) => (value ? "yes" : "no");
const orDash = (value: number | null) => (value === null ? "-" : String(value));

/** The acknowledgements as a table; `now` gives the age of each. */
export function instancesTable(entries: InstanceEntry[], now: number, columns: "status" | "progress"): string {
  const progress = columns === "progress";
  const headers = progress
    ? ["INSTANCE", "MODE", "PHASE", "REVISION", "GLOBAL_REV", "DRAINED", "IN_FLIGHT"]
    : [
        "INSTANCE",
        "MODE",
        "PHASE",
        "REVISION",
        "GLOBAL_REV",
        "DRAINED",
        "IN_FLIGHT",
        "POOL_MAX",
        "OPEN_CONNS",
        "UPDATED",
      ];
  const rows = entries.map(({ name, ack, problem }) => {
    if (!ack) return [name, `unreadable: ${problem}`];
    const row = [
      ack.instance,
      ack.mode,
      ack.phase,
      String(ack.revision),
      orDash(ack.global_revision),
      yesNo(ack.drained),
      String(ack.in_flight),
    ];
    if (progress) return row;
    const age = now - Date.parse(ack.updated_at);
    return [
      ...row,
      String(ack.pool_max),
      orDash(ack.open_connections),
      Number.isNaN(age) ? "?" : `${formatDuration(Math.max(0, age))} ago`,
    ];
  });
  // Instance ids, and the reasons an entry is unreadable, come from etcd.
  return renderTable(
    headers,
    rows.map((row) => row.map(printable)),
  );
}
