// What a gateway does with an agent credential presented as a Bearer token: verify it
// against the AMC's published keys, refuse revoked AICs, and remember verified tokens
// (until they expire) so a busy agent costs one signature check, not one per request.
import { LRUCache } from 'lru-cache';
import { DmscError } from '../errors.js';
import { CREDENTIAL_TYP, type Amc } from './amc.js';
import { JwtVerifier, peekClaim, peekKid } from './jwt.js';

/** The identity a verified credential carries. */
export interface AgentClaims {
  readonly aic: string;
  readonly provider: string;
  readonly gateway: string;
  readonly domain: string;
  readonly scope: readonly string[];
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

/** A fresh look at the AMC's keys, for a token that names a key not seen yet, at most this often. */
const UNKNOWN_KID_REFRESH_MS = 1000;
/** How long a refused token is refused again without another look. */
const REFUSAL_MS = 10_000;

/**
 * Verifies tokens an AMC signed (agent credentials, key certificates) with its current
 * keys: follows key changes, and asks the AMC for its keys before refusing a `kid` it has
 * not seen yet (a key made since the last poll), at most once a second. A token that is
 * not an EdDSA compact JWS naming a key is refused before any crypto, and so is one
 * whose key is still unknown after that look: a flood of forged tokens costs a parse
 * each, not a signature check.
 */
export class AmcTokenVerifier {
  readonly #amc: Amc;
  readonly #verifier: JwtVerifier;
  #lookedAt = 0;
  #looking: Promise<void> | undefined;

  constructor(amc: Amc) {
    this.#amc = amc;
    this.#verifier = new JwtVerifier(amc.jwks());
    amc.onChange(({ keys }) => {
      if (keys) this.#verifier.setKeys(amc.jwks());
    });
  }

  /** Whether a key of this id is among the AMC's keys as last read. */
  knows(kid: string): boolean {
    return this.#verifier.knows(kid);
  }

  async verify(token: string, typ: string): Promise<Record<string, unknown>> {
    if (token.length > 8192) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: too long');
    const kid = peekKid(token);
    if (kid === undefined || !/^[\w-]+\.[\w-]+\.[\w-]{86}$/.test(token)) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: not an EdDSA JWT naming its key');
    if (!this.#verifier.knows(kid)) {
      // One look at a time, at most once a second; a token that comes while one is under
      // way waits for it rather than being refused.
      if (!this.#looking && Date.now() - this.#lookedAt >= UNKNOWN_KID_REFRESH_MS) {
        this.#lookedAt = Date.now();
        this.#looking = this.#amc.refresh().catch(() => {}).then(() => {
          this.#verifier.setKeys(this.#amc.jwks());
        }).finally(() => {
          this.#looking = undefined;
        });
      }
      if (this.#looking) await this.#looking;
      if (!this.#verifier.knows(kid)) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: signed by an unknown key');
    }
    return this.#verifier.verify(token, typ, this.#amc.issuer) as Promise<Record<string, unknown>>;
  }
}

/** Verifies tokens another domain's AMC signed (see mesh/domains.ts). */
export interface ForeignVerifier {
  verify(token: string, typ: string): Promise<Record<string, unknown>>;
}

export class CredentialGuard {
  readonly #amc: Amc;
  readonly #tokens: AmcTokenVerifier;
  readonly #foreign: ((domain: string) => ForeignVerifier | undefined) | undefined;
  readonly #verified = new LRUCache<string, AgentClaims>({ max: 100_000, ttlAutopurge: false });
  /** Tokens refused lately, with why: the same forged token twice costs one check. */
  readonly #refused = new LRUCache<string, DmscError>({ max: 10_000, maxSize: 16 << 20, sizeCalculation: (_e, token) => token.length + 64, ttl: REFUSAL_MS, ttlAutopurge: false });

  /**
   * With `foreign`, credentials of the other domains it knows are accepted too (issued by
   * `dmsc-amc:<domain>`): for requests peers of those domains pass on. Their revocations
   * are not seen here; such credentials are refused only once they expire.
   */
  constructor(amc: Amc, foreign?: (domain: string) => ForeignVerifier | undefined) {
    this.#amc = amc;
    this.#tokens = new AmcTokenVerifier(amc);
    this.#foreign = foreign;
    // New keys: a credential verified under the old ones is verified again.
    amc.onChange(({ keys }) => {
      if (keys) {
        this.#verified.clear();
        this.#refused.clear();
      }
    });
  }

  /** The claims of a valid, unexpired, unrevoked credential; else ERR_DMSC_UNAUTHORIZED. */
  async verify(token: string): Promise<AgentClaims> {
    const known = this.verified(token);
    if (known) return known;
    const refused = this.#refused.get(token);
    if (refused) throw refused;
    let claims: AgentClaims;
    try {
      claims = await this.#check(token);
    } catch (e) {
      // Only what took a signature check to refuse: a malformed token is refused faster
      // than it is looked up, and one naming a key not seen yet may pass once the AMC's
      // next poll brings that key.
      const kid = peekKid(token);
      if ((e as DmscError).code === 'ERR_DMSC_UNAUTHORIZED' && kid !== undefined && this.#tokens.knows(kid)) this.#refused.set(token, e as DmscError);
      throw e;
    }
    this.#verified.set(token, claims, { ttl: Math.max(1, claims.expiresAt - Date.now()) });
    return this.#usable(claims);
  }

  /**
   * `verify` without waiting, for a credential verified before: its claims if still
   * good, undefined when it has not been seen (then `verify` it). A per-request path
   * (the data plane) takes this first and spends no promise on the common case.
   * @throws ERR_DMSC_UNAUTHORIZED when it has expired or its AIC is revoked.
   */
  verified(token: string): AgentClaims | undefined {
    const claims = this.#verified.get(token);
    return claims && this.#usable(claims);
  }

  #usable(claims: AgentClaims): AgentClaims {
    if (claims.expiresAt <= Date.now()) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: expired');
    if (this.#amc.isRevoked(claims.aic)) throw new DmscError('ERR_DMSC_UNAUTHORIZED', `credential rejected: AIC ${claims.aic} is revoked`);
    return claims;
  }

  async #check(token: string): Promise<AgentClaims> {
    const { sub, prv, gw, dom, scope, exp } = await this.#verifierFor(token).verify(token, CREDENTIAL_TYP);
    if (typeof sub !== 'string' || typeof prv !== 'string' || typeof gw !== 'string' || typeof dom !== 'string' || !Array.isArray(scope) || typeof exp !== 'number') {
      throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: missing claims');
    }
    return Object.freeze({ aic: sub, provider: prv, gateway: gw, domain: dom, scope: Object.freeze(scope.map(String)), expiresAt: exp * 1000 });
  }

  // The issuer named in the (not yet verified) token picks the keys; the verifier then
  // checks that issuer, so a token cannot borrow another domain's keys.
  #verifierFor(token: string): ForeignVerifier {
    if (!this.#foreign) return this.#tokens;
    const iss = peekClaim(token, 'iss');
    if (typeof iss !== 'string' || iss === this.#amc.issuer || !iss.startsWith('dmsc-amc:')) return this.#tokens;
    const foreign = this.#foreign(iss.slice('dmsc-amc:'.length));
    if (!foreign) throw new DmscError('ERR_DMSC_UNAUTHORIZED', `credential rejected: issued by ${iss.slice(0, 80)}, a domain this node does not trust`);
    return foreign;
  }
}
