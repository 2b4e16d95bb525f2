import type { Mode } from "./value.ts";

/** How the maintenance source (etcd, or the in-process one) is doing. */
export interface SourceStatus {
  kind: "etcd" | "memory";
  /**
   * `connected`: watching, and etcd confirmed the state within the last 60 s (a GET every 30 s);
   * `connecting`: no answer yet since start; `unavailable`: lost, or not confirmed within
   * 60 s: the last known state is kept (fail-static).
   */
  status: "connected" | "connecting" | "unavailable";
  /** When the source last confirmed the state (ISO 8601). */
  last_confirmed_at: string | null;
  /** Seconds since the state was last confirmed, while unavailable: how stale it may be. */
  stale_seconds: number | null;
  last_error: string | null;
}

/** A value of a maintenance key that could not be understood and was ignored. */
export interface RejectedValue {
  key: string;
  value: string;
  revision: string;
  at: string;
}

/** One maintenance key as this instance last read it. */
export interface KeyStatus {
  key: string;
  /** The mode the key asks for now (within its window); null before the first reading. */
  mode: Mode | null;
  revision: string | null;
  source: SourceStatus;
}

/** What `/health` and `/stats` report about maintenance. */
export interface MaintenanceStatus {
  /** True while some user routes answer 503 (mode full or read-only). */
  enabled: boolean;
  /** The mode the gate enforces now. */
  mode: Mode;
  /** `serving`, `entering` (draining), `maintenance`, or `leaving` (restoring the pool). */
  phase: "serving" | "entering" | "maintenance" | "leaving";
  reason: string | null;
  /** When the gate closed (ISO 8601), while enabled. */
  since: string | null;
  retry_after_seconds: number | null;
  /** The key that caused the current state (the service's own key when off). */
  key: string;
  /** etcd revision of that key's value, when known. */
  revision: string | null;
  /** The nearest window written but not yet begun. */
  upcoming_window: { start: string | null; end: string | null } | null;
  /** The service key's source (etcd or in-process). */
  source: SourceStatus;
  /** Every key followed: the service's own, then the fleet key. */
  keys: KeyStatus[];
  rejected: RejectedValue | null;
  /** The latest transitions, newest first (at most 20). */
  transitions: TransitionRecord[];
}

/** Anything that can tell the current {@link MaintenanceStatus}. */
export interface MaintenanceStatusProvider {
  status(): MaintenanceStatus;
}

/** One completed transition, as `/stats` lists the latest ones. */
export interface TransitionRecord {
  /** `enter`, `leave`, `update` (reason or Retry-After changed), or `abandon` (turned off while draining). */
  kind: "enter" | "leave" | "update" | "abandon";
  at: string;
  key: string;
  revision: string | null;
  from_mode: Mode;
  mode: Mode;
  reason: string | null;
  /** Whether admitted requests and the old pool's queries all finished in time. */
  drained: boolean;
  /** Time spent waiting for admitted requests. */
  drain_ms: number;
  /** How long the transition took, drain included. */
  ms: number;
}
