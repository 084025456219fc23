// The Agent Management Center: providers and their scopes, gateway keys, credential
// issuance (EdDSA JWTs), key rotation and revocation. `LocalAmc` is the AMC itself, run
// embedded in a node or standalone by `dmsc amc`; `RemoteAmc` (remote-amc.ts) is how a
// node reaches a standalone one. Both implement `Amc`, which is all a gateway sees.
import { createHash, randomBytes } from 'node:crypto';
import type { JSONWebKeySet, JWK } from 'jose';
import { DmscError, DmscTypeError } from '../errors.js';
import { nameProblem } from '../fastpath/validate.js';
import { matchesAny, patternProblem } from '../policy/pattern.js';
import type { Store } from '../store/store.js';
import { parseAic, PROVIDER_NAME } from './aic.js';
import { KeyRing } from './key-ring.js';
import { signJwt } from './jwt.js';

export const CREDENTIAL_TYP = 'dmsc-credential+jwt';
/**
 * The AMC's word that a public key is a gateway's own key: claims `sub` (the gateway),
 * `dom` and `cnf.jwk`. A grant carries it, so an agent that knows only its AMC's keys
 * can check the grant offline; a peering handshake presents it with a signature over
 * that connection's transcript, so a peer knows the gateway at the other end.
 */
export const GRANT_KEY_TYP = 'dmsc-grant-key+jwt';
/**
 * An observer credential: read access to events and the audit log, within a scope
 * (`agents`: one provider's agents; `node`: everything at one node; `domain`: everything
 * at every node of the domain).
 */
export const OBSERVER_TYP = 'dmsc-observer+jwt';
export type ObserverScope = { scope: 'agents'; provider: string } | { scope: 'node'; node: string } | { scope: 'domain' };

export interface Denial {
  readonly capability: string;
  readonly reason: string;
}

export interface Authorization {
  readonly provider: string;
  readonly granted: string[];
  readonly denied: Denial[];
}

export interface Issued {
  readonly credential: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

/** What an AMC tells its gateways: revocations after `since`, and its current keys. */
export interface AmcUpdates {
  readonly domain: string;
  /** The gateway the caller's key belongs to. */
  readonly gateway: string;
  readonly seq: number;
  readonly revoked: { readonly aic: string; readonly until: number }[];
  readonly jwks: JSONWebKeySet;
}

export interface Amc {
  /** The trust domain; credentials carry it as `dom` and their issuer is `dmsc-amc:<domain>`. */
  readonly domain: string;
  readonly issuer: string;
  /** Checks the provider key and intersects the request with the provider's scope. */
  authorize(providerKey: string, gateway: string, capabilities: readonly string[]): Promise<Authorization>;
  /** Issues a credential binding the AIC, the granted scope and the issuing gateway. */
  issue(gateway: string, aic: string, provider: string, scope: readonly string[]): Promise<Issued>;
  revoke(aic: string, reason: string): Promise<void>;
  isRevoked(aic: string): boolean;
  /** Certifies `jwk` (an Ed25519 public key) as the key of `gateway` (grants, peering). */
  certifyGrantKey(gateway: string, jwk: JWK): Promise<Issued>;
  /** The keys credentials are verified with. */
  jwks(): JSONWebKeySet;
  /** Re-reads keys and revocations now (a remote AMC); resolves when done. */
  refresh(): Promise<void>;
  /** Called with the AICs revoked since the last call, and when keys change. */
  onChange(listener: (change: { revoked: string[]; keys: boolean }) => void): void;
  close(): Promise<void>;
}

export interface ProviderRecord {
  readonly name: string;
  readonly scopes: string[];
  readonly keyHash: string;
  readonly createdAt: number;
}

export interface GatewayRecord {
  readonly id: string;
  readonly keyHash: string;
  readonly createdAt: number;
}

interface RevocationRecord {
  readonly aic: string;
  readonly seq: number;
  readonly at: number;
  readonly until: number;
  readonly reason: string;
}

export interface AmcOptions {
  readonly domain: string;
  /** Credential lifetime in ms (default one hour). */
  readonly credentialTtlMs?: number;
}

export const DEFAULT_CREDENTIAL_TTL_MS = 3_600_000;
const MAX_SCOPES = 256;

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');
const newKey = (kind: string) => `dmsc_${kind}_${randomBytes(32).toString('base64url')}`;

/** Checks a provider definition; returns the scopes or throws ERR_DMSC_INVALID_ARGUMENT. */
export function checkProvider(name: unknown, scopes: unknown): string[] {
  if (typeof name !== 'string' || !PROVIDER_NAME.test(name)) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `provider name must be 1 to 63 letters, digits, '.', '_' or '-' starting with a letter or digit, got ${JSON.stringify(name)}`);
  }
  if (!Array.isArray(scopes) || scopes.length === 0 || scopes.length > MAX_SCOPES) {
    throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `a provider needs 1 to ${MAX_SCOPES} scope patterns`);
  }
  scopes.forEach((s, i) => {
    const p = patternProblem(s);
    if (p) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `scope[${i}] ${JSON.stringify(s)}: ${p}`);
  });
  return [...new Set(scopes as string[])];
}

