// Next-hop lists shared by many entries (what the FIB programming decoder makes of a
// bulk load): a list declared immutable is checked once and its ids go into each chunk
// once, and the native table then holds exactly what ReferenceTable holds from plain
// copies of the same ops, errors included. A list that is not frozen is never trusted.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ForwardingTable, ReferenceTable, type FibOp, type NextHop } from '../../src/index.js';
import { immutableList } from '../../src/fastpath/validate.js';

const IDS = ['n0', 'n1', 'n2', 'peer:g2', 'ag1/agent-a'];
const TAGS = ['gdpr', 'eu', 'fast'];
const hop = fc.record({
  id: fc.constantFrom(...IDS), weight: fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constant(70000)),
  priority: fc.integer({ min: 0, max: 3 }), tags: fc.uniqueArray(fc.constantFrom(...TAGS), { maxLength: 2 }),
}, { requiredKeys: ['id'] });
const frozenList = (hops: NextHop[]): readonly NextHop[] => {
  const list = Object.freeze(hops.map((h) => Object.freeze({ ...h, ...(h.tags ? { tags: Object.freeze([...h.tags]) } : {}) })));
  immutableList(list);
  return list;
};
const name = fc.array(fc.constantFrom('capability', 'ocr', 'fast', 'x'), { minLength: 1, maxLength: 3 }).map((p) => `/${p.join('/')}`);

describe('next-hop lists shared between entries', () => {
  it('give the native table what ReferenceTable holds from plain copies, errors included', () => {
    fc.assert(fc.property(
      fc.array(fc.array(hop, { maxLength: 4 }), { minLength: 1, maxLength: 4 }),
      fc.array(fc.array(fc.tuple(name, fc.nat(), fc.boolean()), { maxLength: 40 }), { minLength: 1, maxLength: 5 }),
      (pool, batches) => {
        const shared = pool.map(frozenList);
        const native = new ForwardingTable();
        const reference = new ReferenceTable();
        try {
          for (const batch of batches) {
            const ops = (lists: readonly (readonly NextHop[])[]): FibOp[] => batch.map(([prefix, k, remove]) => (remove ? { op: 'remove', prefix } : { op: 'upsert', prefix, nextHops: lists[k % lists.length]! }));
            let want: unknown;
            let got: unknown;
            try {
              reference.apply(ops(pool.map((l) => structuredClone(l))));
            } catch (e) {
              want = (e as { code?: string }).code;
            }
            // Twice for the native table: the second batch finds its lists checked.
            for (let pass = 0; pass < 2; pass++) {
              try {
                native.apply(ops(shared));
                got = undefined;
              } catch (e) {
                got = (e as { code?: string }).code;
              }
              expect(got).toBe(want);
            }
            expect(native.entries()).toEqual(reference.entries());
          }
        } finally {
          native.close();
          reference.close();
        }
      },
    ), { numRuns: 200 });
  });

  it('checks a list that is not frozen every time, whatever was declared', () => {
    const fib = new ForwardingTable();
    try {
      const list: NextHop[] = [{ id: 'n0', weight: 5 }];
      immutableList(list);
      fib.apply([{ op: 'upsert', prefix: '/a', nextHops: list }]);
      list[0] = { id: 'n0', weight: 70_000 };
      expect(() => fib.apply([{ op: 'upsert', prefix: '/b', nextHops: list }])).toThrow(expect.objectContaining({ code: 'ERR_DMSC_OUT_OF_RANGE' }));
      expect(fib.entries().map((e) => e.prefix)).toEqual(['/a']);
    } finally {
      fib.close();
    }
  });
});
