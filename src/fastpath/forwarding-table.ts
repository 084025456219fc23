import { DmscError, DmscRangeError, DmscTypeError } from '../errors.js';
import { BatchEncoder } from './encode.js';
import { flowKey } from './hashing.js';
import { healthMemory, NativeHealthHandle, type HealthMemory } from './health-handle.js';
import { loadNative, type NativeStats, type NativeTable } from './native.js';
import { packNames } from './pack.js';
import { checkTags, resolveMask, TagSet } from './tags.js';
import type {
  EntriesOptions, FibEntry, FibOp, FibStats, Health, HealthHandle, LookupOptions, LookupResult, NextHop, PackedLookupOptions, PackedNames, ShareToken,
} from './types.js';
import { byPrefix, STATE_NAMES } from './types.js';
import {
  checkId, checkName, checkOptions, checkPackedArgs, entriesFilter, firstProblem, nameProblem, normalizeHealth,
} from './validate.js';

const kAttach = Symbol('dmsc.attach');
/** Entries one call lists at most when a limit is given: the native side takes a count it can hold. */
const MAX_LISTED = 1e9;
const LONE_SURROGATE = /\p{Cs}/u;
const LOOKUP_OPTIONS = ['require', 'flow'] as const;
const PACKED_OPTIONS = ['require', 'flows'] as const;

/**
 * The native capability forwarding table: longest-prefix match on capability names,
 * policy tags, health-weighted next-hop selection and fast failover. Written by the
 * thread that created it; `share()` lets worker threads attach lock-free read views.
 *
 * @example
 * const fib = new ForwardingTable();
 * fib.upsert('/capability/ocr', [{ id: 'ag1/agent-a', tags: ['gdpr'] }, { id: 'peer:ag2', priority: 1 }]);
 * fib.lookup('/capability/ocr/fast', { require: ['gdpr'] });
 * // -> { prefix: '/capability/ocr', nextHop: 'ag1/agent-a', failover: false }
 */
export class ForwardingTable {
  readonly #native: NativeTable;
  /** The native lookup, bound: called as a method it would unwrap #native every time. */
  readonly #lookup: ReturnType<NativeTable['lookupFunction']>;
  readonly #readOnly: boolean;
  readonly #tagBits = new Map<string, number>();
  #encoder: BatchEncoder | undefined;
  #ids: Array<string | undefined> = [];
  #idEpoch = -1; // low 17 bits of the native id epoch the cache holds
  #packedEpoch = -1; // the epoch of the handles the last lookupPacked returned
  #applying = false;
  #closed = false;
  #health: HealthMemory | undefined;

  /**
   * Creates an empty table owned by the calling thread.
   * @throws ERR_DMSC_NATIVE_UNAVAILABLE when the addon is not built; the message says how to fix it.
   * @example const fib = new ForwardingTable();
   */
  constructor();
  /** @internal */
  constructor(internal: typeof kAttach, token: ShareToken);
  constructor(internal?: typeof kAttach, token?: ShareToken) {
    const addon = loadNative();
    if (internal === kAttach) {
      this.#native = new addon.NativeTable(token!.id);
      this.#readOnly = true;
    } else {
      this.#native = new addon.NativeTable();
      this.#readOnly = false;
    }
    this.#lookup = this.#native.lookupFunction();
  }

  /**
   * Opens a read-only view of a table shared by another thread (lookup, lookupPacked,
   * nextHopId, tagSet, size, generation). Close it when done; it holds a reader slot.
   * @example
   * // in a worker: const view = ForwardingTable.attach(workerData.token);
   */
  static attach(token: ShareToken): ForwardingTable {
    if (typeof token !== 'object' || token === null || token.kind !== 'dmsc.fib' || !Number.isSafeInteger(token.id) || token.id <= 0) {
      throw new DmscTypeError('ERR_DMSC_INVALID_TOKEN', 'attach() takes the token returned by share()');
    }
    return new ForwardingTable(kAttach, token);
  }

  /**
   * Adds or replaces the entry for a prefix. Returns the new generation.
   * @example fib.upsert('/capability/ocr', [{ id: 'a', weight: 200 }, { id: 'b' }]);
   */
  upsert(prefix: string, nextHops: readonly NextHop[]): number {
    return this.apply([{ op: 'upsert', prefix, nextHops }]);
  }

