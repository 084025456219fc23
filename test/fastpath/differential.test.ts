// fast-check: random programs of upsert / remove / apply / setHealth (by id or through a
// handle taken at any point, before its id is in the table or after it left) / lookups
// (with flows, so choices are deterministic) give the same answers from the native table
// and ReferenceTable, errors included, and the same statistics at the end.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ForwardingTable, ReferenceTable, type FibOp, type HealthHandle, type NextHop } from '../../src/index.js';
import type { AnyTable } from './tables.js';

const COMPONENTS = ['capability', 'ocr', 'fast', 'asr', '\u00e9t\u00e9', 'x', '\uFF01', '\u{1F600}'];
const IDS = ['n0', 'n1', 'n2', 'n3', 'peer:g2', 'ag1/agent-a'];
const TAGS = ['gdpr', 'eu', 'fast', 'gpu'];

const name = fc
  .array(fc.constantFrom(...COMPONENTS), { minLength: 0, maxLength: 4 })
  .map((parts) => (parts.length === 0 ? '/' : '/' + parts.join('/')));
const badName = fc.constantFrom('', 'x', '/a//b', '/a/', '/\0');
const hop: fc.Arbitrary<NextHop> = fc.record(
  {
    id: fc.constantFrom(...IDS),
    weight: fc.oneof(fc.constant(100), fc.integer({ min: 0, max: 65535 }), fc.constant(70000)),
    priority: fc.integer({ min: 0, max: 3 }),
    tags: fc.uniqueArray(fc.constantFrom(...TAGS), { maxLength: 3 }),
  },
  { requiredKeys: ['id'] },
);
const hops = fc.array(hop, { minLength: 0, maxLength: 6 });
const op: fc.Arbitrary<FibOp> = fc.oneof(
  fc.record({ op: fc.constant('upsert' as const), prefix: fc.oneof({ weight: 20, arbitrary: name }, { weight: 1, arbitrary: badName }), nextHops: hops }),
  fc.record({ op: fc.constant('remove' as const), prefix: name }),
);

type Cmd =
  | { kind: 'apply'; ops: FibOp[] }
  | { kind: 'health'; id: string; state?: 'up' | 'degraded' | 'down'; load?: number; handle: boolean }
  | { kind: 'lookup'; name: string; require: string[]; flow: number }
  | { kind: 'packed'; names: string[]; require: string[]; flows: number[] };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('apply' as const), ops: fc.array(op, { minLength: 1, maxLength: 4 }) }) },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        kind: fc.constant('health' as const),
        id: fc.constantFrom(...IDS, 'unknown'),
        state: fc.constantFrom('up' as const, 'degraded' as const, 'down' as const),
        load: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constant(0.995)),
        handle: fc.boolean(),
      },
      { requiredKeys: ['kind', 'id', 'handle'] },
    ),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('lookup' as const),
      name: fc.oneof({ weight: 10, arbitrary: name }, { weight: 1, arbitrary: badName }),
      require: fc.uniqueArray(fc.constantFrom(...TAGS, 'never-used'), { maxLength: 2 }),
      flow: fc.nat(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.tuple(fc.oneof({ weight: 8, arbitrary: name }, { weight: 1, arbitrary: badName }), fc.nat()), { minLength: 1, maxLength: 8 })
      .chain((pairs) =>
        fc.record({
          kind: fc.constant('packed' as const),
          names: fc.constant(pairs.map((p) => p[0])),
          flows: fc.constant(pairs.map((p) => p[1] >>> 0)),
          require: fc.uniqueArray(fc.constantFrom(...TAGS), { maxLength: 1 }),
        }),
      ),
  },
);

// Each table's handles, taken at an id's first update through one and kept for the run.
const handles = new WeakMap<AnyTable, Map<string, HealthHandle>>();

