// A foreign domain at the boundary: what its requests may learn (only exported names,
// and of the errors only denials and refused credentials), and how its keys are read
// (first use, unknown key ids, background re-reads that never hold a request up, a key
// server that is down).
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { GRANT_KEY_TYP } from '../../src/identity/amc.js';
import { DmscError } from '../../src/errors.js';
import type { DiscoverAnswer, ForwardedResolve, ResolveAnswer } from '../../src/directory/gateway.js';
import { newSigningKey, signingKey, signJwt } from '../../src/identity/jwt.js';
import { ForeignDomain } from '../../src/mesh/domains.js';

const request = (capability: string, kind: 'resolve' | 'discover' = 'resolve'): ForwardedResolve => ({
  kind, capability, require: [], credential: 'c', ttl: 8, path: ['a1'], budgetMs: 2000,
});
const beta = (jwks = '/nonexistent') => new ForeignDomain({ domain: 'beta', jwks, export: ['/capability/ocr/**'], exportTags: ['gdpr'], import: [], tags: {} });
const resolved = (capability: string): ResolveAnswer => ({
  capability, target: { aic: 'x', endpoint: 'http://e', gateway: 'b2' }, path: ['a1', 'b1', 'b2'], failover: false, grant: 'g', grantExpiresAt: 0,
});

describe('answers to another domain', () => {
  const unseen = (capability: string) => expect.objectContaining({ code: 'ERR_DMSC_NO_ROUTE', message: `no reachable agent offers ${capability}` });

  it('answers a name not exported as one nobody offers, without looking it up', async () => {
    const answer = vi.fn();
    await expect(beta().answerWithin(request('/capability/hr'), 'b1', answer)).rejects.toEqual(unseen('/capability/hr'));
    expect(await beta().answerWithin(request('/capability/hr', 'discover'), 'b1', answer)).toEqual({ candidates: [], path: ['a1', 'b1'] });
    expect(answer).not.toHaveBeenCalled();
  });

  it('gives the lookup what the domain may see, and hides a match outside it', async () => {
    let visible: ((p: string) => boolean) | undefined;
    await expect(beta().answerWithin(request('/capability/ocr/x'), 'b1', async (_r, v) => ((visible = v), resolved('/capability')))).rejects.toEqual(unseen('/capability/ocr/x'));
    expect([visible!('/capability/ocr'), visible!('/capability/ocr/x/y'), visible!('/capability'), visible!('/')]).toEqual([true, true, false, false]);
    expect(await beta().answerWithin(request('/capability/ocr/x'), 'b1', async () => resolved('/capability/ocr'))).toEqual(resolved('/capability/ocr'));
  });

  it('passes on only denials and refused credentials; any other error is no match', async () => {
    for (const code of ['ERR_DMSC_TTL_EXPIRED', 'ERR_DMSC_LOOP', 'ERR_DMSC_PEER_TIMEOUT', 'ERR_DMSC_PEER_CLOSED', 'ERR_DMSC_INTERNAL'] as const) {
      const thrown = new DmscError(code, 'b2: something about what lies beyond');
      await expect(beta().answerWithin(request('/capability/ocr/x'), 'b1', async () => { throw thrown; })).rejects.toEqual(unseen('/capability/ocr/x'));
    }
    // Even a miss with more detail than a plain one.
    const detailed = new DmscError('ERR_DMSC_NO_ROUTE', 'no reachable agent offers /capability/ocr/x with the required tags');
    await expect(beta().answerWithin(request('/capability/ocr/x'), 'b1', async () => { throw detailed; })).rejects.toEqual(unseen('/capability/ocr/x'));
    for (const code of ['ERR_DMSC_FORBIDDEN', 'ERR_DMSC_UNAUTHORIZED'] as const) {
      const e = new DmscError(code, 'policy says no');
      await expect(beta().answerWithin(request('/capability/ocr/x'), 'b1', async () => { throw e; })).rejects.toBe(e);
    }
  });

  it('shows exported candidates only, with the tags it may see, and none with a path that stops here', async () => {
    const found: DiscoverAnswer = {
      candidates: [{ aic: '1', capability: '/capability/ocr', tags: ['gdpr', 'internal'] }, { aic: '2', capability: '/capability', tags: [] }],
      path: ['a1', 'b1', 'b2'],
    };
    expect(await beta().answerWithin(request('/capability/ocr/x', 'discover'), 'b1', async () => found)).toEqual({
      candidates: [{ aic: '1', capability: '/capability/ocr', tags: ['gdpr'] }], path: ['a1', 'b1', 'b2'],
    });
    const outside: DiscoverAnswer = { candidates: [found.candidates[1]!], path: ['a1', 'b1', 'b2'] };
    expect(await beta().answerWithin(request('/capability/ocr/x', 'discover'), 'b1', async () => outside)).toEqual({ candidates: [], path: ['a1', 'b1'] });
  });
});

