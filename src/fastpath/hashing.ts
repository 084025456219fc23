// Integer hashing for flow selection, identical bit for bit to native/core/flow_hash.hpp,
// and FNV-1a over byte ranges, with the compare that goes with it, for tables keyed by
// bytes. Only 32-bit integer operations and exact double arithmetic below 2^53 are used.
import { DmscRangeError, DmscTypeError } from '../errors.js';

const encoder = new TextEncoder();

/** FNV-1a over the UTF-8 bytes of a next-hop id. */
export function fnv1a32(text: string): number {
  const bytes = encoder.encode(text);
  return fnv1aBytes(bytes, 0, bytes.length);
}

/** FNV-1a over bytes[start, end). */
export function fnv1aBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

/** Whether a[ap, ap + n) and b[bp, bp + n) hold the same bytes (no call into Buffer: keys are short). */
export function sameBytes(a: Uint8Array, ap: number, b: Uint8Array, bp: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[ap + i] !== b[bp + i]) return false;
  return true;
}

export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function idMix(id: string): number {
  return fmix32((fnv1a32(id) ^ 0x9e3779b9) >>> 0);
}

export function flowDraw(flow: number, mix: number): number {
  return fmix32((flow ^ mix) >>> 0);
}

/** The 32-bit key of a flow: a uint32 as is, a string by FNV-1a over its UTF-16 code units. */
export function flowKey(flow: unknown): number {
  if (typeof flow === 'number') {
    if (!Number.isInteger(flow) || flow < 0 || flow > 0xffffffff) {
      throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `flow must be a string or an integer from 0 to 2^32-1, got ${flow}`);
    }
    return flow;
  }
  if (typeof flow !== 'string') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'flow must be a string or a number');
  let h = 0x811c9dc5;
  for (let i = 0; i < flow.length; i++) {
    const u = flow.charCodeAt(i);
    h = Math.imul(h ^ (u & 0xff), 0x01000193);
    h = Math.imul(h ^ (u >>> 8), 0x01000193);
  }
  return h >>> 0;
}

// frac[i] = floor(log2(1 + i/256) * 65536), by exact squaring in Q30 (BigInt: y*y < 2^62).
const LOG2_FRAC: Uint32Array = (() => {
  const t = new Uint32Array(257);
  for (let i = 0; i < 256; i++) {
    let y = BigInt(256 + i) << 22n;
    let f = 0;
    for (let bit = 15; bit >= 0; bit--) {
      y = (y * y) >> 30n;
      if (y >= 1n << 31n) {
        f |= 1 << bit;
        y >>= 1n;
      }
    }
    t[i] = f;
  }
  t[256] = 65536;
  return t;
})();

/** -log2(draw / 2^32) in Q16, in [1, 2^21]. */
export function neglog2q16(draw: number): number {
  const x = (draw | 1) >>> 0;
  const e = 31 - Math.clz32(x);
  const top = e >= 16 ? x >>> (e - 16) : (x << (16 - e)) >>> 0;
  const f16 = top - 65536;
  const idx = f16 >>> 8;
  const lo = f16 & 255;
  const a = LOG2_FRAC[idx]!;
  const frac = a + (((LOG2_FRAC[idx + 1]! - a) * lo) >>> 8);
  return (32 << 16) - (e * 65536 + frac);
}
