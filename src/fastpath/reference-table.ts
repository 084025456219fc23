import { DmscError, DmscRangeError, DmscTypeError } from '../errors.js';
import { flowDraw, flowKey, idMix, neglog2q16 } from './hashing.js';
import { packNames } from './pack.js';
import { checkTags, resolveMask, TagSet } from './tags.js';
import type { EntriesOptions, FibEntry, FibOp, FibStats, Health, HealthHandle, LookupOptions, LookupResult, NextHop, PackedLookupOptions, PackedNames } from './types.js';
import { BAD_NAME, byPrefix, NO_ROUTE, STATE_NAMES } from './types.js';
import {
  checkId, checkName, checkOptions, checkPackedArgs, entriesFilter, isUnder, MAX_TAGS, nameProblem, normalizeHealth, normalizeOps, type NormalizedOp,
} from './validate.js';

const UP = 0;
const DEGRADED = 1;
const DOWN = 2;
const NONE = 0x7fffffff;

class HopState {
  state = UP;
  loadQ = 0;
  liveRefs = 0;
  selections = 0;
  constructor(readonly id: string, readonly mix: number, readonly handle: number) {}
}

interface RefHop {
  readonly nh: HopState;
  readonly tags: readonly string[];
  readonly weight: number;
  readonly priority: number;
  readonly lo: number;
  readonly hi: number;
}

class RefEntry {
  hits = 0;
  constructor(readonly prefix: string, readonly hops: readonly RefHop[]) {}
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Orders strings by their UTF-8 bytes, as the native table breaks ties in stats(). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * The forwarding table in plain TypeScript, with the semantics of ForwardingTable bit for
 * bit where they are deterministic: the oracle of the differential tests and the honest
 * baseline of the benchmarks (a Map of prefixes, probed longest first).
 *
 * @example
 * const ref = new ReferenceTable();
 * ref.upsert('/capability/ocr', [{ id: 'a' }]);
 * ref.lookup('/capability/ocr/fast'); // -> { prefix: '/capability/ocr', nextHop: 'a', failover: false }
 */
export class ReferenceTable {
  readonly #entries = new Map<string, RefEntry>();
  readonly #hops = new Map<string, HopState>();
  readonly #byHandle = new Map<number, HopState>();
  readonly #tagBits = new Map<string, number>();
  #nextHandle = 0;
  #generation = 0;
  #lookups = 0;
  #misses = 0;
  #failovers = 0;
  #invalid = 0;
  #closed = false;
  #applying = false;
  // Scratch of select(): per-candidate health, and the failover flag of a lookup.
  readonly #health = new Int32Array(64);
  #failover = false;

  /** @example ref.upsert('/capability/ocr', [{ id: 'a' }]); */
  upsert(prefix: string, nextHops: readonly NextHop[]): number {
    return this.apply([{ op: 'upsert', prefix, nextHops }]);
  }

  /** @example ref.remove('/capability/ocr'); // -> true */
  remove(prefix: string): boolean {
    const before = this.#generation;
    return this.apply([{ op: 'remove', prefix }]) !== before;
  }

