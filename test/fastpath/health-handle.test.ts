// Health handles: setHealth by a compare-and-swap on the table's memory, the same as
// setHealth(id) in every answer (the differential suite compares them on random
// programs); here, what a program of one thread cannot show.
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { ForwardingTable, ReferenceTable, type FibOp, type Health, type HealthHandle } from '../../src/index.js';

const open: Array<ForwardingTable | ReferenceTable> = [];
afterEach(() => {
  for (const t of open.splice(0)) t.close();
});
const table = () => {
  const t = new ForwardingTable();
  open.push(t);
  return t;
};
const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
};

// Programs where next hops stay in the table long enough for their health to matter:
// valid upserts and removes of a few prefixes, and health by id or by handle.
const IDS = ['a', 'b', 'c', 'd', 'e'];
type Step = { ops: FibOp[] } | { id: string; health: Health; byHandle: boolean };
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    ops: fc.array(
      fc.oneof(
        fc.record({
          op: fc.constant('upsert' as const),
          prefix: fc.constantFrom('/p', '/q', '/p/r'),
          nextHops: fc.uniqueArray(fc.constantFrom(...IDS), { minLength: 1, maxLength: 3 }).map((ids) => ids.map((id, i) => ({ id, priority: i >> 1 }))),
        }),
        fc.record({ op: fc.constant('remove' as const), prefix: fc.constantFrom('/p', '/q', '/p/r') }),
      ),
      { minLength: 1, maxLength: 3 },
    ),
  }),
  fc.record({
    id: fc.constantFrom(...IDS),
    health: fc.record({ state: fc.constantFrom('up' as const, 'degraded' as const, 'down' as const), load: fc.constantFrom(0, 0.3, 0.99, 1) }, { requiredKeys: [] }),
    byHandle: fc.boolean(),
  }),
);

describe('ForwardingTable.handle', () => {
  it('answers as setHealth(id) does, and leaves the same table, on random programs', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) => {
        const native = new ForwardingTable();
        const ref = new ReferenceTable();
        const handles = [new Map<string, HealthHandle>(), new Map<string, HealthHandle>()];
        try {
          for (const s of steps) {
            const outcome = [native, ref].map((t, k) => {
              if ('ops' in s) return t.apply(s.ops);
              if (!s.byHandle) return t.setHealth(s.id, s.health);
              let h = handles[k]!.get(s.id);
              if (!h) handles[k]!.set(s.id, (h = t.handle(s.id)));
              return h.setHealth(s.health);
            });
            expect(outcome[0]).toBe(outcome[1]);
            expect(native.entries()).toEqual(ref.entries());
          }
        } finally {
          native.close();
          ref.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('reaches its id wherever the table keeps it, before and after the id leaves', () => {
    const fib = table();
    const h = fib.handle('a');
    expect(h.id).toBe('a');
    expect(h.setHealth({ state: 'down' })).toBe(false);
    fib.apply([{ op: 'upsert', prefix: '/x', nextHops: [{ id: 'a' }, { id: 'b', priority: 1 }] }]);
    expect(h.setHealth({ state: 'down' })).toBe(true);
    expect(fib.lookup('/x')).toEqual({ prefix: '/x', nextHop: 'b', failover: true });
    // Ids come and go around it: the one it names is the one it reaches.
    fib.apply([{ op: 'remove', prefix: '/x' }, { op: 'upsert', prefix: '/y', nextHops: [{ id: 'c' }, { id: 'd' }] }]);
    expect(h.setHealth({ state: 'down' })).toBe(false);
    fib.apply([{ op: 'upsert', prefix: '/z', nextHops: [{ id: 'e' }, { id: 'a', priority: 1 }] }]);
    expect(h.setHealth({ load: 0.25 })).toBe(true);
    const hops = fib.entries({ under: '/z' })[0]!.nextHops;
    expect(hops.map((x) => [x.id, x.state, x.load])).toEqual([['e', 'up', 0], ['a', 'up', 0.25]]);
    expect(fib.entries({ under: '/y' })[0]!.nextHops.every((x) => x.state === 'up' && x.load === 0)).toBe(true);
  });

  it('is seen by views in other threads', async () => {
    const fib = table();
    fib.apply([{ op: 'upsert', prefix: '/w', nextHops: [{ id: 'main' }, { id: 'backup', priority: 1 }] }]);
    fib.handle('main').setHealth({ state: 'down' });
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.dist).then(({ ForwardingTable }) => {
        const view = ForwardingTable.attach(workerData.token);
        parentPort.postMessage(view.lookup('/w/q'));
        view.close();
      });`;
    const dist = new URL('../../dist/index.js', import.meta.url).href;
    const w = new Worker(source, { eval: true, workerData: { token: fib.share(), dist } });
    const seen = await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(seen).toEqual({ prefix: '/w', nextHop: 'backup', failover: true });
  });

  it('refuses bad input with typed errors and changes nothing', () => {
    const fib = table();
    fib.apply([{ op: 'upsert', prefix: '/x', nextHops: [{ id: 'a' }] }]);
    expect(codeOf(() => fib.handle(5 as never))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => fib.handle(''))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    const h = fib.handle('a');
    expect(codeOf(() => h.setHealth({ state: 'sideways' as 'up' }))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => h.setHealth({ load: 1.5 }))).toBe('ERR_DMSC_OUT_OF_RANGE');
    expect(codeOf(() => h.setHealth({ state: 'down', extra: 1 } as never))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => h.setHealth(null as never))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(fib.entries()[0]!.nextHops[0]).toMatchObject({ state: 'up', load: 0 });
  });

  it('is the owner\'s alone, and ends with the table', () => {
    const fib = table();
    fib.apply([{ op: 'upsert', prefix: '/x', nextHops: [{ id: 'a' }] }]);
    const view = ForwardingTable.attach(fib.share());
    expect(codeOf(() => view.handle('a'))).toBe('ERR_DMSC_READ_ONLY');
    view.close();
    const h = fib.handle('a');
    fib.close();
    // A write after close is refused (the memory itself is kept alive by the handle's
    // buffers, which JavaScript cannot observe; the addon holds the table for them).
    expect(codeOf(() => h.setHealth({ state: 'down' }))).toBe('ERR_DMSC_CLOSED');
    expect(codeOf(() => fib.handle('a'))).toBe('ERR_DMSC_CLOSED');
  });

  it('on ReferenceTable, is its setHealth(id)', () => {
    const ref = new ReferenceTable();
    open.push(ref);
    const h = ref.handle('a');
    expect(h.setHealth({ state: 'down' })).toBe(false);
    ref.apply([{ op: 'upsert', prefix: '/x', nextHops: [{ id: 'a' }] }]);
    expect(h.setHealth({ state: 'down' })).toBe(true);
    expect(ref.lookup('/x')).toBeNull();
  });
});
