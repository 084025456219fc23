// Argument checks shared by ForwardingTable and ReferenceTable, so both reject the same
// input with the same error before anything changes. The native core checks again what
// it must not trust (bounds, UTF-8); these checks give users the precise message.
import { DmscError, DmscRangeError, DmscTypeError } from '../errors.js';
import { checkName, MAX_NAME_BYTES, nameProblem } from '../names.js';
import type { FibOp, Health, HealthState, NextHop } from './types.js';

// The name grammar lives in one module, shared by every surface; these are its uses here.
export { checkName, MAX_COMPONENTS, MAX_NAME_BYTES, nameProblem, prefixesOf } from '../names.js';

export const MAX_NEXT_HOPS = 64;
export const MAX_TAGS = 64;
export const MAX_ID_BYTES = 256;
export const MAX_TAG_BYTES = 64;
export const MAX_WEIGHT = 65535;
export const MAX_PRIORITY = 65535;
export const DEFAULT_WEIGHT = 100;
export const MAX_LOAD = 0.99;

export const STATE_CODE: Readonly<Record<HealthState, number>> = { up: 0, degraded: 1, down: 2 };

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v).slice(0, 40)}`;
}

// The checks below return a problem (or null) and leave the throwing to the caller, so
// that locations such as ops[12].nextHops[3].id are only built when something is wrong:
// a million-prefix batch must not allocate a message per field.
type Problem = DmscTypeError | DmscRangeError;

function bytesProblem(s: unknown, max: number, what: string): Problem | null {
  if (typeof s !== 'string') return new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be a string, got ${describe(s)}`);
  if (s.length === 0 || s.length > max || (s.length * 3 > max && Buffer.byteLength(s, 'utf8') > max)) {
    return new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be 1 to ${max} bytes`);
  }
  if (!s.isWellFormed() || s.includes('\0')) {
    return new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be well-formed text without NUL`);
  }
  return null;
}

function intProblem(v: unknown, max: number, what: string): Problem | null {
  if (typeof v !== 'number') return new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 0 || v > max) {
    return new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `${what} must be an integer from 0 to ${max}, got ${v}`);
  }
  return null;
}

/** The problem with a tag (or null): 1 to 64 bytes of well-formed text without NUL. */
export function tagProblem(tag: unknown, what: string): Problem | null {
  return bytesProblem(tag, MAX_TAG_BYTES, what);
}

