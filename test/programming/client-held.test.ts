// FibClient's table for a resync, against a plain map of prefix to upsert bytes: after any
// sequence of batches (upserts, replacements, removes, entries long enough for two-byte
// lengths), it holds exactly the last upsert of every prefix not removed since, also across
// its compactions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeOps, type EncodedOps } from '../../src/programming/client-encode.js';
import { HeldTable } from '../../src/programming/client-held.js';

const prefix = fc.constantFrom('/a', '/b', '/c/d', '/e');
const op = fc.oneof(
  fc.record({ op: fc.constant('upsert' as const), prefix, nextHops: fc.array(fc.record({ id: fc.oneof(fc.string({ minLength: 1, maxLength: 60 }), fc.constant(`peer:${'x'.repeat(200)}`)) }), { minLength: 1, maxLength: 4 }) }),
  fc.record({ op: fc.constant('remove' as const), prefix }),
);

function reference(map: Map<string, string>, e: EncodedOps): void {
  const { prefixes, starts, ends } = e.changes;
  for (let i = 0; i < prefixes.length; i++) {
    if (ends[i]! < 0) map.delete(prefixes[i]!);
    else map.set(prefixes[i]!, e.bytes.subarray(starts[i], ends[i]).toString('hex'));
  }
}

describe("FibClient's held table", () => {
  it('holds the last upsert of every prefix not removed since, across compactions', () => {
    fc.assert(fc.property(fc.array(fc.array(op, { maxLength: 6 }), { maxLength: 30 }), fc.constantFrom(0, 64, 1 << 20), (batches, slack) => {
      const held = new HeldTable(slack);
      const want = new Map<string, string>();
      for (const [i, ops] of batches.entries()) {
        const e = encodeOps(ops, `batch ${i}`, true);
        held.apply(e);
        reference(want, e);
        expect(held.size).toBe(want.size);
      }
      const got = [...held.ops()].map((b) => b.toString('hex')).sort();
      expect(got).toEqual([...want.values()].sort());
    }), { numRuns: 300 });
  });

  it('empties on clear', () => {
    const held = new HeldTable();
    held.apply(encodeOps([{ op: 'upsert', prefix: '/a', nextHops: [{ id: 'peer:x' }] }], 'b', true));
    held.clear();
    expect(held.size).toBe(0);
    expect([...held.ops()]).toEqual([]);
  });
});