function handleOf(t: AnyTable, id: string): HealthHandle {
  let own = handles.get(t);
  if (!own) handles.set(t, (own = new Map()));
  let h = own.get(id);
  if (!h) own.set(id, (h = t.handle(id)));
  return h;
}

// Runs one command, returning its observable outcome (a value or an error code).
function run(t: AnyTable, c: Cmd): unknown {
  try {
    switch (c.kind) {
      case 'apply':
        return c.ops.length === 1 && c.ops[0]!.op === 'remove' ? t.remove(c.ops[0]!.prefix) : t.apply(c.ops);
      case 'health':
      {
        const health = { ...(c.state ? { state: c.state } : {}), ...(c.load !== undefined ? { load: c.load } : {}) };
        return c.handle ? handleOf(t, c.id).setHealth(health) : t.setHealth(c.id, health);
      }
      case 'lookup':
        return t.lookup(c.name, { require: c.require, flow: c.flow });
      case 'packed': {
        const names = t.pack(c.names);
        const out = new Int32Array(c.names.length);
        const found = t.lookupPacked(names.bytes, names.offsets, out, { require: c.require, flows: Uint32Array.from(c.flows) });
        return [found, Array.from(out, (h) => (h < 0 ? h : t.nextHopId(h)))];
      }
    }
  } catch (e) {
    return { error: (e as { code?: string }).code ?? String(e) };
  }
}

function observe(t: AnyTable) {
  const s = t.stats({ top: 1000 });
  const sort = <T extends { hits?: number; selections?: number }>(a: readonly T[], key: (x: T) => string) => [...a].sort((x, y) => key(x).localeCompare(key(y)));
  return {
    size: t.size,
    generation: t.generation,
    counters: [s.lookups, s.misses, s.failovers, s.invalid, s.nextHops, s.tags],
    prefixHits: sort(s.prefixHits, (x) => x.prefix),
    selections: sort(s.nextHopSelections, (x) => x.id),
    entries: t.entries(),
  };
}

