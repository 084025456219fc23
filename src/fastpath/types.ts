import type { TagSet } from './tags.js';

/** Health of a next hop: `down` is never chosen, `degraded` only when no `up` one is. */
export type HealthState = 'up' | 'degraded' | 'down';

/** One next hop of an entry. */
export interface NextHop {
  /** Global to the table: `setHealth(id)` applies to every entry using it. 1..256 bytes. */
  readonly id: string;
  /** 0..65535, default 100; 0 drains the next hop. */
  readonly weight?: number;
  /** 0..65535, default 0; lower values are preferred. */
  readonly priority?: number;
  /** Policy tags a lookup can require. */
  readonly tags?: readonly string[];
}

export interface Health {
  readonly state?: HealthState;
  /** 0..1; clamped to 0.99. Scales the weight by (1 - load). */
  readonly load?: number;
}

/**
 * A next-hop id's health, set in place: `setHealth` through a handle is `setHealth(id)`
 * of its table without the lookup of the id (nor, natively, a crossing into C++).
 */
export interface HealthHandle {
  readonly id: string;
  /** As the table's `setHealth(id, health)`: false while no entry references the id. */
  setHealth(health: Health): boolean;
}

export type FibOp =
  | { readonly op: 'upsert'; readonly prefix: string; readonly nextHops: readonly NextHop[] }
  | { readonly op: 'remove'; readonly prefix: string };

export interface LookupOptions {
  /** Tags every chosen next hop must carry. */
  readonly require?: readonly string[] | TagSet;
  /** Flow key: a flow keeps its next hop while that next hop stays eligible. */
  readonly flow?: string | number;
}

export interface LookupResult {
  /** The table prefix that matched. */
  readonly prefix: string;
  /** The chosen next-hop id. */
  readonly nextHop: string;
  /** A more preferred next hop was passed over because of its health. */
  readonly failover: boolean;
}

export interface PackedNames {
  readonly bytes: Uint8Array;
  /** n + 1 offsets: name i is bytes[offsets[i], offsets[i+1]). */
  readonly offsets: Uint32Array;
}

export interface PackedLookupOptions {
  readonly require?: TagSet | readonly string[];
  /** One flow key per name. */
  readonly flows?: Uint32Array;
}

export interface FibStats {
  readonly lookups: number;
  readonly misses: number;
  readonly failovers: number;
  /** Packed names that were not valid names. */
  readonly invalid: number;
  readonly size: number;
  readonly generation: number;
  readonly nextHops: number;
  readonly tags: number;
  /** Most-hit prefixes first (non-zero only, at most `top`). */
  readonly prefixHits: ReadonlyArray<{ readonly prefix: string; readonly hits: number }>;
  /** Most-selected next hops first (non-zero only, at most `top`). */
  readonly nextHopSelections: ReadonlyArray<{ readonly id: string; readonly selections: number }>;
  /** Native only: bytes held by entries, ids and the index. */
  readonly memoryBytes?: number;
  /** Native only: of memoryBytes, the bytes in use (the rest is kept for reuse). */
  readonly usedBytes?: number;
  /** Native only: bytes of per-reader counters. */
  readonly counterBytes?: number;
  /** Native only: retired objects waiting for readers to move on. */
  readonly pendingReclaim?: number;
  /** Native only: attached views. */
  readonly readers?: number;
}

/** Which entries `entries()` lists: those at `under` or below it ('/' or none: all), at most `limit`. */
export interface EntriesOptions {
  readonly under?: string;
  readonly limit?: number;
}

/** One entry as `entries()` lists it: next hops in entry order, with their health. */
export interface FibEntry {
  readonly prefix: string;
  readonly nextHops: ReadonlyArray<{
    readonly id: string;
    readonly weight: number;
    readonly priority: number;
    /** Sorted. */
    readonly tags: readonly string[];
    readonly state: HealthState;
    /** As applied: clamped to 0.99, in steps of 0.0001. */
    readonly load: number;
  }>;
}

export const STATE_NAMES: readonly HealthState[] = ['up', 'degraded', 'down'];

/** Orders entries by prefix, the same way for both tables. */
export function byPrefix(a: FibEntry, b: FibEntry): number {
  return byCodePoint(a.prefix, b.prefix);
}

/**
 * Code point order: the byte order of UTF-8, the core's. JavaScript's `<` compares UTF-16
 * code units, which put a surrogate pair (U+10000 up) before U+E000..U+FFFF.
 */
export function byCodePoint(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return unitRank(x) - unitRank(y);
  }
  return a.length - b.length;
}

// Surrogates after every other code unit, which then keep their order.
function unitRank(c: number): number {
  return c < 0xd800 ? c : c <= 0xdfff ? c + 0x2000 : c - 0x800;
}

/** Passed to a worker with postMessage; `ForwardingTable.attach(token)` opens a view. */
export interface ShareToken {
  readonly kind: 'dmsc.fib';
  readonly id: number;
}

/** Result codes `lookupPacked` writes besides next-hop handles. */
export const NO_ROUTE = -1;
export const BAD_NAME = -2;
