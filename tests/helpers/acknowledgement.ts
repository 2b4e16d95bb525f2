import type { InstanceEntry } from "../../src/cli/acks.ts";
import type { Acknowledgement } from "../../src/maintenance/fleet.ts";

/** An instance's acknowledgement once in maintenance and drained at revision 10, with `fields` changed. */
export function drainedAcknowledgement(fields: Partial<Acknowledgement> = {}): Acknowledgement {
  return {
    instance: "host-a",
    mode: "full",
    phase: "maintenance",
    revision: 10,
    global_revision: 8,
    since: null,
    drained: true,
    in_flight: 0,
    pool_max: 1,
    open_connections: 1,
    version: "1.0.0",
    updated_at: "2030-01-01T00:00:00.000Z",
    ...fields,
  };
}

/** The entry `maint` reads for `ack`, named after its instance. */
export function entryOf(ack: Acknowledgement): InstanceEntry {
  return { name: ack.instance, ack, problem: null };
}
