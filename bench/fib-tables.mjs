// The forwarding table as an application developer would write it in a few minutes of
// plain TypeScript: the honest alternative to adopting a native table. It is neither a
// straw man (one Map probe per prefix length, no allocation beyond the result, O(1)
// setHealth) nor tuned (no interning, no packed arrays, no hand-rolled hashing).
// Semantics are a subset of ForwardingTable's: longest-prefix match, required tags, and a
// weighted random pick among the next hops that are not down.

export class MapTable {
  /** prefix -> [{ id, weight, tags }] */
  #entries = new Map();
  /** ids marked down; every entry using the id sees it. */
  #down = new Set();
  #random;

  /** `random` defaults to Math.random; the bench passes a seeded one. */
  constructor(random = Math.random) {
    this.#random = random;
  }

  get size() {
    return this.#entries.size;
  }

  /** Takes the same JSON-shaped ops as ForwardingTable.apply. */
  apply(ops) {
    for (const op of ops) {
      if (op.op === 'remove') {
        this.#entries.delete(op.prefix);
      } else {
        this.#entries.set(op.prefix, op.nextHops.map((h) => ({ id: h.id, weight: h.weight ?? 100, tags: h.tags ?? [] })));
      }
    }
  }

  setHealth(id, health) {
    if (health.state === 'down') this.#down.add(id);
    else this.#down.delete(id);
    return true;
  }

  /** { prefix, nextHop } of the longest prefix with an eligible next hop, or null. */
  lookup(name, options) {
    const require = options?.require;
    let prefix = name;
    for (;;) {
      const hops = this.#entries.get(prefix);
      if (hops !== undefined) {
        const hop = this.#pick(hops, require);
        if (hop !== null) return { prefix, nextHop: hop.id };
      }
      const cut = prefix.lastIndexOf('/');
      if (cut <= 0) return null;
      prefix = prefix.slice(0, cut);
    }
  }

  #eligible(hop, require) {
    if (this.#down.has(hop.id)) return false;
    return require === undefined || require.every((t) => hop.tags.includes(t));
  }

  #pick(hops, require) {
    let total = 0;
    for (const h of hops) if (this.#eligible(h, require)) total += h.weight;
    if (total === 0) return null;
    let r = this.#random() * total;
    let last = null;
    for (const h of hops) {
      if (!this.#eligible(h, require)) continue;
      r -= h.weight;
      if (r < 0) return h;
      last = h;
    }
    return last; // rounding left r at 0
  }

  close() {
    this.#entries.clear();
  }
}