// Fast checks for the common case; a value they refuse goes to bytesProblem for the verdict.
const isId = (s: unknown): boolean => typeof s === 'string' && bytesProblem(s, MAX_ID_BYTES, '') === null;
const isTag = (s: unknown): boolean => typeof s === 'string' && bytesProblem(s, MAX_TAG_BYTES, '') === null;
// The checks walkOps keeps when the text's are deferred: a string within its bound in
// UTF-16 units.
const within = (s: unknown, max: number): boolean => typeof s === 'string' && s.length <= max;
const isInt = (v: unknown, max: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

function checkBytes(s: unknown, max: number, what: string): string {
  const p = bytesProblem(s, max, what);
  if (p) throw p;
  return s as string;
}

/** A next hop with its defaults filled in. */
export interface NormalizedHop {
  readonly id: string;
  readonly weight: number;
  readonly priority: number;
  readonly tags: readonly string[];
}

export interface NormalizedOp {
  readonly remove: boolean;
  readonly prefix: string;
  readonly hops: readonly NormalizedHop[];
}

const HOP_KEYS = new Set(['id', 'weight', 'priority', 'tags']);

const opAt = (op: number): string => `ops[${op}]`;
const hopAt = (op: number, hop: number): string => `ops[${op}].nextHops[${hop}]`;

/** Receives a batch's validated values, in order, from walkOps. */
export interface OpVisitor {
  /** Op i: a remove, or an upsert with `hops` next hops to follow. */
  op(i: number, remove: boolean, prefix: string, hops: number): void;
  /** A next hop of the current upsert, followed by `tags` calls to tag(). */
  hop(id: string, weight: number, priority: number, tags: number): void;
  tag(tag: string): void;
  /**
   * Optional: the next hops of the current upsert, a list that cannot change and was
   * found valid before (see `immutableList`), in place of its hop() and tag() calls.
   */
  list?(list: readonly NextHop[]): void;
}

/** Lists their builder froze, of frozen plain data objects it made itself: they never change. */
const immutable = new WeakSet<readonly NextHop[]>();
/** Immutable lists this module found valid: a verdict that holds for good. */
const valid = new WeakSet<readonly NextHop[]>();

/**
 * Declares a next-hop list that can never change: frozen, of frozen objects with data
 * properties only, all made by the caller. Its checks are then made once, however many
 * entries share it. Only code that built the list itself may say so.
 */
export function immutableList(list: readonly NextHop[]): void {
  if (Object.isFrozen(list)) immutable.add(list);
}

/** Whether `list` was declared with `immutableList`: a verdict on it holds for good. */
export function isImmutableList(list: readonly NextHop[]): boolean {
  return immutable.has(list);
}

const idScratch: string[] = [];

/**
 * Validates a batch and passes its values to the visitor. Each field of the caller's
 * objects is read exactly once and the value read is the value checked and used, so
 * getters or a caller changing its objects mid-call cannot get past validation; the
 * first problem throws its typed error. Returns the number of ops.
 *
 * With `deferText`, the text checks of names, ids and tags (grammar, UTF-8 length, NUL)
 * are left to a consumer that makes them itself on exactly what it uses: the native
 * core, whose grammar is held to this module's (test/names.test.ts). Only their type and
 * a bound on their length are checked here (a string longer than its bound in UTF-16
 * units is longer in UTF-8 too), so that nothing huge is copied before it is refused;
 * and a string that is not well-formed must be refused by the consumer before it
 * becomes UTF-8. What either side throws is then not always the batch's first problem:
 * the caller finds that with `firstProblem`. This is the bulk path's biggest saving:
 * the text was checked twice, once here and once in the core.
 */
export function walkOps(ops: unknown, v: OpVisitor, deferText = false): number {
  if (!Array.isArray(ops)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `ops must be an array, got ${describe(ops)}`);
  const n = ops.length;
  for (let i = 0; i < n; i++) {
    const op: unknown = ops[i];
    if (typeof op !== 'object' || op === null) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)} must be an object`);
    const { op: kind, prefix } = op as { op?: unknown; prefix?: unknown };
    if (typeof prefix !== 'string' || (deferText ? prefix.length > MAX_NAME_BYTES : nameProblem(prefix) !== null)) checkName(prefix, `${opAt(i)}.prefix`);
    if (kind === 'remove') {
      if ('nextHops' in op) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)} is a remove with nextHops`);
      v.op(i, true, prefix as string, 0);
      continue;
    }
    if (kind !== 'upsert') {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)}.op must be 'upsert' or 'remove', got ${describe(kind)}`);
    }
    const list: unknown = (op as { nextHops?: unknown }).nextHops;
    if (!Array.isArray(list)) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)}.nextHops must be an array, got ${describe(list)}`);
    }
    const count = list.length;
    if (count === 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)}.nextHops must not be empty`);
    if (count > MAX_NEXT_HOPS) {
      throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `${opAt(i)} has more than ${MAX_NEXT_HOPS} next hops (${count})`);
    }
    v.op(i, false, prefix as string, count);
    if (valid.has(list)) {
      if (v.list) v.list(list);
      else for (let h = 0; h < count; h++) emitHop((list as NextHop[])[h]!, v);
      continue;
    }
    // A list that cannot change gets the full checks even so: they are made once, and
    // its verdict is kept for every entry that shares it.
    const keep = immutable.has(list);
    for (let h = 0; h < count; h++) walkHop(list[h], i, h, v, deferText && !keep);
    if (keep) valid.add(list);
  }
  return n;
}

function emitHop(h: NextHop, v: OpVisitor): void {
  const tags = h.tags ?? [];
  v.hop(h.id, h.weight ?? DEFAULT_WEIGHT, h.priority ?? 0, tags.length);
  for (let t = 0; t < tags.length; t++) v.tag(tags[t]!);
}

function walkHop(hop: unknown, i: number, h: number, v: OpVisitor, deferText: boolean): void {
  if (typeof hop !== 'object' || hop === null || Array.isArray(hop)) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${hopAt(i, h)} must be an object, got ${describe(hop)}`);
  }
  const { id, weight, priority, tags } = hop as { id?: unknown; weight?: unknown; priority?: unknown; tags?: unknown };
  if (!(deferText ? within(id, MAX_ID_BYTES) : isId(id))) throw bytesProblem(id, MAX_ID_BYTES, `${hopAt(i, h)}.id`)!;
  // The core refuses a duplicate too, but an entry's ids are few and comparing them here
  // costs less than a message built from the core's.
  for (let j = 0; j < h; j++) if (idScratch[j] === id) throw duplicateHop(i, h, id as string);
  idScratch[h] = id as string;
  let present = 1;
  let w = DEFAULT_WEIGHT;
  if (weight !== undefined) {
    present++;
    if (!isInt(weight, MAX_WEIGHT)) throw intProblem(weight, MAX_WEIGHT, `${hopAt(i, h)}.weight`)!;
    w = weight as number;
  }
  let p = 0;
  if (priority !== undefined) {
    present++;
    if (!isInt(priority, MAX_PRIORITY)) throw intProblem(priority, MAX_PRIORITY, `${hopAt(i, h)}.priority`)!;
    p = priority as number;
  }
  let tagCount = 0;
  if (tags !== undefined) {
    present++;
    if (!Array.isArray(tags)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${hopAt(i, h)}.tags must be an array of strings`);
    tagCount = tags.length;
    if (tagCount > MAX_TAGS) throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `${hopAt(i, h)} has more than ${MAX_TAGS} tags`);
  }
  // Unknown fields (a misspelt 'wieght') are errors, not silently ignored. Counting keys
  // first keeps the common case free of allocation.
  let keys = 0;
  for (const _ in hop) if (++keys > present) break;
  if (keys !== present) {
    const extra = Object.keys(hop).filter((k) => !HOP_KEYS.has(k));
    if (extra.length > 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${hopAt(i, h)} has unknown field '${extra[0]}'`);
  }
  v.hop(id as string, w, p, tagCount);
  for (let t = 0; t < tagCount; t++) {
    const tag: unknown = (tags as unknown[])[t];
    if (!(deferText ? within(tag, MAX_TAG_BYTES) : isTag(tag))) throw bytesProblem(tag, MAX_TAG_BYTES, `${hopAt(i, h)}.tags[${t}]`)!;
    v.tag(tag as string);
  }
}

