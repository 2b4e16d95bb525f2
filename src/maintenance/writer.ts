import type { Etcd3 } from "etcd3";

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

/** Writes the maintenance key in etcd, as `etcdctl put` would. */
export class EtcdWriter implements MaintenanceWriter {
  constructor(
    private readonly client: Etcd3,
    private readonly key: string,
  ) {}

  async read(): Promise<StoredValue> {
    const response = await this.client.get(this.key).exec();
    const [kv] = response.kvs;
    return {
      value: kv ? kv.value.toString("utf8") : null,
      revision: Number(kv ? kv.mod_revision : response.header.revision),
    };
  }

  async write(value: string): Promise<number> {
    const response = await this.client.put(this.key).value(value).exec();
    return Number(response.header.revision);
  }

  async clear(): Promise<number> {
    const response = await this.client.delete().key(this.key).exec();
    return Number(response.header.revision);
  }
}
