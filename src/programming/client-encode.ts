// FibClient's batches, from the `--fib` file format (`{op: 'upsert', prefix, nextHops}`)
// straight to the protobuf bytes of `Batch.ops`, in one pass with the checks only the
// client can make (types and unknown fields, which the wire would silently drop). No
// object in the wire's shape is built on the way: a bulk load is a million of them.
// Where each upsert's bytes are is told to the table the client holds for its resync
// (client-held.ts), which keeps them and sends them again as they are.
import { DmscTypeError } from '../errors.js';
import { describe } from '../fastpath/validate.js';
import type { HealthState } from '../fastpath/types.js';
import { Reader, Writer, writeOp } from './codec.js';
import { WIRE_HEALTH } from './proto.js';

const OP_KEYS: Readonly<Record<'upsert' | 'remove' | 'health', ReadonlySet<string>>> = {
  upsert: new Set(['op', 'prefix', 'nextHops']),
  remove: new Set(['op', 'prefix']),
  health: new Set(['op', 'nextHopId', 'state', 'load']),
};
const HOP_KEYS = new Set(['id', 'weight', 'priority', 'tags', 'endpoint']);

/**
 * A batch's ops, encoded: what goes on the wire (Batch field 4 entries, and field 5, the
 * next-hop groups its upserts name), and what each op does to the client's table.
 */
export interface EncodedOps {
  readonly bytes: Buffer;
  readonly count: number;
  /**
   * The ops with every upsert's next hops inline, as the client's table keeps them (an
   * upsert's bytes must mean the same in any batch): `bytes` itself when no upsert names
   * a group.
   */
  readonly held: Buffer;
  /** Per upsert and remove, in order: where its entry starts in `held`, and where it ends (-1 for a remove). */
  readonly changes: { readonly starts: readonly number[]; readonly ends: readonly number[] };
}

