// Batches on their way in and out, against the generic codec (protobufjs through
// proto-loader): the node's reading (straight into the rib's ops, next-hop lists shared by
// their bytes) gives the same ops as the generic codec and the plain conversion of its
// objects, whether a list is read for the first time or found again; the journal's
// records read back as the batch; FibClient's encoding writes the same bytes' meaning.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeModifyForNode, encodeRecord, MAX_GROUPED_WORK, recordOps, type NodeBatch } from '../../src/programming/batch-codec.js';
import { isImmutableList } from '../../src/fastpath/validate.js';
import { encodeOps } from '../../src/programming/client-encode.js';
import { encodeModifyRequest } from '../../src/programming/codec.js';
import { genericModifyCodec, HEALTH_OF } from '../../src/programming/proto.js';
import type { ControllerHop, ControllerOp, OpError } from '../../src/programming/rib.js';

const generic = genericModifyCodec();
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String);
const text = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('/capability/ocr', '/capability/é/☃', 'peer:gw-1', 'peer:gw-2', ''));
const hop = fc.record({
  id: text, weight: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }), priority: fc.integer({ min: 0, max: 3 }),
  tags: fc.array(text, { maxLength: 2 }), endpoint: fc.constantFrom('', 'http://127.0.0.1:9/x'),
}, { requiredKeys: ['id', 'priority', 'tags', 'endpoint'] });
// Few distinct lists, so that most upserts of a run find theirs already read.
const hopLists = fc.array(fc.array(hop, { maxLength: 4 }), { minLength: 1, maxLength: 3 });
const opOf = (lists: unknown[][]) => fc.oneof(
  fc.record({ upsert: fc.record({ prefix: text, nextHops: fc.nat().map((k) => lists[k % lists.length]!) }) }),
  // Of one of the batch's groups, of one it does not have, or with next hops of its own too.
  fc.record({ upsert: fc.record({ prefix: text, nextHops: fc.constantFrom([], [], [], lists[0]!), group: fc.nat({ max: 4 }) }) }),
  fc.record({ remove: fc.record({ prefix: text }) }),
  fc.record({ health: fc.record({ nextHopId: text, state: fc.constantFrom<string | number>('UP', 'DEGRADED', 'DOWN', 7), load: fc.double({ noNaN: true }) }) }),
  fc.constant({}),
);
const batches = hopLists.chain((lists) => fc.array(fc.record({
  seq: u64, electionId: fc.record({ high: u64, low: u64 }), expectGeneration: fc.option(u64, { nil: undefined }), ops: fc.array(opOf(lists), { maxLength: 8 }),
  groups: fc.array(fc.nat().map((k) => ({ nextHops: lists[k % lists.length]! })), { maxLength: 3 }),
}, { requiredKeys: ['seq', 'electionId', 'ops'] }), { minLength: 1, maxLength: 4 }));

const hopOf = (h: any) => ({ id: h.id, priority: h.priority, tags: h.tags, ...(h.weight !== undefined && h.weight !== null ? { weight: h.weight } : {}), ...(h.endpoint ? { endpoint: h.endpoint } : {}) });

