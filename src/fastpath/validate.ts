// Argument checks shared by ForwardingTable and ReferenceTable, so both reject the same
// input with the same error before anything changes. The native core checks again what
// it must not trust (bounds, UTF-8); these checks give users the precise message.
import { DmscRangeError, DmscTypeError } from '../errors.js';
import type { FibOp, Health, HealthState, NextHop } from './types.js';

export const MAX_NAME_BYTES = 1024;
export const MAX_COMPONENTS = 32;
export const MAX_NEXT_HOPS = 64;
export const MAX_TAGS = 64;
export const MAX_ID_BYTES = 256;
export const MAX_TAG_BYTES = 64;
export const MAX_WEIGHT = 65535;
export const MAX_PRIORITY = 65535;
export const DEFAULT_WEIGHT = 100;
export const MAX_LOAD = 0.99;

export const STATE_CODE: Readonly<Record<HealthState, number>> = { up: 0, degraded: 1, down: 2 };

// 1 to 32 components of printable ASCII other than '/': the common case, checked by one
// compiled regular expression; anything else takes the careful path below.
const SIMPLE_NAME = /^(?:\/[\x21-\x2e\x30-\x7e]+){1,32}$/;

/** Why a string is not a capability name, or null when it is one. */
export function nameProblem(name: string): string | null {
  const n = name.length;
  if (n <= MAX_NAME_BYTES && SIMPLE_NAME.test(name)) return null;
  if (n === 0) return 'name is empty';
  if (name.charCodeAt(0) !== 0x2f) return "name must start with '/'";
  if (n === 1) return null;
  if (n > MAX_NAME_BYTES) return 'name is longer than 1024 bytes';
  let components = 0;
  let prev = 0x2f;
  let ascii = true;
  for (let i = 1; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2f) {
      if (prev === 0x2f) return "name has an empty component ('//')";
      components++;
    } else if (c === 0) {
      return 'name contains a NUL byte';
    } else if (c > 0x7f) {
      ascii = false;
    }
    prev = c;
  }
  if (prev === 0x2f) return "name must not end with '/'";
  if (components + 1 > MAX_COMPONENTS) return 'name has more than 32 components';
  if (!ascii) {
    if (!name.isWellFormed()) return 'name is not valid UTF-8';
    if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) return 'name is longer than 1024 bytes';
  }
  return null;
}

export function checkName(name: unknown, what = 'name'): string {
  if (typeof name !== 'string') {
    throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `${what} must be a string, got ${describe(name)}`);
  }
  const problem = nameProblem(name);
  if (problem !== null) {
    throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `invalid ${what} ${JSON.stringify(name)}: ${problem}`);
  }
  return name;
}

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

const isId = (s: unknown): boolean =>
  typeof s === 'string' && s.length > 0 && s.length * 3 <= MAX_ID_BYTES && s.isWellFormed() && !s.includes('\0');
const isTag = (s: unknown): boolean =>
  typeof s === 'string' && s.length > 0 && s.length * 3 <= MAX_TAG_BYTES && s.isWellFormed() && !s.includes('\0');
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
const EMPTY: readonly string[] = Object.freeze([]);

const opAt = (op: number): string => `ops[${op}]`;
const hopAt = (op: number, hop: number): string => `ops[${op}].nextHops[${hop}]`;

/** Checks that ops[op].nextHops is an array of 1 to 64; returns its length. */
export function checkHopList(nextHops: unknown, op: number): number {
  if (!Array.isArray(nextHops)) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(op)}.nextHops must be an array, got ${describe(nextHops)}`);
  }
  if (nextHops.length === 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(op)}.nextHops must not be empty`);
  if (nextHops.length > MAX_NEXT_HOPS) {
    throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `${opAt(op)} has more than ${MAX_NEXT_HOPS} next hops (${nextHops.length})`);
  }
  return nextHops.length;
}

/**
 * Checks next hop i of ops[op] (all but duplicate ids, which the caller checks against the
 * ids before it). `idChecked` skips re-checking an id already seen in the batch.
 */
