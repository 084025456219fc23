// The node's reading of ModifyRequest batches: straight into the rib's ops, with no
// intermediate objects in the wire's shape. A bulk load is a million upserts whose next-hop
// lists repeat (a few hundred next-hop groups, as gRIBI and Linux nexthop objects call
// them), so a list is read once and shared, frozen, by every upsert that carries the same
// bytes: far less to allocate, to collect and to check. The same bytes are the journal's
// records (journal.ts): a batch is stored as it came, not re-encoded.
import { fnv1aBytes, sameBytes } from '../fastpath/hashing.js';
import type { HealthState } from '../fastpath/types.js';
import { immutableList, MAX_NEXT_HOPS } from '../fastpath/validate.js';
import { decodeModifyRequest, Reader, uint128, Writer, writeOp } from './codec.js';
import type { ControllerHop, ControllerOp, OpError } from './rib.js';

const HEALTH: readonly (HealthState | undefined)[] = ['up', 'degraded', 'down'];
const NO_TAGS: readonly string[] = Object.freeze([]);

/** A batch as the node reads it: the rib's ops, the ops it could not read, and its bytes. */
export interface NodeBatch {
  seq: string;
  electionId: { high: string; low: string } | null;
  expectGeneration?: string;
  _expectGeneration?: 'expectGeneration';
  ops: ControllerOp[];
  bad: OpError[];
  /** A copy of the Batch message's own bytes: what the journal keeps. */
  record: Buffer;
}

/**
 * Next-hop lists already read, by the hash of their bytes; one list per hash. Bounded in
 * count and in the size of a list (batches are read before any check, so a list the
 * table could never take must not be kept): at most about 30 MB.
 */
const GROUPS_MAX = 4096;
const GROUP_BYTES_MAX = 4096;
type Known = Map<number, { bytes: Buffer; hops: readonly ControllerHop[] }>;
/** Upserts' lists, by the bytes of their Upsert.next_hops fields. */
const groups: Known = new Map();
/**
 * Batch groups' lists, by the bytes of the NextHopGroup: apart, as the same bytes mean
 * other fields there (a group of Upsert.next_hops fields has no next hops), and what the
 * same bytes read as must not depend on what was read before.
 */
const sets: Known = new Map();

/**
 * Next hops and tags a batch's upserts of groups may come to: about what the largest
 * inline batch can carry. A group is sent once and named by any number of upserts, so
 * without a bound a small batch would be a great deal of checking and encoding.
 */
export const MAX_GROUPED_WORK = 1 << 20;

function hop(r: Reader): ControllerHop {
  let id = '';
  let weight: number | undefined;
  let priority = 0;
  let tags: string[] | undefined;
  let endpoint = '';
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case 10: id = r.string(); break;
      case 16: weight = r.uint32(); break;
      case 24: priority = r.uint32(); break;
      case 34: (tags ??= []).push(r.string()); break;
      case 42: endpoint = r.string(); break;
      default: r.skip(tag & 7);
    }
  }
  const h: { id: string; priority: number; tags: readonly string[]; weight?: number; endpoint?: string } = { id, priority, tags: tags ? Object.freeze(tags) : NO_TAGS };
  if (weight !== undefined) h.weight = weight;
  if (endpoint) h.endpoint = endpoint;
  return Object.freeze(h);
}

/** The group the upsert last read names (Upsert.group), or -1: module state, not an object per op. */
let upsertGroup = -1;
const NO_HOPS: readonly ControllerHop[] = Object.freeze([]);

// Upsert {prefix = 1, next_hops = 2, group = 3}. Encoders write fields in order, so the
// next hops run from the first of them to the message's end: those bytes are the list's
// key (a group field after them is not part of a list, and makes it unkeyed).
function upsert(r: Reader): ControllerOp {
  let prefix = '';
  let hops: ControllerHop[] | readonly ControllerHop[] = NO_HOPS;
  let from = -1;
  let key = 0;
  let keyed = true;
  upsertGroup = -1;
  while (r.pos < r.end) {
    const at = r.pos;
    const tag = r.varint();
    if (tag === 10) {
      prefix = r.string();
      if (from >= 0) keyed = false;
    } else if (tag === 24) {
      upsertGroup = r.uint32();
      if (from >= 0) keyed = false;
    } else if (tag === 18) {
      if (from < 0) {
        from = at;
        if (r.end - at > GROUP_BYTES_MAX) keyed = false;
        hops = [];
      }
      if (from === at && keyed) {
        key = fnv1aBytes(r.buf, at, r.end);
        const known = groups.get(key);
        if (known && known.bytes.length === r.end - at && sameBytes(known.bytes, 0, r.buf, at, r.end - at)) {
          r.pos = r.end;
          return { op: 'upsert', prefix, nextHops: known.hops };
        }
      }
      const outer = r.enter();
      (hops as ControllerHop[]).push(hop(r));
      r.leave(outer);
    } else {
      r.skip(tag & 7);
      if (from >= 0) keyed = false;
    }
  }
  if (from >= 0 && keyed) hops = keep(key, r.buf, from, r.end, hops as ControllerHop[]);
  return { op: 'upsert', prefix, nextHops: hops };
}

