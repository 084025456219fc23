// The controllers' prefix table against a Map: after any sequence of sets, swaps and
// deletes it holds what the Map holds, in the Map's order; and an iteration interleaved
// with changes yields every entry present throughout it, each with its value when reached,
// also across the squeezes that drop the holes deletes leave.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PrefixTable, stringHash } from '../../src/programming/prefix-table.js';
import { collidingNames } from './colliding.js';

// Few keys, so that operations meet what earlier ones wrote; some many, so that the index grows.
const key = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('/a', '/b', '/c/d', '', '/é', `/${'l'.repeat(150)}`) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 400 }).map((i) => `/n${i}`) },
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 40 }).map((i) => `/s${i}`) },
);
type Cmd = { kind: 'set' | 'swap'; key: string; value: number } | { kind: 'delete'; key: string } | { kind: 'step' };
// Deletes as often as sets: enough holes for the table to squeeze them out.
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ kind: fc.constantFrom('set' as const, 'swap' as const), key, value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key }),
  fc.constant({ kind: 'step' as const }),
);

describe('PrefixTable', () => {
  it('holds what a Map holds, in its order, and says what each change replaced', () => {
    fc.assert(fc.property(fc.array(cmd, { maxLength: 600, size: 'max' }), fc.constantFrom(1, 2, 1024), (cmds, slots) => {
      const table = new PrefixTable<number>(slots);
      const want = new Map<string, number>();
      for (const c of cmds) {
        if (c.kind === 'set') table.set(c.key, c.value), want.set(c.key, c.value);
        else if (c.kind === 'swap') {
          expect(table.swap(c.key, c.value)).toBe(want.get(c.key));
          want.set(c.key, c.value);
        } else if (c.kind === 'delete') expect(table.delete(c.key)).toBe(want.delete(c.key));
        expect(table.size).toBe(want.size);
      }
      for (const k of ['/a', '/n7', '/zz']) {
        expect(table.get(k)).toBe(want.get(k));
        expect(table.has(k)).toBe(want.has(k));
      }
      expect([...table]).toEqual([...want]);
      expect([...table.keys()]).toEqual([...want.keys()]);
    }), { numRuns: 300 });
  });

  it('leaves out no entry present throughout an iteration, whatever changes meanwhile', () => {
    fc.assert(fc.property(fc.array(cmd, { maxLength: 300, size: 'max' }), fc.array(cmd, { maxLength: 300, size: 'max' }), (setup, during) => {
      const table = new PrefixTable<number>(2);
      for (const c of setup) {
        if (c.kind === 'set' || c.kind === 'swap') table.set(c.key, c.value);
        else if (c.kind === 'delete') table.delete(c.key);
      }
      const it = table.entries();
      const seen = new Map<string, number>();
      const touched = new Set<string>();
      const take = (): boolean => {
        const r = it.next();
        if (r.done) return false;
        seen.set(r.value[0], r.value[1]);
        // Each value is the one the table holds when the iteration reaches it.
        expect(r.value[1]).toBe(table.get(r.value[0]));
        return true;
      };
      for (const c of during) {
        if (c.kind === 'step') take();
        else if (c.kind === 'delete') table.delete(c.key), touched.add(c.key);
        else table.set(c.key, c.value), touched.add(c.key);
      }
      while (take());
      for (const [k] of table) if (!touched.has(k)) expect(seen.has(k)).toBe(true);
    }), { numRuns: 300 });
  });

  it('tells apart keys whose hashes are equal', () => {
    const [a, b] = collidingNames(stringHash);
    const table = new PrefixTable<string>(2);
    table.set(a, 'a');
    table.set(b, 'b');
    expect([table.get(a), table.get(b)]).toEqual(['a', 'b']);
    expect(table.delete(a)).toBe(true);
    expect([table.get(a), table.get(b), table.size]).toEqual([undefined, 'b', 1]);
  });
});