export function checkHop(h: NextHop, op: number, i: number, idChecked: boolean): void {
  if (typeof h !== 'object' || h === null || Array.isArray(h)) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${hopAt(op, i)} must be an object, got ${describe(h)}`);
  }
  if (!idChecked && !isId(h.id)) {
    const p = bytesProblem(h.id, MAX_ID_BYTES, `${hopAt(op, i)}.id`);
    if (p) throw p;
  }
  let present = 1;
  if (h.weight !== undefined) {
    present++;
    if (!isInt(h.weight, MAX_WEIGHT)) throw intProblem(h.weight, MAX_WEIGHT, `${hopAt(op, i)}.weight`)!;
  }
  if (h.priority !== undefined) {
    present++;
    if (!isInt(h.priority, MAX_PRIORITY)) throw intProblem(h.priority, MAX_PRIORITY, `${hopAt(op, i)}.priority`)!;
  }
  const tags = h.tags;
  if (tags !== undefined) {
    present++;
    if (!Array.isArray(tags)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${hopAt(op, i)}.tags must be an array of strings`);
    if (tags.length > MAX_TAGS) throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `${hopAt(op, i)} has more than ${MAX_TAGS} tags`);
    for (let t = 0; t < tags.length; t++) {
      if (!isTag(tags[t])) {
        const p = bytesProblem(tags[t], MAX_TAG_BYTES, `${hopAt(op, i)}.tags[${t}]`);
        if (p) throw p;
      }
    }
  }
  // Unknown fields (a misspelt 'wieght') are errors, not silently ignored. Counting keys
  // first keeps the common case free of allocation.
  let keys = 0;
  for (const _ in h) if (++keys > present) break;
  if (keys !== present) {
    const extra = Object.keys(h).filter((k) => !HOP_KEYS.has(k));
    if (extra.length > 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${hopAt(op, i)} has unknown field '${extra[0]}'`);
  }
}

export function duplicateHop(op: number, i: number, id: string): DmscTypeError {
  return new DmscTypeError('ERR_DMSC_DUPLICATE_NEXT_HOP', `${hopAt(op, i)}: next hop '${id}' appears twice in one entry`);
}

/** Validates the next hops of ops[op]. */
export function normalizeHops(nextHops: unknown, op: number, knownIds: Set<string>): NormalizedHop[] {
  const n = checkHopList(nextHops, op);
  const list = nextHops as NextHop[];
  const out: NormalizedHop[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const h = list[i]!;
    const checked = knownIds.has(h.id);
    checkHop(h, op, i, checked);
    if (!checked) knownIds.add(h.id);
    for (let j = 0; j < i; j++) if (out[j]!.id === h.id) throw duplicateHop(op, i, h.id);
    out[i] = { id: h.id, weight: h.weight ?? DEFAULT_WEIGHT, priority: h.priority ?? 0, tags: h.tags && h.tags.length > 0 ? h.tags.slice() : EMPTY };
  }
  return out;
}

/** Checks ops[i]'s shape and prefix; returns whether it is an upsert. */
export function checkOp(op: FibOp, i: number): boolean {
  if (typeof op !== 'object' || op === null) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)} must be an object`);
  if (typeof op.prefix !== 'string' || nameProblem(op.prefix) !== null) checkName(op.prefix, `${opAt(i)}.prefix`);
  if (op.op === 'upsert') return true;
  if (op.op === 'remove') {
    if ('nextHops' in op) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)} is a remove with nextHops`);
    return false;
  }
  throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${opAt(i)}.op must be 'upsert' or 'remove', got ${describe((op as { op?: unknown }).op)}`);
}

export function checkOpList(ops: unknown): FibOp[] {
  if (!Array.isArray(ops)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `ops must be an array, got ${describe(ops)}`);
  return ops as FibOp[];
}

/** Validates a whole batch before anything is applied. */
export function normalizeOps(ops: unknown): NormalizedOp[] {
  const list = checkOpList(ops);
  const knownIds = new Set<string>();
  const out: NormalizedOp[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const op = list[i]!;
    out[i] = checkOp(op, i)
      ? { remove: false, prefix: op.prefix, hops: normalizeHops((op as { nextHops: unknown }).nextHops, i, knownIds) }
      : { remove: true, prefix: op.prefix, hops: EMPTY as unknown as NormalizedHop[] };
  }
  return out;
}

/** The health update as (state code or -1 to keep, load in 1e-4 units or -1 to keep). */
export function normalizeHealth(health: unknown): { state: number; loadQ: number } {
  if (typeof health !== 'object' || health === null) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health must be an object, got ${describe(health)}`);
  }
  const h = health as Health;
  for (const k of Object.keys(h)) {
    if (k !== 'state' && k !== 'load') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health has unknown field '${k}'`);
  }
  let state = -1;
  if (h.state !== undefined) {
    const code = typeof h.state === 'string' ? STATE_CODE[h.state] : undefined;
    if (code === undefined || !Object.hasOwn(STATE_CODE, h.state)) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health.state must be 'up', 'degraded' or 'down', got ${describe(h.state)}`);
    }
    state = code;
  }
  let loadQ = -1;
  if (h.load !== undefined) {
    if (typeof h.load !== 'number') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health.load must be a number`);
    if (!(h.load >= 0 && h.load <= 1)) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `health.load must be from 0 to 1, got ${h.load}`);
    loadQ = Math.round(Math.min(h.load, MAX_LOAD) * 10000);
  }
  return { state, loadQ };
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