describe('keys of another domain', () => {
  let server: Server | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await new Promise((r) => (server ? server.close(r) : r(null)));
    server = undefined;
  });

  const TYP = GRANT_KEY_TYP;
  const token = (key: ReturnType<typeof signingKey>, domain = 'beta') => signJwt(key, TYP, { iss: `dmsc-amc:${domain}`, sub: 'b1', dom: domain, exp: Math.floor(Date.now() / 1000) + 600 });

  /** A key server whose answer (or silence) the test decides. */
  async function keyServer(): Promise<{ url: string; keys: object[]; hang: boolean; hits: number; open: number }> {
    const state = { url: '', keys: [] as object[], hang: false, hits: 0, open: 0 };
    server = createServer((req, res) => {
      state.hits++;
      if (state.hang) {
        // Never answers; `open` counts the reads still waiting.
        state.open++;
        req.socket.once('close', () => state.open--);
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: state.keys }));
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    state.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/amc/jwks`;
    return state;
  }

  it('reads keys on first use, follows a rotation there, and refuses other issuers', async () => {
    const ks = await keyServer();
    const first = signingKey(newSigningKey('beta'));
    ks.keys = [first.publicJwk];
    const d = beta(ks.url);
    expect((await d.verify(await token(first), TYP))['sub']).toBe('b1');
    const second = signingKey(newSigningKey('beta'));
    ks.keys = [first.publicJwk, second.publicJwk];
    // An unknown key id makes it read again, at most every 5 s.
    await expect(d.verify(await token(second), TYP)).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
    vi.spyOn(Date, 'now').mockReturnValue(Date.now() + 5000);
    expect((await d.verify(await token(second), TYP))['sub']).toBe('b1');
    expect(ks.hits).toBe(2);
    await expect(d.verify(await token(first, 'gamma'), TYP)).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
  });

  it('re-reads minute-old keys in the background, never holding a request up, and drops a withdrawn key', async () => {
    const ks = await keyServer();
    const key = signingKey(newSigningKey('beta'));
    ks.keys = [key.publicJwk];
    const d = beta(ks.url);
    await d.verify(await token(key), TYP);
    const t0 = Date.now();
    const now = vi.spyOn(Date, 'now');
    // Two minutes on, the key server hangs: the request is answered with the keys held.
    now.mockReturnValue(t0 + 120_000);
    ks.hang = true;
    expect((await d.verify(await token(key), TYP))['sub']).toBe('b1');
    // The read it started is still waiting for the key server: the answer did not wait for it.
    await vi.waitFor(() => expect(ks.hits).toBe(2));
    expect(ks.open).toBe(1);
    // Back, without the key: once re-read, the key stops verifying.
    server!.closeAllConnections();
    ks.hang = false;
    ks.keys = [];
    let clock = t0 + 240_000;
    await vi.waitFor(async () => {
      // Each try a little later, past the once-a-second limit on reads.
      now.mockReturnValue((clock += 2000));
      await expect(d.verify(await token(key), TYP)).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
    });
    expect(ks.hits).toBeGreaterThanOrEqual(3);
  });

  it('refuses while the keys cannot be had, and asks again at most once a second', async () => {
    const ks = await keyServer();
    ks.keys = [{ kty: 'oops' }, 'x'] as object[];
    const d = beta(ks.url);
    const key = signingKey(newSigningKey('beta'));
    for (let i = 0; i < 20; i++) await expect(d.verify(await token(key), TYP)).rejects.toMatchObject({ code: 'ERR_DMSC_AMC_UNAVAILABLE' });
    expect(ks.hits).toBe(1);
  });
});
