// The hand-written ModifyRequest codec against the generic one (protobufjs through
// proto-loader): any message either writes decodes the same through both, and bytes cut
// or corrupted are refused or read, never a crash or a hang.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeModifyRequest, encodeModifyRequest } from '../../src/programming/codec.js';
import { genericModifyCodec } from '../../src/programming/proto.js';

const generic = genericModifyCodec();
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String);
const u128 = fc.record({ high: u64, low: u64 });
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('/capability/ocr', '/capability/é/☃', 'peer:gw-1', ''));
const hop = fc.record({
  id: text, weight: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }), priority: fc.integer({ min: 0, max: 0xffffffff }),
  tags: fc.array(text, { maxLength: 4 }), endpoint: text,
}, { requiredKeys: ['id', 'priority', 'tags', 'endpoint'] });
const op = fc.oneof(
  fc.record({ upsert: fc.record({ prefix: text, nextHops: fc.array(hop, { maxLength: 5 }) }) }),
  fc.record({ remove: fc.record({ prefix: text }) }),
  fc.record({ health: fc.record({ nextHopId: text, state: fc.constantFrom('UP', 'DEGRADED', 'DOWN'), load: fc.double({ noNaN: true }) }) }),
);
const batchLike = (withOps: boolean) => fc.record({
  seq: u64, electionId: u128, expectGeneration: fc.option(u64, { nil: undefined }), ...(withOps ? { ops: fc.array(op, { maxLength: 8 }) } : {}),
}, { requiredKeys: ['seq', 'electionId', ...(withOps ? ['ops' as const] : [])] });
const request = fc.oneof(
  fc.record({ open: fc.record({ controllerId: text, electionId: u128, persistence: fc.constantFrom('PRESERVE', 'DELETE', 'LEASE'), leaseMs: u64 }) }),
  fc.record({ batch: batchLike(true) }),
  fc.record({ replaceBegin: batchLike(false) }),
  fc.record({ replaceEnd: batchLike(false) }),
);

// Key order is not part of a message.
const canonical = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1))) : x));

describe('ModifyRequest codec', () => {
  it('decodes what the generic codec writes as the generic codec does', () => {
    fc.assert(fc.property(request, (m) => {
      const bytes = generic.serialize(m);
      expect(canonical(decodeModifyRequest(bytes))).toBe(canonical(generic.deserialize(bytes)));
    }), { numRuns: 400 });
  });

  it('writes bytes the generic codec reads back as the message', () => {
    fc.assert(fc.property(request, (m) => {
      const ours = encodeModifyRequest(m);
      expect(canonical(generic.deserialize(ours))).toBe(canonical(generic.deserialize(generic.serialize(m))));
    }), { numRuns: 400 });
  });

  it('reads cut and corrupted bytes as the generic codec does, or refuses them with an Error', () => {
    let read = 0;
    fc.assert(fc.property(request, fc.nat(), fc.uint8Array({ maxLength: 16 }), (m, at, junk) => {
      const bytes = generic.serialize(m);
      const mangled = Buffer.concat([bytes.subarray(0, at % (bytes.length + 1)), Buffer.from(junk)]);
      let ours: unknown;
      try {
        ours = decodeModifyRequest(mangled);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        return;
      }
      read++;
      let theirs: unknown;
      try {
        theirs = generic.deserialize(mangled);
      } catch {
        return; // the generic codec is stricter about some junk (groups, field 0)
      }
      expect(canonical(ours)).toBe(canonical(theirs));
    }), { numRuns: 1000 });
    expect(read).toBeGreaterThan(0);
  });
});