describe('ForwardingTable against ReferenceTable', () => {
  it('gives identical results for random command sequences', () => {
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 1, maxLength: 60 }), (cmds) => {
        const native = new ForwardingTable();
        const ref = new ReferenceTable();
        try {
          for (const c of cmds) expect(run(native, c)).toEqual(run(ref, c));
          expect(observe(native)).toEqual(observe(ref));
        } finally {
          native.close();
          ref.close();
        }
      }),
      { numRuns: 400 },
    );
  });

  it('finds the same longest prefix packed as one by one, whatever the depths in the table', () => {
    // Valid tables only, over a small alphabet, so that names share prefixes at every
    // depth and most candidate prefixes of a name are absent: the packed path skips the
    // depths a probe shows empty, and must never skip one that holds the answer.
    const part = fc.constantFrom('a', 'b', 'c');
    const path = (min: number, max: number) => fc.array(part, { minLength: min, maxLength: max }).map((p) => '/' + p.join('/'));
    // Next-hop ids name their entry, so that the same id means the same prefix matched.
    const entry = fc
      .tuple(path(1, 5), fc.uniqueArray(fc.constantFrom('h1', 'h2', 'h3'), { minLength: 1, maxLength: 3 }))
      .map(([prefix, ids]) => ({ op: 'upsert' as const, prefix, nextHops: ids.map((id) => ({ id: `${prefix}#${id}` })) }));
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 40 }), fc.array(path(1, 7), { minLength: 1, maxLength: 64 }), fc.nat(), (ops, names, seed) => {
        const native = new ForwardingTable();
        const ref = new ReferenceTable();
        try {
          native.apply(ops);
          ref.apply(ops);
          const flows = Uint32Array.from(names, (_, i) => (seed + i * 2654435761) >>> 0);
          const packed = native.pack(names);
          const out = new Int32Array(names.length);
          native.lookupPacked(packed.bytes, packed.offsets, out, { flows });
          for (let i = 0; i < names.length; i++) {
            const want = ref.lookup(names[i]!, { flow: flows[i]! });
            expect(out[i]! < 0 ? null : native.nextHopId(out[i]!)).toBe(want?.nextHop ?? null);
            expect(native.lookup(names[i]!, { flow: flows[i]! })).toEqual(want);
          }
        } finally {
          native.close();
          ref.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('agrees on batches that span many encoder chunks, all or nothing', () => {
    const native = new ForwardingTable();
    const ref = new ReferenceTable();
    const ops: FibOp[] = [];
    for (let i = 0; i < 20_000; i++) {
      ops.push({ op: 'upsert', prefix: `/chunked/${i % 7}/p${i}`, nextHops: [0, 1, 2, 3].map((k) => ({ id: `id-${(i * 7 + k) % 5000}`, weight: 1 + ((i + k) % 300), tags: k === 0 ? ['gdpr'] : [] })) });
    }
    // A bad op at the very end fails the whole batch after many chunks were staged.
    const bad = [...ops, { op: 'upsert', prefix: '/bad//', nextHops: [{ id: 'x' }] } as FibOp];
    for (const t of [native, ref]) expect(() => t.apply(bad)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_NAME' }));
    expect(native.size).toBe(0);
    expect(ref.size).toBe(0);
    expect(native.apply(ops)).toBe(ref.apply(ops));
    expect(native.entries()).toEqual(ref.entries());
    for (let i = 0; i < 2000; i += 7) {
      const name = `/chunked/${i % 7}/p${i}/leaf`;
      expect(native.lookup(name, { flow: i, require: ['gdpr'] })).toEqual(ref.lookup(name, { flow: i, require: ['gdpr'] }));
    }
    native.close();
    ref.close();
  });

  it('names the same first problem, code and message, in batches with several, before or after many chunks', () => {
    // The native table leaves the checks of text to its core and asks for the first
    // problem only when something failed: whichever failed first, the error must be the
    // one ReferenceTable gives, and nothing may change.
    const longId = 'i'.repeat(257);
    const defect = fc.constantFrom<(op: FibOp) => FibOp>(
      (o) => ({ ...o, prefix: '/a//b' }),
      (o) => ({ ...o, prefix: '/\u00e9/\ud800' }),
      (o) => ({ ...o, prefix: '/a/\0' }),
      (o) => ({ ...o, prefix: `/${'x/'.repeat(32)}y` }),
      (o) => ({ ...o, nextHops: [{ id: '' }] }),
      (o) => ({ ...o, nextHops: [{ id: longId }] }),
      (o) => ({ ...o, nextHops: [{ id: 'a\0b' }] }),
      (o) => ({ ...o, nextHops: [{ id: 'x\udc00' }] }),
      (o) => ({ ...o, nextHops: [{ id: '\u00e9\ud800' }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0', tags: ['\ud83d'] }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0', tags: ['t'.repeat(65)] }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0', tags: [''] }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0' }, { id: 'n0' }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0', weight: 70000 }] }),
      (o) => ({ ...o, nextHops: [{ id: 7 as unknown as string }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0', wieght: 1 } as NextHop] }),
      (o) => ({ ...o, nextHops: Array.from({ length: 65 }, (_, k) => ({ id: `h${k}` })) }),
      (o) => ({ ...o, prefix: `/${'n'.repeat(1100)}` }),
      (o) => ({ ...o, prefix: `/${'\u00e9'.repeat(600)}` }),
      (o) => ({ ...o, nextHops: [{ id: 'i'.repeat(100_000) }] }),
      (o) => ({ ...o, nextHops: [{ id: '\u00e9'.repeat(200) }] }),
      (o) => ({ ...o, nextHops: [{ id: 'n0', tags: ['\u00e9'.repeat(40)] }] }),
    );
    const good = (i: number): FibOp => ({ op: 'upsert', prefix: `/c/p${i}`, nextHops: [{ id: `n${i % 5}` }, { id: `m${i % 3}`, tags: ['gdpr'] }] });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30_000 }), fc.uniqueArray(fc.tuple(fc.nat(), defect), { minLength: 1, maxLength: 3, selector: (d) => d[0] }), (size, defects) => {
        const ops = Array.from({ length: size }, (_, i) => good(i));
        for (const [at, spoil] of defects) ops[at % size] = spoil(ops[at % size]!);
        const native = new ForwardingTable();
        const ref = new ReferenceTable();
        try {
          const err = (t: AnyTable) => {
            try {
              t.apply(ops);
            } catch (e) {
              return { code: (e as { code?: string }).code, message: (e as Error).message };
            }
            return null;
          };
          const want = err(ref);
          expect(want).not.toBeNull();
          expect(err(native)).toEqual(want);
          expect(native.size).toBe(0);
          expect(native.generation).toBe(ref.generation);
        } finally {
          native.close();
          ref.close();
        }
      }),
      { numRuns: 60 },
    );
  });

  it('passes the caller\'s own exception through, and agrees on errors only the commit finds', () => {
    const mine = new Error('from a getter');
    // Throws at its first read, and gives a bad name after: a second read of the batch
    // (to name its first problem) must not put that in place of the caller's error.
    let reads = 0;
    const throwing = { op: 'upsert', nextHops: [{ id: 'x' }] } as FibOp;
    Object.defineProperty(throwing, 'prefix', {
      enumerable: true,
      get: () => {
        if (reads++ % 2 === 0) throw mine;
        return '/a//';
      },
    });
    // 65 distinct tags: every op is valid, and the table's dictionary refuses the batch.
    const tags = Array.from({ length: 30_000 }, (_, i): FibOp => ({ op: 'upsert', prefix: `/t/${i}`, nextHops: [{ id: 'x', tags: [`t${i % 65}`] }] }));
    for (const make of [() => new ForwardingTable(), () => new ReferenceTable()]) {
      const t = make();
      try {
        reads = 0;
        expect(() => t.apply([{ op: 'upsert', prefix: '/ok', nextHops: [{ id: 'x' }] }, throwing])).toThrow(mine);
        expect(() => t.apply(tags)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_LIMIT_EXCEEDED', message: 'a table holds at most 64 distinct tags' }));
        expect(t.size).toBe(0);
      } finally {
        t.close();
      }
    }
  });

  it('agrees on larger tables after growth and churn', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), (seed) => {
        const native = new ForwardingTable();
        const ref = new ReferenceTable();
        try {
          let x = seed;
          const rnd = (n: number) => {
            x = (Math.imul(x, 1103515245) + 12345) >>> 0;
            return x % n;
          };
          for (let round = 0; round < 6; round++) {
            const ops: FibOp[] = [];
            for (let i = 0; i < 400; i++) {
              const p = `/svc/${rnd(300)}/${rnd(3)}`;
              ops.push(rnd(4) === 0 ? { op: 'remove', prefix: p } : { op: 'upsert', prefix: p, nextHops: [{ id: `i${rnd(40)}`, weight: 1 + rnd(500) }, { id: `j${rnd(40)}`, priority: rnd(2) }] });
            }
            expect(native.apply(ops)).toBe(ref.apply(ops));
            for (let h = 0; h < 10; h++) {
              const id = `i${rnd(40)}`;
              const state = (['up', 'degraded', 'down'] as const)[rnd(3)];
              expect(native.setHealth(id, { state })).toBe(ref.setHealth(id, { state }));
            }
            for (let i = 0; i < 300; i++) {
              const n = `/svc/${rnd(300)}/${rnd(4)}/leaf`;
              expect(native.lookup(n, { flow: i })).toEqual(ref.lookup(n, { flow: i }));
            }
          }
          expect(observe(native)).toEqual(observe(ref));
        } finally {
          native.close();
          ref.close();
        }
      }),
      { numRuns: 15 },
    );
  });

  it('lists the same entries under a prefix, up to a limit, as the whole list filtered', () => {
    const under = fc.oneof(name, fc.constantFrom('/', '', '/capability/', 'capability', '/cap'));
    fc.assert(
      fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { maxLength: 12 }), fc.array(fc.tuple(under, fc.option(fc.nat({ max: 8 }), { nil: undefined })), { minLength: 1, maxLength: 6 }), (batches, asks) => {
        const native = new ForwardingTable();
        const ref = new ReferenceTable();
        try {
          for (const ops of batches) {
            try {
              native.apply(ops);
            } catch {
              // Refused batches change neither table (the first test holds them to that).
            }
            try {
              ref.apply(ops);
            } catch {
              // As above.
            }
          }
          const all = ref.entries();
          for (const [u, limit] of asks) {
            const options = { under: u, ...(limit !== undefined ? { limit } : {}) };
            const root = u === '/' || u === '';
            const want = all.filter((e) => root || e.prefix === u || e.prefix.startsWith(`${u}/`)).slice(0, limit ?? Infinity);
            expect(ref.entries(options)).toEqual(want);
            expect(native.entries(options)).toEqual(want);
          }
        } finally {
          native.close();
          ref.close();
        }
      }),
      { numRuns: 300 },
    );
  });

  it('orders entries by code point, as the core orders UTF-8, where UTF-16 would differ', () => {
    // U+FF01 comes after U+1F600's high surrogate in UTF-16, before it in code points.
    const names = ['/x/\u{1F600}', '/x/\uFF01', '/x/a', '/x/\u00e9'];
    const ops = names.map((prefix) => ({ op: 'upsert' as const, prefix, nextHops: [{ id: 'n0' }] }));
    const native = new ForwardingTable();
    const ref = new ReferenceTable();
    try {
      native.apply(ops);
      ref.apply(ops);
      const want = ['/x/a', '/x/\u00e9', '/x/\uFF01', '/x/\u{1F600}'];
      for (const t of [native, ref]) {
        expect(t.entries().map((e) => e.prefix)).toEqual(want);
        for (let limit = 0; limit <= names.length; limit++) expect(t.entries({ under: '/x', limit }).map((e) => e.prefix)).toEqual(want.slice(0, limit));
      }
    } finally {
      native.close();
      ref.close();
    }
  });

  it('lists nothing under a prefix with a lone surrogate, though a name holds the U+FFFD UTF-8 would make of it', () => {
    const native = new ForwardingTable();
    const ref = new ReferenceTable();
    try {
      const ops = [{ op: 'upsert' as const, prefix: '/a\uFFFD', nextHops: [{ id: 'n0' }] }, { op: 'upsert' as const, prefix: '/a\uFFFD/b', nextHops: [{ id: 'n0' }] }];
      native.apply(ops);
      ref.apply(ops);
      for (const t of [native, ref]) {
        expect(t.entries({ under: '/a\uD800' })).toEqual([]);
        expect(t.entries({ under: '/a\uFFFD' }).map((e) => e.prefix)).toEqual(['/a\uFFFD', '/a\uFFFD/b']);
      }
    } finally {
      native.close();
      ref.close();
    }
  });

  it('refuses entries options it cannot read, by name', () => {
    const t = new ForwardingTable();
    try {
      for (const [bad, code] of [[{ under: 3 }, 'ERR_DMSC_INVALID_ARGUMENT'], [{ limit: -1 }, 'ERR_DMSC_OUT_OF_RANGE'], [{ limit: 1.5 }, 'ERR_DMSC_OUT_OF_RANGE'], [{ upto: 2 }, 'ERR_DMSC_INVALID_ARGUMENT'], ['x', 'ERR_DMSC_INVALID_ARGUMENT']] as const) {
        expect(() => t.entries(bad as never), JSON.stringify(bad)).toThrow(expect.objectContaining({ code }));
      }
    } finally {
      t.close();
    }
  });
});