function invalid(where: string, what: string): DmscTypeError {
  return new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where}: ${what}`);
}

function unknownKey(o: object, known: ReadonlySet<string>): string | undefined {
  for (const k in o) if (!known.has(k)) return k;
  return undefined;
}

// Strings as UTF-8 with their length first. Names and ids are nearly always ASCII of
// fewer than 128 bytes: written here, byte by byte, rather than through two calls into Buffer.
function text(w: Writer, field: number, s: string): void {
  const n = s.length;
  if (n < 128) {
    w.ensure(n + 2);
    const buf = w.buf;
    const start = w.pos;
    buf[start] = (field << 3) | 2;
    buf[start + 1] = n;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      buf[start + 2 + i] = c;
    }
    if (i === n) {
      w.pos = start + 2 + n;
      return;
    }
  }
  w.string(field, s);
}

// A uint32 field: a number that is not one (negative, fractional, too large) goes as the
// largest, which the node refuses by name as out of range, rather than as bytes no
// protobuf reader takes.
function uint32(v: number): number {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff ? v : 0xffffffff;
}

function hop(w: Writer, h: unknown, batch: string, index: number, j: number): void {
  if (typeof h !== 'object' || h === null || Array.isArray(h)) throw hopInvalid(batch, index, j, ` must be an object, got ${describe(h)}`);
  const extra = unknownKey(h, HOP_KEYS);
  if (extra !== undefined) throw hopInvalid(batch, index, j, ` has unknown field '${extra}'`);
  const { id, weight, priority, tags, endpoint } = h as Record<string, unknown>;
  if (typeof id !== 'string') throw hopInvalid(batch, index, j, `.id must be a string, got ${describe(id)}`);
  if (weight !== undefined && typeof weight !== 'number') throw hopInvalid(batch, index, j, `.weight must be a number, got ${describe(weight)}`);
  if (priority !== undefined && typeof priority !== 'number') throw hopInvalid(batch, index, j, `.priority must be a number, got ${describe(priority)}`);
  if (tags !== undefined && (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string'))) throw hopInvalid(batch, index, j, '.tags must be an array of strings');
  if (endpoint !== undefined && typeof endpoint !== 'string') throw hopInvalid(batch, index, j, `.endpoint must be a string, got ${describe(endpoint)}`);
  // Range and name checks are the node's: it names every bad op of a batch in its result.
  const at = w.begin(2);
  if (id) text(w, 1, id);
  if (weight !== undefined) {
    w.varint(16);
    w.varint(uint32(weight as number));
  }
  if (priority !== undefined && priority !== 0) {
    w.varint(24);
    w.varint(uint32(priority as number));
  }
  if (tags) for (const t of tags as string[]) text(w, 4, t);
  if (endpoint) text(w, 5, endpoint);
  w.end(at);
}

/** What an op does to the client's table. */
const NOTHING = 0;
const UPSERT = 1;
const REMOVE = 2;
type Did = typeof NOTHING | typeof UPSERT | typeof REMOVE;

function op(w: Writer, o: unknown, batch: string, index: number): Did {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw invalid(opName(batch, index), `an op must be an object, got ${describe(o)}`);
  const kind = (o as { op?: unknown }).op;
  if (kind !== 'upsert' && kind !== 'remove' && kind !== 'health') throw invalid(opName(batch, index), `op must be 'upsert', 'remove' or 'health', got ${describe(kind)}`);
  const extra = unknownKey(o, OP_KEYS[kind]);
  if (extra !== undefined) throw invalid(opName(batch, index), `unknown field '${extra}' in a ${kind} op`);
  if (kind === 'health') {
    const { nextHopId, state, load } = o as Record<string, unknown>;
    if (typeof nextHopId !== 'string') throw invalid(opName(batch, index), `nextHopId must be a string, got ${describe(nextHopId)}`);
    if (typeof state !== 'string' || !Object.hasOwn(WIRE_HEALTH, state)) throw invalid(opName(batch, index), `state must be 'up', 'degraded' or 'down', got ${describe(state)}`);
    if (load !== undefined && typeof load !== 'number') throw invalid(opName(batch, index), `load must be a number, got ${describe(load)}`);
    writeOp(w, { health: { nextHopId, state: WIRE_HEALTH[state as HealthState], load } });
    return NOTHING;
  }
  const prefix = (o as { prefix?: unknown }).prefix;
  if (typeof prefix !== 'string') throw invalid(opName(batch, index), `prefix must be a string, got ${describe(prefix)}`);
  if (kind === 'remove') {
    writeOp(w, { remove: { prefix } });
    return REMOVE;
  }
  const hops = (o as { nextHops?: unknown }).nextHops;
  if (!Array.isArray(hops)) throw invalid(opName(batch, index), `nextHops must be an array, got ${describe(hops)}`);
  const at = w.begin(1);
  if (prefix) text(w, 1, prefix);
  const from = w.pos;
  const seen = lists?.get(hops);
  if (seen) copyIn(w, w.buf, seen.from, seen.to);
  else for (let i = 0; i < hops.length; i++) hop(w, hops[i], batch, index, i);
  last.hops = hops;
  last.length = w.pos - from;
  last.seen = seen;
  last.prefix = prefix;
  w.end(at);
  return UPSERT;
}

// Appends src[from, to) to w, src being w's own buffer or not. Buffer#copy makes a view
// of src for each call, which cost more than the copy of an op's few tens of bytes:
// within one buffer copyWithin makes none, and empty spans cost no call.
function copyIn(w: Writer, src: Buffer, from: number, to: number): void {
  if (to === from) return;
  w.ensure(to - from);
  // After ensure(), src may be w's old buffer: it still holds the bytes.
  if (src === w.buf) w.buf.copyWithin(w.pos, from, to);
  else src.copy(w.buf, w.pos, from, to);
  w.pos += to - from;
}

/** A next-hop list met in a batch: where its bytes are (Upsert.next_hops entries), and its group once it has one. */
interface List {
  readonly from: number;
  readonly to: number;
  group: number;
}

// The batch's lists by identity while it is encoded (op() reads it), and what op() last
// wrote of an upsert: module state rather than an object made per op.
let lists: Map<unknown, List> | undefined;
const last: { hops: unknown; length: number; seen: List | undefined; prefix: string } = { hops: undefined, length: 0, seen: undefined, prefix: '' };

/** An upsert sent naming a group: where its inline entry is, its prefix and its group. */
interface GroupedUpsert {
  readonly start: number;
  readonly end: number;
  readonly prefix: string;
  readonly group: number;
}

/**
 * Encodes a batch's ops; `where` names the batch in errors (an op is `where[3]`). With
 * `keep`, says what each op does to the client's table.
 *
 * A list of next hops is read once a batch: an upsert whose `nextHops` is the very array
 * an earlier upsert of the batch had gets the bytes that array was encoded to, unread,
 * and goes on the wire naming a next-hop group made of them (Batch.groups). A bulk load
 * whose entries share a few hundred lists is then about half the bytes to send, for the
 * node to read and for its journal to keep, and the client reads each list once.
 * @throws ERR_DMSC_INVALID_ARGUMENT for an op that cannot be sent
 */
export function encodeOps(ops: unknown, where: string, keep: boolean): EncodedOps {
  if (!Array.isArray(ops)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${where}: a batch must be an array of ops`);
  // Every op inline first: what the client's table keeps, and all that is sent unless
  // some upserts share a list.
  const w = new Writer(64 + 96 * ops.length);
  const starts: number[] = [];
  const ends: number[] = [];
  const grouped: GroupedUpsert[] = [];
  const groups: List[] = [];
  const batchLists = new Map<unknown, List>();
  // A getter in the ops may encode another batch meanwhile.
  const outer = lists;
  lists = batchLists;
  try {
    for (let i = 0; i < ops.length; i++) {
      const start = w.pos;
      const at = w.begin(4);
      const did = op(w, ops[i], where, i);
      w.end(at);
      if (keep && did !== NOTHING) {
        starts.push(start);
        ends.push(did === UPSERT ? w.pos : -1);
      }
      if (did !== UPSERT || last.length === 0) continue;
      // The next hops end the upsert, and so the op: the bytes just written.
      const seen = last.seen;
      if (!seen) batchLists.set(last.hops, { from: w.pos - last.length, to: w.pos, group: -1 });
      else {
        if (seen.group < 0) seen.group = groups.push(seen) - 1;
        grouped.push({ start, end: w.pos, prefix: last.prefix, group: seen.group });
      }
    }
  } finally {
    lists = outer;
  }
  const held = w.done();
  return { bytes: grouped.length ? withGroups(held, grouped, groups) : held, held, count: ops.length, changes: { starts, ends } };
}

