// What the target agent of an A2ASP session checks before it accepts (MACP §5.5): the
// session grant a gateway signed on resolution, and the initiator's credential. The grant
// carries the AMC's certificate of the signing gateway's key (`gwc`), so the target needs
// only its AMC's published keys; it accepts a grant that
//   - is signed by a gateway key its AMC certified,
//   - names it as the target (`aud`) and the initiator as the subject (`sub`),
//   - is for the very name asked for (the one the gateway's policy decided on),
//   - has not expired, and
//   - has never been presented before (its `jti` is kept until the grant expires).
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWK } from 'jose';
import { LRUCache } from 'lru-cache';
import { DmscError, type DmscErrorCode } from '../errors.js';
import { CREDENTIAL_TYP, GRANT_KEY_TYP, checkGrantKey } from '../identity/amc.js';
import { GRANT_TYP } from '../directory/gateway.js';
import { JwtVerifier, peekClaim, peekKid } from '../identity/jwt.js';

/** The AMC an agent trusts: its issuer name and its current public keys. */
export interface TrustedAmc {
  issuer(): string;
  /** The keys: the same object for as long as they stay the same. */
  keys(): JSONWebKeySet;
  /** Fetches the keys again (a key made since the last fetch); optional. */
  refresh?(): Promise<void>;
}

export interface VerifiedGrant {
  /** The initiator's AIC (`<domain>/<aic>` for an agent of another trust domain). */
  readonly initiator: string;
  /** The gateway that signed the grant. */
  readonly gateway: string;
  readonly capability: string;
  readonly jti: string;
  /** Epoch ms. */
  readonly expiresAt: number;
}

const MAX_GRANT = 16_384;
const MAX_CREDENTIAL = 8192;

export class GrantVerifier {
  readonly #self: () => string | undefined;
  readonly #amc: TrustedAmc;
  readonly #verifier: JwtVerifier;
  /** The key set the verifier and the caches below were made under. */
  #keys: JSONWebKeySet | undefined;
  /** jti -> expiry (epoch ms) of every grant accepted and not yet expired. */
  readonly #seen = new Map<string, number>();
  readonly #maxSeen: number;
  #lastRefresh = 0;
  /**
   * What was checked before, until it expires or the AMC's keys change: every grant of a
   * gateway carries the same certificate, and an initiator opens many sessions with one
   * credential, so a session costs one signature check, not three.
   */
  readonly #certs = new LRUCache<string, { gateway: string; keys: ReturnType<typeof createLocalJWKSet> }>({ max: 256, ttlAutopurge: false });
  readonly #credentials = new LRUCache<string, string>({ max: 10_000, ttlAutopurge: false });

  /** `self` is the target's own AIC (it changes when the agent registers again). */
  constructor(self: () => string | undefined, amc: TrustedAmc, options: { maxSeen?: number } = {}) {
    this.#self = self;
    this.#amc = amc;
    this.#verifier = new JwtVerifier();
    this.#maxSeen = options.maxSeen ?? 100_000;
  }

  /** Grants remembered against replay. */
  get remembered(): number {
    return this.#seen.size;
  }

