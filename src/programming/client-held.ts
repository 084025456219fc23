// The table FibClient holds for a resync: every entry it upserted and did not remove, as
// the bytes of its upsert (a whole Batch.ops entry), sent again as they are after a
// reconnect. The bytes stay in the buffers the batches were encoded into, which the client
// owns once they are sent; an open-addressed index in one typed array finds an entry by the
// UTF-8 bytes of its prefix, which are the node's key too. A million entries are then one
// typed array and the batches' buffers: no million strings or map slots for the garbage
// collector to trace, no copy, and one probe of the index per op that is usually its only
// cache miss. A buffer goes when no live entry is left in it; replaced and removed entries
// leave their bytes behind until they are half of what is held (or buffers are many and
// small), when the live ones are copied into one new buffer.
import { fnv1aBytes, sameBytes } from '../fastpath/hashing.js';
import type { EncodedOps } from './client-encode.js';
import { rehashPairs, slotCount, unlinkPair } from './probing.js';

/** Dead bytes tolerated before compacting, beyond half of what is held. */
const SLACK = 1 << 20;
const FIRST_SLOTS = 1 << 10;
/** Buffers held before their count alone (each is an object) may call for compacting. */
const FEW_BUFFERS = 64;
/** What a buffer costs beside its bytes, about: compacting is due when that is a quarter of them. */
const BUFFER_COST = 256;
/** Where an entry is: its buffer's number times this, plus its offset in it. */
const SPAN = 2 ** 32;
/** The most compaction puts in one buffer: an offset stays below SPAN. */
const CHUNK = 2 ** 31;

export class HeldTable {
  // Slot s holds an entry when #slots[2s + 1] > 0: where the entry is plus one, and in
  // #slots[2s] its prefix's hash (probing.ts). Deletion by backward shift: no tombstones
  // to sweep.
  #slots: Float64Array;
  #size = 0;
  // The buffers entries are in (a hole for one that went), how many live entries each has,
  // and numbers of holes to use again.
  #buffers: (Buffer | undefined)[] = [];
  #live: number[] = [];
  #free: number[] = [];
  #held = 0;
  #used = 0;
  #dead = 0;
  readonly #slack: number;
  readonly #firstSlots: number;
  readonly #chunk: number;

  /**
   * `slack`: dead bytes tolerated beyond half of what is held before compacting; `slots`:
   * the index's first size (a power of two; small ones make tests probe and grow);
   * `chunk`: the most bytes compaction puts in one buffer (small ones make tests split).
   */
  constructor(slack = SLACK, slots = FIRST_SLOTS, chunk = CHUNK) {
    this.#slack = slack;
    this.#firstSlots = slots;
    this.#chunk = Math.min(chunk, CHUNK);
    this.#slots = new Float64Array(2 * slots);
  }

  get size(): number {
    return this.#size;
  }

  /** Buffers held: the batches' own, and compaction's. */
  get buffers(): number {
    return this.#held;
  }

  /**
   * Bytes the buffers keep alive: live entries, dead ones not compacted yet, and the rest
   * of the allocation a batch's bytes are a view of (an encoder's spare room, a pool).
   */
  get bytes(): number {
    return this.#used;
  }

