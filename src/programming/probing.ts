// Linear probing over (hash, value) pairs kept in one typed array, a value of 0 marking an
// empty slot: the index of the controllers' tables (prefix-table.ts) and of the table
// FibClient holds for its resync (client-held.ts). One array, so that a probe costs one
// cache miss; at most half full, so that probes stay short.

export type Pairs = Uint32Array | Float64Array;

/** Slots of a pair array. */
export function slotCount(pairs: Pairs): number {
  return pairs.length >>> 1;
}

/** Knuth's deletion: empties `slot`, and entries after it that may move into the hole do. */
export function unlinkPair(pairs: Pairs, slot: number): void {
  const mask = slotCount(pairs) - 1;
  let hole = slot;
  for (let j = (hole + 1) & mask; pairs[2 * j + 1] !== 0; j = (j + 1) & mask) {
    const home = pairs[2 * j]! & mask;
    // The entry at j stays when its home lies cyclically in (hole, j].
    const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
    if (stays) continue;
    pairs[2 * hole] = pairs[2 * j]!;
    pairs[2 * hole + 1] = pairs[2 * j + 1]!;
    hole = j;
  }
  pairs[2 * hole] = 0;
  pairs[2 * hole + 1] = 0;
}

/** Puts every pair of `old` into `into` (empty, of more slots); returns `into`. */
export function rehashPairs<T extends Pairs>(old: T, into: T): T {
  const mask = slotCount(into) - 1;
  for (let i = 0; i < old.length; i += 2) {
    if (old[i + 1] === 0) continue;
    let s = old[i]! & mask;
    while (into[2 * s + 1] !== 0) s = (s + 1) & mask;
    into[2 * s] = old[i]!;
    into[2 * s + 1] = old[i + 1]!;
  }
  return into;
}