export function duplicateHop(op: number, i: number, id: string): DmscTypeError {
  return new DmscTypeError('ERR_DMSC_DUPLICATE_NEXT_HOP', `${hopAt(op, i)}: next hop '${id}' appears twice in one entry`);
}

/** What the checks of a batch's values, here or in the core, throw. */
const CHECK_CODES: ReadonlySet<string> = new Set([
  'ERR_DMSC_INVALID_NAME', 'ERR_DMSC_INVALID_ARGUMENT', 'ERR_DMSC_OUT_OF_RANGE', 'ERR_DMSC_LIMIT_EXCEEDED',
  'ERR_DMSC_DUPLICATE_NEXT_HOP', 'ERR_DMSC_MALFORMED_BATCH',
]);

/**
 * The error to throw for a batch whose walk with deferred checks failed with `error`:
 * the first problem the full checks find, when `error` is a check's (it may name a later
 * op than the first bad one); else `error` itself, such as the caller's own exception from
 * a getter, or a table that is busy or out of memory. The batch is read a second time, so
 * a getter runs again.
 */
export function firstProblem(ops: unknown, error: unknown): unknown {
  // DmscError's instanceof takes in its Type and Range kin, and the core's errors.
  if (!(error instanceof DmscError) || !CHECK_CODES.has(error.code)) return error;
  try {
    walkOps(ops, { op() {}, hop() {}, tag() {} });
    return error;
  } catch (e) {
    return e;
  }
}

/** Validates a whole batch into plain values (what ReferenceTable applies). */
export function normalizeOps(ops: unknown): NormalizedOp[] {
  const out: NormalizedOp[] = [];
  let hops: NormalizedHop[] = [];
  let tags: string[] = [];
  walkOps(ops, {
    op(_i, remove, prefix) {
      hops = [];
      out.push({ remove, prefix, hops });
    },
    hop(id, weight, priority) {
      tags = [];
      hops.push({ id, weight, priority, tags });
    },
    tag(tag) {
      tags.push(tag);
    },
  });
  return out;
}

/** `state` of a packed health update that keeps the state; `loadQ` that keeps the load. */
export const KEEP_STATE = 3;
export const KEEP_LOAD = 0x3fff;

