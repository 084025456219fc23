// Gateway identities for peering tests, with real crypto: an AMC signing key, and per
// gateway an Ed25519 key the AMC certified (`dmsc-grant-key+jwt`), as a node holds them.
import { checkGrantKey, GRANT_KEY_TYP } from '../../src/identity/amc.js';
import { JwtVerifier, newSigningKey, signingKey, signJwt, type SigningKey } from '../../src/identity/jwt.js';
import type { Credentials, Identity, SessionOptions } from '../../src/mesh/peer-session.js';

export const amcKey = signingKey(newSigningKey('amc'));
const amcVerifier = new JwtVerifier({ keys: [amcKey.publicJwk] });

export interface TestGateway {
  readonly id: string;
  readonly key: SigningKey;
  readonly certificate: string;
  readonly credentials: () => Credentials;
}

/** A gateway of `domain` whose key `signer` certified (the test AMC by default), for `sub` = `certifiedAs`. */
export async function gateway(id: string, domain = 'd1', signer = amcKey, certifiedAs = id): Promise<TestGateway> {
  const key = signingKey(newSigningKey(`gw-${id}`));
  const certificate = await signJwt(signer, GRANT_KEY_TYP, { sub: certifiedAs, dom: domain, cnf: { jwk: key.publicJwk }, exp: Math.floor(Date.now() / 1000) + 600 });
  return { id, key, certificate, credentials: () => ({ certificate, privateKey: key.privateKey }) };
}

/** What a node does with a peer's certificate: the test AMC's word, for the gateway claimed. */
export const certified: SessionOptions['certified'] = async (certificate, claimed: Identity) => {
  const claims = await amcVerifier.verify(certificate, GRANT_KEY_TYP);
  if (claims['sub'] !== claimed.gateway || claims['dom'] !== claimed.domain) throw new Error(`its key certificate is for ${String(claims['sub'])}@${String(claims['dom'])}`);
  return checkGrantKey((claims['cnf'] as { jwk?: unknown }).jwk);
};

/** Session options for `gw` in `role`. */
export function sessionOptions(gw: TestGateway, role: SessionOptions['role'], extra: Partial<SessionOptions> = {}): SessionOptions {
  return { role, local: { gateway: gw.id, domain: 'd1' }, credentials: gw.credentials, certified, holdMs: 900, ...extra };
}