/** An Ed25519 public JWK with a `kid`, reduced to its public members; else ERR_DMSC_INVALID_ARGUMENT. */
export function checkGrantKey(jwk: unknown): JWK {
  const k = (jwk ?? {}) as Record<string, unknown>;
  const ok = typeof jwk === 'object' && !Array.isArray(jwk) && k['kty'] === 'OKP' && k['crv'] === 'Ed25519' &&
    typeof k['x'] === 'string' && /^[A-Za-z0-9_-]{43}$/.test(k['x']) && typeof k['kid'] === 'string' && k['kid'].length > 0 && k['kid'].length <= 128 && k['d'] === undefined;
  if (!ok) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'a grant key must be an Ed25519 public JWK (kty OKP, crv Ed25519, x, kid) without private members');
  return { kty: 'OKP', crv: 'Ed25519', x: k['x'] as string, kid: k['kid'] as string, alg: 'EdDSA', use: 'sig' };
}

export class LocalAmc implements Amc {
  readonly domain: string;
  readonly issuer: string;
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #keys: KeyRing;
  readonly #providers = new Map<string, ProviderRecord>();
  readonly #byKeyHash = new Map<string, ProviderRecord>();
  readonly #gateways = new Map<string, GatewayRecord>();
  readonly #gatewayByKeyHash = new Map<string, string>();
  readonly #revoked = new Map<string, RevocationRecord>();
  readonly #listeners: ((c: { revoked: string[]; keys: boolean }) => void)[] = [];
  #seq = 0;
  /** Drops retired signing keys once their last credential has expired. */
  readonly #pruner: NodeJS.Timeout;
  /** Mutations run one at a time: each checks, writes durably, then updates memory. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(store: Store, keys: KeyRing, options: AmcOptions) {
    this.#store = store;
    this.#keys = keys;
    this.domain = options.domain;
    this.issuer = `dmsc-amc:${options.domain}`;
    this.#ttlMs = options.credentialTtlMs ?? DEFAULT_CREDENTIAL_TTL_MS;
    this.#pruner = setInterval(() => {
      void this.#serialized(async () => {
        if ((await this.#keys.prune()) > 0) this.#emit([], true);
      }).catch(() => {});
    }, Math.min(60_000, this.#ttlMs));
    this.#pruner.unref();
  }

  static async open(store: Store, options: AmcOptions): Promise<LocalAmc> {
    const ttl = options.credentialTtlMs ?? DEFAULT_CREDENTIAL_TTL_MS;
    // A minute of slack past the lifetime: expiry is rounded up to whole seconds.
    const amc = new LocalAmc(store, await KeyRing.open(store, 'amc-keys', 'amc', ttl + 60_000), options);
    for (const { value } of store.db<ProviderRecord>('providers').getRange()) amc.#addProvider(value);
    for (const { value } of store.db<GatewayRecord>('gateways').getRange()) amc.#addGateway(value);
    const now = Date.now();
    for (const { value } of store.db<RevocationRecord>('revocations').getRange()) {
      amc.#seq = Math.max(amc.#seq, value.seq);
      if (value.until > now) amc.#revoked.set(value.aic, value);
    }
    return amc;
  }

  get credentialTtlMs(): number {
    return this.#ttlMs;
  }

  // --- administration (admin token on the AMC's API) ---

  /** Adds a provider and returns its key, which is shown once: only its hash is kept. */
  addProvider(name: string, scopes: readonly string[]): Promise<{ name: string; scopes: string[]; key: string }> {
    const checked = checkProvider(name, scopes);
    return this.#serialized(async () => {
      if (this.#providers.has(name)) throw new DmscError('ERR_DMSC_CONFLICT', `provider '${name}' exists`);
      const key = newKey('pk');
      const record: ProviderRecord = { name, scopes: checked, keyHash: hashKey(key), createdAt: Date.now() };
      await this.#store.durable(() => this.#store.db<ProviderRecord>('providers').put(name, record));
      this.#addProvider(record);
      return { name, scopes: checked, key };
    });
  }

  providers(): { name: string; scopes: string[]; createdAt: number }[] {
    return [...this.#providers.values()].map(({ name, scopes, createdAt }) => ({ name, scopes, createdAt }));
  }

  /** Adds a gateway allowed to use this AMC over HTTP; returns its key once. */
  addGateway(id: string): Promise<{ id: string; key: string }> {
    if (!PROVIDER_NAME.test(id)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `gateway id must be 1 to 63 letters, digits, '.', '_' or '-', got ${JSON.stringify(id)}`);
    return this.#serialized(async () => {
      if (this.#gateways.has(id)) throw new DmscError('ERR_DMSC_CONFLICT', `gateway '${id}' exists`);
      const key = newKey('gk');
      const record: GatewayRecord = { id, keyHash: hashKey(key), createdAt: Date.now() };
      await this.#store.durable(() => this.#store.db<GatewayRecord>('gateways').put(id, record));
      this.#addGateway(record);
      return { id, key };
    });
  }

  /** The gateway a key belongs to, or undefined. */
  gatewayFor(key: string): string | undefined {
    return this.#gatewayByKeyHash.get(hashKey(key));
  }

  rotateKey(): Promise<string> {
    return this.#serialized(async () => {
      const kid = await this.#keys.rotate();
      this.#emit([], true);
      return kid;
    });
  }

  /** Revocations with a sequence number above `since`, and the current keys. */
  updates(since: number, gateway: string): AmcUpdates {
    const revoked = [...this.#revoked.values()].filter((r) => r.seq > since).map(({ aic, until }) => ({ aic, until }));
    return { domain: this.domain, gateway, seq: this.#seq, revoked, jwks: this.jwks() };
  }

  // --- Amc ---

  async authorize(providerKey: string, _gateway: string, capabilities: readonly string[]): Promise<Authorization> {
    const provider = this.#byKeyHash.get(hashKey(providerKey));
    if (!provider) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'unknown provider key');
    const granted: string[] = [];
    const denied: Denial[] = [];
    for (const c of capabilities) {
      const problem = nameProblem(c);
      if (problem) denied.push({ capability: c, reason: `invalid capability name: ${problem}` });
      else if (matchesAny(provider.scopes, c)) granted.push(c);
      else denied.push({ capability: c, reason: `outside the scope of provider '${provider.name}'` });
    }
    return { provider: provider.name, granted, denied };
  }

  async issue(gateway: string, aic: string, provider: string, scope: readonly string[]): Promise<Issued> {
    const p = this.#providers.get(provider);
    if (!p) throw new DmscError('ERR_DMSC_UNAUTHORIZED', `unknown provider '${provider}'`);
    if (parseAic(aic).provider !== provider) throw new DmscError('ERR_DMSC_FORBIDDEN', `AIC ${aic} does not belong to provider '${provider}'`);
    if (this.#revoked.has(aic)) throw new DmscError('ERR_DMSC_UNAUTHORIZED', `AIC ${aic} is revoked`);
    const outside = scope.find((c) => !matchesAny(p.scopes, c));
    if (outside !== undefined) throw new DmscError('ERR_DMSC_FORBIDDEN', `${outside} is outside the scope of provider '${provider}'`);
    // Rounded up: a credential lives at least its whole lifetime.
    const exp = Math.ceil((Date.now() + this.#ttlMs) / 1000);
    const credential = await signJwt(this.#keys.active, CREDENTIAL_TYP, {
      iss: this.issuer, sub: aic, exp, prv: provider, gw: gateway, dom: this.domain, scope: [...scope],
    });
    return { credential, expiresAt: exp * 1000 };
  }

  /** Issues an observer credential (`name` says who it is for; it lives `ttlMs`). */
  async issueObserver(name: string, scope: ObserverScope, ttlMs: number): Promise<Issued> {
    if (scope.scope === 'agents' && !this.#providers.has(scope.provider)) throw new DmscError('ERR_DMSC_NOT_FOUND', `unknown provider '${scope.provider}'`);
    const exp = Math.ceil((Date.now() + ttlMs) / 1000);
    const credential = await signJwt(this.#keys.active, OBSERVER_TYP, {
      iss: this.issuer, sub: name, exp, dom: this.domain, obs: scope.scope,
      ...(scope.scope === 'agents' ? { prv: scope.provider } : scope.scope === 'node' ? { gw: scope.node } : {}),
    });
    return { credential, expiresAt: exp * 1000 };
  }

  /**
   * Revokes every credential of an AIC. Revocations are numbered in the order they
   * become durable, so a gateway polling `updates(since)` never skips one; those whose
   * credentials have all expired are dropped on the way.
   */
  revoke(aic: string, reason: string): Promise<void> {
    return this.#serialized(async () => {
      if (this.#revoked.has(aic)) return;
      const at = Date.now();
      const record: RevocationRecord = { aic, seq: this.#seq + 1, at, until: at + this.#ttlMs + 60_000, reason };
      const expired = [...this.#revoked.values()].filter((r) => r.until < at);
      const db = this.#store.db<RevocationRecord>('revocations');
      await this.#store.durable(() => {
        db.put(aic, record);
        for (const r of expired) db.remove(r.aic);
      });
      for (const r of expired) this.#revoked.delete(r.aic);
      this.#seq = record.seq;
      this.#revoked.set(aic, record);
      this.#emit([aic], false);
    });
  }

  isRevoked(aic: string): boolean {
    return this.#revoked.has(aic);
  }

  async certifyGrantKey(gateway: string, jwk: JWK): Promise<Issued> {
    const key = checkGrantKey(jwk);
    const exp = Math.ceil((Date.now() + this.#ttlMs) / 1000);
    const certificate = await signJwt(this.#keys.active, GRANT_KEY_TYP, { iss: this.issuer, sub: gateway, dom: this.domain, cnf: { jwk: key }, exp });
    return { credential: certificate, expiresAt: exp * 1000 };
  }

  jwks(): JSONWebKeySet {
    return this.#keys.jwks();
  }

  async refresh(): Promise<void> {}

  onChange(listener: (change: { revoked: string[]; keys: boolean }) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.#pruner);
    this.#listeners.length = 0;
    await this.#queue;
  }

  #addProvider(p: ProviderRecord): void {
    this.#providers.set(p.name, p);
    this.#byKeyHash.set(p.keyHash, p);
  }

  #serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work);
    this.#queue = run.catch(() => {});
    return run;
  }

  #addGateway(g: GatewayRecord): void {
    this.#gateways.set(g.id, g);
    this.#gatewayByKeyHash.set(g.keyHash, g.id);
  }

  #emit(revoked: string[], keys: boolean): void {
    for (const l of this.#listeners) l({ revoked, keys });
  }
}
