import type { Phase } from "./transitions.ts";
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
  /** When the source last confirmed the state. */
  lastConfirmedAt: Date | null;
  /** Seconds since the state was last confirmed, while unavailable: how stale it may be. */
  staleSeconds: number | null;
  lastError: string | null;
}

/** A value of a maintenance key that could not be understood and was ignored. */
export interface RejectedValue {
  key: string;
  /** The value as read, cut to a loggable length. */
  value: string;
  revision: number;
  at: Date;
}

/** One maintenance key as this instance last read it. */
export interface KeyStatus {
  key: string;
  /** The mode the key asks for now (within its window); null before the first reading. */
  mode: Mode | null;
  revision: number | null;
  source: SourceStatus;
}

/** A maintenance window: from `start` (inclusive) to `end` (exclusive), each unbounded when null. */
export interface Window {
  start: Date | null;
  end: Date | null;
}

/** What this instance knows and does about maintenance. */
export interface MaintenanceStatus {
  /** True while some user routes answer 503 (mode full or read-only). */
  enabled: boolean;
  /** The mode the gate enforces now. */
  mode: Mode;
  phase: Phase;
  reason: string | null;
  /** When the gate closed, while enabled. */
  since: Date | null;
  retryAfterSeconds: number | null;
  /** The key that caused the current state (the service's own key when off). */
  key: string;
  /** etcd revision of that key's value, when known. */
  revision: number | null;
  /** The nearest window written but not yet begun. */
  upcomingWindow: Window | null;
  /** The service key's source (etcd or in-process). */
  source: SourceStatus;
  /** Every key followed: the service's own, then the fleet key. */
  keys: KeyStatus[];
  rejected: RejectedValue | null;
  /** The latest transitions, newest first. */
  transitions: TransitionRecord[];
}

/** Anything that can tell the current {@link MaintenanceStatus}. */
export interface MaintenanceStatusProvider {
  status(): MaintenanceStatus;
}

/** One completed transition. */
export interface TransitionRecord {
  /** `enter`, `leave`, `update` (reason or Retry-After changed), or `abandon` (turned off while draining). */
  kind: "enter" | "leave" | "update" | "abandon";
  at: Date;
  key: string;
  revision: number | null;
  fromMode: Mode;
  mode: Mode;
  reason: string | null;
  /** Whether admitted requests and the old pool's queries all finished in time. */
  drained: boolean;
  /** Milliseconds spent waiting for admitted requests. */
  drainMs: number;
  /** Milliseconds the transition took, drain included. */
  ms: number;
}
