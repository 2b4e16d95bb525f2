import type { SourceStatus } from "./status.ts";

/** One reading of the maintenance key. */
export interface Observation {
  /** The key's value, or null when the key does not exist. */
  value: string | null;
  /** Revision of the value (the key's mod_revision), or of the read when the key is absent. */
  revision: number;
  /** etcd's history went back (rebuilt, restored): revisions start again from this one. */
  reset?: boolean;
}

/** Where maintenance state comes from: etcd, or an in-process store. */
export interface MaintenanceSource {
  /** Begins delivering observations, in revision order, to `listener`. */
  start(listener: (observation: Observation) => void): void;
  /** Health of the connection to the source. */
  status(): SourceStatus;
  /** Stops watching and releases connections. */
  close(): Promise<void>;
}
