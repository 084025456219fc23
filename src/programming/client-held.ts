// The table FibClient holds for a resync: every entry it upserted and did not remove, as
// the bytes of its upsert (a whole Batch.ops entry), sent again as they are after a
// reconnect. The bytes live in one growing buffer; an open-addressed index of typed arrays
// finds an entry by the UTF-8 bytes of its prefix, which are the node's key too. A million
// entries are then two typed arrays and one buffer: no million strings or map slots for
// the garbage collector to trace, and one probe of the index per op that is usually its
// only cache miss. Replaced and removed entries leave their bytes behind until they are
// half the buffer, when the live ones are copied to a new one.
import { fnv1aBytes, sameBytes } from '../fastpath/hashing.js';
import type { EncodedOps } from './client-encode.js';

const FIRST = 1 << 16;
/** Dead bytes tolerated before compacting, beyond half the buffer. */
const SLACK = 1 << 20;
const FIRST_SLOTS = 1 << 10;

export class HeldTable {
  // Slot i holds an entry when #at[i] > 0: its upsert's offset in #bytes plus one, and its
  // prefix's hash. Linear probing, at most half full, with deletion by backward shift (no
  // tombstones to sweep). Offsets are doubles: a buffer may pass 4 GiB where Node allows it.
  #at: Float64Array;
  #hash: Uint32Array;
  #size = 0;
  #bytes = Buffer.allocUnsafe(FIRST);
  #used = 0;
  #dead = 0;
  readonly #slack: number;
  readonly #firstSlots: number;

  /**
   * `slack`: dead bytes tolerated beyond half the buffer before compacting; `slots`: the
   * index's first size (a power of two; small ones make tests probe and grow).
   */
  constructor(slack = SLACK, slots = FIRST_SLOTS) {
    this.#slack = slack;
    this.#firstSlots = slots;
    this.#at = new Float64Array(slots);
    this.#hash = new Uint32Array(slots);
  }

  get size(): number {
    return this.#size;
  }

  /** Bytes the buffer holds, of live entries and of dead ones not compacted yet. */
  get bytes(): number {
    return this.#used;
  }

  /** Takes what a batch the node applied did: its upserts and removes, in order. */
  apply(ops: EncodedOps): void {
    const { starts, ends } = ops.changes;
    const src = ops.bytes;
    // The batch's bytes are copied once, whole, when its first upsert needs them: a copy
    // per entry costs more in calls than in bytes. What no upsert keeps (removes, health
    // ops) is dead from the start.
    let base = -1;
    for (let i = 0; i < starts.length; i++) {
      const start = starts[i]!;
      const p = prefixOf(src, start);
      const h = prefixHash(src, p, prefixEnd);
      const slot = this.#find(src, p, prefixEnd, h);
      const found = this.#at[slot]! > 0;
      if (found) this.#dead += opLength(this.#bytes, this.#at[slot]! - 1);
      const end = ends[i]!;
      if (end < 0) {
        if (found) this.#delete(slot);
        continue;
      }
      if (base < 0) {
        base = this.#append(src, 0, src.length);
        this.#dead += src.length;
      }
      this.#dead -= end - start;
      this.#at[slot] = base + start + 1;
      if (!found) {
        this.#hash[slot] = h;
        if (++this.#size * 2 > this.#at.length) this.#grow();
      }
    }
    if (this.#dead > this.#used / 2 + this.#slack) this.#compact();
  }

  clear(): void {
    this.#at = new Float64Array(this.#firstSlots);
    this.#hash = new Uint32Array(this.#firstSlots);
    this.#size = 0;
    this.#bytes = Buffer.allocUnsafe(FIRST);
    this.#used = 0;
    this.#dead = 0;
  }

  /** Each entry's upsert bytes (views of the table's buffer: use them before it changes). */
  *ops(): Generator<Buffer, undefined, undefined> {
    const at = this.#at;
    for (let i = 0; i < at.length; i++) {
      const a = at[i]!;
      if (a > 0) yield this.#bytes.subarray(a - 1, a - 1 + opLength(this.#bytes, a - 1));
    }
  }

  // The slot holding the prefix src[p, end), or the empty slot where it would go.
  #find(src: Buffer, p: number, end: number, h: number): number {
    const mask = this.#at.length - 1;
    const bytes = this.#bytes;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const a = this.#at[s]!;
      if (a === 0) return s;
      if (this.#hash[s] !== h) continue;
      const q = prefixOf(bytes, a - 1);
      if (prefixEnd - q === end - p && sameBytes(bytes, q, src, p, end - p)) return s;
    }
  }

  // Knuth's deletion for linear probing: entries after the hole that may move into it do.
  #delete(slot: number): void {
    const at = this.#at;
    const hash = this.#hash;
    const mask = at.length - 1;
    let hole = slot;
    for (let j = (hole + 1) & mask; at[j]! > 0; j = (j + 1) & mask) {
      const home = hash[j]! & mask;
      // The entry at j stays when its home lies cyclically in (hole, j].
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      at[hole] = at[j]!;
      hash[hole] = hash[j]!;
      hole = j;
    }
    at[hole] = 0;
    this.#size--;
  }

