// Where controllers' routes are kept across restarts: one journal record per batch, a
// Batch message of the wire format (a gRPC batch is kept as it came; other changes are
// encoded as upserts and removes), replayed in order at start.
// A record a batch instead of a record a prefix keeps a bulk load at one store write per
// thousand entries; when the journal grows well past the live table, it is rewritten as
// the table itself.
import type { Store } from '../store/store.js';
import type { ControllerHop } from './rib.js';
import type { Persistence } from './proto.js';
import { encodeRecord, recordOps } from './batch-codec.js';

export interface ControllerMeta {
  generation: number;
  persistence: Persistence;
  leaseMs: number;
  /** The next record's number. */
  next: number;
  /** Prefix changes in the journal: what a start replays. */
  changes: number;
}

/** Records of earlier versions: JSON of [prefix, [id, weight | null, priority, tags, endpoint?][] | null][]. */
type StoredHop = [string, number | null, number, string[], string?];
type Stored = Uint8Array | string;

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
      if (typeof value === 'string') {
        for (const [prefix, hops] of JSON.parse(value) as [string, StoredHop[] | null][]) {
          if (hops) c.entries.set(prefix, hops.map(hopOf));
          else c.entries.delete(prefix);
        }
        continue;
      }
      for (const op of recordOps(Buffer.from(value.buffer, value.byteOffset, value.byteLength))) {
        if (op.op === 'upsert') c.entries.set(op.prefix, op.nextHops as ControllerHop[]);
        else if (op.op === 'remove') c.entries.delete(op.prefix);
      }
    }
    return out;
  }

  /**
   * Writes one batch's changes (inside a store transaction): `record`, the batch's own
   * bytes, when it has them. Returns true when the journal should be rewritten as the
   * table (`rewrite`).
   */
  append(id: string, meta: ControllerMeta, changes: ReadonlyMap<string, readonly ControllerHop[] | null>, live: number, record?: Buffer): boolean {
    void this.#store.db<Stored>(JOURNAL).put([id, meta.next++] as never, record ?? encodeRecord(changes));
    meta.changes += changes.size;
    this.writeMeta(id, meta);
    return this.rewriteDue(meta, 0, live);
  }

  /** Whether `added` more changes take the journal far enough past the live table to rewrite it. */
  rewriteDue(meta: ControllerMeta, added: number, live: number): boolean {
    return meta.changes + added > 2 * live + CHUNK;
  }

  /** Replaces the controller's journal with its table (inside a store transaction). */
  rewrite(id: string, meta: ControllerMeta, entries: Iterable<[string, readonly ControllerHop[]]>): void {
    this.drop(id, meta);
    let record: [string, readonly ControllerHop[]][] = [];
    const flush = () => {
      if (!record.length) return;
      void this.#store.db<Stored>(JOURNAL).put([id, meta.next++] as never, encodeRecord(record));
      meta.changes += record.length;
      record = [];
    };
    for (const entry of entries) {
      record.push(entry);
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

function hopOf([id, weight, priority, tags, endpoint]: StoredHop): ControllerHop {
  const h: { id: string; weight?: number; priority: number; tags: string[]; endpoint?: string } = { id, priority, tags };
  if (weight !== null) h.weight = weight;
  if (endpoint !== undefined) h.endpoint = endpoint;
  return h;
}