  /** All-or-nothing batch; the last operation on a prefix wins. @example ref.apply([{ op: 'remove', prefix: '/a' }]); */
  apply(ops: readonly FibOp[]): number {
    this.#live();
    if (this.#applying) throw new DmscError('ERR_DMSC_BUSY', 'the table is applying a batch: a value in it called back into the table');
    let normalized: NormalizedOp[];
    this.#applying = true;
    try {
      normalized = normalizeOps(ops);
    } finally {
      this.#applying = false;
    }
    const last = new Map<string, NormalizedOp>();
    for (const op of normalized) {
      last.delete(op.prefix);
      last.set(op.prefix, op);
    }
    const work: NormalizedOp[] = [];
    for (const op of last.values()) {
      if (op.remove && !this.#entries.has(op.prefix)) continue;
      work.push(op);
    }
    if (work.length === 0) return this.#generation;

    // Tags first: the one check that can still fail.
    const newTags: string[] = [];
    for (const op of work) {
      for (const h of op.hops) {
        for (const t of h.tags) {
          if (!this.#tagBits.has(t) && !newTags.includes(t)) newTags.push(t);
        }
      }
    }
    if (this.#tagBits.size + newTags.length > MAX_TAGS) {
      throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `a table holds at most ${MAX_TAGS} distinct tags`);
    }
    for (const t of newTags) this.#tagBits.set(t, this.#tagBits.size);

    const released: HopState[] = [];
    for (const op of work) {
      const old = this.#entries.get(op.prefix);
      if (old) {
        for (const h of old.hops) if (--h.nh.liveRefs === 0) released.push(h.nh);
      }
      if (op.remove) {
        this.#entries.delete(op.prefix);
        continue;
      }
      const hops: RefHop[] = op.hops.map((h) => {
        let nh = this.#hops.get(h.id);
        if (!nh) {
          nh = new HopState(h.id, idMix(h.id), this.#nextHandle++);
          this.#hops.set(h.id, nh);
          this.#byHandle.set(nh.handle, nh);
        }
        nh.liveRefs++;
        let lo = 0;
        let hi = 0;
        for (const t of h.tags) {
          const bit = this.#tagBits.get(t)!;
          if (bit < 32) lo |= 1 << bit;
          else hi |= 1 << (bit - 32);
        }
        return { nh, tags: [...new Set(h.tags)].sort(), weight: h.weight, priority: h.priority, lo: lo >>> 0, hi: hi >>> 0 };
      });
      const entry = new RefEntry(op.prefix, hops);
      if (old) entry.hits = old.hits; // hits count from when the prefix was last added
      this.#entries.set(op.prefix, entry);
    }
    for (const nh of released) {
      if (nh.liveRefs === 0 && this.#hops.get(nh.id) === nh) {
        this.#hops.delete(nh.id);
        this.#byHandle.delete(nh.handle);
      }
    }
    return ++this.#generation;
  }

  /** @example ref.setHealth('a', { state: 'down' }); // -> true */
  setHealth(id: string, health: Health): boolean {
    this.#live();
    checkId(id);
    const h = normalizeHealth(health);
    const nh = this.#hops.get(id);
    if (!nh) return false;
    if (h.state >= 0) nh.state = h.state;
    if (h.loadQ >= 0) nh.loadQ = h.loadQ;
    return true;
  }

  /** @example ref.handle('a').setHealth({ state: 'down' }); // -> true */
  handle(id: string): HealthHandle {
    this.#live();
    checkId(id);
    return { id, setHealth: (health) => this.setHealth(id, health) };
  }

  /** @example ref.lookup('/capability/ocr/fast', { flow: 'session-42' }); */
  lookup(name: string, options?: LookupOptions): LookupResult | null {
    this.#live();
    checkName(name);
    let lo = 0;
    let hi = 0;
    let unsatisfiable = false;
    let hasFlow = false;
    let flow = 0;
    if (options !== undefined) {
      checkOptions(options, ['require', 'flow'], 'lookup options');
      if (options.require !== undefined) {
        const set = this.#resolve(options.require);
        lo = set.lo;
        hi = set.hi;
        unsatisfiable = set.unsatisfiable;
      }
      if (options.flow !== undefined) {
        flow = flowKey(options.flow);
        hasFlow = true;
      }
    }
    this.#lookups++;
    if (unsatisfiable) {
      this.#misses++;
      return null;
    }
    return this.#find(name, lo, hi, hasFlow, flow);
  }

  /** @example const names = ref.pack(['/capability/ocr/x']); */
  pack(names: readonly string[]): PackedNames {
    this.#live();
    return packNames(names);
  }

  /** Same contract as ForwardingTable.lookupPacked; handles are this table's. */
  lookupPacked(bytes: Uint8Array, offsets: Uint32Array, out: Int32Array, options?: PackedLookupOptions): number {
    this.#live();
    checkOptions(options, ['require', 'flows'], 'lookupPacked options');
    const n = checkPackedArgs(bytes, offsets, out, options?.flows);
    for (let i = 0; i < n; i++) {
      if (offsets[i]! > offsets[i + 1]!) throw new DmscRangeError('ERR_DMSC_INVALID_OFFSETS', `offsets must not decrease (offsets[${i + 1}])`);
    }
    if (offsets[n]! > bytes.length) throw new DmscRangeError('ERR_DMSC_INVALID_OFFSETS', `offsets[${n}] is past the end of the bytes`);
    let lo = 0;
    let hi = 0;
    let unsatisfiable = false;
    if (options?.require !== undefined) {
      const set = this.#resolve(options.require);
      lo = set.lo;
      hi = set.hi;
      unsatisfiable = set.unsatisfiable;
    }
    const flows = options?.flows;
    let found = 0;
    for (let i = 0; i < n; i++) {
      let name: string;
      try {
        name = decoder.decode(bytes.subarray(offsets[i], offsets[i + 1]));
      } catch {
        name = '';
      }
      if (nameProblem(name) !== null) {
        out[i] = BAD_NAME;
        this.#invalid++;
        continue;
      }
      this.#lookups++;
      const r = unsatisfiable ? null : this.#find(name, lo, hi, flows !== undefined, flows ? flows[i]! : 0);
      if (unsatisfiable) this.#misses++;
      out[i] = r ? this.#hops.get(r.nextHop)!.handle : NO_ROUTE;
      if (r) found++;
    }
    return found;
  }

  /** @example ref.nextHopId(out[0]); */
  nextHopId(handle: number): string | null {
    this.#live();
    if (!Number.isInteger(handle) || handle < -2 || handle > 0x7fffffff) {
      throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `handle must be an integer from lookupPacked, got ${handle}`);
    }
    return this.#byHandle.get(handle)?.id ?? null;
  }

  /** @example const gdpr = ref.tagSet(['gdpr']); */
  tagSet(tags: readonly string[]): TagSet {
    this.#live();
    const set = new TagSet(this, checkTags(tags));
    resolveMask(set, (t) => this.#tagBits.get(t) ?? -1, this.#tagBits.size);
    return set;
  }

  /** @example ref.size; */
  get size(): number {
    this.#live();
    return this.#entries.size;
  }

  /** @example ref.generation; */
  get generation(): number {
    this.#live();
    return this.#generation;
  }

  /** @example ref.stats({ top: 5 }); */
  stats(options?: { top?: number }): FibStats {
    this.#live();
    checkOptions(options, ['top'], 'stats options');
    const top = options?.top ?? 20;
    if (!Number.isInteger(top) || top < 0 || top > 1_000_000) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', 'top must be an integer from 0 to 1000000');
    const prefixHits = [...this.#entries.values()].filter((e) => e.hits > 0).map((e) => ({ prefix: e.prefix, hits: e.hits }));
    prefixHits.sort((a, b) => b.hits - a.hits || byteOrder(a.prefix, b.prefix));
    const nextHopSelections = [...this.#hops.values()].filter((h) => h.selections > 0).map((h) => ({ id: h.id, selections: h.selections }));
    nextHopSelections.sort((a, b) => b.selections - a.selections || byteOrder(a.id, b.id));
    return {
      lookups: this.#lookups,
      misses: this.#misses,
      failovers: this.#failovers,
      invalid: this.#invalid,
      size: this.#entries.size,
      generation: this.#generation,
      nextHops: this.#hops.size,
      tags: this.#tagBits.size,
      prefixHits: prefixHits.slice(0, top),
      nextHopSelections: nextHopSelections.slice(0, top),
    };
  }

  /** @example ref.entries({ under: '/capability', limit: 10 }); */
  entries(options?: EntriesOptions): FibEntry[] {
    this.#live();
    const { under, limit } = entriesFilter(options);
    const list: FibEntry[] = [...this.#entries.values()].filter((e) => isUnder(e.prefix, under)).map((e) => ({
      prefix: e.prefix,
      nextHops: e.hops.map((h) => ({
        id: h.nh.id, weight: h.weight, priority: h.priority, tags: h.tags.slice(), state: STATE_NAMES[h.nh.state]!, load: h.nh.loadQ / 10000,
      })),
    }));
    return list.sort(byPrefix).slice(0, limit);
  }

  /** @example ref.close(); */
  close(): void {
    this.#closed = true;
    this.#entries.clear();
    this.#hops.clear();
    this.#byHandle.clear();
  }

  #live(): void {
    if (this.#closed) throw new DmscError('ERR_DMSC_CLOSED', 'the reference table is closed');
  }

  #resolve(require: readonly string[] | TagSet): TagSet {
    if (require instanceof TagSet) {
      if (require.scope !== this) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'a TagSet belongs to the table that made it');
      if (require.resolvedAt < 0 || (require.unsatisfiable && require.resolvedAt !== this.#tagBits.size)) {
        resolveMask(require, (t) => this.#tagBits.get(t) ?? -1, this.#tagBits.size);
      }
      return require;
    }
    const set = new TagSet(this, checkTags(require));
    resolveMask(set, (t) => this.#tagBits.get(t) ?? -1, this.#tagBits.size);
    return set;
  }

  // Longest prefix first: the name itself, then each shorter component boundary, then '/'.
  #find(name: string, lo: number, hi: number, hasFlow: boolean, flow: number): LookupResult | null {
    this.#failover = false;
    let end = name.length;
    for (;;) {
      const prefix = end === name.length ? name : end === 0 ? '/' : name.slice(0, end);
      const entry = this.#entries.get(prefix);
      if (entry !== undefined) {
        const i = this.#select(entry.hops, lo, hi, hasFlow, flow);
        if (i >= 0) {
          const nh = entry.hops[i]!.nh;
          entry.hits++;
          nh.selections++;
          if (this.#failover) this.#failovers++;
          return { prefix, nextHop: nh.id, failover: this.#failover };
        }
      }
      if (end === 0 || name.length === 1) break;
      end = name.lastIndexOf('/', end - 1);
    }
    this.#misses++;
    return null;
  }

  // Mirrors Table::select in native/core/lookup.cpp.
  #select(hops: readonly RefHop[], lo: number, hi: number, hasFlow: boolean, flow: number): number {
    const n = hops.length;
    const health = this.#health;
    let bestPrio = NONE;
    let downPrio = NONE;
    let tierUp = false;
    for (let i = 0; i < n; i++) {
      const h = hops[i]!;
      health[i] = -1;
      if ((h.lo & lo) >>> 0 !== lo || (h.hi & hi) >>> 0 !== hi || h.weight === 0) continue;
      const st = h.nh.state;
      if (st === DOWN) {
        if (h.priority < downPrio) downPrio = h.priority;
        continue;
      }
      health[i] = st;
      if (h.priority < bestPrio) {
        bestPrio = h.priority;
        tierUp = st === UP;
      } else if (h.priority === bestPrio && st === UP) {
        tierUp = true;
      }
    }
    if (bestPrio === NONE) {
      if (downPrio !== NONE) this.#failover = true;
      return -1;
    }
    if (downPrio < bestPrio || (downPrio === bestPrio && !tierUp)) this.#failover = true;
    const want = tierUp ? UP : DEGRADED;
    let chosen = -1;
    if (hasFlow) {
      let bestL = 0;
      let bestW = 1;
      for (let i = 0; i < n; i++) {
        const h = hops[i]!;
        if (health[i] !== want || h.priority !== bestPrio) continue;
        const w = h.weight * (10000 - h.nh.loadQ);
        const l = neglog2q16(flowDraw(flow, h.nh.mix));
        if (chosen < 0 || l * bestW < bestL * w) {
          chosen = i;
          bestL = l;
          bestW = w;
        }
      }
    } else {
      let total = 0;
      for (let i = 0; i < n; i++) {
        const h = hops[i]!;
        if (health[i] === want && h.priority === bestPrio) total += h.weight * (10000 - h.nh.loadQ);
      }
      let r = Math.floor(Math.random() * total);
      for (let i = 0; i < n; i++) {
        const h = hops[i]!;
        if (health[i] !== want || h.priority !== bestPrio) continue;
        const w = h.weight * (10000 - h.nh.loadQ);
        if (r < w) {
          chosen = i;
          break;
        }
        r -= w;
      }
    }
    return chosen;
  }
}
