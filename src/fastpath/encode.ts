// Validates a batch and encodes it for the native core in chunks of flat arrays, through
// buffers reused from call to call: loading a million prefixes makes no per-hop garbage
// and no large allocation, and costs one N-API crossing per chunk. The checks are the ones
// ReferenceTable applies (validate.ts), but those of text are the core's (walkOps'
// deferText): an error from here or from the core may not be the batch's first problem,
// and the caller asks firstProblem for that. The layout is documented in
// native/core/batch.cpp.
import { DmscTypeError } from '../errors.js';
import type { FibOp, NextHop } from './types.js';
import { DEFAULT_WEIGHT, walkOps } from './validate.js';

const NO_TAGS: readonly string[] = [];

const CHUNK_WORDS = 1 << 16;
const CHUNK_BYTES = 1 << 18;

/** Receives each encoded chunk; the arrays are reused after it returns. */
export type ChunkSink = (bytes: Uint8Array, words: Uint32Array) => void;

export class BatchEncoder {
  #body = new Uint32Array(CHUNK_WORDS + 8192);
  #out = new Uint32Array(CHUNK_WORDS + 8192);
  #bytes = Buffer.allocUnsafe(CHUNK_BYTES + 8192);
  #n = 0;
  #off = 0;
  #ops = 0;
  // Each hop's id and tags go into the chunk's string tables as they come: the core
  // deduplicates them by content when it stages the chunk. Looking them up in a Map here
  // would make V8 internalize millions of strings, and that garbage cost more than the
  // bytes it saves.
  // Filled up to #ids and #tags and never emptied, from chunk to chunk and call to call:
  // an array emptied (length 0) gives its storage back, and growing it again for each
  // chunk allocated 150 MB for a million ops.
  #chunkIds: string[] = [];
  #chunkTags: string[] = [];
  #ids = 0;
  #tags = 0;
  /** Shared lists in this chunk: where their ids start in #chunkIds, and their tags in #chunkTags. */
  #lists = new Map<readonly NextHop[], { ids: number; tags: number }>();

  /**
   * Validates and encodes ops, passing full chunks to sink; returns the op count. A throw
   * (here or from the sink) may name a later problem than the batch's first.
   */
  encode(input: readonly FibOp[], sink: ChunkSink): number {
    this.#reset();
    const n = walkOps(input, {
      op: (_i, remove, prefix, hops) => {
        if (this.#n > CHUNK_WORDS || this.#off > CHUNK_BYTES) this.#flush(sink);
        this.#word(remove ? 1 : 0);
        this.#text(prefix);
        this.#word(hops);
        this.#ops++;
      },
      hop: (id, weight, priority, tags) => {
        this.#chunkIds[this.#ids] = id;
        this.#word(this.#ids++);
        this.#word(weight);
        this.#word(priority);
        this.#word(tags);
      },
      tag: (tag) => {
        this.#chunkTags[this.#tags] = tag;
        this.#word(this.#tags++);
      },
      // A list many entries share (a next-hop group): its ids and tags go into the chunk
      // once, however many entries name them.
      list: (list) => {
        let at = this.#lists.get(list);
        if (at === undefined) {
          at = { ids: this.#ids, tags: this.#tags };
          for (let h = 0; h < list.length; h++) {
            const hop = list[h]!;
            this.#chunkIds[this.#ids++] = hop.id;
            const tags = hop.tags ?? NO_TAGS;
            for (let t = 0; t < tags.length; t++) this.#chunkTags[this.#tags++] = tags[t]!;
          }
          this.#lists.set(list, at);
        }
        const base = at.ids;
        let tagBase = at.tags;
        for (let h = 0; h < list.length; h++) {
          const hop = list[h]!;
          const tags = hop.tags ?? NO_TAGS;
          this.#word(base + h);
          this.#word(hop.weight ?? DEFAULT_WEIGHT);
          this.#word(hop.priority ?? 0);
          this.#word(tags.length);
          for (let t = 0; t < tags.length; t++) this.#word(tagBase++);
        }
      },
    }, true);
    if (this.#ops > 0) this.#flush(sink);
    return n;
  }

  // An empty chunk. The string tables are reused, not replaced: a million-op batch flushes
  // hundreds of chunks, and a bulk load through the rib makes a call a batch.
  #reset(): void {
    this.#n = 0;
    this.#off = 0;
    this.#ops = 0;
    this.#ids = 0;
    this.#tags = 0;
    this.#lists.clear();
  }

  #word(v: number): void {
    if (this.#n === this.#body.length) {
      const next = new Uint32Array(this.#body.length * 2);
      next.set(this.#body);
      this.#body = next;
    }
    this.#body[this.#n++] = v;
  }

  /** Appends the UTF-8 of s to the chunk's bytes; returns its offset. */
  #put(s: string): number {
    if (this.#bytes.length - this.#off < s.length * 3) {
      const next = Buffer.allocUnsafe(Math.max(this.#bytes.length * 2, this.#off + s.length * 3));
      this.#bytes.copy(next, 0, 0, this.#off);
      this.#bytes = next;
    }
    const at = this.#off;
    const bytes = this.#bytes;
    // Names and ids are nearly always ASCII: copying them here beats a call into Buffer.
    let i = 0;
    const n = s.length;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) break;
      bytes[at + i] = c;
    }
    if (i === n) {
      this.#off = at + n;
      return at;
    }
    // UTF-8 would make U+FFFD of a lone surrogate, text the core would then accept.
    if (!s.isWellFormed()) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'text must be well-formed');
    this.#off = at + bytes.write(s, at, 'utf8');
    return at;
  }

  #text(s: string): void {
    const at = this.#put(s);
    this.#word(at);
    this.#word(this.#off - at);
  }

  // Puts the first `count` strings' bytes, and each one's (offset, length) into out from w;
  // returns where it ended.
  #putAll(strings: readonly string[], count: number, out: Uint32Array, w: number): number {
    for (let i = 0; i < count; i++) {
      const at = this.#put(strings[i]!);
      out[w++] = at;
      out[w++] = this.#off - at;
    }
    return w;
  }

  #flush(sink: ChunkSink): void {
    const ids = this.#ids;
    const tags = this.#tags;
    const header = 3 + 2 * ids + 2 * tags;
    if (this.#out.length < header + this.#n) this.#out = new Uint32Array(header + this.#n);
    const out = this.#out;
    out[0] = this.#ops;
    out[1] = ids;
    out[2] = tags;
    this.#putAll(this.#chunkTags, tags, out, this.#putAll(this.#chunkIds, ids, out, 3));
    out.set(this.#body.subarray(0, this.#n), header);
    sink(new Uint8Array(this.#bytes.buffer, this.#bytes.byteOffset, this.#off), out.subarray(0, header + this.#n));
    this.#reset();
  }
}