// Shares a list read from buf[from, end) with whatever carries the same bytes later.
function keep(key: number, buf: Buffer, from: number, end: number, hops: ControllerHop[], known: Known = groups): readonly ControllerHop[] {
  if (hops.length > MAX_NEXT_HOPS) return hops;
  Object.freeze(hops);
  immutableList(hops);
  if (known.size >= GROUPS_MAX) known.clear();
  known.set(key, { bytes: Buffer.from(buf.subarray(from, end)), hops });
  return hops;
}

// NextHopGroup {next_hops = 1}: keyed by its whole bytes, which are its next hops unless
// it has fields this node does not know. Shared or not, the list is frozen: the batch's
// upserts of it share it, and it is checked and encoded once for all of them.
function group(r: Reader): readonly ControllerHop[] {
  const from = r.pos;
  const size = r.end - from;
  const key = size <= GROUP_BYTES_MAX ? fnv1aBytes(r.buf, from, r.end) : 0;
  if (size <= GROUP_BYTES_MAX) {
    const known = sets.get(key);
    if (known && known.bytes.length === size && sameBytes(known.bytes, 0, r.buf, from, size)) {
      r.pos = r.end;
      return known.hops;
    }
  }
  const hops: ControllerHop[] = [];
  let keyed = size <= GROUP_BYTES_MAX;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) {
      const outer = r.enter();
      hops.push(hop(r));
      r.leave(outer);
    } else {
      r.skip(tag & 7);
      keyed = false;
    }
  }
  Object.freeze(hops);
  immutableList(hops);
  return keyed ? keep(key, r.buf, from, r.end, hops, sets) : hops;
}

function prefixOnly(r: Reader): string {
  let prefix = '';
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) prefix = r.string();
    else r.skip(tag & 7);
  }
  return prefix;
}

function health(r: Reader): { op: ControllerOp; state: number } {
  let nextHopId = '';
  let state = 0;
  let load = 0;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 10) nextHopId = r.string();
    else if (tag === 16) state = r.varint();
    else if (tag === 25) load = r.double();
    else r.skip(tag & 7);
  }
  return { op: { op: 'health', nextHopId, state: HEALTH[state] ?? 'up', load }, state };
}

/** The group the op last read names, for `batch`: -1 for none. */
let opGroup = -1;

// Op {oneof: upsert = 1, remove = 2, health = 3}; the last member set wins.
function op(r: Reader, i: number, bad: OpError[]): ControllerOp {
  let out: ControllerOp | undefined;
  let state = 0;
  opGroup = -1;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if ((tag & 7) === 2 && field >= 1 && field <= 3) {
      const outer = r.enter();
      state = 0;
      opGroup = -1;
      if (field === 1) {
        out = upsert(r);
        opGroup = upsertGroup;
      } else if (field === 2) out = { op: 'remove', prefix: prefixOnly(r) };
      else ({ op: out, state } = health(r));
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  if (out) {
    if (HEALTH[state] === undefined) bad.push({ opIndex: i, code: 'ERR_DMSC_INVALID_ARGUMENT', message: `unknown health state ${state}` });
    return out;
  }
  bad.push({ opIndex: i, code: 'ERR_DMSC_MALFORMED_BATCH', message: 'an op must be one of upsert, remove, health (this one is empty or of a kind this node does not know)' });
  return { op: 'remove', prefix: '/' }; // keeps the indexes; the batch is refused anyway
}

// Batch {seq = 1, election_id = 2, expect_generation = 3, ops = 4, groups = 5}. Groups come
// after the ops that use them (encoders write fields in order): an upsert of a group gets
// its next hops once the whole batch is read.
function batch(r: Reader): NodeBatch {
  const b: NodeBatch = { seq: '0', electionId: null, ops: [], bad: [], record: Buffer.from(r.buf.subarray(r.pos, r.end)) };
  const lists: (readonly ControllerHop[])[] = [];
  let grouped: number[] | undefined;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) b.seq = r.varint64();
    else if (tag === 18) {
      const outer = r.enter();
      b.electionId = uint128(r);
      r.leave(outer);
    } else if (tag === 24) {
      b.expectGeneration = r.varint64();
      b._expectGeneration = 'expectGeneration';
    } else if (tag === 34) {
      const outer = r.enter();
      const o = op(r, b.ops.length, b.bad);
      if (opGroup >= 0) (grouped ??= []).push(b.ops.length, opGroup);
      b.ops.push(o);
      r.leave(outer);
    } else if (tag === 42) {
      const outer = r.enter();
      lists.push(group(r));
      r.leave(outer);
    } else r.skip(tag & 7);
  }
  if (grouped) resolveGroups(b, grouped, lists);
  return b;
}

