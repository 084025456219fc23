// The hand-written ModifyRequest codec against the generic one (protobufjs through
// proto-loader): any message either writes decodes the same through both; bytes cut or
// corrupted are refused or read as one request, never a crash or a hang, and a field can
// never reach past the message that holds it.
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
  fc.record({ upsert: fc.record({ prefix: text, nextHops: fc.array(hop, { maxLength: 1 }), group: fc.integer({ min: 0, max: 0xffffffff }) }) }),
  fc.record({ remove: fc.record({ prefix: text }) }),
  fc.record({ health: fc.record({ nextHopId: text, state: fc.constantFrom('UP', 'DEGRADED', 'DOWN'), load: fc.double({ noNaN: true }) }) }),
);
const batchLike = (withOps: boolean) => fc.record({
  seq: u64, electionId: u128, expectGeneration: fc.option(u64, { nil: undefined }), ...(withOps ? { ops: fc.array(op, { maxLength: 8 }), groups: fc.array(fc.record({ nextHops: fc.array(hop, { maxLength: 3 }) }), { maxLength: 3 }) } : {}),
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

  it('refuses cut and corrupted bytes with an Error, or reads one request from them', () => {
    // No comparison with the generic codec here: on bytes that overrun a nested message it
    // reads past the message's end (and can keep two members of a oneof), where this one
    // refuses.
    let read = 0;
    let refused = 0;
    fc.assert(fc.property(request, fc.nat(), fc.uint8Array({ maxLength: 16 }), (m, at, junk) => {
      const bytes = generic.serialize(m);
      const mangled = Buffer.concat([bytes.subarray(0, at % (bytes.length + 1)), Buffer.from(junk)]);
      let ours: Record<string, unknown>;
      try {
        ours = decodeModifyRequest(mangled);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        refused++;
        return;
      }
      read++;
      const kinds = Object.keys(ours).filter((k) => k !== 'request');
      expect(kinds.length).toBeLessThanOrEqual(1);
      if (kinds.length) expect(ours['request']).toBe(kinds[0]);
    }), { numRuns: 1000 });
    expect(read).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });

  it('refuses a field that runs past its enclosing message having read only its first bytes, however large the message', () => {
    // A next hop two bytes long whose tag claims the rest of a large batch: read from the
    // whole buffer, each hop would decode megabytes again.
    const big = Buffer.alloc(600_000, 0x61);
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
      out.push(n);
      return Buffer.from(out);
    };
    const hop = Buffer.concat([Buffer.from([0x22]), varint(big.length)]);
    const hops = Buffer.concat(Array.from({ length: 100 }, () => Buffer.concat([Buffer.from([0x12]), varint(hop.length), hop])));
    const upsert = Buffer.concat([Buffer.from([0x0a]), varint(hops.length), hops, big]);
    const batch = Buffer.concat([Buffer.from([0x22]), varint(upsert.length), upsert]);
    const request = Buffer.concat([Buffer.from([0x12]), varint(batch.length), batch]);
    // The bytes the decoder reads, counted (not timed): refused at the first next hop, it
    // reads a few dozen; decoding each hop against the whole buffer reads megabytes, and
    // is stopped at a million. Only the reads counted here are allowed: any other way
    // into the bytes (subarray, copy, another read method) fails the test rather than
    // going uncounted.
    let reads = 0;
    const read = (n: number) => {
      if ((reads += n) > 1_000_000) throw new Error('read a million bytes');
    };
    const counted = new Proxy(request, {
      get(target, key) {
        if (typeof key === 'string' && /^\d+$/.test(key)) {
          read(1);
          return target[Number(key)];
        }
        if (key === 'length') return target.length;
        if (key === 'toString') {
          return (encoding: BufferEncoding, start = 0, end = target.length) => {
            read(end - start);
            return target.toString(encoding, start, end);
          };
        }
        if (key === 'readDoubleLE') {
          return (at: number) => {
            read(8);
            return target.readDoubleLE(at);
          };
        }
        throw new Error(`the decoder read the buffer through ${String(key)}, which this test does not count`);
      },
    });
    expect(() => decodeModifyRequest(counted)).toThrow(/past its message|inside a field/);
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThan(100);
  });
});
