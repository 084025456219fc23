// The target's grant check against a real AMC (embedded store): what a gateway signs with
// a certified key passes once; the capability must be the one granted; a key the AMC
// certified for another purpose, or no certificate, does not pass; an initiator of
// another domain is taken on the grant's word; the replay store refuses rather than
// forget an unexpired grant.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GRANT_TYP } from '../../src/directory/gateway.js';
import { formatAic } from '../../src/identity/aic.js';
import { LocalAmc } from '../../src/identity/amc.js';
import { newSigningKey, signingKey, signJwt } from '../../src/identity/jwt.js';
import { GrantVerifier } from '../../src/session/grants.js';
import { Store } from '../../src/store/store.js';

describe('GrantVerifier', () => {
  let dir: string;
  let store: Store;
  let amc: LocalAmc;
  let credential: string;
  const gwKey = signingKey(newSigningKey('gw-g1'));
  let cert: string;
  const target = formatAic({ registry: 'g1', provider: 'acme', serial: 2 });
  const initiator = formatAic({ registry: 'g1', provider: 'acme', serial: 1 });
  const exp = () => Math.floor(Date.now() / 1000) + 60;
  const grant = (claims: Record<string, unknown> = {}, key = gwKey) =>
    signJwt(key, GRANT_TYP, { iss: 'dmsc-gw:g1', sub: initiator, aud: target, cap: '/capability/ocr', req: '/capability/ocr/fast', exp: exp(), gwc: cert, ...claims });
  const verifier = (maxSeen?: number) => new GrantVerifier(() => target, { issuer: () => amc.issuer, keys: () => amc.jwks() }, maxSeen ? { maxSeen } : {});

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmsc-grants-'));
    store = Store.open(dir);
    amc = await LocalAmc.open(store, { domain: 'edge' });
    await amc.addProvider('acme', ['/capability/**']);
    credential = (await amc.issue('g1', initiator, 'acme', ['/capability/notes'])).credential;
    cert = (await amc.certifyGrantKey('g1', gwKey.publicJwk)).credential;
  });
  afterAll(async () => {
    await amc.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('passes a grant once, for the very name resolved and no other (not the prefix, not another name below it)', async () => {
    const v = verifier();
    await expect(v.verify(await grant(), credential, '/capability/ocr/fast')).resolves.toMatchObject({ initiator, gateway: 'g1', capability: '/capability/ocr/fast' });
    for (const other of ['/capability/ocr/other', '/capability/ocr', '/capability/ocr/fast/x', '/capability/ocrx']) {
      await expect(v.verify(await grant(), credential, other)).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: /it is for \/capability\/ocr\/fast/ });
    }
    const once = await grant();
    await v.verify(once, credential, '/capability/ocr/fast');
    await expect(v.verify(once, credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_REPLAYED' });
  });

  it('refuses a grant without a certificate, with a certificate that is not the AMC\'s grant-key kind, or from another gateway name', async () => {
    const v = verifier();
    await expect(v.verify(await grant({ gwc: undefined }), credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: /no gateway key certificate/ });
    // An agent credential is signed by the AMC too, but it certifies no key.
    await expect(v.verify(await grant({ gwc: credential }), credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: /not certified/ });
    await expect(v.verify(await grant({ iss: 'dmsc-gw:g2' }), credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID' });
    const other = signingKey(newSigningKey('gw-g1'));
    await expect(v.verify(await grant({}, other), credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID' });
    await expect(v.verify(await grant(), 'not-a-jwt', '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: /initiator credential/ });
    await expect(v.verify(42, credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID' });
  });

  it('takes an initiator of another domain on the grant\'s word, if the credential claims that identity', async () => {
    const v = verifier();
    const foreign = (claims: object) => `${Buffer.from('{"alg":"EdDSA"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
    await expect(v.verify(await grant({ sub: 'metro/m1:acme:1:zz' }), foreign({ sub: 'm1:acme:1:zz', dom: 'metro' }), '/capability/ocr/fast')).resolves.toMatchObject({ initiator: 'metro/m1:acme:1:zz' });
    await expect(v.verify(await grant({ sub: 'metro/m1:acme:1:zz' }), foreign({ sub: 'm1:acme:1:other', dom: 'metro' }), '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID' });
  });

  it('refuses new grants rather than forget unexpired ones when its replay store is full', async () => {
    const v = verifier(2);
    await v.verify(await grant(), credential, '/capability/ocr/fast');
    await v.verify(await grant(), credential, '/capability/ocr/fast');
    await expect(v.verify(await grant(), credential, '/capability/ocr/fast')).rejects.toMatchObject({ code: 'ERR_DMSC_BUSY' });
    expect(v.remembered).toBe(2);
  });
});