// Gives each upsert of a group (`grouped`: op index, group, ...) that group's next hops;
// names those that cannot have them.
function resolveGroups(b: NodeBatch, grouped: readonly number[], lists: readonly (readonly ControllerHop[])[]): void {
  const work = new GroupWork(lists);
  for (let k = 0; k < grouped.length; k += 2) {
    const i = grouped[k]!;
    const g = grouped[k + 1]!;
    // The decoder's own object, not yet anyone else's.
    const o = b.ops[i] as { nextHops: readonly ControllerHop[] };
    const e = work.problem(i, g, o.nextHops.length > 0);
    if (e) b.bad.push(e);
    else o.nextHops = lists[g]!;
  }
  if (b.bad.length > 1) b.bad.sort((x, y) => x.opIndex - y.opIndex);
}

/** The upserts of a batch's groups, checked one by one: each names a group the batch has, and all together stay within MAX_GROUPED_WORK. */
export class GroupWork {
  readonly #lists: readonly (readonly { readonly tags?: readonly string[] }[])[];
  readonly #cost: number[] = [];
  #work = 0;

  constructor(lists: readonly (readonly { readonly tags?: readonly string[] }[])[]) {
    this.#lists = lists;
  }

  /** What is wrong with upsert `opIndex` naming `group`, with next hops of its own or not; null: nothing. */
  problem(opIndex: number, group: number, inline: boolean): OpError | null {
    const n = this.#lists.length;
    if (inline) return { opIndex, code: 'ERR_DMSC_INVALID_ARGUMENT', message: `an upsert takes next hops or a group, not both (group ${group})` };
    if (group >= n) return { opIndex, code: 'ERR_DMSC_NOT_FOUND', message: `group ${group} is not in the batch, which has ${n} group${n === 1 ? '' : 's'}` };
    const before = this.#work;
    this.#work += this.#cost[group] ??= costOf(this.#lists[group]!);
    if (this.#work > MAX_GROUPED_WORK && before <= MAX_GROUPED_WORK) {
      return { opIndex, code: 'ERR_DMSC_LIMIT_EXCEEDED', message: `the batch's upserts of groups come to more than ${MAX_GROUPED_WORK} next hops and tags; send fewer a batch` };
    }
    return null;
  }
}

function costOf(list: readonly { readonly tags?: readonly string[] }[]): number {
  let n = list.length;
  for (let j = 0; j < list.length; j++) n += list[j]!.tags?.length ?? 0;
  return n;
}

/**
 * The node's deserializer of ModifyRequest: a batch comes as a NodeBatch; open and the
 * Replace markers as the generic codec gives them. Throws on bytes that are not one.
 */
export function decodeModifyForNode(buf: Buffer): Record<string, unknown> {
  // The oneof's last member wins: find it before reading anything big.
  const r = new Reader(buf);
  let last = 0;
  let from = 0;
  let end = 0;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    if ((tag & 7) === 2 && field >= 1 && field <= 4) {
      end = r.bytesEnd();
      from = r.pos;
      r.pos = end;
      last = field;
    } else r.skip(tag & 7);
  }
  if (last !== 2) return decodeModifyRequest(buf);
  return { request: 'batch', batch: batch(new Reader(buf, from, end)) };
}

/** The ops of a journal record (a Batch message), in order. */
export function recordOps(bytes: Buffer): ControllerOp[] {
  return batch(new Reader(bytes)).ops;
}

/** A journal record for changes made otherwise than by one gRPC batch: upserts and removes, as a Batch message. */
export function encodeRecord(changes: Iterable<[string, readonly ControllerHop[] | null]>): Buffer {
  const w = new Writer(4096);
  for (const [prefix, hops] of changes) w.nested(4, () => writeOp(w, hops ? { upsert: { prefix, nextHops: hops } } : { remove: { prefix } }));
  return Buffer.from(w.done());
}
