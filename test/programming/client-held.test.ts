// FibClient's table for a resync, against a plain map of prefix to upsert bytes: after any
// sequence of batches (upserts, replacements, removes, entries long enough for two-byte
// lengths), it holds exactly the last upsert of every prefix not removed since, also across
// its compactions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeOps, type EncodedOps } from '../../src/programming/client-encode.js';
import { HeldTable, prefixHash } from '../../src/programming/client-held.js';
import { collidingNames } from './colliding.js';

// Few prefixes, so that batches replace and remove what earlier ones wrote; some long (a
// two-byte length), non-ASCII or empty; and some many, so that the index grows.
const prefix = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('/a', '/b', '/c/d', '/e', '', '/é', `/${'l'.repeat(150)}`) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 3000 }).map((i) => `/n${i}`) },
);
const op = fc.oneof(
  fc.record({ op: fc.constant('upsert' as const), prefix, nextHops: fc.array(fc.record({ id: fc.oneof(fc.string({ minLength: 1, maxLength: 60 }), fc.constant(`peer:${'x'.repeat(200)}`)) }), { minLength: 1, maxLength: 4 }) }),
  fc.record({ op: fc.constant('remove' as const), prefix }),
);

type Op = { op: 'upsert'; prefix: string } | { op: 'remove'; prefix: string };

function reference(map: Map<string, string>, ops: readonly Op[], e: EncodedOps): void {
  const { starts, ends } = e.changes;
  expect(starts.length).toBe(ops.length);
  for (let i = 0; i < ops.length; i++) {
    if (ends[i]! < 0) map.delete(ops[i]!.prefix);
    else map.set(ops[i]!.prefix, e.bytes.subarray(starts[i], ends[i]).toString('hex'));
  }
}

describe("FibClient's held table", () => {
  it('holds the last upsert of every prefix not removed since, across compactions', () => {
    fc.assert(fc.property(fc.array(fc.array(op, { maxLength: 40 }), { maxLength: 40 }), fc.constantFrom(0, 64, 1 << 20), fc.constantFrom(2, 1024), fc.constantFrom(300, 2 ** 31), (batches, slack, slots, chunk) => {
      // A small chunk makes compaction split what it keeps over several buffers.
      const held = new HeldTable(slack, slots, chunk);
      const want = new Map<string, string>();
      for (const [i, ops] of batches.entries()) {
        const e = encodeOps(ops, `batch ${i}`, true);
        held.apply(e);
        reference(want, ops, e);
        expect(held.size).toBe(want.size);
      }
      const got = [...held.ops()].map((b) => b.toString('hex')).sort();
      expect(got).toEqual([...want.values()].sort());
    }), { numRuns: 300 });
  });

  it('tells apart prefixes whose hashes are equal', () => {
    // Two prefixes of one length with the same 32-bit hash.
    const [a, b] = collidingNames((p) => prefixHash(Buffer.from(p), 0, p.length), 100_000);
    const held = new HeldTable(1 << 20, 2);
    held.apply(encodeOps([{ op: 'upsert', prefix: a, nextHops: [{ id: 'peer:a' }] }, { op: 'upsert', prefix: b, nextHops: [{ id: 'peer:b' }] }], 'b', true));
    expect(held.size).toBe(2);
    held.apply(encodeOps([{ op: 'remove', prefix: a }], 'b', true));
    expect([...held.ops()].map((o) => o.toString('latin1'))).toEqual([expect.stringContaining(`${b}\x12`)]);
  });

  it('keeps its buffer bounded by what is live when the same prefixes are written again and again', () => {
    const held = new HeldTable(0);
    const ops = (round: number) => Array.from({ length: 100 }, (_, i) => ({ op: 'upsert' as const, prefix: `/p${i}`, nextHops: [{ id: `peer:r${round}` }] }));
    const one = encodeOps(ops(0), 'b', true);
    held.apply(one);
    const live = held.bytes;
    for (let round = 1; round < 200; round++) held.apply(encodeOps(ops(round), 'b', true));
    expect(held.size).toBe(100);
    // Dead bytes are at most half the buffer (slack 0) before it is compacted.
    expect(held.bytes).toBeLessThanOrEqual(2 * live + one.bytes.length);
  });

  it('holds few buffers when batches are small, and lets each go with its last entry', () => {
    const held = new HeldTable();
    for (let i = 0; i < 5000; i++) held.apply(encodeOps([{ op: 'upsert', prefix: `/one/${i}`, nextHops: [{ id: 'peer:x' }] }], 'b', true));
    expect(held.size).toBe(5000);
    // A buffer is an object beside its bytes: thousands of tiny ones are copied into one.
    expect(held.buffers).toBeLessThan(1000);
    const big = new HeldTable();
    // Entries long enough that a batch fills most of what its encoder allocated.
    const batch = (round: number) => encodeOps(Array.from({ length: 1000 }, (_, i) => ({ op: 'upsert' as const, prefix: `/big/${i}`, nextHops: [{ id: `peer:r${round}-${'x'.repeat(40)}` }] })), 'b', true);
    big.apply(batch(0));
    big.apply(batch(1));
    // The second batch replaced every entry of the first: only its buffer is left, and
    // the allocation it is a view of is what the table keeps alive.
    const second = batch(1).bytes;
    expect(second.buffer.byteLength).toBeGreaterThan(second.length);
    expect([big.buffers, big.bytes]).toEqual([1, second.buffer.byteLength]);
    // A batch that is a small view of a large allocation (here a slice of Node's buffer
    // pool) is copied out of it rather than keep it alive.
    const small = new HeldTable();
    const one = encodeOps([{ op: 'upsert', prefix: '/one', nextHops: [{ id: 'peer:x' }] }], 'b', true);
    expect(one.bytes.buffer.byteLength).toBeGreaterThan(2 * one.bytes.length);
    small.apply(one);
    expect(small.bytes).toBe(one.bytes.length);
  });

  it('empties on clear', () => {
    const held = new HeldTable();
    held.apply(encodeOps([{ op: 'upsert', prefix: '/a', nextHops: [{ id: 'peer:x' }] }], 'b', true));
    held.clear();
    expect(held.size).toBe(0);
    expect([...held.ops()]).toEqual([]);
  });
});
