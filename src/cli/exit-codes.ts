/** `maint`'s exit codes beyond 0 (done), 1 (etcd unreachable, --wait not satisfied) and 2 (bad usage). */
export const EXIT = {
  /** Another `maint on`/`off` holds the operation lock: nothing was written. */
  locked: 3,
  /** Ctrl-C during `--wait`: the command stopped watching; the write stands and the instances go on. */
  detached: 4,
  /** Ctrl-C before anything was written (128 + SIGINT, as a shell reports it). */
  interrupted: 130,
} as const;