  /**
   * Checks a SESSION_INIT's grant, credential and capability; remembers the grant.
   * @throws ERR_DMSC_GRANT_INVALID, _EXPIRED, _WRONG_TARGET or _REPLAYED.
   */
  async verify(grant: unknown, credential: unknown, capability: unknown): Promise<VerifiedGrant> {
    const invalid = (why: string, code: DmscErrorCode = 'ERR_DMSC_GRANT_INVALID') => new DmscError(code, `grant rejected: ${why}`);
    if (typeof grant !== 'string' || grant.length === 0 || grant.length > MAX_GRANT) throw invalid('missing or too long');
    if (typeof credential !== 'string' || credential.length === 0 || credential.length > MAX_CREDENTIAL) throw invalid('the initiator credential is missing or too long');
    if (typeof capability !== 'string' || capability.length === 0 || capability.length > 1024) throw invalid('no capability named');
    const self = this.#self();
    if (self === undefined) throw invalid('this agent is not registered');
    // Once per check: the caches below hold only what the current keys verified.
    this.#syncKeys();

    // The gateway's key, as the AMC certified it.
    const cert = peekClaim(grant, 'gwc');
    if (typeof cert !== 'string') throw invalid('it carries no gateway key certificate');
    const { gateway, keys } = await this.#certified(cert, invalid);

    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await jwtVerify(grant, keys, { algorithms: ['EdDSA'], typ: GRANT_TYP, issuer: `dmsc-gw:${gateway}` }));
    } catch (e) {
      if (e instanceof joseErrors.JWTExpired) throw invalid('expired', 'ERR_DMSC_GRANT_EXPIRED');
      if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWSSignatureVerificationFailed) throw invalid(`not signed by the key of gateway ${gateway}`);
      throw invalid(e instanceof joseErrors.JWTClaimValidationFailed ? `claim '${e.claim}' ${e.reason}` : 'malformed');
    }
    const { sub, aud, cap, req, jti, exp } = claims;
    if (typeof sub !== 'string' || typeof cap !== 'string' || typeof jti !== 'string' || typeof exp !== 'number') throw invalid('claims missing');
    if (aud !== self) throw invalid(`it names ${typeof aud === 'string' ? aud : 'no one'} as the target, not ${self}`, 'ERR_DMSC_GRANT_WRONG_TARGET');
    // The name the gateway's policy decided on, and no other: a name below the matched
    // prefix may be one the policy treats otherwise.
    if (capability !== req) throw invalid(`it is for ${typeof req === 'string' ? req : cap}, not ${capability}`);
    await this.#checkInitiator(sub, credential, invalid);

    const now = Date.now();
    if (this.#seen.has(jti)) throw invalid(`grant ${jti} was presented before`, 'ERR_DMSC_GRANT_REPLAYED');
    if (this.#seen.size >= this.#maxSeen) {
      for (const [id, until] of this.#seen) if (until <= now) this.#seen.delete(id);
      // Forgetting an unexpired grant would let it be replayed: refuse instead.
      if (this.#seen.size >= this.#maxSeen) throw new DmscError('ERR_DMSC_BUSY', `${this.#maxSeen} unexpired grants are remembered; try again when some expire`);
    }
    this.#seen.set(jti, exp * 1000);
    return { initiator: sub, gateway, capability, jti, expiresAt: exp * 1000 };
  }

  /** Forgets expired grants (also done when the store fills). */
  prune(now = Date.now()): void {
    for (const [id, until] of this.#seen) if (until <= now) this.#seen.delete(id);
  }

  async #certified(cert: string, invalid: (why: string) => DmscError): Promise<{ gateway: string; keys: ReturnType<typeof createLocalJWKSet> }> {
    const known = this.#certs.get(cert);
    if (known) return known;
    const certified = await this.#amcVerify(cert, GRANT_KEY_TYP).catch((e: Error) => {
      throw invalid(`its gateway key is not certified by this agent's AMC (${e.message.replace(/^credential rejected: /, '')})`);
    });
    const gateway = certified['sub'];
    let jwk: JWK;
    try {
      jwk = checkGrantKey((certified['cnf'] as { jwk?: unknown } | undefined)?.jwk);
    } catch {
      throw invalid('its gateway key certificate holds no usable key');
    }
    if (typeof gateway !== 'string') throw invalid('its gateway key certificate names no gateway');
    const entry = { gateway, keys: createLocalJWKSet({ keys: [jwk] }) };
    this.#certs.set(cert, entry, { ttl: Math.max(1, (certified['exp'] as number) * 1000 - Date.now()) });
    return entry;
  }

  // The credential must be the initiator's own, from the same AMC. An agent of another
  // trust domain (`<domain>/<aic>` in the grant) cannot be checked here: its gateway
  // checked its credential under the mesh's trust before signing the grant, and the
  // credential must at least claim the identity the grant names.
  async #checkInitiator(sub: string, credential: string, invalid: (why: string) => DmscError): Promise<void> {
    const slash = sub.indexOf('/');
    if (slash > 0) {
      const dom = peekClaim(credential, 'dom');
      const aic = peekClaim(credential, 'sub');
      if (`${String(dom)}/${String(aic)}` !== sub) throw invalid(`the credential is not that of ${sub}, the grant's initiator`);
      return;
    }
    let aic = this.#credentials.get(credential);
    if (aic === undefined) {
      const c = await this.#amcVerify(credential, CREDENTIAL_TYP).catch((e: Error) => {
        throw invalid(`the initiator credential is not valid (${e.message.replace(/^credential rejected: /, '')})`);
      });
      aic = String(c['sub']);
      this.#credentials.set(credential, aic, { ttl: Math.max(1, (c['exp'] as number) * 1000 - Date.now()) });
    }
    if (aic !== sub) throw invalid(`the credential is not that of ${sub}, the grant's initiator`);
  }

  // A token the AMC signed; an unknown kid makes one refresh of the keys (at most one a
  // second), for a key rotated in since the last fetch.
  async #amcVerify(token: string, typ: string): Promise<Record<string, unknown>> {
    const kid = peekKid(token);
    if (kid && !this.#verifier.knows(kid) && this.#amc.refresh && Date.now() - this.#lastRefresh > 1000) {
      this.#lastRefresh = Date.now();
      await this.#amc.refresh().catch(() => {});
      this.#syncKeys();
    }
    return (await this.#verifier.verify(token, typ, this.#amc.issuer())) as Record<string, unknown>;
  }

  #syncKeys(): void {
    const keys = this.#amc.keys();
    if (keys !== this.#keys) {
      this.#verifier.setKeys(keys);
      this.#keys = keys;
      // Checked under the keys before: check again.
      this.#certs.clear();
      this.#credentials.clear();
    }
  }
}
