// Encodes a validated batch for the native core in two flat arrays, so that loading a
// million prefixes costs two N-API calls' worth of crossings instead of millions of
// property reads. The layout is documented in native/core/batch.cpp.
import type { NormalizedOp } from './validate.js';

export interface EncodedBatch {
  readonly bytes: Uint8Array;
  readonly words: Uint32Array;
}

export function encodeBatch(ops: readonly NormalizedOp[]): EncodedBatch {
  const ids = new Map<string, number>();
  const tags = new Map<string, number>();
  let opWords = 0;
  let bound = 0;
  for (const op of ops) {
    bound += op.prefix.length * 3;
    opWords += 4;
    for (const h of op.hops) {
      opWords += 4 + h.tags.length;
      if (!ids.has(h.id)) {
        ids.set(h.id, ids.size);
        bound += h.id.length * 3;
      }
      for (const t of h.tags) {
        if (!tags.has(t)) {
          tags.set(t, tags.size);
          bound += t.length * 3;
        }
      }
    }
  }
  const buf = Buffer.allocUnsafe(bound);
  const words = new Uint32Array(3 + 2 * ids.size + 2 * tags.size + opWords);
  words[0] = ops.length;
  words[1] = ids.size;
  words[2] = tags.size;
  let w = 3;
  let off = 0;
  const put = (s: string): void => {
    const n = buf.write(s, off, 'utf8');
    words[w++] = off;
    words[w++] = n;
    off += n;
  };
  for (const id of ids.keys()) put(id);
  for (const t of tags.keys()) put(t);
  for (const op of ops) {
    words[w++] = op.remove ? 1 : 0;
    put(op.prefix);
    words[w++] = op.hops.length;
    for (const h of op.hops) {
      words[w++] = ids.get(h.id)!;
      words[w++] = h.weight;
      words[w++] = h.priority;
      words[w++] = h.tags.length;
      for (const t of h.tags) words[w++] = tags.get(t)!;
    }
  }
  return { bytes: new Uint8Array(buf.buffer, buf.byteOffset, off), words };
}
