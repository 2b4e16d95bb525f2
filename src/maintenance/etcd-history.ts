/** The part of every etcd response header that places the answer in one history. */
export interface EtcdHeader {
  cluster_id: string;
  revision: string;
}

/** What had been seen when a request was sent; see {@link EtcdHistory.mark}. */
export interface HistoryMark {
  readonly revision: number;
  readonly resets: number;
}

/** How etcd's history was found to have gone back. */
export interface HistoryReset {
  /** The store revision etcd answers with now. */
  revision: number;
  /** The highest revision seen before, when the request was sent. */
  seen: number;
  /** `revision` (the store's revision went back), `key revision` (a key's mod_revision did), or `cluster id`. */
  cause: "revision" | "key revision" | "cluster id";
}

/**
 * Notices etcd's history going back. etcd rebuilt empty, or restored from a
 * snapshot (its documented disaster recovery), starts its revision counter
 * again from 1 or from the snapshot's revision, and may come back with another
 * cluster id. Every revision remembered from before is then meaningless: a
 * watch resumed from one waits for revisions the new history has not reached,
 * and a reading compared with one looks old.
 *
 * A linearizable answer to a request sent after revision R was seen is at R or
 * later; an answer below what was seen when its request left, a key whose
 * mod_revision went below the one seen, or a changed cluster id, means the
 * history went back. Answers to requests that crossed one another are not
 * mistaken for it: each is compared with what was seen when it was sent, and
 * one sent before the last reset only with the cluster id, so a reset is
 * reported once however many requests were out.
 */
export class EtcdHistory {
  private revision = -1;
  private resets = 0;
  private clusterId: string | null = null;

  /** What has been seen so far: take it when sending a request, give it to {@link check} with the answer. */
  mark(): HistoryMark {
    return { revision: this.revision, resets: this.resets };
  }

  /**
   * Takes the header of a message that answers no request sent at a mark (a watch event):
   * its revision was committed, so any later linearizable answer is at least as far. One
   * from another cluster is left for {@link check} to notice.
   */
  saw(header: EtcdHeader): void {
    if (this.clusterId !== null && header.cluster_id !== this.clusterId) return;
    this.revision = Math.max(this.revision, Number(header.revision));
  }

  /**
   * Takes the header of the answer to a request sent at `mark`, and the mod_revisions of the
   * key it read (the highest seen when it was sent, and the one in the answer), if any. Returns
   * the reset, or null when the answer belongs to the history followed. After a reset, the new
   * history is the one followed.
   */
  check(header: EtcdHeader, mark: HistoryMark, key?: { seen: number; now: number }): HistoryReset | null {
    const revision = Number(header.revision);
    const sameEpoch = mark.resets === this.resets;
    let reset: HistoryReset | null = null;
    if (this.clusterId !== null && header.cluster_id !== this.clusterId) {
      reset = { revision, seen: this.revision, cause: "cluster id" };
    } else if (sameEpoch && revision < mark.revision) {
      reset = { revision, seen: mark.revision, cause: "revision" };
    } else if (sameEpoch && key && key.now < key.seen) {
      reset = { revision, seen: key.seen, cause: "key revision" };
    }
    this.clusterId = header.cluster_id;
    if (reset === null) {
      this.revision = Math.max(this.revision, revision);
      return null;
    }
    this.revision = revision;
    this.resets++;
    return reset;
  }
}
