/** How the maintenance source (etcd, or the in-process one) is doing. */
export interface SourceStatus {
  kind: "etcd" | "memory";
  /**
   * `connected`: watching; `connecting`: no answer yet since start;
   * `unavailable`: lost, the last known state is kept (fail-static).
   */
  status: "connected" | "connecting" | "unavailable";
  /** When the source last confirmed the state (ISO 8601). */
  last_confirmed_at: string | null;
  /** Seconds since the state was last confirmed, while unavailable: how stale it may be. */
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
