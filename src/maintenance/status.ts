/** How the maintenance source (etcd, or the in-memory one) is doing. */
export interface SourceStatus {
  kind: "etcd" | "memory";
  /** `connected`: watching; `connecting`: not yet answered; `unavailable`: lost, state kept. */
  state: "connected" | "connecting" | "unavailable";
  /** Seconds since the state was last confirmed by the source, while it is unavailable. */
  stale_seconds: number | null;
  last_error: string | null;
}

/** A value of the maintenance key that could not be understood and was ignored. */
export interface RejectedValue {
  value: string;
  revision: string;
  at: string;
}

/** What `/health` and `/stats` report about maintenance. */
export interface MaintenanceStatus {
  /** True while user routes answer 503. */
  enabled: boolean;
  /** `serving`, `entering` (draining), `maintenance`, or `leaving` (restoring the pool). */
  phase: "serving" | "entering" | "maintenance" | "leaving";
  reason: string | null;
  /** When the gate closed (ISO 8601), while enabled. */
  since: string | null;
  retry_after_seconds: number | null;
  key: string;
  /** etcd revision of the value now applied, when known. */
  revision: string | null;
  source: SourceStatus;
  rejected: RejectedValue | null;
}

/** Anything that can tell the current {@link MaintenanceStatus}. */
export interface MaintenanceStatusProvider {
  status(): MaintenanceStatus;
}
