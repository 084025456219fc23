// The peering wire format: each frame is a 4-byte big-endian length, then that many bytes
// of msgpack (msgpackr) holding one message object with a string `type`. A frame longer
// than the session's maximum, a body that is not msgpack, or a message that is not an
// object with a type is an error for the session, which then closes; the decoder never
// buffers more than one maximum-size frame.
import { Packr, Unpackr } from 'msgpackr';
import { DmscRangeError, DmscTypeError } from '../errors.js';

export const DEFAULT_MAX_FRAME = 1 << 20;
const HEADER = 4;

/** Every peering message: a `type` and that type's fields. */
export interface Message {
  readonly type: string;
  readonly [field: string]: unknown;
}

// Plain maps and arrays only: records and structured clones would let a peer make us
// build objects of its choosing.
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** Peer data for a log line or message: strings as they are (cut), anything else by type. */
export function text(v: unknown, max = 200): string {
  return typeof v === 'string' ? v.slice(0, max) : typeof v === 'number' || typeof v === 'boolean' ? `${v}` : `(${v === null ? 'null' : typeof v})`;
}

/** One frame for `message`; throws ERR_DMSC_FRAME_TOO_LARGE past `maxFrame`. */
export function encodeFrame(message: Message, maxFrame = DEFAULT_MAX_FRAME): Buffer {
  const body = packr.pack(message);
  if (body.length > maxFrame) throw new DmscRangeError('ERR_DMSC_FRAME_TOO_LARGE', `a ${message.type} message of ${body.length} bytes exceeds the ${maxFrame}-byte frame limit`);
  const frame = Buffer.allocUnsafe(HEADER + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, HEADER);
  return frame;
}

/** Cuts a byte stream into messages. */
export class FrameDecoder {
  /** The largest frame taken; raised once a peering peer has authenticated. */
  limit: number;
  readonly #binary: boolean;
  #chunks: Buffer[] = [];
  #buffered = 0;

  /** With `binary`, byte strings are allowed in messages (A2ASP data); peering refuses them. */
  constructor(maxFrame = DEFAULT_MAX_FRAME, binary = false) {
    this.limit = maxFrame;
    this.#binary = binary;
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Adds bytes; returns the messages they complete. Throws on a bad or oversized frame. */
  push(chunk: Buffer): Message[] {
    this.feed(chunk);
    const out: Message[] = [];
    for (let m = this.next(); m; m = this.next()) out.push(m);
    return out;
  }

  /** Adds bytes without decoding them (take messages with `next`). */
  feed(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * The next whole message, or undefined until more bytes come. One at a time, so a
   * caller can raise `limit` between two frames (a peering peer proving itself, then
   * sending its first large frames in the same packet).
   * @throws ERR_DMSC_FRAME_TOO_LARGE or ERR_DMSC_MALFORMED_FRAME
   */
  next(): Message | undefined {
    if (this.#buffered < HEADER) return undefined;
    const length = this.#peek(HEADER).readUInt32BE(0);
    if (length > this.limit) throw new DmscRangeError('ERR_DMSC_FRAME_TOO_LARGE', `peer announced a ${length}-byte frame; the limit is ${this.limit}`);
    if (this.#buffered < HEADER + length) return undefined;
    const frame = this.#take(HEADER + length);
    return decodeMessage(frame.subarray(HEADER), this.#binary);
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0]!.length < n) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!.subarray(0, n);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const frame = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length ? [rest] : [];
    this.#buffered = rest.length;
    return frame;
  }
}

/** Packs one message (no length prefix): a WebSocket message carries one. */
export function packMessage(message: Message): Buffer {
  return packr.pack(message);
}

/** One message from msgpack bytes, checked as a frame body is. */
export function decodeMessage(body: Uint8Array, binary = false): Message {
  let value: unknown;
  try {
    value = unpackr.unpack(body);
  } catch (e) {
    throw new DmscTypeError('ERR_DMSC_MALFORMED_FRAME', `frame is not msgpack: ${(e as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as { type?: unknown }).type !== 'string') {
    throw new DmscTypeError('ERR_DMSC_MALFORMED_FRAME', 'a frame must hold a message object with a string type');
  }
  const problem = notPlain(value, 0, binary);
  if (problem) throw new DmscTypeError('ERR_DMSC_MALFORMED_FRAME', `a frame may hold only maps, arrays, strings, numbers, booleans and nil; found ${problem}`);
  return value as Message;
}

/** Nesting a message may have; ours need 4. */
const MAX_DEPTH = 16;

/**
 * What in `v` is not plain data, or null. msgpackr decodes its extension types (dates,
 * sets, regular expressions, errors, big integers, binary) whatever the options say; a
 * peer must not make us build those, so a frame holding one is refused.
 */
function notPlain(v: unknown, depth: number, binary: boolean): string | null {
  switch (typeof v) {
    case 'string':
    case 'boolean':
    case 'number':
      return null;
    case 'object': {
      if (v === null) return null;
      if (depth >= MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH}`;
      if (binary && v instanceof Uint8Array) return null;
      if (Array.isArray(v)) {
        for (const x of v) {
          const p = notPlain(x, depth + 1, binary);
          if (p) return p;
        }
        return null;
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return `a ${Object.prototype.toString.call(v).slice(8, -1)}`;
      for (const k in v) {
        const p = notPlain((v as Record<string, unknown>)[k], depth + 1, binary);
        if (p) return p;
      }
      return null;
    }
    default:
      return `a ${typeof v}`;
  }
}
