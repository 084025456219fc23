import { DmscTypeError } from '../errors.js';
import type { PackedNames } from './types.js';

/**
 * Encodes names as one UTF-8 buffer and n + 1 offsets, the form `lookupPacked` takes
 * (and the form a forwarder already holds when names arrive from the wire).
 */
export function packNames(names: readonly string[]): PackedNames {
  if (!Array.isArray(names)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'names must be an array of strings');
  let bound = 0;
  for (let i = 0; i < names.length; i++) {
    const s = names[i];
    if (typeof s !== 'string') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `names[${i}] must be a string`);
    // A lone surrogate has no UTF-8 form: encoding it would route U+FFFD instead.
    if (!s.isWellFormed()) throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `names[${i}] is not well-formed text`);
    bound += s.length * 3;
  }
  const buf = Buffer.allocUnsafe(bound);
  const offsets = new Uint32Array(names.length + 1);
  let off = 0;
  for (let i = 0; i < names.length; i++) {
    off += buf.write(names[i]!, off, 'utf8');
    offsets[i + 1] = off;
  }
  return { bytes: new Uint8Array(buf.buffer, buf.byteOffset, off), offsets };
}
