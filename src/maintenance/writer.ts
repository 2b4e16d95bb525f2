import { neverSent, recordingAttempts } from "./etcd-attempts.ts";
import { isEtcdUnreachable } from "./etcd-client.ts";
import { deleteKey, type KeyClient, readKey, writeKey } from "./etcd-key.ts";

/** The key's current value and its revision. */
export interface StoredValue {
  value: string | null;
  revision: number;
}

/** Reads and writes the maintenance key itself (the admin API's side of a source). */
export interface MaintenanceWriter {
  read(): Promise<StoredValue>;
  /** Writes `value`; resolves with the revision of the write. */
  write(value: string): Promise<number>;
  /** Deletes the key (maintenance off); resolves with the revision of the delete. */
  clear(): Promise<number>;
}

/**
 * The store of the key did not answer: `not-done` when the call cannot have taken effect (it never
 * reached etcd, or it was a read), `unknown` when a write reached it and was never confirmed.
 */
export class StoreUnavailableError extends Error {
  constructor(
    readonly outcome: "not-done" | "unknown",
    options: { cause: unknown },
  ) {
    super(outcome === "unknown" ? "the write was sent and never confirmed" : "the store is not reachable", options);
    this.name = "StoreUnavailableError";
  }
}

/** Writes the maintenance key in etcd, as `etcdctl put` would. */
export class EtcdWriter implements MaintenanceWriter {
  constructor(
    private readonly client: KeyClient,
    private readonly key: string,
  ) {}

  read(): Promise<StoredValue> {
    return this.call(false, async () => {
      const { value, revision, header } = await readKey(this.client, this.key);
      return { value, revision: revision ?? Number(header.revision) };
    });
  }

  write(value: string): Promise<number> {
    return this.call(true, async () => (await writeKey(this.client, this.key, value)).revision);
  }

  clear(): Promise<number> {
    return this.call(true, async () => (await deleteKey(this.client, this.key)).revision);
  }

  /** Runs one etcd call, turning etcd not answering into a {@link StoreUnavailableError}. */
  private async call<T>(writes: boolean, run: () => Promise<T>): Promise<T> {
    const failures: unknown[] = [];
    try {
      return await recordingAttempts(failures, run);
    } catch (error) {
      if (!isEtcdUnreachable(error)) throw error;
      // etcd3 retries a failed call, on another member if it can, and throws only the last attempt's
      // error: a write never left only if no attempt did. The final error is the only one known when
      // the client records none (a test's plain object).
      const notSent = [...failures, error].every(neverSent);
      throw new StoreUnavailableError(writes && !notSent ? "unknown" : "not-done", { cause: error });
    }
  }
}
