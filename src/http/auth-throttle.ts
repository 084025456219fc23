// What failed authentication costs a source. Each source (an IPv4 address, or an IPv6
// /64) has a bucket of failures: `burst` of them, refilled at `perSecond`. A source whose
// bucket is empty is throttled until a failure's worth has come back: its requests that
// carry a credential not already known good are answered 429 with `retry-after`, and
// not at once: the answer is held for up to a second first, so a flood on kept-alive
// connections makes one request a second per connection instead of thousands, and
// legitimate traffic keeps the event loop. Past `maxHeld` held answers from one source,
// its further requests are refused at once and their connection closed.
//
// Sources are kept in a bounded LRU: a flood from many addresses cannot grow it.
import { LRUCache } from 'lru-cache';
import { sourceOf } from '../net/source.js';

export interface AuthThrottleOptions {
  /** Failures a source may make in a row (default 20). */
  readonly burst?: number;
  /** Failures a second a source earns back (default 5). */
  readonly perSecond?: number;
  /** Held answers per source before it is refused at once (default 64). */
  readonly maxHeld?: number;
  /** Sources remembered (default 100,000). */
  readonly maxSources?: number;
}

interface Bucket {
  tokens: number;
  at: number;
  held: number;
}

export const DEFAULT_AUTH_BURST = 20;
export const DEFAULT_AUTH_PER_SECOND = 5;
/** The longest an answer to a throttled source is held. */
const HOLD_MS = 1000;

/** What a throttled source is told: wait `retryAfterS`, after the answer is held `holdMs` (0: refuse at once and close). */
export interface Throttled {
  readonly retryAfterS: number;
  readonly holdMs: number;
}

export class AuthThrottle {
  readonly burst: number;
  readonly perSecond: number;
  readonly #maxHeld: number;
  readonly #buckets: LRUCache<string, Bucket>;
  /** Failed authentications counted, and checks that found their source throttled. */
  readonly stats = { failures: 0, throttled: 0 };

  constructor(options: AuthThrottleOptions = {}) {
    this.burst = options.burst ?? DEFAULT_AUTH_BURST;
    this.perSecond = options.perSecond ?? DEFAULT_AUTH_PER_SECOND;
    this.#maxHeld = options.maxHeld ?? 64;
    this.#buckets = new LRUCache({ max: options.maxSources ?? 100_000 });
  }

  /** The source an address belongs to: IPv4 as it is, IPv6 by its /64. */
  static sourceOf(address: string | undefined): string {
    return sourceOf(address);
  }

  /** A failed authentication from `source`. */
  failed(source: string, now = Date.now()): void {
    this.stats.failures++;
    const b = this.#refill(source, now);
    b.tokens = Math.max(0, b.tokens - 1);
    this.#buckets.set(source, b);
  }

  /** Whether `source` is throttled now, and if so what to tell it. */
  check(source: string, now = Date.now()): Throttled | undefined {
    const b = this.#buckets.get(source);
    if (!b) return undefined;
    this.#refill(source, now);
    if (b.tokens >= 1) return undefined;
    this.stats.throttled++;
    const waitMs = ((1 - b.tokens) / this.perSecond) * 1000;
    return { retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)), holdMs: b.held < this.#maxHeld ? Math.min(HOLD_MS, Math.max(waitMs, 100)) : 0 };
  }

  /** An answer to `source` is being held; call the returned function when it is sent. */
  hold(source: string): () => void {
    const b = this.#buckets.get(source);
    if (!b) return () => {};
    b.held++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      b.held--;
    };
  }

  #refill(source: string, now: number): Bucket {
    let b = this.#buckets.get(source);
    if (!b) {
      b = { tokens: this.burst, at: now, held: 0 };
      return b;
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    return b;
  }
}
