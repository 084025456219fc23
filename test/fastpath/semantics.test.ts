// One block per semantic point of DESIGN §3, on both implementations.
import { describe, expect, it } from 'vitest';
import { IMPLEMENTATIONS, shares, withTable } from './tables.js';

describe.each(IMPLEMENTATIONS)('%s semantics', (_name, make) => {
  it('1. matches the longest present prefix, on component boundaries only', () => {
    withTable(make, (t) => {
      t.apply([
        { op: 'upsert', prefix: '/capability', nextHops: [{ id: 'short' }] },
        { op: 'upsert', prefix: '/capability/ocr', nextHops: [{ id: 'long' }] },
      ]);
      expect(t.lookup('/capability/ocr/high-precision')).toEqual({ prefix: '/capability/ocr', nextHop: 'long', failover: false });
      expect(t.lookup('/capability/ocr')?.nextHop).toBe('long');
      expect(t.lookup('/capability/oc')).toEqual({ prefix: '/capability', nextHop: 'short', failover: false });
      expect(t.lookup('/capability/ocrx')?.prefix).toBe('/capability');
      expect(t.lookup('/other')).toBeNull();
      t.upsert('/', [{ id: 'default' }]);
      expect(t.lookup('/other')).toEqual({ prefix: '/', nextHop: 'default', failover: false });
      expect(t.lookup('/')?.prefix).toBe('/');
      t.upsert('/capability/\u00e9t\u00e9', [{ id: 'utf8' }]);
      expect(t.lookup('/capability/\u00e9t\u00e9/x')).toEqual({ prefix: '/capability/\u00e9t\u00e9', nextHop: 'utf8', failover: false });
    });
  });

  it('2. skips down, drained and untagged next hops, then goes to a shorter prefix', () => {
    withTable(make, (t) => {
      t.upsert('/a', [{ id: 'fallback', tags: ['gdpr'] }]);
      t.upsert('/a/b', [{ id: 'tagged', tags: ['gdpr', 'eu'] }, { id: 'plain' }, { id: 'drained', weight: 0, tags: ['gdpr'] }]);
      expect(t.lookup('/a/b/c', { require: ['gdpr', 'eu'] })?.nextHop).toBe('tagged');
      t.setHealth('tagged', { state: 'down' });
      expect(t.lookup('/a/b/c', { require: ['gdpr'] })).toEqual({ prefix: '/a', nextHop: 'fallback', failover: true });
      expect(t.lookup('/a/b/c', { require: ['gdpr', 'eu'] })).toBeNull();
      expect(t.lookup('/a/b/c', { require: ['unknown-tag'] })).toBeNull();
      expect(t.lookup('/a/b/c')?.nextHop).toBe('plain');
    });
  });

  it('3. takes the lowest priority value, and up before degraded within it', () => {
    withTable(make, (t) => {
      t.upsert('/p', [{ id: 'backup', priority: 5 }, { id: 'primary', priority: 1 }, { id: 'twin', priority: 1 }]);
      t.setHealth('twin', { state: 'degraded' });
      for (let i = 0; i < 200; i++) expect(t.lookup('/p')?.nextHop).toBe('primary');
      t.setHealth('primary', { state: 'degraded' });
      const both = shares(t, '/p', 2000);
      expect([...both.keys()].sort()).toEqual(['primary', 'twin']);
      t.setHealth('primary', { state: 'down' });
      t.setHealth('twin', { state: 'down' });
      expect(t.lookup('/p')).toEqual({ prefix: '/p', nextHop: 'backup', failover: true });
    });
  });

  it('4a. without a flow, shares follow effective weight within 2 points over 100k lookups', () => {
    withTable(make, (t) => {
      t.upsert('/w', [{ id: 'a', weight: 100 }, { id: 'b', weight: 300 }, { id: 'c', weight: 100 }]);
      t.setHealth('b', { load: 0.5 }); // effective 150
      t.setHealth('c', { load: 1 }); // clamped to 0.99: effective 1
      const n = 100_000;
      const got = shares(t, '/w', n);
      const total = 100 + 150 + 1;
      for (const [id, w] of [['a', 100], ['b', 150], ['c', 1]] as const) {
        expect(Math.abs((got.get(id) ?? 0) / n - w / total)).toBeLessThan(0.02);
      }
    });
  });

  it('4a. lookupPacked without flows follows effective weight too', () => {
    withTable(make, (t) => {
      t.upsert('/w', [{ id: 'a', weight: 100 }, { id: 'b', weight: 300 }]);
      const n = 100_000;
      const names = t.pack(new Array<string>(n).fill('/w/x'));
      const out = new Int32Array(n);
      t.lookupPacked(names.bytes, names.offsets, out);
      let a = 0;
      for (const h of out) if (t.nextHopId(h) === 'a') a++;
      expect(Math.abs(a / n - 0.25)).toBeLessThan(0.02);
    });
  });

  it('4b. with a flow, a flow keeps its next hop and only the failed next hop\u2019s flows move', () => {
    withTable(make, (t) => {
      t.upsert('/f', [{ id: 'h0' }, { id: 'h1' }, { id: 'h2', weight: 200 }, { id: 'h3' }]);
      const flows = 10_000;
      const before = new Array<string>(flows);
      for (let f = 0; f < flows; f++) before[f] = t.lookup('/f', { flow: `flow-${f}` })!.nextHop;
      for (let f = 0; f < flows; f += 7) expect(t.lookup('/f', { flow: `flow-${f}` })!.nextHop).toBe(before[f]);
      const perHop = new Map<string, number>();
      for (const h of before) perHop.set(h, (perHop.get(h) ?? 0) + 1);
      expect(Math.abs(perHop.get('h2')! / flows - 0.4)).toBeLessThan(0.03);
      t.setHealth('h1', { state: 'down' });
      let moved = 0;
      for (let f = 0; f < flows; f++) {
        const now = t.lookup('/f', { flow: `flow-${f}` })!.nextHop;
        if (before[f] === 'h1') {
          expect(now).not.toBe('h1');
          moved++;
        } else {
          expect(now).toBe(before[f]);
        }
      }
      expect(moved).toBe(perHop.get('h1'));
      t.setHealth('h1', { state: 'up' });
      for (let f = 0; f < flows; f += 13) expect(t.lookup('/f', { flow: `flow-${f}` })!.nextHop).toBe(before[f]);
    });
  });

  it('5. reports failover only when a preferred next hop was passed over for health', () => {
    withTable(make, (t) => {
      t.upsert('/x', [{ id: 'p0', priority: 0 }, { id: 'p1', priority: 1 }]);
      t.upsert('/x/y', [{ id: 'deep' }]);
      expect(t.lookup('/x/y')?.failover).toBe(false);
      t.setHealth('deep', { state: 'down' });
      expect(t.lookup('/x/y')).toEqual({ prefix: '/x', nextHop: 'p0', failover: true });
      t.setHealth('deep', { state: 'up' });
      t.upsert('/x/y', [{ id: 'deep', tags: ['t'] }]);
      expect(t.lookup('/x/y', { require: ['t'] })?.failover).toBe(false);
      t.upsert('/x/y', [{ id: 'deep', weight: 0 }]); // drained is not a health failure
      expect(t.lookup('/x/y')).toEqual({ prefix: '/x', nextHop: 'p0', failover: false });
      t.setHealth('p0', { state: 'degraded' });
      expect(t.lookup('/x/q')).toEqual({ prefix: '/x', nextHop: 'p0', failover: false });
      t.upsert('/z', [{ id: 'zu' }, { id: 'zd' }]);
      t.setHealth('zu', { state: 'down' });
      t.setHealth('zd', { state: 'degraded' });
      expect(t.lookup('/z')).toEqual({ prefix: '/z', nextHop: 'zd', failover: true });
    });
  });

  it('6. a next-hop id is global: one setHealth flips every entry using it', () => {
    withTable(make, (t) => {
      const ops = [];
      for (let i = 0; i < 1000; i++) ops.push({ op: 'upsert' as const, prefix: `/svc/${i}`, nextHops: [{ id: 'shared' }, { id: `own-${i}`, priority: 1 }] });
      t.apply(ops);
      expect(t.setHealth('shared', { state: 'down' })).toBe(true);
      for (let i = 0; i < 1000; i++) expect(t.lookup(`/svc/${i}`)).toEqual({ prefix: `/svc/${i}`, nextHop: `own-${i}`, failover: true });
      expect(t.setHealth('nobody', { state: 'down' })).toBe(false);
      // The id is known while an entry references it; its health goes with the last one.
      t.apply(ops.map((o) => ({ op: 'remove' as const, prefix: o.prefix })));
      expect(t.setHealth('shared', { state: 'up' })).toBe(false);
    });
  });

  it('7. apply is all-or-nothing and the last operation on a prefix wins', () => {
    withTable(make, (t) => {
      const gen = t.upsert('/keep', [{ id: 'k' }]);
      expect(() =>
        t.apply([
          { op: 'upsert', prefix: '/new', nextHops: [{ id: 'n' }] },
          { op: 'remove', prefix: '/keep' },
          { op: 'upsert', prefix: '/bad', nextHops: [{ id: 'n', weight: -1 }] },
        ]),
      ).toThrow(expect.objectContaining({ code: 'ERR_DMSC_OUT_OF_RANGE' }));
      expect(t.generation).toBe(gen);
      expect(t.size).toBe(1);
      expect(t.lookup('/keep')?.nextHop).toBe('k');
      expect(t.lookup('/new')).toBeNull();
      expect(t.apply([{ op: 'upsert', prefix: '/x', nextHops: [{ id: 'a' }] }, { op: 'remove', prefix: '/x' }, { op: 'upsert', prefix: '/y', nextHops: [{ id: 'b' }] }])).toBe(gen + 1);
      expect(t.lookup('/x')).toBeNull();
      expect(t.remove('/absent')).toBe(false);
      expect(t.generation).toBe(gen + 1);
      expect(t.remove('/y')).toBe(true);
      expect(t.generation).toBe(gen + 2);
    });
  });

  it('8. holds 64 next hops per entry and 64 distinct tags per table', () => {
    withTable(make, (t) => {
      const hops = Array.from({ length: 64 }, (_, i) => ({ id: `h${i}`, tags: [`tag${i}`] }));
      t.upsert('/big', hops);
      expect(t.lookup('/big', { require: ['tag63'] })?.nextHop).toBe('h63');
      expect(() => t.upsert('/big2', [...hops, { id: 'h64' }])).toThrow(expect.objectContaining({ code: 'ERR_DMSC_LIMIT_EXCEEDED' }));
      expect(() => t.upsert('/more', [{ id: 'x', tags: ['tag64'] }])).toThrow(expect.objectContaining({ code: 'ERR_DMSC_LIMIT_EXCEEDED' }));
      expect(t.stats().tags).toBe(64);
    });
  });

  it('stats count lookups, misses, failovers, per-prefix hits and per-next-hop selections', () => {
    withTable(make, (t) => {
      t.upsert('/s', [{ id: 'a' }]);
      t.upsert('/s/t', [{ id: 'b' }]);
      t.lookup('/s/x');
      t.lookup('/s/t');
      t.lookup('/none');
      t.setHealth('b', { state: 'down' });
      t.lookup('/s/t/u');
      const s = t.stats();
      expect(s).toMatchObject({ lookups: 4, misses: 1, failovers: 1, size: 2, nextHops: 2 });
      expect(s.prefixHits).toEqual([{ prefix: '/s', hits: 2 }, { prefix: '/s/t', hits: 1 }]);
      expect(s.nextHopSelections).toEqual([{ id: 'a', selections: 2 }, { id: 'b', selections: 1 }]);
      // Ties are listed by name, the same way on both tables.
      expect(t.stats({ top: 1 }).prefixHits).toEqual([{ prefix: '/s', hits: 2 }]);
      t.lookup('/s/t/u');
      expect(t.stats({ top: 1 }).nextHopSelections).toEqual([{ id: 'a', selections: 3 }]);
      t.setHealth('b', { state: 'up' });
      t.lookup('/s/t');
      t.lookup('/s/t');
      expect(t.stats({ top: 1 }).prefixHits).toEqual([{ prefix: '/s', hits: 3 }]);
      t.lookup('/s/t');
      expect(t.stats({ top: 1 }).prefixHits).toEqual([{ prefix: '/s/t', hits: 4 }]);
      // Updating a prefix keeps its count; removing and adding it again starts from zero.
      t.upsert('/s/t', [{ id: 'b' }, { id: 'c' }]);
      expect(t.stats().prefixHits).toContainEqual({ prefix: '/s/t', hits: 4 });
      t.remove('/s');
      t.upsert('/s', [{ id: 'a' }]);
      expect(t.stats().prefixHits).toEqual([{ prefix: '/s/t', hits: 4 }]);
      // The last lookup before a change counts for the name as it was: removed and added
      // again, a name starts from zero all the same.
      t.lookup('/s');
      t.remove('/s');
      t.upsert('/s', [{ id: 'a' }]);
      expect(t.stats().prefixHits).toEqual([{ prefix: '/s/t', hits: 4 }]);
      t.lookup('/s');
      expect(t.stats().prefixHits).toEqual([{ prefix: '/s/t', hits: 4 }, { prefix: '/s', hits: 1 }]);
      // ...and for the next hop it chose, whose index a later batch may give to another.
      withTable(make, (u) => {
        u.upsert('/p', [{ id: 'x' }]);
        u.lookup('/p');
        u.remove('/p');
        u.upsert('/q', [{ id: 'y' }]);
        expect(u.stats().nextHopSelections).toEqual([]);
      });
    });
  });

  it('entries() lists the current entries with their next hops and health', () => {
    withTable(make, (t) => {
      t.upsert('/b', [{ id: 'x', tags: ['eu', 'gdpr'] }, { id: 'y', weight: 0, priority: 2 }]);
      t.upsert('/a', [{ id: 'x' }]);
      t.setHealth('x', { state: 'degraded', load: 0.25 });
      t.upsert('/gone', [{ id: 'z' }]);
      t.remove('/gone');
      expect(t.entries()).toEqual([
        { prefix: '/a', nextHops: [{ id: 'x', weight: 100, priority: 0, tags: [], state: 'degraded', load: 0.25 }] },
        {
          prefix: '/b',
          nextHops: [
            { id: 'x', weight: 100, priority: 0, tags: ['eu', 'gdpr'], state: 'degraded', load: 0.25 },
            { id: 'y', weight: 0, priority: 2, tags: [], state: 'up', load: 0 },
          ],
        },
      ]);
    });
  });

  it('lookupPacked resolves a batch in one call, with -1 and -2 for no route and bad names', () => {
    withTable(make, (t) => {
      t.upsert('/capability/ocr', [{ id: 'a', tags: ['gdpr'] }, { id: 'b' }]);
      const names = t.pack(['/capability/ocr/x', '/nothing', '/bad//name', '/capability/ocr']);
      const out = new Int32Array(4);
      const gdpr = t.tagSet(['gdpr']);
      expect(t.lookupPacked(names.bytes, names.offsets, out, { require: gdpr })).toBe(2);
      expect([t.nextHopId(out[0]!), out[1], out[2], t.nextHopId(out[3]!)]).toEqual(['a', -1, -2, 'a']);
      expect(t.nextHopId(-1)).toBeNull();
      const flows = new Uint32Array([7, 7, 7, 7]);
      t.lookupPacked(names.bytes, names.offsets, out, { flows });
      expect(t.nextHopId(out[0]!)).toBe(t.lookup('/capability/ocr/x', { flow: 7 })!.nextHop);
      // A TagSet made before its tag existed picks it up once it does.
      const later = t.tagSet(['late']);
      expect(t.lookupPacked(names.bytes, names.offsets, out, { require: later })).toBe(0);
      t.upsert('/capability/ocr', [{ id: 'c', tags: ['late'] }]);
      expect(t.lookupPacked(names.bytes, names.offsets, out, { require: later })).toBe(2);
      expect(t.nextHopId(out[0]!)).toBe('c');
    });
  });
});