  /**
   * Removes the entry for a prefix; false when there was none.
   * @example fib.remove('/capability/ocr'); // -> true
   */
  remove(prefix: string): boolean {
    const before = this.generation;
    return this.apply([{ op: 'remove', prefix }]) !== before;
  }

  /**
   * Applies a batch all-or-nothing: invalid input throws and changes nothing, and readers
   * see either none or all of it. Within a batch the last operation on a prefix wins.
   * Returns the generation (unchanged when the batch changed nothing).
   * @example fib.apply([{ op: 'upsert', prefix: '/a', nextHops: [{ id: 'x' }] }, { op: 'remove', prefix: '/b' }]);
   */
  apply(ops: readonly FibOp[]): number {
    this.#writable();
    // A getter in the batch that calls back into this table would reset the staging.
    if (this.#applying) throw new DmscError('ERR_DMSC_BUSY', 'the table is applying a batch: a value in it called back into the table');
    this.#applying = true;
    const native = this.#native;
    try {
      this.#encoder ??= new BatchEncoder();
      this.#encoder.encode(ops, (bytes, words) => native.stage(bytes, words));
      // The core decodes a large batch's chunks while they are encoded: a chunk's error
      // may come from a later stage() or from here.
      return native.commit();
    } catch (e) {
      native.discard();
      throw firstProblem(ops, e);
    } finally {
      this.#applying = false;
    }
  }

  /**
   * Sets the health of a next-hop id in every entry that uses it, in O(1).
   * Returns false for an id no entry references.
   * @example fib.setHealth('ag1/agent-a', { state: 'down' });
   */
  setHealth(id: string, health: Health): boolean {
    this.#writable();
    checkId(id);
    const h = normalizeHealth(health);
    return this.#native.setHealth(id, h.state, h.loadQ);
  }

  /**
   * A handle that sets the health of `id` as `setHealth(id)` does, by a compare-and-swap
   * on the table's memory, in tens of nanoseconds: for a caller that updates the same
   * next hops often (heartbeats, load reports). It may be taken before or after the id
   * is in the table: while no entry references the id, `setHealth` through it returns
   * false. It asks the table where the id is only after ids were forgotten or recycled,
   * and while the id is absent.
   * @example const h = fib.handle('ag1/agent-a'); h.setHealth({ state: 'down' });
   */
  handle(id: string): HealthHandle {
    this.#writable();
    this.#health ??= healthMemory(this.#native);
    return new NativeHealthHandle(id, this.#health);
  }

  /**
   * Longest-prefix lookup with next-hop selection; null when nothing eligible matches.
   * @example fib.lookup('/capability/ocr/fast', { require: ['gdpr'], flow: 'session-42' });
   */
  lookup(name: string, options?: LookupOptions): LookupResult | null {
    this.#live();
    if (typeof name !== 'string' || name.length > 1024 || !name.isWellFormed()) checkName(name);
    let lo = 0;
    let hi = 0;
    let flags = 0;
    let flow = 0;
    if (options !== undefined) {
      checkOptions(options, LOOKUP_OPTIONS, 'lookup options');
      if (options.require !== undefined) {
        const set = this.#resolve(options.require);
        lo = set.lo;
        hi = set.hi;
        if (set.unsatisfiable) flags |= 1;
      }
      if (options.flow !== undefined) {
        flow = flowKey(options.flow);
        flags |= 2;
      }
    }
    let packed: number;
    try {
      packed = options === undefined ? this.#lookup(name) : this.#lookup(name, lo, hi, flags, flow);
    } catch (e) {
      if ((e as DmscError).code === 'ERR_DMSC_INVALID_NAME') checkName(name);
      throw e;
    }
    if (packed < 0) return null;
    // next hop (24 bits), failover (1), prefix length in UTF-16 units (11), id epoch (17)
    // A multiply, not %: the number is past 2^31, and a double's remainder is slow.
    const high = Math.floor(packed / 0x1000000);
    const nh = packed - high * 0x1000000;
    const prefixLength = (high >>> 1) & 0x7ff;
    const epoch = Math.floor(high / 0x1000);
    this.#epoch(epoch);
    const id = this.#idOf(nh, epoch);
    if (id === undefined) return this.lookup(name, options); // the id was recycled meanwhile
    return { prefix: prefixLength === name.length ? name : name.slice(0, prefixLength), nextHop: id, failover: (high & 1) === 1 };
  }

  /**
   * Looks up n = offsets.length - 1 packed names in one snapshot of the table, writing a
   * next-hop handle per name into `out` (-1 no route, -2 not a valid name); resolve
   * handles with `nextHopId`. Handles stay valid until the table next changes.
   * Returns how many names found a route.
   * @example
   * const out = new Int32Array(2);
   * fib.lookupPacked(names.bytes, names.offsets, out, { require: fib.tagSet(['gdpr']) });
   * fib.nextHopId(out[0]);
   */
  lookupPacked(bytes: Uint8Array, offsets: Uint32Array, out: Int32Array, options?: PackedLookupOptions): number {
    this.#live();
    checkOptions(options, PACKED_OPTIONS, 'lookupPacked options');
    const n = checkPackedArgs(bytes, offsets, out, options?.flows);
    let lo = 0;
    let hi = 0;
    let flags = 0;
    if (options?.require !== undefined) {
      const set = this.#resolve(options.require);
      lo = set.lo;
      hi = set.hi;
      if (set.unsatisfiable) flags |= 1;
    }
    this.#packedEpoch = this.#native.lookupPacked(bytes, offsets, n, out, lo, hi, flags, options?.flows);
    this.#epoch(this.#packedEpoch);
    let found = 0;
    for (let i = 0; i < n; i++) if (out[i]! >= 0) found++;
    return found;
  }

  /**
   * The id behind a handle from `lookupPacked`; null for -1, -2 or a stale handle.
   * @example fib.nextHopId(out[0]); // -> 'ag1/agent-a'
   */
  nextHopId(handle: number): string | null {
    this.#live();
    if (!Number.isInteger(handle) || handle < -2 || handle > 0x7fffffff) {
      throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `handle must be an integer from lookupPacked, got ${handle}`);
    }
    if (handle < 0) return null;
    // Handles are of the last lookupPacked: a recycled index since then names no id.
    return this.#idOf(handle, this.#packedEpoch) ?? null;
  }

  /**
   * Resolves required tags once for repeated `lookupPacked` calls.
   * @example const gdpr = fib.tagSet(['gdpr']);
   */
  tagSet(tags: readonly string[]): TagSet {
    this.#live();
    const set = new TagSet(this, checkTags(tags));
    resolveMask(set, (t) => this.#tagBit(t), this.#native.tagCount());
    return set;
  }

  /**
   * Packs names into the byte form `lookupPacked` takes.
   * @example const names = fib.pack(['/capability/ocr/x', '/capability/asr']);
   */
  pack(names: readonly string[]): PackedNames {
    this.#live();
    return packNames(names);
  }

  /** Number of prefixes. @example fib.size; // -> 1 */
  get size(): number {
    this.#live();
    return this.#native.size();
  }

  /** Bumped by every change that took effect. @example fib.generation; // -> 3 */
  get generation(): number {
    this.#live();
    return this.#native.generation();
  }

  /**
   * Resolves once every reader of the table (worker views, the native relay) sees
   * `generation` or a later one: a lookup that began before it was published has ended.
   * Lookups take nanoseconds, so this is nearly always at once.
   * @example await fib.visible(fib.apply(ops));
   */
  async visible(generation: number): Promise<void> {
    this.#live();
    while (this.#native.readersBehind(generation) > 0) await new Promise((r) => setImmediate(r));
  }

  /**
   * Counters of the table and all its views: lookups, misses, failovers, the `top`
   * (default 20) most-hit prefixes and most-selected next hops, memory.
   * @example fib.stats({ top: 5 }).prefixHits;
   */
  stats(options?: { top?: number }): FibStats {
    this.#writable();
    checkOptions(options, ['top'], 'stats options');
    const top = options?.top ?? 20;
    if (!Number.isInteger(top) || top < 0 || top > 1_000_000) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', 'top must be an integer from 0 to 1000000');
    const s: NativeStats = this.#native.stats(top);
    return {
      ...s,
      prefixHits: s.prefixHits.map(([prefix, hits]) => ({ prefix, hits })),
      nextHopSelections: s.nextHopSelections.map(([id, selections]) => ({ id, selections })),
    };
  }

  /**
   * Entries of the current generation, ordered by prefix, with their next hops' health:
   * every one, or with `under` those whose prefix is it or below it, and at most `limit`
   * of them (the first in order). Only the entries listed are copied out of the table.
   * Meant for inspection (admin APIs, tests), not for the fast path.
   * @example fib.entries()[0]; // -> { prefix: '/capability/ocr', nextHops: [{ id: 'a', weight: 100, ... }] }
   * @example fib.entries({ under: '/capability/ocr', limit: 100 });
   */
  entries(options?: EntriesOptions): FibEntry[] {
    this.#writable();
    const { under, limit } = entriesFilter(options);
    // No name holds a lone surrogate, which UTF-8 would turn into U+FFFD, which names may hold.
    if (LONE_SURROGATE.test(under)) return [];
    const raw = options === undefined ? this.#native.entries() : this.#native.entriesUnder(under, Math.min(limit, MAX_LISTED));
    const list: FibEntry[] = raw.map(([prefix, hops]) => ({
      prefix,
      nextHops: hops.map(([id, weight, priority, tags, state, loadQ]) => ({
        id, weight, priority, tags: tags.sort(), state: STATE_NAMES[state]!, load: loadQ / 10000,
      })),
    }));
    return list.sort(byPrefix);
  }

  /**
   * A token to postMessage to a worker, which opens a view with `ForwardingTable.attach`.
   * @example worker.postMessage({ token: fib.share() });
   */
  share(): ShareToken {
    this.#writable();
    return { kind: 'dmsc.fib', id: this.#native.share() };
  }

  /**
   * Frees the table (or this view's reader slot). Later calls throw ERR_DMSC_CLOSED, on
   * views too; native memory goes when the last view closes.
   * @example fib.close();
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#health) this.#health.closed = true;
    this.#native.close();
  }

  #live(): void {
    if (this.#closed) throw new DmscError('ERR_DMSC_CLOSED', 'the forwarding table is closed');
  }

  #writable(): void {
    this.#live();
    if (this.#readOnly) throw new DmscTypeError('ERR_DMSC_READ_ONLY', 'an attached view is read-only');
  }

  /** Distinct tags the table holds (at most 64; a tag once added stays). */
  get tagCount(): number {
    this.#live();
    return this.#native.tagCount();
  }

  /** Whether the table already holds `tag`. */
  hasTag(tag: string): boolean {
    this.#live();
    return this.#tagBit(tag) >= 0;
  }

  #tagBit(tag: string): number {
    let bit = this.#tagBits.get(tag);
    if (bit === undefined) {
      bit = this.#native.tagBit(tag);
      if (bit < 0) return -1;
      this.#tagBits.set(tag, bit);
    }
    return bit;
  }

  #resolve(require: readonly string[] | TagSet): TagSet {
    let set: TagSet;
    if (require instanceof TagSet) {
      if (require.scope !== this) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'a TagSet belongs to the table that made it');
      set = require;
      if (set.resolvedAt >= 0 && !set.unsatisfiable) return set;
    } else {
      set = new TagSet(this, checkTags(require));
    }
    const count = this.#native.tagCount();
    if (set.resolvedAt !== count) resolveMask(set, (t) => this.#tagBit(t), count);
    return set;
  }

  #epoch(epoch: number): void {
    if (epoch !== this.#idEpoch) {
      this.#ids = [];
      this.#idEpoch = epoch;
    }
  }

  #idOf(index: number, epoch: number): string | undefined {
    if (epoch !== this.#idEpoch) return this.#native.nextHopId(index, epoch);
    let id = this.#ids[index];
    if (id === undefined) {
      id = this.#native.nextHopId(index, epoch);
      if (id !== undefined) this.#ids[index] = id;
    }
    return id;
  }
}

/** True when a string is a valid capability name. @example isCapabilityName('/capability/ocr'); // -> true */
export function isCapabilityName(name: unknown): boolean {
  return typeof name === 'string' && nameProblem(name) === null;
}