/** The plain conversion of the generic codec's ops: what the node's reading must equal. */
function reference(wire: any[], groups: any[] = []): { ops: ControllerOp[]; bad: OpError[] } {
  const ops: ControllerOp[] = [];
  const bad: OpError[] = [];
  wire.forEach((w, i) => {
    if (w.op === 'upsert') {
      let hops = w.upsert.nextHops.map(hopOf);
      if (w.upsert._group === 'group') {
        const g = w.upsert.group;
        if (hops.length) bad.push({ opIndex: i, code: 'ERR_DMSC_INVALID_ARGUMENT', message: expect.stringContaining('not both') as never });
        else if (g >= groups.length) bad.push({ opIndex: i, code: 'ERR_DMSC_NOT_FOUND', message: expect.stringContaining(`group ${g} is not in the batch`) as never });
        else hops = groups[g].nextHops.map(hopOf);
      }
      ops.push({ op: 'upsert', prefix: w.upsert.prefix, nextHops: hops });
    } else if (w.op === 'remove') ops.push({ op: 'remove', prefix: w.remove.prefix });
    else if (w.op === 'health') {
      const state = HEALTH_OF[w.health.state];
      if (!state) bad.push({ opIndex: i, code: 'ERR_DMSC_INVALID_ARGUMENT', message: `unknown health state ${String(w.health.state)}` });
      ops.push({ op: 'health', nextHopId: w.health.nextHopId, state: state ?? 'up', load: w.health.load });
    } else {
      bad.push({ opIndex: i, code: 'ERR_DMSC_MALFORMED_BATCH', message: 'an op must be one of upsert, remove, health (this one is empty or of a kind this node does not know)' });
      ops.push({ op: 'remove', prefix: '/' });
    }
  });
  return { ops, bad };
}

const plain = (v: unknown) => JSON.parse(JSON.stringify(v));

