// A set of signing keys kept in the store: one active key signs, retired keys stay in the
// published JWK set until every token they signed has expired, then they are dropped.
import type { JSONWebKeySet } from 'jose';
import type { Store } from '../store/store.js';
import { newSigningKey, signingKey, type SigningKey, type StoredKey } from './jwt.js';

export class KeyRing {
  readonly #store: Store;
  readonly #db: ReturnType<Store['db']>;
  readonly #prefix: string;
  /** The longest lifetime of a token signed by these keys, in ms. */
  readonly #maxLifetimeMs: number;
  #keys: StoredKey[] = [];
  #active!: SigningKey;
  #jwks: JSONWebKeySet = { keys: [] };

  private constructor(store: Store, dbName: string, prefix: string, maxLifetimeMs: number) {
    this.#store = store;
    this.#db = store.db<StoredKey>(dbName);
    this.#prefix = prefix;
    this.#maxLifetimeMs = maxLifetimeMs;
  }

  /** Loads the ring from `dbName`, creating its first key on first use. */
  static async open(store: Store, dbName: string, prefix: string, maxLifetimeMs: number): Promise<KeyRing> {
    const ring = new KeyRing(store, dbName, prefix, maxLifetimeMs);
    ring.#keys = [...ring.#db.getRange()].map((e) => e.value as StoredKey).sort((a, b) => a.createdAt - b.createdAt);
    if (!ring.#keys.some((k) => k.retiredAt === undefined)) await ring.rotate();
    else ring.#activate();
    await ring.prune();
    return ring;
  }

  get active(): SigningKey {
    return this.#active;
  }

  /** Public keys of every key that may still have live tokens. */
  jwks(): JSONWebKeySet {
    return this.#jwks;
  }

  /** Makes a new active key; the old one keeps verifying until its tokens expire. */
  async rotate(): Promise<string> {
    await this.prune();
    const now = Date.now();
    const fresh = newSigningKey(this.#prefix);
    const retired = this.#keys.filter((k) => k.retiredAt === undefined).map((k) => ({ ...k, retiredAt: now }));
    await this.#store.durable(() => {
      for (const k of retired) this.#db.put(k.kid, k);
      this.#db.put(fresh.kid, fresh);
    });
    this.#keys = [...this.#keys.filter((k) => k.retiredAt !== undefined), ...retired, fresh];
    this.#activate();
    return fresh.kid;
  }

  /** Drops retired keys whose last token has expired; returns how many. */
  async prune(now = Date.now()): Promise<number> {
    const gone = this.#keys.filter((k) => k.retiredAt !== undefined && k.retiredAt + this.#maxLifetimeMs < now);
    if (gone.length === 0) return 0;
    await this.#store.durable(() => {
      for (const k of gone) this.#db.remove(k.kid);
    });
    this.#keys = this.#keys.filter((k) => !gone.includes(k));
    this.#activate();
    return gone.length;
  }

  #activate(): void {
    const current = this.#keys.filter((k) => k.retiredAt === undefined).at(-1)!;
    this.#active = signingKey(current);
    this.#jwks = { keys: this.#keys.map((k) => (k === current ? this.#active : signingKey(k)).publicJwk) };
  }
}
