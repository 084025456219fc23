// The node's reading of batches (straight into the rib's ops, next-hop lists shared by
// their bytes) against the generic codec (protobufjs through proto-loader) followed by the
// plain conversion of its objects: same ops, same unreadable ops, whether a list is read
// for the first time or found again; and the journal's records read back as the batch.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeModifyForNode, encodeRecord, recordOps, sealed, type NodeBatch } from '../../src/programming/batch-codec.js';
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
  fc.record({ remove: fc.record({ prefix: text }) }),
  fc.record({ health: fc.record({ nextHopId: text, state: fc.constantFrom<string | number>('UP', 'DEGRADED', 'DOWN', 7), load: fc.double({ noNaN: true }) }) }),
  fc.constant({}),
);
const batches = hopLists.chain((lists) => fc.array(fc.record({
  seq: u64, electionId: fc.record({ high: u64, low: u64 }), expectGeneration: fc.option(u64, { nil: undefined }), ops: fc.array(opOf(lists), { maxLength: 8 }),
}, { requiredKeys: ['seq', 'electionId', 'ops'] }), { minLength: 1, maxLength: 4 }));

/** The plain conversion of the generic codec's ops: what the node's reading must equal. */
function reference(wire: any[]): { ops: ControllerOp[]; bad: OpError[] } {
  const ops: ControllerOp[] = [];
  const bad: OpError[] = [];
  wire.forEach((w, i) => {
    if (w.op === 'upsert') {
      const hops = w.upsert.nextHops.map((h: any) => ({ id: h.id, priority: h.priority, tags: h.tags, ...(h.weight !== undefined && h.weight !== null ? { weight: h.weight } : {}), ...(h.endpoint ? { endpoint: h.endpoint } : {}) }));
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
        const want = reference((generic.deserialize(bytes) as any).batch.ops);
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
    expect(sealed(lists[0]!)).toBe(true);
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
    // Lists built elsewhere are not taken for shared ones.
    expect(sealed(plain(lists[0]))).toBe(false);
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
