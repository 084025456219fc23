// Signed tokens: EdDSA (Ed25519) JWTs with a `kid`. Verification is jose's; signing uses
// node:crypto's synchronous Ed25519 directly, because jose signs through WebCrypto, which
// costs about 230 µs a token on the reference machine against 50 µs here, and every
// registration and every resolve signs one. Signing runs on the thread pool, so a busy
// node keeps its event loop for requests. The tokens are plain compact JWS; jose (and
// any other JOSE library) verifies them — test/identity/credentials.test.ts checks that.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWK, type JWTPayload } from 'jose';
import { DmscError } from '../errors.js';

/** One signing key: an Ed25519 pair named by `kid`. */
export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  /** The public half as a JWK with `kid`, `alg` and `use`. */
  readonly publicJwk: JWK;
}

/** A stored key: the private JWK plus its lifetime bookkeeping. */
export interface StoredKey {
  readonly kid: string;
  readonly jwk: JWK;
  readonly createdAt: number;
  /** When a newer key replaced it; it keeps verifying until tokens it signed expire. */
  readonly retiredAt?: number;
}

export function newSigningKey(prefix: string): StoredKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const kid = `${prefix}-${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
  return { kid, jwk: privateKey.export({ format: 'jwk' }) as JWK, createdAt: Date.now() };
}

export function signingKey(stored: StoredKey): SigningKey {
  const privateKey = createPrivateKey({ key: stored.jwk as never, format: 'jwk' });
  const pub = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  return { kid: stored.kid, privateKey, publicJwk: { ...pub, kid: stored.kid, alg: 'EdDSA', use: 'sig' } };
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/**
 * Signs `claims` as a compact JWT with header `{ alg: 'EdDSA', kid, typ }`; adds `iat`
 * and `jti`. The signature is computed on libuv's thread pool, off the event loop.
 */
export function signJwt(key: SigningKey, typ: string, claims: JWTPayload): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'EdDSA', kid: key.kid, typ })}.${b64({ iat: now, jti: randomUUID(), ...claims })}`;
  return new Promise((resolve, reject) => {
    sign(null, Buffer.from(input), key.privateKey, (err, sig) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`)));
  });
}

/** Verifies tokens against a replaceable JWK set. */
export class JwtVerifier {
  #keys: ReturnType<typeof createLocalJWKSet>;
  #kids = new Set<string>();

  constructor(jwks: JSONWebKeySet = { keys: [] }) {
    this.#keys = createLocalJWKSet(jwks);
    this.setKeys(jwks);
  }

  setKeys(jwks: JSONWebKeySet): void {
    this.#keys = createLocalJWKSet(jwks);
    this.#kids = new Set(jwks.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string'));
  }

  knows(kid: string): boolean {
    return this.#kids.has(kid);
  }

  /**
   * Verifies signature, `typ`, expiry and issuer; any failure is ERR_DMSC_UNAUTHORIZED
   * with the reason.
   */
  async verify(token: string, typ: string, issuer?: string): Promise<JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, this.#keys, { algorithms: ['EdDSA'], typ, ...(issuer ? { issuer } : {}) });
      return payload;
    } catch (e) {
      throw new DmscError('ERR_DMSC_UNAUTHORIZED', `credential rejected: ${reason(e)}`);
    }
  }
}

function reason(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return 'expired';
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'signed by an unknown key';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad signature';
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `claim '${e.claim}' ${e.reason}`;
  return (e as Error).message || 'malformed';
}

/** The `kid` of a compact JWS without verifying it (to decide whether to refresh keys). */
export function peekKid(token: string): string | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot > 512) return undefined;
  const kid = peekField(token.slice(0, dot), 'kid');
  return typeof kid === 'string' ? kid : undefined;
}

/** A claim of a compact JWS without verifying it (to pick the keys that will verify it). */
export function peekClaim(token: string, claim: string): unknown {
  const parts = token.split('.', 3);
  if (parts.length !== 3 || parts[1]!.length > 8192) return undefined;
  return peekField(parts[1]!, claim);
}

/** A field of one base64url JSON segment of a token; undefined if it is not readable. */
function peekField(segment: string, field: string): unknown {
  try {
    const value = JSON.parse(Buffer.from(segment, 'base64url').toString()) as Record<string, unknown> | null;
    return value && typeof value === 'object' ? value[field] : undefined;
  } catch {
    return undefined;
  }
}
