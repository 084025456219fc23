// Where controllers' routes are kept across restarts: one journal record per batch (the
// controller's next hops for each prefix the batch changed), replayed in order at start.
// A record a batch instead of a record a prefix keeps a bulk load at one store write per
// thousand entries; when the journal grows well past the live table, it is rewritten as
// the table itself.
import type { Store } from '../store/store.js';
import type { ControllerHop } from './rib.js';
import type { Persistence } from './proto.js';

export interface ControllerMeta {
  generation: number;
  persistence: Persistence;
  leaseMs: number;
  /** The next record's number. */
  next: number;
  /** Prefix changes in the journal: what a start replays. */
  changes: number;
}

/** [id, weight (null: the default), priority, tags, endpoint?] */
type StoredHop = [string, number | null, number, string[], string?];
type Record = [string, StoredHop[] | null][];
/**
 * A record as stored: JSON text. V8 writes and reads JSON natively at a fraction of what
 * packing the same nested arrays with msgpack costs, on the path of every bulk load.
 */
type Stored = string;

const JOURNAL = 'fib-controller-journal';
const META = 'fib-controllers';
/** Prefixes a record holds when the journal is rewritten as the table. */
const CHUNK = 10_000;

export class ControllerJournal {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** Every controller's meta and entries, the journal replayed. */
  load(): Map<string, { meta: ControllerMeta; entries: Map<string, ControllerHop[]> }> {
    const out = new Map<string, { meta: ControllerMeta; entries: Map<string, ControllerHop[]> }>();
    for (const { key, value } of this.#store.db<ControllerMeta>(META).getRange()) {
      out.set(String(key), { meta: { ...value, next: value.next ?? 0, changes: value.changes ?? 0 }, entries: new Map() });
    }
    for (const { key, value } of this.#store.db<Stored>(JOURNAL).getRange()) {
      const c = out.get(String((key as unknown as [string, number])[0]));
      if (!c) continue;
      for (const [prefix, hops] of JSON.parse(value) as Record) {
        if (hops) c.entries.set(prefix, hops.map(hopOf));
        else c.entries.delete(prefix);
      }
    }
    return out;
  }

  /**
   * Writes one batch's changes (inside a store transaction). Returns true when the
   * journal should be rewritten as the table (`rewrite`).
   */
  append(id: string, meta: ControllerMeta, changes: ReadonlyMap<string, readonly ControllerHop[] | null>, live: number): boolean {
    const record: Record = [];
    for (const [prefix, hops] of changes) record.push([prefix, hops ? hops.map(storedHop) : null]);
    void this.#store.db<Stored>(JOURNAL).put([id, meta.next++] as never, JSON.stringify(record));
    meta.changes += record.length;
    this.writeMeta(id, meta);
    return meta.changes > 2 * live + CHUNK;
  }

  /** Replaces the controller's journal with its table (inside a store transaction). */
  rewrite(id: string, meta: ControllerMeta, entries: Iterable<[string, readonly ControllerHop[]]>): void {
    this.drop(id, meta);
    let record: Record = [];
    const flush = () => {
      if (!record.length) return;
      void this.#store.db<Stored>(JOURNAL).put([id, meta.next++] as never, JSON.stringify(record));
      meta.changes += record.length;
      record = [];
    };
    for (const [prefix, hops] of entries) {
      record.push([prefix, hops.map(storedHop)]);
      if (record.length >= CHUNK) flush();
    }
    flush();
    this.writeMeta(id, meta);
  }

  /** Removes the controller's journal, keeping its meta (inside a store transaction). */
  drop(id: string, meta: ControllerMeta): void {
    const db = this.#store.db<Stored>(JOURNAL);
    for (const key of db.getKeys({ start: [id] as never, end: [id, Number.MAX_SAFE_INTEGER] as never })) void db.remove(key);
    meta.changes = 0;
    this.writeMeta(id, meta);
  }

  writeMeta(id: string, meta: ControllerMeta): void {
    void this.#store.db<ControllerMeta>(META).put(id, { ...meta });
  }
}

function storedHop(h: ControllerHop): StoredHop {
  const out: StoredHop = [h.id, h.weight ?? null, h.priority ?? 0, (h.tags ?? []) as string[]];
  if (h.endpoint) out.push(h.endpoint);
  return out;
}

function hopOf([id, weight, priority, tags, endpoint]: StoredHop): ControllerHop {
  const h: { id: string; weight?: number; priority: number; tags: string[]; endpoint?: string } = { id, priority, tags };
  if (weight !== null) h.weight = weight;
  if (endpoint !== undefined) h.endpoint = endpoint;
  return h;
}
