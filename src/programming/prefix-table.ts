// A controller's table, prefix to next hops, for a million entries. A Map of that size
// costs its holder a few DRAM misses per new key: the bucket, the entry and the key string
// it compares against. Here the index is one typed array of (hash, position) pairs, so a
// key that is absent costs one miss, and one that is present one more, for its string;
// the keys and values themselves sit in two dense arrays, in the order they came.
// Values are never undefined.

import { rehashPairs, slotCount, unlinkPair } from './probing.js';

const FIRST_SLOTS = 1 << 10;

/** The table's hash of a string: FNV-1a over its UTF-16 code units. */
export function stringHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  return Math.imul(h, 0x2c1b3c6d) >>> 0;
}

export class PrefixTable<V> implements Iterable<[string, V]> {
  // Slot s holds the key's hash and its position in #keys plus one, or 0 and 0 when empty
  // (probing.ts). Deletion by backward shift: no tombstones in the index.
  #index: Uint32Array;
  // Entries in the order they came. A removal leaves a hole, undefined in both; the holes
  // are squeezed out into new arrays once they outnumber the entries, and an iteration
  // under way carries on over the arrays it started with.
  #keys: (string | undefined)[] = [];
  #values: (V | undefined)[] = [];
  #holes = 0;
  readonly #firstSlots: number;

  /** `slots`: the index's first size, a power of two (small ones make tests probe and grow). */
  constructor(slots = FIRST_SLOTS) {
    this.#firstSlots = slots;
    this.#index = new Uint32Array(2 * slots);
  }

  get size(): number {
    return this.#keys.length - this.#holes;
  }

  get(key: string): V | undefined {
    const at = this.#index[2 * this.#find(key, stringHash(key)) + 1]!;
    return at === 0 ? undefined : this.#values[at - 1];
  }

  has(key: string): boolean {
    return this.#index[2 * this.#find(key, stringHash(key)) + 1]! !== 0;
  }

  /**
   * Sets the key's value; returns the value it had (undefined when it had none): one probe
   * where `get` then `set` would take two.
   */
  swap(key: string, value: V): V | undefined {
    const h = stringHash(key);
    const s = this.#find(key, h);
    const at = this.#index[2 * s + 1]!;
    if (at !== 0) {
      const old = this.#values[at - 1];
      this.#values[at - 1] = value;
      return old;
    }
    this.#index[2 * s] = h;
    this.#index[2 * s + 1] = this.#keys.push(key);
    this.#values.push(value);
    if (this.#keys.length * 2 > slotCount(this.#index)) this.#index = rehashPairs(this.#index, new Uint32Array(this.#index.length * 2));
    return undefined;
  }

  set(key: string, value: V): this {
    this.swap(key, value);
    return this;
  }

  delete(key: string): boolean {
    const s = this.#find(key, stringHash(key));
    const at = this.#index[2 * s + 1]!;
    if (at === 0) return false;
    unlinkPair(this.#index, s);
    this.#keys[at - 1] = undefined;
    this.#values[at - 1] = undefined;
    // Emptied (a flush, a lease ended): the index of a million entries goes too.
    if (++this.#holes === this.#keys.length) this.clear();
    else if (this.#holes > 16 && this.#holes > this.size) this.#squeeze();
    return true;
  }

  clear(): void {
    this.#index = new Uint32Array(2 * this.#firstSlots);
    this.#keys = [];
    this.#values = [];
    this.#holes = 0;
  }

  /** The keys; as with a Map, those added during the iteration may come too. */
  *keys(): IterableIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  /**
   * The entries, each value as it is when the iteration reaches it. As with a Map, an
   * entry present throughout is never left out, and one added meanwhile may come too.
   */
  *entries(): IterableIterator<[string, V]> {
    const keys = this.#keys;
    const values = this.#values;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (key === undefined) continue;
      // Arrays left behind by a squeeze are not kept up to date: ask the table.
      const value = keys === this.#keys ? values[i] : this.get(key);
      if (value !== undefined) yield [key, value];
    }
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  // The slot holding key, or the empty slot where it would go.
  #find(key: string, h: number): number {
    const index = this.#index;
    const mask = slotCount(index) - 1;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const at = index[2 * s + 1]!;
      if (at === 0) return s;
      if (index[2 * s] === h && this.#keys[at - 1] === key) return s;
    }
  }

  // New arrays without the holes, and the index pointed at the new positions.
  #squeeze(): void {
    const keys: string[] = [];
    const values: V[] = [];
    const moved = new Uint32Array(this.#keys.length + 1);
    for (let i = 0; i < this.#keys.length; i++) {
      const key = this.#keys[i];
      if (key === undefined) continue;
      moved[i + 1] = keys.push(key);
      values.push(this.#values[i]!);
    }
    const index = this.#index;
    for (let s = 1; s < index.length; s += 2) index[s] = moved[index[s]!]!;
    this.#keys = keys;
    this.#values = values;
    this.#holes = 0;
  }

}
