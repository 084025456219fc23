// AIC serials: handed out from blocks reserved durably in the store before use, so a
// serial is never given twice, even to a registration that was never acknowledged, and
// even after `kill -9`. A restart skips the rest of the last block (gaps are harmless;
// reuse is not). One durable write per block, not per registration.
import type { Store } from '../store/store.js';

const KEY = 'serial-reserved';

export class SerialAllocator {
  readonly #store: Store;
  readonly #block: number;
  #next: number;
  #ceiling: number;
  #reserving: Promise<void> | undefined;

  constructor(store: Store, block = 1024) {
    this.#store = store;
    this.#block = block;
    const reserved = store.db<number>('meta').get(KEY) ?? 0;
    this.#next = reserved + 1;
    this.#ceiling = reserved;
  }

  /** A serial no earlier call (in this process or any before it) returned. */
  async next(): Promise<number> {
    while (this.#next > this.#ceiling) {
      this.#reserving ??= this.#reserve().finally(() => {
        this.#reserving = undefined;
      });
      await this.#reserving;
    }
    return this.#next++;
  }

  async #reserve(): Promise<void> {
    const ceiling = this.#ceiling + this.#block;
    const meta = this.#store.db<number>('meta');
    await this.#store.durable(() => meta.put(KEY, ceiling));
    this.#ceiling = ceiling;
  }
}
