// Tokens: what dmsc signs is a standard EdDSA JWT (jose verifies it unaided), tampering
// and unknown keys are refused, and a key ring keeps retired keys only while their
// tokens can still be alive.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importJWK, jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { JwtVerifier, newSigningKey, peekKid, signingKey, signJwt } from '../../src/identity/jwt.js';
import { KeyRing } from '../../src/identity/key-ring.js';
import type { Amc } from '../../src/identity/amc.js';
import { AmcTokenVerifier } from '../../src/identity/credentials.js';
import { Store } from '../../src/store/store.js';

const key = signingKey(newSigningKey('t'));

describe('signed tokens', () => {
  it('are compact EdDSA JWS that jose verifies with the published key', async () => {
    const token = await signJwt(key, 'dmsc-credential+jwt', { sub: 'a:b:1:q5', exp: Math.floor(Date.now() / 1000) + 60 });
    const { payload, protectedHeader } = await jwtVerify(token, await importJWK(key.publicJwk, 'EdDSA'), { typ: 'dmsc-credential+jwt' });
    expect(protectedHeader).toEqual({ alg: 'EdDSA', kid: key.kid, typ: 'dmsc-credential+jwt' });
    expect(payload.sub).toBe('a:b:1:q5');
    expect(typeof payload.jti).toBe('string');
    expect(peekKid(token)).toBe(key.kid);
  });

  it('refuses tampering, other keys, other types and expiry with ERR_DMSC_UNAUTHORIZED', async () => {
    const v = new JwtVerifier({ keys: [key.publicJwk] });
    const exp = Math.floor(Date.now() / 1000) + 60;
    const good = await signJwt(key, 'x+jwt', { sub: 's', exp });
    await expect(v.verify(good, 'x+jwt')).resolves.toMatchObject({ sub: 's' });
    const [h, p, s] = good.split('.');
    const forgedPayload = `${h}.${Buffer.from(JSON.stringify({ sub: 'admin', exp })).toString('base64url')}.${s}`;
    await expect(v.verify(forgedPayload, 'x+jwt')).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED', message: /bad signature/ });
    await expect(v.verify(good, 'y+jwt')).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
    const stranger = signingKey(newSigningKey('t'));
    await expect(v.verify(await signJwt(stranger, 'x+jwt', { exp }), 'x+jwt')).rejects.toMatchObject({ message: /unknown key/ });
    await expect(v.verify(await signJwt(key, 'x+jwt', { exp: Math.floor(Date.now() / 1000) - 5 }), 'x+jwt')).rejects.toMatchObject({ message: /expired/ });
    // Same kid, different key: the signature check fails.
    const { privateKey } = generateKeyPairSync('ed25519');
    const impostor = { kid: key.kid, privateKey, publicJwk: key.publicJwk };
    await expect(v.verify(await signJwt(impostor, 'x+jwt', { exp }), 'x+jwt')).rejects.toMatchObject({ message: /bad signature/ });
    await expect(v.verify(`${h}.${p}`, 'x+jwt')).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
  });
});

describe('KeyRing', () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('rotates, keeps retired keys until their tokens expire, and persists', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmsc-keys-'));
    dirs.push(dir);
    let store = Store.open(dir);
    try {
      const ring = await KeyRing.open(store, 'k', 'amc', 60_000);
      const first = ring.active.kid;
      const second = await ring.rotate();
      expect(ring.active.kid).toBe(second);
      expect(ring.jwks().keys.map((k) => k.kid)).toEqual([first, second]);
      expect(await ring.prune(Date.now())).toBe(0);
      await store.close();

      store = Store.open(dir);
      const reopened = await KeyRing.open(store, 'k', 'amc', 60_000);
      expect(reopened.active.kid).toBe(second);
      expect(await reopened.prune(Date.now() + 60_001)).toBe(1);
      expect(reopened.jwks().keys.map((k) => k.kid)).toEqual([second]);
    } finally {
      await store.close();
    }
  });
});

describe('AmcTokenVerifier against a flood of forged tokens', () => {
  /** An AMC as a gateway sees it, counting how often it is asked for its keys. */
  const amcWith = (k: typeof key) => {
    const amc = { refreshes: 0, domain: 'd', issuer: 'dmsc-amc:d', jwks: () => ({ keys: [k.publicJwk] }), refresh: async () => void amc.refreshes++, onChange: () => {} };
    return amc;
  };
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const forged = (kid: string, i: number) => `${b64({ alg: 'EdDSA', kid, typ: 'dmsc-credential+jwt' })}.${b64({ sub: `x${i}` })}.${'A'.repeat(86)}`;

  it('refuses tokens that are not EdDSA JWTs naming a key, and asks the AMC for unknown keys at most once a second', async () => {
    const amc = amcWith(key);
    const v = new AmcTokenVerifier(amc as unknown as Amc);
    for (const token of ['not-a-jwt', `${b64({ alg: 'EdDSA' })}.${b64({})}.${'A'.repeat(86)}`, `${b64({ alg: 'EdDSA', kid: key.kid })}.${b64({})}.short`]) {
      await expect(v.verify(token, 'dmsc-credential+jwt')).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED', message: /not an EdDSA JWT naming its key/ });
    }
    expect(amc.refreshes).toBe(0);
    // A thousand tokens naming a thousand unknown keys: one look at the AMC's keys.
    for (let i = 0; i < 1000; i++) await expect(v.verify(forged(`k${i}`, i), 'dmsc-credential+jwt')).rejects.toMatchObject({ message: /unknown key/ });
    expect(amc.refreshes).toBe(1);
    // A known key with a bad signature is refused by the check itself.
    await expect(v.verify(forged(key.kid, 0), 'dmsc-credential+jwt')).rejects.toMatchObject({ message: /bad signature/ });
  });
});