describe('the node reading batches', () => {
  it('reads every batch as the generic codec and the plain conversion do, lists shared or not', () => {
    fc.assert(fc.property(batches, (list) => {
      for (const m of list) {
        const bytes = generic.serialize({ batch: m });
        const wire = (generic.deserialize(bytes) as any).batch;
        const want = reference(wire.ops, wire.groups);
        // Twice: the second reading finds the lists the first one read.
        for (let pass = 0; pass < 2; pass++) {
          const got = decodeModifyForNode(bytes) as { request: string; batch: NodeBatch };
          expect(got.request).toBe('batch');
          expect(plain(got.batch.ops)).toEqual(plain(want.ops));
          expect(got.batch.bad).toEqual(want.bad);
          expect(got.batch.seq).toBe(m.seq);
          expect(plain(recordOps(got.batch.record))).toEqual(plain(got.batch.ops));
        }
      }
    }), { numRuns: 300 });
  });

  it('shares one frozen list between upserts with the same next hops, and freezes what it shares', () => {
    const hops = [{ id: 'peer:gw-1', weight: 7, priority: 0, tags: ['eu'], endpoint: '' }, { id: 'peer:gw-2', priority: 1, tags: [], endpoint: '' }];
    const ops = Array.from({ length: 3 }, (_, i) => ({ upsert: { prefix: `/capability/p${i}`, nextHops: hops } }));
    const b = (decodeModifyForNode(generic.serialize({ batch: { seq: '1', ops } })) as { batch: NodeBatch }).batch;
    const lists = b.ops.map((o) => (o as { nextHops: readonly ControllerHop[] }).nextHops);
    expect(lists[1]).toBe(lists[0]);
    expect(lists[2]).toBe(lists[0]);
    expect(isImmutableList(lists[0]!)).toBe(true);
    expect(Object.isFrozen(lists[0])).toBe(true);
    expect(Object.isFrozen(lists[0]![0])).toBe(true);
    expect(Object.isFrozen(lists[0]![0]!.tags)).toBe(true);
    expect(() => (lists[0] as ControllerHop[]).push({ id: 'x' })).toThrow(TypeError);
    // A prefix written after the next hops (legal, if unusual) is not taken for part of the list.
    const field = (n: number, body: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, body.length]), body]);
    const hop = field(2, field(1, Buffer.from('peer:a')));
    for (const prefix of ['/capability/x', '/capability/x', '/capability/y']) {
      const request = field(2, field(4, field(1, Buffer.concat([hop, field(1, Buffer.from(prefix))]))));
      const read = (decodeModifyForNode(request) as { batch: NodeBatch }).batch.ops[0];
      expect(plain(read)).toEqual({ op: 'upsert', prefix, nextHops: [{ id: 'peer:a', priority: 0, tags: [] }] });
    }
    // Lists no table could take, or large ones, are never kept: batches are read before any check.
    for (const big of [Array.from({ length: 65 }, (_, k) => ({ id: `peer:g${k}`, priority: 0, tags: [], endpoint: '' })), [{ id: `peer:${'x'.repeat(5000)}`, priority: 0, tags: [], endpoint: '' }]]) {
      const request = generic.serialize({ batch: { seq: '1', ops: [{ upsert: { prefix: '/capability/big', nextHops: big } }, { upsert: { prefix: '/capability/big2', nextHops: big } }] } });
      const [a, b] = (decodeModifyForNode(request) as { batch: NodeBatch }).batch.ops.map((o) => (o as { nextHops: readonly ControllerHop[] }).nextHops);
      expect(a).not.toBe(b);
      expect(isImmutableList(a!)).toBe(false);
      expect(a).toHaveLength(big.length);
    }
    // Lists built elsewhere are not taken for shared ones.
    expect(isImmutableList(plain(lists[0]))).toBe(false);
  });

  it("gives every upsert of a group the group's one frozen list, in this batch and the next", () => {
    const hops = [{ id: 'peer:gw-7', weight: 3, priority: 0, tags: ['eu'], endpoint: '' }];
    const read = () => (decodeModifyForNode(generic.serialize({ batch: {
      seq: '1', groups: [{ nextHops: [] }, { nextHops: hops }],
      ops: [0, 1, 2].map((i) => ({ upsert: { prefix: `/capability/g${i}`, nextHops: [], group: 1 } })),
    } })) as { batch: NodeBatch }).batch;
    const first = read();
    const lists = first.ops.map((o) => (o as { nextHops: readonly ControllerHop[] }).nextHops);
    expect(first.bad).toEqual([]);
    expect(plain(lists[0])).toEqual([{ id: 'peer:gw-7', weight: 3, priority: 0, tags: ['eu'] }]);
    expect(lists[1]).toBe(lists[0]);
    expect(lists[2]).toBe(lists[0]);
    expect(isImmutableList(lists[0]!)).toBe(true);
    expect((read().ops[0] as { nextHops: readonly ControllerHop[] }).nextHops).toBe(lists[0]);
    // A group with a field this node does not know is read, not shared by its bytes; it is
    // frozen all the same, for the upserts of its batch to share.
    const field = (n: number, body: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, body.length]), body]);
    const odd = field(5, Buffer.concat([field(1, field(1, Buffer.from('peer:a'))), field(9, Buffer.from('?'))]));
    const ref = field(4, field(1, Buffer.concat([field(1, Buffer.from('/capability/x')), Buffer.from([24, 0])])));
    const twice = [0, 1].map(() => (decodeModifyForNode(field(2, Buffer.concat([ref, odd]))) as { batch: NodeBatch }).batch.ops[0] as { nextHops: readonly ControllerHop[] });
    expect(plain(twice[0]!.nextHops)).toEqual([{ id: 'peer:a', priority: 0, tags: [] }]);
    expect(twice[1]!.nextHops).not.toBe(twice[0]!.nextHops);
    expect(isImmutableList(twice[0]!.nextHops)).toBe(true);
  });

  it('reads a group by its own fields whatever was read before, and names upserts past the bound on their work', () => {
    const field = (n: number, body: Buffer) => Buffer.concat([Buffer.from([(n << 3) | 2, body.length]), body]);
    const hops = field(2, field(1, Buffer.from('peer:a')));
    // The bytes of an upsert's next hops (field 2), read first as an upsert's list...
    decodeModifyForNode(field(2, field(4, field(1, Buffer.concat([field(1, Buffer.from('/capability/x')), hops])))));
    // ...are, as a group's body, no next hops at all (field 2 is not NextHopGroup's).
    const grouped = field(2, Buffer.concat([field(4, field(1, Buffer.concat([field(1, Buffer.from('/capability/y')), Buffer.from([24, 0])]))), field(5, hops)]));
    expect(plain((decodeModifyForNode(grouped) as { batch: NodeBatch }).batch.ops)).toEqual([{ op: 'upsert', prefix: '/capability/y', nextHops: [] }]);
    // A group index as ten bytes (2^64 - 1) is its low 32 bits, as protobuf reads it: no group 0.
    const huge = field(2, Buffer.concat([field(4, field(1, Buffer.concat([field(1, Buffer.from('/capability/z')), Buffer.from([24, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])]))), field(5, field(1, field(1, Buffer.from('peer:b'))))]));
    expect((decodeModifyForNode(huge) as { batch: NodeBatch }).batch.bad).toEqual([{ opIndex: 0, code: 'ERR_DMSC_NOT_FOUND', message: expect.stringContaining('group 4294967295') }]);
    expect((generic.deserialize(huge) as any).batch.ops[0].upsert.group).toBe(4294967295);
    // One group of 64 next hops with 16 tags each, named by 10,000 upserts, is far more
    // work than its bytes: the first upsert past the bound is named.
    const big = Array.from({ length: 64 }, (_, k) => ({ id: `peer:g${k}`, priority: 0, tags: Array.from({ length: 16 }, (_, t) => `t${t}`), endpoint: '' }));
    const ops = Array.from({ length: 10_000 }, (_, i) => ({ upsert: { prefix: `/capability/w${i}`, nextHops: [], group: 0 } }));
    const b = (decodeModifyForNode(generic.serialize({ batch: { seq: '1', groups: [{ nextHops: big }], ops } })) as { batch: NodeBatch }).batch;
    const per = 64 * 17;
    expect(b.bad).toEqual([{ opIndex: Math.floor(MAX_GROUPED_WORK / per), code: 'ERR_DMSC_LIMIT_EXCEEDED', message: expect.any(String) }]);
  });

  it('gives open and the Replace markers as the generic codec does', () => {
    for (const m of [{ open: { controllerId: 'c', electionId: { high: '0', low: '5' }, persistence: 'LEASE', leaseMs: '100' } }, { replaceBegin: { seq: '3', electionId: { high: '1', low: '0' } } }, { replaceEnd: { seq: '4', electionId: null, expectGeneration: '9' } }]) {
      const bytes = generic.serialize(m);
      expect(plain(decodeModifyForNode(bytes))).toEqual(plain(generic.deserialize(bytes)));
    }
    // The oneof's last member wins, a batch before it or after it.
    const open = generic.serialize({ open: { controllerId: 'c' } });
    const batch = generic.serialize({ batch: { seq: '2', ops: [{ remove: { prefix: '/capability/a' } }] } });
    expect((decodeModifyForNode(Buffer.concat([batch, open])) as { request: string }).request).toBe('open');
    expect((decodeModifyForNode(Buffer.concat([open, batch])) as { batch: NodeBatch }).batch.ops).toEqual([{ op: 'remove', prefix: '/capability/a' }]);
  });

  it('refuses cut and corrupted batches with an Error, or reads one batch from them', () => {
    let read = 0;
    let refused = 0;
    fc.assert(fc.property(batches, fc.nat(), fc.uint8Array({ maxLength: 16 }), (list, at, junk) => {
      const bytes = generic.serialize({ batch: list[0] });
      const mangled = Buffer.concat([bytes.subarray(0, at % (bytes.length + 1)), Buffer.from(junk)]);
      try {
        const got = decodeModifyForNode(mangled);
        read++;
        expect(typeof got['request'] === 'string' || Object.keys(got).length === 0).toBe(true);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        refused++;
      }
    }), { numRuns: 1000 });
    expect(read).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });

  it('writes records of upserts and removes that read back in order', () => {
    const changes: [string, readonly ControllerHop[] | null][] = [
      ['/capability/a', [{ id: 'peer:gw-1', weight: 0, priority: 2, tags: ['t'] }, { id: 'svc', endpoint: 'http://127.0.0.1:1/' }]],
      ['/capability/b', null],
    ];
    expect(plain(recordOps(encodeRecord(changes)))).toEqual([
      { op: 'upsert', prefix: '/capability/a', nextHops: [{ id: 'peer:gw-1', weight: 0, priority: 2, tags: ['t'] }, { id: 'svc', priority: 0, tags: [], endpoint: 'http://127.0.0.1:1/' }] },
      { op: 'remove', prefix: '/capability/b' },
    ]);
  });
});

