// The table FibClient holds for a resync: every entry it upserted and did not remove, as
// the bytes of its upsert (a whole Batch.ops entry), sent again as they are after a
// reconnect. The bytes live in one growing buffer, found by prefix, so a million entries
// are a million map slots and no million objects for the garbage collector to trace.
// Replaced and removed entries leave their bytes behind until they are half the buffer,
// when the live ones are copied to a new one.
import type { EncodedOps } from './client-encode.js';

const FIRST = 1 << 16;
/** Dead bytes tolerated before compacting, beyond half the buffer. */
const SLACK = 1 << 20;

export class HeldTable {
  /** Prefix to the offset of its upsert's bytes in #bytes. */
  readonly #at = new Map<string, number>();
  #bytes = Buffer.allocUnsafe(FIRST);
  #used = 0;
  #dead = 0;
  readonly #slack: number;

  /** `slack`: dead bytes tolerated beyond half the buffer before compacting. */
  constructor(slack = SLACK) {
    this.#slack = slack;
  }

  get size(): number {
    return this.#at.size;
  }

  /** Takes what a batch the node applied did: its upserts and removes, in order. */
  apply(ops: EncodedOps): void {
    const { prefixes, starts, ends } = ops.changes;
    for (let i = 0; i < prefixes.length; i++) {
      const prefix = prefixes[i]!;
      const old = this.#at.get(prefix);
      if (old !== undefined) this.#dead += opLength(this.#bytes, old);
      if (ends[i]! < 0) {
        if (old !== undefined) this.#at.delete(prefix);
        continue;
      }
      this.#at.set(prefix, this.#append(ops.bytes, starts[i]!, ends[i]!));
    }
    if (this.#dead > this.#used / 2 + this.#slack) this.#compact();
  }

  clear(): void {
    this.#at.clear();
    this.#bytes = Buffer.allocUnsafe(FIRST);
    this.#used = 0;
    this.#dead = 0;
  }

  /** Each entry's upsert bytes (views of the table's buffer: use them before it changes). */
  *ops(): Generator<Buffer, undefined, undefined> {
    for (const at of this.#at.values()) yield this.#bytes.subarray(at, at + opLength(this.#bytes, at));
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
    for (const [prefix, at] of this.#at) this.#at.set(prefix, this.#append(old, at, at + opLength(old, at)));
  }
}

/** The length of the Batch.ops entry at `at`: its tag (one byte), its length varint, its body. */
function opLength(buf: Buffer, at: number): number {
  let len = 0;
  let mul = 1;
  let p = at + 1;
  for (;;) {
    const b = buf[p++]!;
    len += (b & 0x7f) * mul;
    if (b < 0x80) break;
    mul *= 128;
  }
  return p - at + len;
}
