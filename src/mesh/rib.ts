// The routing information of one gateway's mesh side: the capability names its own
// agents offer, and the digest entries each peer advertised. From them it derives, per
// name, which peers to forward to (path vector: the shortest loop-free paths), and what
// to advertise to each peer: never a route learned from that peer or through it (split
// horizon and loop prevention in one rule: a path that contains the peer).

/** One advertised capability: no endpoints, AICs or counts, only what routing needs. */
export interface DigestEntry {
  readonly name: string;
  /** Policy tags some agent behind it carries (sorted, deduplicated). */
  readonly tags: readonly string[];
  /** Gateway hops from the advertiser to the agents (0 = its own agents). */
  readonly cost: number;
  /** Gateways the route passed, the advertiser first and the origin last. */
  readonly path: readonly string[];
  /**
   * Learned from another domain (at a border of ours). Carried on inside our domain, so
   * every gateway ranks such routes after any route that stays in our domain.
   */
  readonly ext?: boolean;
}

interface Learned {
  entry: DigestEntry;
  stale: boolean;
}

/** The largest path a route may carry; longer ones are dropped as a loop guard. */
export const MAX_PATH = 255;

export class Rib {
  readonly self: string;
  readonly #local = new Map<string, readonly string[]>();
  readonly #peers = new Map<string, Map<string, Learned>>();
  readonly #listeners: ((names: ReadonlySet<string>) => void)[] = [];

  constructor(self: string) {
    this.self = self;
  }

  /** Calls `listener` with the names whose routes may have changed; returns how to stop. */
  onChange(listener: (names: ReadonlySet<string>) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Local agents offer `name` with these tags (null: no longer). */
  setLocal(name: string, tags: readonly string[] | null): void {
    const before = this.#local.get(name);
    if (tags === null) {
      if (!before) return;
      this.#local.delete(name);
    } else {
      const sorted = [...new Set(tags)].sort();
      if (before && same(before, sorted)) return;
      this.#local.set(name, sorted);
    }
    this.#emit(new Set([name]));
  }

  /** Routes from `peer`: added or replaced. Entries whose path loops back here are ignored. */
  learn(peer: string, entries: readonly DigestEntry[]): void {
    let m = this.#peers.get(peer);
    if (!m) this.#peers.set(peer, (m = new Map()));
    const changed = new Set<string>();
    for (const e of entries) {
      if (e.path.includes(this.self) || e.path.length > MAX_PATH) {
        if (m.delete(e.name)) changed.add(e.name);
        continue;
      }
      const old = m.get(e.name);
      if (!old || old.stale || !sameEntry(old.entry, e)) changed.add(e.name);
      m.set(e.name, { entry: e, stale: false });
    }
    this.#emit(changed);
  }

  withdraw(peer: string, names: readonly string[]): void {
    const m = this.#peers.get(peer);
    if (!m) return;
    this.#emit(new Set(names.filter((n) => m.delete(n))));
  }

  /** Marks every route from `peer` stale (a session went down, or a snapshot begins). */
  markStale(peer: string): void {
    const m = this.#peers.get(peer);
    if (!m) return;
    const changed = new Set<string>();
    for (const [name, l] of m) {
      if (!l.stale) changed.add(name);
      l.stale = true;
    }
    this.#emit(changed);
  }

  /** Whether `peer` has a route for `name`. */
  has(peer: string, name: string): boolean {
    return this.#peers.get(peer)?.has(name) ?? false;
  }

  /** How many routes `peer` has here. */
  countFrom(peer: string): number {
    return this.#peers.get(peer)?.size ?? 0;
  }

  /** Drops every route from `peer`, stale or not (a peer past its route limit). */
  dropAll(peer: string): void {
    const m = this.#peers.get(peer);
    if (!m) return;
    const gone = new Set(m.keys());
    this.#peers.delete(peer);
    this.#emit(gone);
  }

  /** The names `peer` has routes for. */
  namesFrom(peer: string): string[] {
    return [...(this.#peers.get(peer)?.keys() ?? [])];
  }

  /** Drops the routes from `peer` still stale (end of snapshot, or hold time over). */
  dropStale(peer: string): void {
    const m = this.#peers.get(peer);
    if (!m) return;
    const gone = [...m].filter(([, l]) => l.stale).map(([name]) => name);
    for (const name of gone) m.delete(name);
    this.#emit(new Set(gone));
  }

  /** Peers with a route for `name`, best first (fresh before stale, our domain's before another's, then by cost). */
  nextHops(name: string): { peer: string; entry: DigestEntry; stale: boolean }[] {
    const out = [];
    for (const [peer, m] of this.#peers) {
      const l = m.get(name);
      if (l) out.push({ peer, entry: l.entry, stale: l.stale });
    }
    return out.sort((a, b) => Number(a.stale) - Number(b.stale) || Number(!!a.entry.ext) - Number(!!b.entry.ext) || a.entry.cost - b.entry.cost || (a.peer < b.peer ? -1 : 1));
  }

  localTags(name: string): readonly string[] | undefined {
    return this.#local.get(name);
  }

  /** Every name with a route, local or learned. */
  names(): Set<string> {
    const all = new Set(this.#local.keys());
    for (const m of this.#peers.values()) for (const n of m.keys()) all.add(n);
    return all;
  }

  /**
   * What to advertise to `peer` for `name`: our own agents (cost 0), else the best fresh
   * learned route whose path does not contain `peer`, one hop longer; undefined if none.
   */
  exportFor(peer: string, name: string): DigestEntry | undefined {
    const usable = this.nextHops(name).filter((h) => !h.stale && h.peer !== peer && !h.entry.path.includes(peer) && h.entry.path.length < MAX_PATH);
    const local = this.#local.get(name);
    // The tags are those of every agent reachable through us (here or via any usable
    // route), so a peer requiring a tag still sends requests our way; the cost and path
    // are the best route's.
    const tags = [...new Set([...(local ?? []), ...usable.flatMap((h) => h.entry.tags)])].sort();
    if (local) return { name, tags, cost: 0, path: [this.self] };
    const best = usable[0];
    if (!best) return undefined;
    return { name, tags, cost: best.entry.cost + 1, path: [this.self, ...best.entry.path], ...(best.entry.ext ? { ext: true } : {}) };
  }

  #emit(names: Set<string>): void {
    if (names.size === 0) return;
    for (const l of this.#listeners) l(names);
  }
}

const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
export const sameEntry = (a: DigestEntry, b: DigestEntry) => a.cost === b.cost && !!a.ext === !!b.ext && same(a.tags, b.tags) && same(a.path, b.path);