describe("FibClient's encoding of batches", () => {
  const name = fc.oneof(fc.string({ maxLength: 200 }), fc.constantFrom('/capability/é/☃', 'x'.repeat(127), 'y'.repeat(128), ''));
  const clientHop = fc.record({
    id: name, weight: fc.integer({ min: 0, max: 70_000 }), priority: fc.integer({ min: 0, max: 70_000 }), tags: fc.array(name, { maxLength: 3 }), endpoint: name,
  }, { requiredKeys: ['id'] });
  const clientOp = fc.oneof(
    fc.record({ op: fc.constant('upsert' as const), prefix: name, nextHops: fc.array(clientHop, { maxLength: 4 }) }),
    fc.record({ op: fc.constant('remove' as const), prefix: name }),
    fc.record({ op: fc.constant('health' as const), nextHopId: name, state: fc.constantFrom('up' as const, 'degraded' as const, 'down' as const), load: fc.double({ min: 0, max: 1, noNaN: true }) }, { requiredKeys: ['op', 'nextHopId', 'state'] }),
  );
  // The ops in the wire's shape, as the generic codec takes them.
  const wire = (o: any) => o.op === 'upsert' ? { upsert: { prefix: o.prefix, nextHops: o.nextHops.map((h: any) => ({ ...h, tags: h.tags ?? [] })) } }
    : o.op === 'remove' ? { remove: { prefix: o.prefix } } : { health: { nextHopId: o.nextHopId, state: o.state.toUpperCase(), load: o.load ?? 0 } };

  it('writes the bytes the generic codec reads as the same ops, and keeps each upsert by its prefix', () => {
    fc.assert(fc.property(fc.array(clientOp, { maxLength: 8 }), (ops) => {
      const e = encodeOps(ops, 'ops', true);
      const ours = generic.deserialize(encodeModifyRequest({ batch: { seq: '9', opsBytes: e.bytes } })) as any;
      const theirs = generic.deserialize(generic.serialize({ batch: { seq: '9', ops: ops.map(wire) } })) as any;
      expect(plain(ours)).toEqual(plain(theirs));
      expect(e.count).toBe(ops.length);
      const changes = ops.filter((o) => o.op !== 'health');
      const { starts, ends } = e.changes;
      expect(ends.map((end) => end >= 0)).toEqual(changes.map((o) => o.op === 'upsert'));
      // Each change starts a whole op; an upsert's kept bytes are exactly that op, which
      // sent again reads as that upsert.
      for (let i = 0; i < starts.length; i++) {
        const from = (decodeModifyForNode(encodeModifyRequest({ batch: { seq: '1', opsBytes: e.held.subarray(starts[i]) } })) as { batch: NodeBatch }).batch.ops;
        expect(from[0]).toMatchObject({ op: changes[i]!.op, prefix: changes[i]!.prefix });
        if (ends[i]! < 0) continue;
        const again = (decodeModifyForNode(encodeModifyRequest({ batch: { seq: '1', opsBytes: e.held.subarray(starts[i], ends[i]) } })) as { batch: NodeBatch }).batch.ops;
        expect(again).toHaveLength(1);
        expect((again[0] as { prefix: string }).prefix).toBe(changes[i]!.prefix);
      }
    }), { numRuns: 300 });
  });

  it('sends a list of next hops shared by upserts once a batch, as a group they name, and keeps every upsert inline', () => {
    // Upserts that share a few arrays of next hops (by identity), among other ops.
    const shared = fc.array(fc.array(clientHop, { maxLength: 4 }), { minLength: 1, maxLength: 3 }).chain((lists) => fc.array(fc.oneof(
      clientOp,
      fc.record({ op: fc.constant('upsert' as const), prefix: name, k: fc.nat() }).map(({ op, prefix, k }) => ({ op, prefix, nextHops: lists[k % lists.length]! })),
    ), { maxLength: 12 }));
    let grouped = 0;
    fc.assert(fc.property(shared, (ops) => {
      const e = encodeOps(ops, 'ops', true);
      const theirs = plain(generic.deserialize(generic.serialize({ batch: { seq: '9', ops: ops.map(wire) } })));
      // Kept: every upsert inline, as the ops read.
      expect(plain(generic.deserialize(encodeModifyRequest({ batch: { seq: '9', opsBytes: e.held } })))).toEqual(theirs);
      // Sent: the same ops once each upsert's group is put in its place.
      const sent = generic.deserialize(encodeModifyRequest({ batch: { seq: '9', opsBytes: e.bytes } })) as any;
      let here = 0;
      for (const o of sent.batch.ops) {
        if (o.upsert?._group !== 'group') continue;
        expect(o.upsert.nextHops).toEqual([]);
        o.upsert.nextHops = sent.batch.groups[o.upsert.group].nextHops;
        delete o.upsert.group;
        delete o.upsert._group;
        here++;
      }
      grouped += here;
      sent.batch.groups = [];
      expect(plain(sent)).toEqual(theirs);
      // And the node reads the two alike.
      const node = (bytes: Buffer) => (decodeModifyForNode(encodeModifyRequest({ batch: { seq: '9', opsBytes: bytes } })) as { batch: NodeBatch }).batch;
      expect(plain(node(e.bytes).ops)).toEqual(plain(node(e.held).ops));
      expect(node(e.bytes).bad).toEqual(node(e.held).bad);
      // Every upsert of a list met before in the batch names its group; the others are inline.
      const repeats = ops.filter((o, i) => o.op === 'upsert' && o.nextHops.length > 0 && ops.findIndex((p) => p.op === 'upsert' && p.nextHops === o.nextHops) < i).length;
      expect(here).toBe(repeats);
      if (repeats === 0) expect(e.bytes).toBe(e.held);
    }), { numRuns: 300 });
    expect(grouped).toBeGreaterThan(100);
  });

  it('sends a weight or priority that is no uint32 as one the node refuses by name, never as unreadable bytes', () => {
    for (const bad of [-1, 1.5, 2 ** 40, Number.NaN]) {
      const e = encodeOps([{ op: 'upsert', prefix: '/a', nextHops: [{ id: 'peer:a', weight: bad, priority: bad }] }], 'ops', false);
      const read = generic.deserialize(encodeModifyRequest({ batch: { seq: '1', opsBytes: e.bytes } })) as any;
      expect(read.batch.ops[0].upsert.nextHops[0]).toMatchObject({ weight: 0xffffffff, priority: 0xffffffff });
    }
  });

  it('names the op and the field that cannot be sent', () => {
    const bad: [unknown, RegExp][] = [
      [[{ op: 'upsert', prefix: '/a', nextHops: [{ id: 'x', colour: 'red' }] }], /ops\[0\]: nextHops\[0\] has unknown field 'colour'/],
      [[{ op: 'remove', prefix: '/a' }, { op: 'upsert', prefix: '/b', nextHops: [{ id: 7 }] }], /ops\[1\]: nextHops\[0\]\.id must be a string/],
      [[{ op: 'move', prefix: '/a' }], /ops\[0\]: op must be 'upsert', 'remove' or 'health'/],
      [[{ op: 'health', nextHopId: 'x', state: 'sideways' }], /ops\[0\]: state must be/],
      [[{ op: 'remove', prefix: '/a', nextHops: [] }], /unknown field 'nextHops' in a remove op/],
      ['not ops', /ops: a batch must be an array of ops/],
    ];
    for (const [ops, message] of bad) expect(() => encodeOps(ops, 'ops', false)).toThrow(message);
  });
});
