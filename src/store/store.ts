// The embedded store of a node or an AMC: one LMDB environment under the data directory,
// one named database per kind of record. Writes that are acknowledged to a client go
// through `durable`, which returns only once the transaction is committed and flushed to
// disk, so an acknowledged registration survives `kill -9` (and a power cut).
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { DmscError } from '../errors.js';

export type Key = string | number;

export class Store {
  readonly #root: RootDatabase;
  readonly #dbs = new Map<string, Database<unknown, Key>>();
  #closed = false;
  /** Transactions handed to the write thread and not yet committed. */
  #pending = 0;
  /** An inline commit was made in this turn of the event loop. */
  #inlineTurn = false;

  private constructor(root: RootDatabase) {
    this.#root = root;
  }

  /** Opens (creating if needed) the store in `<dataDir>/store`. */
  static open(dataDir: string): Store {
    try {
      return new Store(open({ path: join(dataDir, 'store'), compression: false, maxDbs: 16 }));
    } catch (e) {
      throw new DmscError('ERR_DMSC_INVALID_CONFIG', `cannot open the store in ${dataDir}: ${(e as Error).message}`);
    }
  }

  /** A named database; values are msgpack-encoded records. */
  db<V>(name: string): Database<V, Key> {
    let db = this.#dbs.get(name);
    if (!db) {
      db = this.#root.openDB<unknown, Key>({ name });
      this.#dbs.set(name, db);
    }
    return db as Database<V, Key>;
  }

  /**
   * Runs `writes` (synchronous puts and removes on this store's databases) as one
   * transaction and resolves once it is on disk. With `inline`, a small write that
   * nothing else waits behind is committed on this thread: it is acknowledged without
   * the round trips to the write thread (half the latency of one small commit), at the
   * cost of blocking for its commit. At most one a turn of the event loop is: writes
   * that come together (many sessions at once) wait on the write thread, where they are
   * flushed together.
   */
  async durable(writes: () => void, opts?: { readonly inline?: boolean }): Promise<void> {
    if (this.#closed) throw new DmscError('ERR_DMSC_CLOSED', 'the store is closed');
    // Only when no transaction of ours waits on the write thread: commits keep the order
    // in which they were asked for.
    if (opts?.inline && this.#pending === 0 && !this.#inlineTurn) {
      this.#inlineTurn = true;
      setImmediate(() => (this.#inlineTurn = false));
      this.#root.transactionSync(writes);
    } else {
      this.#pending++;
      try {
        await this.#root.transaction(writes);
      } finally {
        this.#pending--;
      }
    }
    await this.#root.flushed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#root.close();
  }
}