  /**
   * Takes what a batch the node applied did: its upserts and removes, in order. Keeps
   * `ops.held` (the caller must not write to it again).
   */
  apply(ops: EncodedOps): void {
    const { starts, ends } = ops.changes;
    const src = ops.held;
    // The batch's buffer is taken at its first upsert; what no upsert keeps (removes,
    // health ops) is dead from the start.
    let b = -1;
    for (let i = 0; i < starts.length; i++) {
      const start = starts[i]!;
      const p = prefixOf(src, start);
      const h = prefixHash(src, p, prefixEnd);
      const slot = this.#find(src, p, prefixEnd, h);
      const at = this.#slots[2 * slot + 1]!;
      if (at > 0) this.#release(at - 1, b);
      const end = ends[i]!;
      if (end < 0) {
        if (at > 0) {
          unlinkPair(this.#slots, slot);
          this.#size--;
        }
        continue;
      }
      if (b < 0) b = this.#take(src);
      this.#dead -= end - start;
      this.#live[b]!++;
      this.#slots[2 * slot + 1] = b * SPAN + start + 1;
      if (at === 0) {
        this.#slots[2 * slot] = h;
        if (++this.#size * 2 > slotCount(this.#slots)) this.#slots = rehashPairs(this.#slots, new Float64Array(this.#slots.length * 2));
      }
    }
    // Every upsert of the batch was overwritten or removed within it.
    if (b >= 0 && this.#live[b] === 0) this.#drop(b);
    if (this.#dead > this.#used / 2 + this.#slack || (this.#held > FEW_BUFFERS && this.#held * BUFFER_COST * 4 > this.#used)) this.#compact();
  }

  clear(): void {
    this.#slots = new Float64Array(2 * this.#firstSlots);
    this.#size = 0;
    this.#buffers = [];
    this.#live = [];
    this.#free = [];
    this.#held = 0;
    this.#used = 0;
    this.#dead = 0;
  }

  /** Each entry's upsert bytes (views of the buffers: use them before the table changes). */
  *ops(): Generator<Buffer, undefined, undefined> {
    const slots = this.#slots;
    for (let i = 1; i < slots.length; i += 2) {
      const at = slots[i]!;
      if (at > 0) yield this.#entry(at - 1);
    }
  }

  #entry(where: number): Buffer {
    const buf = this.#buffers[Math.floor(where / SPAN)]!;
    const off = where % SPAN;
    return buf.subarray(off, off + opLength(buf, off));
  }

  // Holds a batch's buffer, all of it dead until its upserts are counted; returns its
  // number. What it costs is the allocation it is a view of, which it keeps alive whole.
  #take(batch: Buffer): number {
    // A view of an allocation mostly unused (a pooled slab, an encoder's spare room) is
    // copied out of it: what it pinned would be compacted away at once.
    let src = batch;
    if (batch.buffer.byteLength > 2 * batch.length) {
      src = Buffer.allocUnsafeSlow(batch.length);
      batch.copy(src);
    }
    const b = this.#free.pop() ?? this.#buffers.length;
    this.#buffers[b] = src;
    this.#live[b] = 0;
    this.#held++;
    this.#used += src.buffer.byteLength;
    this.#dead += src.buffer.byteLength;
    return b;
  }

  // The entry at `where` is replaced or removed: its bytes are dead, and its buffer goes
  // with its last live entry, unless it is the buffer of the batch being applied (`taking`).
  #release(where: number, taking: number): void {
    const b = Math.floor(where / SPAN);
    const buf = this.#buffers[b]!;
    this.#dead += opLength(buf, where % SPAN);
    if (--this.#live[b]! === 0 && b !== taking) this.#drop(b);
  }

  #drop(b: number): void {
    const n = this.#buffers[b]!.buffer.byteLength;
    this.#used -= n;
    this.#dead -= n;
    this.#buffers[b] = undefined;
    this.#held--;
    this.#free.push(b);
  }

  // The slot holding the prefix src[p, end), or the empty slot where it would go.
  #find(src: Buffer, p: number, end: number, h: number): number {
    const slots = this.#slots;
    const mask = slotCount(slots) - 1;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const at = slots[2 * s + 1]!;
      if (at === 0) return s;
      if (slots[2 * s] !== h) continue;
      const where = at - 1;
      const buf = this.#buffers[Math.floor(where / SPAN)]!;
      const q = prefixOf(buf, where % SPAN);
      if (prefixEnd - q === end - p && sameBytes(buf, q, src, p, end - p)) return s;
    }
  }

  // Copies the live entries into buffers of their size (one, below CHUNK), in place of
  // all the others. Not from the pool: a pooled buffer would keep its neighbours alive.
  #compact(): void {
    let left = this.#used - this.#dead;
    const buffers: Buffer[] = [];
    const live: number[] = [];
    let out = Buffer.allocUnsafeSlow(0);
    let off = 0;
    const slots = this.#slots;
    for (let i = 1; i < slots.length; i += 2) {
      const at = slots[i]!;
      if (at === 0) continue;
      const e = this.#entry(at - 1);
      if (off + e.length > out.length) {
        out = Buffer.allocUnsafeSlow(Math.min(left, Math.max(this.#chunk, e.length)));
        off = 0;
        buffers.push(out);
        live.push(0);
      }
      out.set(e, off);
      slots[i] = (buffers.length - 1) * SPAN + off + 1;
      live[buffers.length - 1]!++;
      off += e.length;
      left -= e.length;
    }
    this.#buffers = buffers;
    this.#live = live;
    this.#free = [];
    this.#held = buffers.length;
    this.#used = this.#used - this.#dead;
    this.#dead = 0;
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