  #grow(): void {
    const oldAt = this.#at;
    const oldHash = this.#hash;
    const at = (this.#at = new Float64Array(oldAt.length * 2));
    const hash = (this.#hash = new Uint32Array(oldAt.length * 2));
    const mask = at.length - 1;
    for (let i = 0; i < oldAt.length; i++) {
      if (oldAt[i] === 0) continue;
      let s = oldHash[i]! & mask;
      while (at[s] !== 0) s = (s + 1) & mask;
      at[s] = oldAt[i]!;
      hash[s] = oldHash[i]!;
    }
  }

  #append(from: Buffer, start: number, end: number): number {
    const n = end - start;
    if (this.#used + n > this.#bytes.length) {
      const next = Buffer.allocUnsafe(Math.max(this.#bytes.length * 2, this.#used + n));
      this.#bytes.copy(next, 0, 0, this.#used);
      this.#bytes = next;
    }
    const at = this.#used;
    from.copy(this.#bytes, at, start, end);
    this.#used += n;
    return at;
  }

  #compact(): void {
    const live = this.#used - this.#dead;
    const old = this.#bytes;
    this.#bytes = Buffer.allocUnsafe(Math.max(FIRST, Math.ceil(live * 1.5)));
    this.#used = 0;
    this.#dead = 0;
    const at = this.#at;
    for (let i = 0; i < at.length; i++) {
      const a = at[i]!;
      if (a > 0) at[i] = this.#append(old, a - 1, a - 1 + opLength(old, a - 1)) + 1;
    }
  }
}

// Where prefixOf's prefix ends: set by it, read right after (no object per call).
let prefixEnd = 0;

/**
 * The start of the prefix's bytes in the Batch.ops entry at `at` (an upsert or a remove,
 * as FibClient writes them: the prefix first, left out when empty); sets `prefixEnd`.
 */
function prefixOf(buf: Buffer, at: number): number {
  let p = skipVarint(buf, at + 1); // the entry's tag, then its length
  const bodyEnd = p + readVarint;
  p = skipVarint(buf, p + 1); // the upsert or remove's tag and length
  if (p < bodyEnd && buf[p] === 0x0a) {
    p = skipVarint(buf, p + 1);
    prefixEnd = p + readVarint;
    return p;
  }
  prefixEnd = p;
  return p;
}

let readVarint = 0;

/** Skips the varint at `p`, leaving its value in `readVarint`; returns what follows it. */
function skipVarint(buf: Buffer, p: number): number {
  let v = 0;
  let mul = 1;
  for (;;) {
    const b = buf[p++]!;
    v += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
  }
  readVarint = v;
  return p;
}

/** The length of the Batch.ops entry at `at`: its tag (one byte), its length varint, its body. */
function opLength(buf: Buffer, at: number): number {
  const p = skipVarint(buf, at + 1);
  return p - at + readVarint;
}

/** The index's hash of the bytes buf[p, end): FNV-1a, its low bits spread. */
export function prefixHash(buf: Buffer, p: number, end: number): number {
  let h = fnv1aBytes(buf, p, end);
  // Spread the low bits the index uses.
  h ^= h >>> 15;
  return Math.imul(h, 0x2c1b3c6d) >>> 0;
}
