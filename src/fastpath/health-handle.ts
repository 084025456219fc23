// Health set from JavaScript without crossing into native code. A next hop's health is one
// 32-bit word in memory of the table's own (native/core/registry.hpp: state in bits 0-1,
// load in 1e-4 units above it) that lookups on every thread read; a handle keeps the
// word's place and writes it with Atomics. The place holds while the table's id epoch is
// unchanged: the epoch moves whenever an id is forgotten or its index given to another,
// and the handle then asks the table again where its id is.
import { DmscError, dmscError } from '../errors.js';
import type { Health, HealthHandle } from './types.js';
import { checkId, KEEP_LOAD, KEEP_STATE, packHealth } from './validate.js';

/** Next hops per block of health words (NextHopRegistry::kChunkSize). */
const CHUNK_BITS = 12;
const CHUNK = 1 << CHUNK_BITS;

/** What a table shares with its handles: its health words, its epoch, and whether it is open. */
export interface HealthMemory {
  /** The table's id epoch, as two 32-bit words. */
  readonly epoch: Uint32Array;
  /** The health words of block `c`, or undefined before that block exists. */
  block(c: number): Int32Array | undefined;
  /** The index of an id some entry references, or -1. */
  indexOf(id: string): number;
  /** Set when the table closes; handles then throw ERR_DMSC_CLOSED. */
  closed: boolean;
}

/** Makes a table's HealthMemory from its native accessors; blocks are made once and kept. */
export function healthMemory(native: {
  epochWords(): ArrayBuffer;
  healthWords(chunk: number): ArrayBuffer | undefined;
  indexOf(id: string): number;
}): HealthMemory {
  const blocks: Int32Array[] = [];
  const epoch = new Uint32Array(native.epochWords());
  return {
    epoch,
    block(c) {
      let b = blocks[c];
      if (b === undefined) {
        const buf = native.healthWords(c);
        if (buf === undefined) return undefined;
        if (buf.byteLength !== CHUNK * 4) throw dmscError('ERR_DMSC_INTERNAL', `a block of health words has ${buf.byteLength} bytes, not ${CHUNK * 4}`);
        blocks[c] = b = new Int32Array(buf);
      }
      return b;
    },
    indexOf: (id) => native.indexOf(id),
    closed: false,
  };
}

export class NativeHealthHandle implements HealthHandle {
  readonly id: string;
  readonly #memory: HealthMemory;
  #words: Int32Array | undefined;
  #slot = 0;
  // The epoch the place was found at; -1 never matches.
  #lo = -1;
  #hi = -1;

  constructor(id: string, memory: HealthMemory) {
    this.id = checkId(id);
    this.#memory = memory;
  }

  setHealth(health: Health): boolean {
    if (this.#memory.closed) throw new DmscError('ERR_DMSC_CLOSED', 'the forwarding table is closed');
    const update = packHealth(health);
    const epoch = this.#memory.epoch;
    if (epoch[0] !== this.#lo || epoch[1] !== this.#hi) this.#find();
    const words = this.#words;
    if (words === undefined) return false;
    const state = update & 3;
    const loadQ = update >>> 2;
    // Threads serving lookups may mark the next hop down meanwhile (a failed request):
    // the update is made on the word as it is, so that only what was asked changes.
    // A plain read suffices for the guess: the exchange checks it.
    const slot = this.#slot;
    let cur = words[slot]!;
    for (;;) {
      const next = (state === KEEP_STATE ? cur & 3 : state) | ((loadQ === KEEP_LOAD ? cur >>> 2 : loadQ) << 2);
      const seen = Atomics.compareExchange(words, slot, cur, next);
      if (seen === cur) return true;
      cur = seen;
    }
  }

  #find(): void {
    const index = this.#memory.indexOf(this.id);
    // An id's arrival does not move the epoch: absence is asked again every time.
    this.#lo = index < 0 ? -1 : this.#memory.epoch[0]!;
    this.#hi = index < 0 ? -1 : this.#memory.epoch[1]!;
    this.#words = index < 0 ? undefined : this.#memory.block(index >>> CHUNK_BITS);
    this.#slot = index & (CHUNK - 1);
    if (index >= 0 && this.#words === undefined) throw new DmscError('ERR_DMSC_INTERNAL', `next hop ${this.id} has index ${index} but no health block`);
  }
}