// The batch for the wire: the ops as they are, but those of `grouped` naming their group,
// and the groups after them.
function withGroups(inline: Buffer, grouped: readonly GroupedUpsert[], groups: readonly List[]): Buffer {
  const w = new Writer(inline.length);
  let copied = 0;
  for (const g of grouped) {
    copyIn(w, inline, copied, g.start);
    const op = w.begin(4);
    const up = w.begin(1);
    if (g.prefix) text(w, 1, g.prefix);
    w.varint(24);
    w.varint(g.group);
    w.end(up);
    w.end(op);
    copied = g.end;
  }
  copyIn(w, inline, copied, inline.length);
  for (const list of groups) {
    const at = w.begin(5);
    const from = w.pos;
    copyIn(w, inline, list.from, list.to);
    // Upsert.next_hops (field 2) entries become NextHopGroup.next_hops (field 1) ones:
    // each entry's tag is one byte, then its length.
    for (const r = new Reader(w.buf, from, w.pos); r.pos < r.end;) {
      w.buf[r.pos++] = (1 << 3) | 2;
      const len = r.varint(); // read before r.pos is, for the sum
      r.pos += len;
    }
    w.end(at);
  }
  return w.done();
}

/** Checks one op as `encodeOps` would; `where` names it in the error. */
export function checkOp(o: unknown, where: string): void {
  const outer = lists;
  lists = undefined;
  try {
    op(new Writer(256), o, where, -1);
  } finally {
    lists = outer;
  }
}

// Names are made only for an error: a bulk load has millions of ops and hops.
function hopInvalid(batch: string, index: number, j: number, what: string): DmscTypeError {
  return invalid(opName(batch, index), `nextHops[${j}]${what}`);
}

/** `batch[index]`, or `batch` alone for index -1. */
function opName(batch: string, index: number): string {
  return index < 0 ? batch : `${batch}[${index}]`;
}
