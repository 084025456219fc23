// Every bad argument gets a typed error and leaves the table as it was.
import { describe, expect, it } from 'vitest';
import { DmscError, ForwardingTable } from '../../src/index.js';
import { BatchEncoder } from '../../src/fastpath/encode.js';
import { IMPLEMENTATIONS, type AnyTable } from './tables.js';

function expectCode(fn: () => unknown, code: string, cls?: ErrorConstructor): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown, `expected ${code}`).toBeInstanceOf(cls ?? Error);
  expect(thrown).toBeInstanceOf(DmscError);
  expect((thrown as { code: string }).code).toBe(code);
}

function snapshot(t: AnyTable) {
  const s = t.stats();
  return { size: t.size, generation: t.generation, a: t.lookup('/a/b', { flow: 1 }), nextHops: s.nextHops, tags: s.tags, entries: t.entries() };
}

describe.each(IMPLEMENTATIONS)('%s bad input', (_name, make) => {
  const fresh = () => {
    const t = make();
    t.upsert('/a', [{ id: 'x', tags: ['gdpr'] }, { id: 'y', priority: 1 }]);
    return t;
  };

  it('rejects invalid names with ERR_DMSC_INVALID_NAME', () => {
    const t = fresh();
    const before = snapshot(t);
    const bad: unknown[] = ['', 'capability', '/a//b', '//', '/a/', '/a\0b', '/\ud800', '/' + 'a'.repeat(1024), '/x'.repeat(33), 42, null, undefined, {}];
    for (const name of bad) {
      expectCode(() => t.lookup(name as string), 'ERR_DMSC_INVALID_NAME', TypeError);
      expectCode(() => t.upsert(name as string, [{ id: 'z' }]), 'ERR_DMSC_INVALID_NAME', TypeError);
    }
    expect('/' + 'a'.repeat(1023)).toHaveLength(1024);
    expect(t.lookup('/' + 'a'.repeat(1023))?.nextHop).toBeUndefined();
    expect(t.lookup('/x'.repeat(32))).toBeNull();
    expectCode(() => t.lookup('/' + '\u00e9'.repeat(512)), 'ERR_DMSC_INVALID_NAME');
    expect(snapshot(t)).toEqual(before);
    t.close();
  });

  it('rejects weight, load and priority out of range', () => {
    const t = fresh();
    const before = snapshot(t);
    expectCode(() => t.upsert('/n', [{ id: 'z', weight: 65536 }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', weight: 1.5 }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', weight: -1 }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', priority: 70000 }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', weight: '5' as unknown as number }]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', priority: -1 }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', priority: Number.NaN }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', weight: Number.POSITIVE_INFINITY }]), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.setHealth('x', [] as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.setHealth('x', new Map() as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.setHealth('x', { load: 1.5 }), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.setHealth('x', { load: -0.1 }), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.setHealth('x', { load: Number.NaN }), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.setHealth('x', { state: 'sideways' as 'up' }), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.setHealth('x', { state: 'down', extra: 1 } as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expect(snapshot(t)).toEqual(before);
    t.close();
  });

  it('rejects too many next hops, duplicate ids, bad ids and unknown fields', () => {
    const t = fresh();
    const before = snapshot(t);
    const hops = Array.from({ length: 65 }, (_, i) => ({ id: `h${i}` }));
    expectCode(() => t.upsert('/n', hops), 'ERR_DMSC_LIMIT_EXCEEDED', RangeError);
    expectCode(() => t.upsert('/n', [{ id: 'd' }, { id: 'd' }]), 'ERR_DMSC_DUPLICATE_NEXT_HOP', TypeError);
    expectCode(() => t.upsert('/n', [{ id: 7 as unknown as string }]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', [{ id: '' }]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', [{ id: 'z'.repeat(257) }]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', wieght: 5 } as never]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', []), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', 'x' as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', [null] as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', new Array(2) as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.upsert('/n', [{ id: 'z', tags: ['\ud800'] }]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.lookup('/a', { require: ['\ud800'] }), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.lookup('/a', { require: [''] }), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.pack(['/\ud800']), 'ERR_DMSC_INVALID_NAME', TypeError);
    expectCode(() => t.apply([{ op: 'frobnicate', prefix: '/n' } as never]), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.apply('nope' as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.setHealth(5 as never, { state: 'down' }), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.lookup('/a', { require: 'gdpr' as never }), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.lookup('/a', { flow: -1 }), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.lookup('/a', { flw: 1 } as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expect(snapshot(t)).toEqual(before);
    t.close();
  });

  it('rejects packed batches that would read outside the buffer', () => {
    const t = fresh();
    const before = snapshot(t);
    const names = t.pack(['/a/b', '/a']);
    const out = new Int32Array(2);
    expectCode(() => t.lookupPacked(names.bytes, names.offsets, new Int32Array(1)), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.lookupPacked(names.bytes, new Uint32Array([0, 4, 99]), out), 'ERR_DMSC_INVALID_OFFSETS', RangeError);
    expectCode(() => t.lookupPacked(names.bytes, new Uint32Array([0, 4, 2]), out), 'ERR_DMSC_INVALID_OFFSETS', RangeError);
    expectCode(() => t.lookupPacked(names.bytes, new Uint32Array([0xffffffff, 0, 6]), out), 'ERR_DMSC_INVALID_OFFSETS', RangeError);
    expectCode(() => t.lookupPacked(names.bytes, new Uint32Array(0), out), 'ERR_DMSC_INVALID_OFFSETS', RangeError);
    expectCode(() => t.lookupPacked(names.bytes, names.offsets, out, { flows: new Uint32Array(1) }), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.lookupPacked([1, 2] as never, names.offsets, out), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.lookupPacked(names.bytes, [0, 4] as never, out), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.lookupPacked(names.bytes, names.offsets, new Uint32Array(2) as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    expectCode(() => t.nextHopId(1.5), 'ERR_DMSC_OUT_OF_RANGE', RangeError);
    expectCode(() => t.pack([1] as never), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    const other = make();
    expectCode(() => t.lookupPacked(names.bytes, names.offsets, out, { require: other.tagSet(['gdpr']) }), 'ERR_DMSC_INVALID_ARGUMENT', TypeError);
    other.close();
    expect(snapshot(t)).toEqual(before);
    t.close();
  });

  it('throws ERR_DMSC_CLOSED on every call after close', () => {
    const t = fresh();
    t.close();
    t.close();
    for (const call of [
      () => t.lookup('/a'),
      () => t.upsert('/a', [{ id: 'x' }]),
      () => t.remove('/a'),
      () => t.apply([]),
      () => t.setHealth('x', { state: 'down' }),
      () => t.size,
      () => t.generation,
      () => t.stats(),
      () => t.tagSet([]),
      () => t.nextHopId(0),
      () => ('share' in t ? (t as ForwardingTable).share() : t.generation),
      () => t.lookupPacked(new Uint8Array(0), new Uint32Array(1), new Int32Array(0)),
      () => t.pack(['/a']),
      () => t.entries(),
    ]) {
      expectCode(call, 'ERR_DMSC_CLOSED');
    }
  });
});

describe.each(IMPLEMENTATIONS)('%s values that change under validation', (_name, make) => {
  it('checks the value it uses: a getter cannot slip a bad prefix past validation', () => {
    const t = make();
    let reads = 0;
    const op = { op: 'upsert', get prefix() { return ++reads === 1 ? '/ok' : '/bad//x'; }, nextHops: [{ id: 'x' }] };
    t.apply([op as never]);
    expect(reads).toBe(1);
    expect(t.entries().map((e) => e.prefix)).toEqual(['/ok']);
    t.close();
  });

  it('refuses a batch whose values call back into the table, changing nothing', () => {
    const t = make();
    t.upsert('/keep', [{ id: 'k' }]);
    const before = t.entries();
    const sneaky = { op: 'upsert', get prefix() { t.upsert('/inner', [{ id: 'i' }]); return '/a2'; }, nextHops: [{ id: 'x' }] };
    expectCode(() => t.apply([{ op: 'upsert', prefix: '/a1', nextHops: [{ id: 'x' }] }, sneaky as never]), 'ERR_DMSC_BUSY');
    expect(t.entries()).toEqual(before);
    t.close();
  });

  it('normalizes -0 load and resolves a TagSet made with new', async () => {
    const { TagSet } = await import('../../src/index.js');
    const t = make();
    t.upsert('/a', [{ id: 'x' }, { id: 'y', tags: ['gdpr'] }]);
    t.setHealth('x', { load: -0 });
    expect(Object.is(t.entries()[0]!.nextHops[0]!.load, 0)).toBe(true);
    const set = new TagSet(t, ['gdpr']);
    for (let i = 0; i < 50; i++) expect(t.lookup('/a', { require: set })?.nextHop).toBe('y');
    t.close();
  });
});

describe('ForwardingTable views and tokens', () => {
  it('rejects writes on a view and bad tokens', () => {
    const fib = new ForwardingTable();
    fib.upsert('/a', [{ id: 'x' }]);
    const view = ForwardingTable.attach(fib.share());
    expect(view.lookup('/a/b')?.nextHop).toBe('x');
    expect(view.size).toBe(1);
    expectCode(() => view.upsert('/b', [{ id: 'y' }]), 'ERR_DMSC_READ_ONLY', TypeError);
    expectCode(() => view.setHealth('x', { state: 'down' }), 'ERR_DMSC_READ_ONLY', TypeError);
    expectCode(() => view.share(), 'ERR_DMSC_READ_ONLY', TypeError);
    expectCode(() => ForwardingTable.attach({ kind: 'dmsc.fib', id: 999_999 }), 'ERR_DMSC_CLOSED');
    expectCode(() => ForwardingTable.attach({} as never), 'ERR_DMSC_INVALID_TOKEN', TypeError);
    fib.close();
    expectCode(() => view.lookup('/a'), 'ERR_DMSC_CLOSED');
    view.close();
  });

  it('limits attached views and frees slots on close', () => {
    const fib = new ForwardingTable();
    const token = fib.share();
    const views = Array.from({ length: 63 }, () => ForwardingTable.attach(token));
    expectCode(() => ForwardingTable.attach(token), 'ERR_DMSC_LIMIT_EXCEEDED', RangeError);
    expect(fib.stats().readers).toBe(63);
    views.pop()!.close();
    views.push(ForwardingTable.attach(token));
    for (const v of views) v.close();
    expect(fib.stats().readers).toBe(0);
    fib.close();
  });
});

describe('the bulk encoder', () => {
  it('refuses a string past its length bound before copying it, and anything else at the core', () => {
    // The core checks the text, but a string a million units long must not be copied
    // into the encoder's buffer (which the table keeps) to be refused there.
    const enc = new BatchEncoder();
    let chunks = 0;
    const sink = () => {
      chunks++;
    };
    const hop = (id: string, tags?: string[]) => [{ op: 'upsert' as const, prefix: '/a', nextHops: [{ id, ...(tags ? { tags } : {}) }] }];
    expect(() => enc.encode(hop('i'.repeat(1_000_000)), sink)).toThrow('ops[0].nextHops[0].id must be 1 to 256 bytes');
    expect(() => enc.encode(hop('x', ['t'.repeat(1_000_000)]), sink)).toThrow('ops[0].nextHops[0].tags[0] must be 1 to 64 bytes');
    expect(() => enc.encode([{ op: 'upsert', prefix: `/${'n'.repeat(1_000_000)}`, nextHops: [{ id: 'x' }] }], sink)).toThrow(/ops\[0\]\.prefix.*longer than 1024 bytes/);
    expect(chunks).toBe(0);
    // Within the bound in UTF-16 units, past it in UTF-8: for the core to refuse.
    enc.encode(hop('\u00e9'.repeat(200)), sink);
    expect(chunks).toBe(1);
  });
});
