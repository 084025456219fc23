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

/** Why a string is not a capability name, or null when it is one. */
export function nameProblem(name: string): string | null {
  const n = name.length;
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

function checkBytes(s: unknown, max: number, what: string): string {
  if (typeof s !== 'string') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be a string, got ${describe(s)}`);
  if (s.length === 0 || s.length > max || (s.length * 3 > max && Buffer.byteLength(s, 'utf8') > max)) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be 1 to ${max} bytes`);
  }
  if (!s.isWellFormed() || s.includes('\0')) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be well-formed text without NUL`);
  }
  return s;
}

function checkInt(v: unknown, dflt: number, max: number, what: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${what} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `${what} must be an integer from 0 to ${max}, got ${v}`);
  }
  return v;
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

/** Validates one entry's next hops; `where` prefixes the messages. */
export function normalizeHops(nextHops: unknown, where: string, seenIds?: Set<string>): NormalizedHop[] {
  if (!Array.isArray(nextHops)) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where}.nextHops must be an array, got ${describe(nextHops)}`);
  }
  if (nextHops.length === 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where}.nextHops must not be empty`);
  if (nextHops.length > MAX_NEXT_HOPS) {
    throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `${where} has more than ${MAX_NEXT_HOPS} next hops (${nextHops.length})`);
  }
  const out: NormalizedHop[] = new Array(nextHops.length);
  for (let i = 0; i < nextHops.length; i++) {
    const h = nextHops[i] as NextHop;
    const at = `${where}.nextHops[${i}]`;
    if (typeof h !== 'object' || h === null || Array.isArray(h)) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${at} must be an object, got ${describe(h)}`);
    }
    let present = 1;
    const id = h.id;
    if (seenIds === undefined || !seenIds.has(id)) {
      checkBytes(id, MAX_ID_BYTES, `${at}.id`);
      seenIds?.add(id);
    }
    for (let j = 0; j < i; j++) {
      if (out[j]!.id === id) {
        throw new DmscTypeError('ERR_DMSC_DUPLICATE_NEXT_HOP', `${at}: next hop '${id}' appears twice in one entry`);
      }
    }
    if (h.weight !== undefined) present++;
    if (h.priority !== undefined) present++;
    const weight = checkInt(h.weight, DEFAULT_WEIGHT, MAX_WEIGHT, `${at}.weight`);
    const priority = checkInt(h.priority, 0, MAX_PRIORITY, `${at}.priority`);
    let tags = EMPTY;
    if (h.tags !== undefined) {
      present++;
      if (!Array.isArray(h.tags)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${at}.tags must be an array of strings`);
      if (h.tags.length > MAX_TAGS) throw new DmscRangeError('ERR_DMSC_LIMIT_EXCEEDED', `${at} has more than ${MAX_TAGS} tags`);
      for (let t = 0; t < h.tags.length; t++) checkBytes(h.tags[t], MAX_TAG_BYTES, `${at}.tags[${t}]`);
      tags = h.tags.length === 0 ? EMPTY : h.tags.slice();
    }
    if (Object.keys(h).length !== present) {
      const extra = Object.keys(h).filter((k) => !HOP_KEYS.has(k));
      if (extra.length > 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${at} has unknown field '${extra[0]}'`);
    }
    out[i] = { id, weight, priority, tags };
  }
  return out;
}

/** Validates a whole batch before anything is applied. */
export function normalizeOps(ops: unknown): NormalizedOp[] {
  if (!Array.isArray(ops)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `ops must be an array, got ${describe(ops)}`);
  const seenIds = new Set<string>();
  const out: NormalizedOp[] = new Array(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as FibOp;
    const where = `ops[${i}]`;
    if (typeof op !== 'object' || op === null) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where} must be an object`);
    const prefix = checkName(op.prefix, `${where}.prefix`);
    if (op.op === 'upsert') {
      out[i] = { remove: false, prefix, hops: normalizeHops(op.nextHops, where, seenIds) };
    } else if (op.op === 'remove') {
      if ('nextHops' in op) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where} is a remove with nextHops`);
      out[i] = { remove: true, prefix, hops: EMPTY as unknown as NormalizedHop[] };
    } else {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where}.op must be 'upsert' or 'remove', got ${describe((op as { op?: unknown }).op)}`);
    }
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