/**
 * The health update packed in one number, `state + 4 * loadQ` (state code or KEEP_STATE,
 * load in 1e-4 units or KEEP_LOAD): the form a health word takes (native/core/registry.hpp).
 * Allocates nothing, so that a handle's setHealth costs what the store does.
 */
export function packHealth(health: unknown): number {
  const proto = typeof health === 'object' && health !== null ? Object.getPrototypeOf(health) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health must be a plain object, got ${describe(health)}`);
  }
  const h = health as Health;
  for (const k in h) {
    if (k !== 'state' && k !== 'load' && Object.hasOwn(h, k)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health has unknown field '${k}'`);
  }
  let state = KEEP_STATE;
  if (h.state !== undefined) {
    // Compared, not looked up in STATE_CODE: a keyed load by an arbitrary string costs more than the rest.
    const s = h.state;
    state = s === 'up' ? STATE_CODE.up : s === 'down' ? STATE_CODE.down : s === 'degraded' ? STATE_CODE.degraded : -1;
    if (state < 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health.state must be 'up', 'degraded' or 'down', got ${describe(s)}`);
  }
  let loadQ = KEEP_LOAD;
  if (h.load !== undefined) {
    if (typeof h.load !== 'number') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health.load must be a number`);
    if (!(h.load >= 0 && h.load <= 1)) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `health.load must be from 0 to 1, got ${h.load}`);
    loadQ = Math.round(Math.min(h.load, MAX_LOAD) * 10000);
  }
  return state + 4 * loadQ;
}

/** The health update as (state code or -1 to keep, load in 1e-4 units or -1 to keep). */
export function normalizeHealth(health: unknown): { state: number; loadQ: number } {
  const packed = packHealth(health);
  const state = packed & 3;
  const loadQ = packed >>> 2;
  return { state: state === KEEP_STATE ? -1 : state, loadQ: loadQ === KEEP_LOAD ? -1 : loadQ };
}

export function checkId(id: unknown): string {
  return checkBytes(id, MAX_ID_BYTES, 'next-hop id');
}

/** Checks the arguments of lookupPacked; returns n. Offsets are checked by the callee. */
export function checkPackedArgs(bytes: unknown, offsets: unknown, out: unknown, flows: unknown): number {
  if (!(bytes instanceof Uint8Array)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'bytes must be a Uint8Array');
  if (!(offsets instanceof Uint32Array)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'offsets must be a Uint32Array');
  if (offsets.length === 0) throw new DmscRangeError('ERR_DMSC_INVALID_OFFSETS', 'offsets must hold n + 1 entries');
  if (!(out instanceof Int32Array)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'out must be an Int32Array');
  const n = offsets.length - 1;
  if (out.length < n) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `out holds ${out.length} results but the batch has ${n} names`);
  if (flows !== undefined) {
    if (!(flows instanceof Uint32Array)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'flows must be a Uint32Array');
    if (flows.length < n) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `flows holds ${flows.length} keys but the batch has ${n} names`);
  }
  return n;
}

export function checkOptions(options: unknown, allowed: readonly string[], what: string): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be an object`);
  for (const k in options) {
    if (!allowed.includes(k)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} has unknown field '${k}'`);
  }
}

/**
 * `entries(options)`'s filter: `under` ('' for the whole table; '/' is the whole table
 * too) and how many entries at most.
 * @throws ERR_DMSC_INVALID_ARGUMENT, ERR_DMSC_OUT_OF_RANGE
 */
export function entriesFilter(options: unknown): { under: string; limit: number } {
  checkOptions(options, ['under', 'limit'], 'entries options');
  const { under, limit } = (options ?? {}) as { under?: unknown; limit?: unknown };
  if (under !== undefined && typeof under !== 'string') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `under must be a string, got ${describe(under)}`);
  if (limit !== undefined && !(typeof limit === 'number' && Number.isInteger(limit) && limit >= 0)) {
    throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `limit must be an integer of 0 or more, got ${describe(limit)}`);
  }
  return { under: under === undefined || under === '/' ? '' : under, limit: limit ?? Number.POSITIVE_INFINITY };
}

/** Whether `prefix` is `under` or below it ('' is above everything). */
export function isUnder(prefix: string, under: string): boolean {
  return under === '' || prefix === under || (prefix.startsWith(under) && prefix.charCodeAt(under.length) === 0x2f);
}
