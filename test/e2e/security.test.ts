// What a `dmsc node` refuses, against a real process: missing or wrong provider keys,
// capabilities outside a provider's scope, forged / foreign / expired / revoked / unsigned
// credentials, admin routes without the admin token, oversized and malformed bodies, and
// AICs with a bad check code. Every refusal is checked for its status AND its error code,
// and the node must keep serving afterwards.
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, register, start, type Proc, type Registered, type Reply } from './harness.js';

const CHECK_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Asserts an error reply: status, code, and optionally text in the message. */
function refused(r: Reply, status: number, code: string, text?: string | RegExp): void {
  expect({ status: r.status, code: r.body?.error?.code }, JSON.stringify(r.body)).toEqual({ status, code });
  expect(typeof r.body.error.message).toBe('string');
  if (text !== undefined) expect(r.body.error.message).toMatch(text);
}

/** The payload a real credential of `ref` carries (decoded, not verified). */
const payloadOf = (ref: Registered) => JSON.parse(Buffer.from(ref.credential.split('.')[1]!, 'base64url').toString());

describe('security of one node', () => {
  let node: Proc;
  let key: string;
  let a: Registered;
  let b: Registered;
  const body = (name = '/capability/sec/a', extra: object = {}) => ({ endpoint: 'http://127.0.0.1:9300', capabilities: [{ name }], ...extra });
  const beat = (aic: string, cred: string) => api(node.url, 'POST', `/v1/agents/${aic}/heartbeat`, { auth: cred });
  const resolve = (cred: string, capability = '/capability/sec/a') => api(node.url, 'POST', '/v1/resolve', { auth: cred, body: { capability } });
  const fibHops = async () => {
    const r = await api(node.url, 'GET', '/v1/fib', { auth: node.token });
    expect(r.status).toBe(200);
    return new Map<string, string[]>(r.body.entries.map((e: any) => [e.prefix, e.nextHops.map((h: any) => h.id)]));
  };

  beforeAll(async () => {
    // These tests make hundreds of refusals from one address on purpose: a burst that
    // large keeps them from being throttled (auth-flood.test.ts tests the throttle).
    node = await start('node', ['--heartbeat-ms', '60000', '--auth-fail-burst', '100000']);
    key = await addProvider(node, 'acme', ['/capability/sec/**']);
    a = await register(node, key, [{ name: '/capability/sec/a' }], 'http://127.0.0.1:9301');
    b = await register(node, key, [{ name: '/capability/sec/b' }], 'http://127.0.0.1:9302');
  });
  afterAll(cleanup);

  it('refuses registration without a provider key or with a wrong one', async () => {
    refused(await api(node.url, 'POST', '/v1/agents', { body: body() }), 401, 'ERR_DMSC_UNAUTHORIZED');
    refused(await api(node.url, 'POST', '/v1/agents', { auth: key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A'), body: body() }), 401, 'ERR_DMSC_UNAUTHORIZED', /unknown provider key/);
    refused(await api(node.url, 'POST', '/v1/agents', { auth: node.token, body: body() }), 401, 'ERR_DMSC_UNAUTHORIZED');
  });

  it('grants only capabilities inside the provider scope; all outside is 403 with the denials', async () => {
    const r = await api(node.url, 'POST', '/v1/agents', { auth: key, body: { endpoint: 'http://127.0.0.1:9303', capabilities: [{ name: '/capability/sec/c' }, { name: '/capability/med/x' }] } });
    expect(r.status).toBe(201);
    expect(r.body.denied).toEqual([{ capability: '/capability/med/x', reason: "outside the scope of provider 'acme'" }]);
    expect(r.body.acs.capabilities.map((c: any) => c.name)).toEqual(['/capability/sec/c']);
    const hops = await fibHops();
    expect(hops.get('/capability/sec/c')).toEqual([r.body.aic]);
    expect(hops.has('/capability/med/x')).toBe(false);

    const all = await api(node.url, 'POST', '/v1/agents', { auth: key, body: { endpoint: 'http://127.0.0.1:9304', capabilities: [{ name: '/capability/med/x' }, { name: '/capability/secx' }] } });
    refused(all, 403, 'ERR_DMSC_FORBIDDEN');
    expect(all.body.error.details.denied).toEqual([
      { capability: '/capability/med/x', reason: "outside the scope of provider 'acme'" },
      { capability: '/capability/secx', reason: "outside the scope of provider 'acme'" },
    ]);
    expect((await fibHops()).has('/capability/secx')).toBe(false);
  });

  it('refuses forged, foreign-key, unsigned and garbage credentials', async () => {
    const [h, p, s] = a.credential.split('.') as [string, string, string];
    const i = 20; // inside the signature, clear of the last char's padding bits
    const flipped = `${h}.${p}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    refused(await beat(a.aic, flipped), 401, 'ERR_DMSC_UNAUTHORIZED', /bad signature/);

    // Same claims, signed by a key of our own: under an unknown kid, and under the node's kid.
    const { privateKey } = generateKeyPairSync('ed25519');
    const claims = { ...payloadOf(a), exp: Math.floor(Date.now() / 1000) + 600 };
    const forge = (header: object) => {
      const input = `${b64(header)}.${b64(claims)}`;
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
    };
    const realKid = JSON.parse(Buffer.from(h, 'base64url').toString()).kid as string;
    refused(await beat(a.aic, forge({ alg: 'EdDSA', kid: 'rogue-key-1', typ: 'dmsc-credential+jwt' })), 401, 'ERR_DMSC_UNAUTHORIZED', /unknown key/);
    refused(await beat(a.aic, forge({ alg: 'EdDSA', kid: realKid, typ: 'dmsc-credential+jwt' })), 401, 'ERR_DMSC_UNAUTHORIZED', /bad signature/);
    refused(await resolve(forge({ alg: 'EdDSA', kid: realKid, typ: 'dmsc-credential+jwt' })), 401, 'ERR_DMSC_UNAUTHORIZED');

    // alg none, with and without the real kid.
    refused(await beat(a.aic, `${b64({ alg: 'none', typ: 'dmsc-credential+jwt' })}.${b64(claims)}.`), 401, 'ERR_DMSC_UNAUTHORIZED');
    refused(await beat(a.aic, `${b64({ alg: 'none', kid: realKid, typ: 'dmsc-credential+jwt' })}.${b64(claims)}.`), 401, 'ERR_DMSC_UNAUTHORIZED');

    for (const garbage of ['garbage', 'a.b.c', '...', 'x'.repeat(9000)]) {
      refused(await beat(a.aic, garbage), 401, 'ERR_DMSC_UNAUTHORIZED');
    }
    refused(await api(node.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { headers: { authorization: `Basic ${a.credential}` } }), 401, 'ERR_DMSC_UNAUTHORIZED');
    // A session grant the node signed is not a credential.
    const grant = (await resolve(b.credential)).body.grant as string;
    expect(grant.split('.')).toHaveLength(3);
    refused(await beat(a.aic, grant), 401, 'ERR_DMSC_UNAUTHORIZED', /unknown key|typ/);
    // The genuine credential still works.
    expect((await beat(a.aic, a.credential)).status).toBe(200);
  });

  it("refuses another agent's credential on heartbeat, renew, show and delete", async () => {
    refused(await beat(b.aic, a.credential), 401, 'ERR_DMSC_UNAUTHORIZED', /another agent/);
    refused(await api(node.url, 'POST', `/v1/agents/${b.aic}/renew`, { auth: a.credential }), 401, 'ERR_DMSC_UNAUTHORIZED', /another agent/);
    refused(await api(node.url, 'GET', `/v1/agents/${b.aic}`, { auth: a.credential }), 401, 'ERR_DMSC_UNAUTHORIZED');
    refused(await api(node.url, 'DELETE', `/v1/agents/${b.aic}`, { auth: a.credential }), 401, 'ERR_DMSC_UNAUTHORIZED');
    expect((await fibHops()).get('/capability/sec/b')).toEqual([b.aic]);
  });

  it('renews with its own credential; the new credential works', async () => {
    const r = await api(node.url, 'POST', `/v1/agents/${b.aic}/renew`, { auth: b.credential });
    expect(r.status).toBe(200);
    expect(r.body.aic).toBe(b.aic);
    expect(r.body.credential).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(r.body.credential).not.toBe(b.credential);
    expect(Date.parse(r.body.expiresAt)).toBeGreaterThan(Date.now() + 3_500_000);
    expect((await beat(b.aic, r.body.credential)).status).toBe(200);
    expect((await resolve(r.body.credential)).body.target.aic).toBe(a.aic);
    b = { aic: b.aic, credential: r.body.credential };
  });

  it('refuses a revoked credential (CLI revoke) and drops the agent from the FIB', async () => {
    const victim = await register(node, key, [{ name: '/capability/sec/v' }]);
    expect((await beat(victim.aic, victim.credential)).status).toBe(200);
    const out = dmsc('agent', 'revoke', victim.aic, '--url', node.url, '--data', node.dataDir, '--reason', 'test');
    expect(out.status, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ aic: victim.aic, revoked: true });
    refused(await beat(victim.aic, victim.credential), 401, 'ERR_DMSC_UNAUTHORIZED', /revoked/);
    refused(await resolve(victim.credential), 401, 'ERR_DMSC_UNAUTHORIZED', /revoked/);
    refused(await api(node.url, 'POST', `/v1/agents/${victim.aic}/renew`, { auth: victim.credential }), 401, 'ERR_DMSC_UNAUTHORIZED');
    expect((await fibHops()).has('/capability/sec/v')).toBe(false);
    refused(await resolve(a.credential, '/capability/sec/v'), 404, 'ERR_DMSC_NO_ROUTE');
    const listed = await api(node.url, 'GET', '/v1/agents', { auth: node.token });
    expect(listed.body.agents.map((x: any) => x.aic)).not.toContain(victim.aic);
  });

  it('refuses an expired credential (second node, --credential-ttl 1)', async () => {
    const short = await start('node', ['--credential-ttl', '1', '--heartbeat-ms', '60000']);
    const k = await addProvider(short, 'brief', ['/capability/brief/**']);
    const r = await register(short, k, [{ name: '/capability/brief/x' }]);
    // Expiry is a whole second, rounded up: at most 2 s away, and not before the 201.
    const issuedBy = Date.now();
    expect(Date.parse(r.body.expiresAt)).toBeLessThanOrEqual(issuedBy + 2000);
    expect(Date.parse(r.body.expiresAt) % 1000).toBe(0);
    await sleep(2200);
    const hb = await api(short.url, 'POST', `/v1/agents/${r.aic}/heartbeat`, { auth: r.credential });
    refused(hb, 401, 'ERR_DMSC_UNAUTHORIZED', /expired/);
    refused(await api(short.url, 'POST', `/v1/agents/${r.aic}/renew`, { auth: r.credential }), 401, 'ERR_DMSC_UNAUTHORIZED', /expired/);
    await short.stop();
  });

  it('refuses admin routes without the admin token or with a wrong one', async () => {
    const wrong = node.token.slice(0, -1) + (node.token.endsWith('A') ? 'B' : 'A'); // same length
    const routes: [string, string, unknown?][] = [
      ['GET', '/v1/fib'], ['GET', '/v1/agents'], ['GET', '/v1/providers'], ['GET', '/v1/policies'], ['GET', '/v1/policies/history'],
      ['GET', `/v1/agents/${b.aic}`], ['DELETE', `/v1/agents/${b.aic}`],
      ['POST', '/v1/providers', { name: 'evil', scopes: ['/**'] }],
      ['PUT', '/v1/policies', { version: 99, rules: [] }],
      ['POST', '/v1/revocations', { aic: a.aic }],
      ['POST', '/v1/amc/rotate-key'],
    ];
    for (const [method, path, reqBody] of routes) {
      for (const auth of [undefined, wrong, 'short', a.credential, key]) {
        const r = await api(node.url, method, path, { ...(auth ? { auth } : {}), ...(reqBody ? { body: reqBody } : {}) });
        expect(`${method} ${path} ${auth?.slice(0, 6)}: ${r.status} ${r.body?.error?.code}`).toBe(`${method} ${path} ${auth?.slice(0, 6)}: 401 ERR_DMSC_UNAUTHORIZED`);
      }
    }
    // None of them took effect.
    const providers = await api(node.url, 'GET', '/v1/providers', { auth: node.token });
    expect(providers.body.providers.map((p: any) => p.name)).toEqual(['acme']);
    // The provider key is shown once and kept only as a hash: not listed, not on disk.
    expect(Object.keys(providers.body.providers[0]).sort()).toEqual(['createdAt', 'name', 'scopes']);
    const onDisk = await readFile(join(node.dataDir, 'store', 'data.mdb'));
    expect(onDisk.includes(Buffer.from(key))).toBe(false);
    expect(onDisk.includes(Buffer.from(key.slice(8, 40)))).toBe(false);
    expect((await api(node.url, 'GET', '/v1/policies', { auth: node.token })).body.version).toBe(0);
    expect((await beat(a.aic, a.credential)).status).toBe(200);
  });

  it('refuses a body over 64 KiB with 413', async () => {
    const big = body('/capability/sec/a', {});
    (big.capabilities[0] as any).attributes = { blob: 'x'.repeat(70 * 1024) };
    refused(await api(node.url, 'POST', '/v1/agents', { auth: key, body: big }), 413, 'ERR_DMSC_PAYLOAD_TOO_LARGE');
  });

  it('refuses unknown fields, wrong types, bad names and malformed JSON with 400', async () => {
    const post = (b: unknown) => api(node.url, 'POST', '/v1/agents', { auth: key, body: b });
    refused(await post({ ...body(), colour: 'red' }), 400, 'ERR_DMSC_INVALID_BODY', /^body has an unknown field 'colour'$/);
    refused(await post({ endpoint: 'http://127.0.0.1:9300', capabilities: [{ name: '/capability/sec/a', flavour: 1 }] }), 400, 'ERR_DMSC_INVALID_BODY', /body\.capabilities\[0\].*'flavour'/);
    refused(await post({ endpoint: 'http://127.0.0.1:9300', capabilities: [{ name: '/capability/sec/a', weight: '5' }] }), 400, 'ERR_DMSC_INVALID_BODY', /body\.capabilities\[0\]\.weight/);
    refused(await post({ endpoint: 'http://127.0.0.1:9300', capabilities: 'x' }), 400, 'ERR_DMSC_INVALID_BODY', /body\.capabilities /);
    refused(await post({ endpoint: 5, capabilities: [{ name: '/capability/sec/a' }] }), 400, 'ERR_DMSC_INVALID_BODY', /body\.endpoint/);
    refused(await post({ capabilities: [{ name: '/capability/sec/a' }] }), 400, 'ERR_DMSC_INVALID_BODY', /'endpoint'/);
    refused(await post(body('/capability/sec//a')), 400, 'ERR_DMSC_INVALID_NAME', /body\.capabilities\[0\]\.name.*empty component/);
    refused(await post(body('capability/sec/a')), 400, 'ERR_DMSC_INVALID_NAME', /must start with '\/'/);
    refused(await post({ endpoint: 'http://127.0.0.1:9300', capabilities: [{ name: '/capability/sec/a' }, { name: '/capability/sec/a' }] }), 400, 'ERR_DMSC_INVALID_BODY', /twice/);
    refused(await post('{"endpoint": "http://127.0.0.1:9300", "capabilities": ['), 400, 'ERR_DMSC_INVALID_BODY');
    refused(await api(node.url, 'POST', '/v1/resolve', { auth: a.credential, body: { capability: '/capability/sec/a', colour: 1 } }), 400, 'ERR_DMSC_INVALID_BODY', /colour/);
    refused(await api(node.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { auth: a.credential, body: { load: 2 } }), 400, 'ERR_DMSC_INVALID_BODY', /body\.load/);
  });

  it('refuses an AIC with a wrong check code with 400', async () => {
    const check = a.aic.slice(-2);
    const lo = CHECK_ALPHABET.indexOf(check[1]!);
    const bad = a.aic.slice(0, -1) + CHECK_ALPHABET[lo === 0 ? 1 : 0];
    expect(bad).not.toBe(a.aic);
    refused(await api(node.url, 'GET', `/v1/agents/${bad}`, { auth: node.token }), 400, 'ERR_DMSC_INVALID_AIC', /check code mismatch/);
    refused(await beat(bad, a.credential), 400, 'ERR_DMSC_INVALID_AIC', /check code mismatch/);
    refused(await api(node.url, 'POST', `/v1/agents/${bad}/renew`, { auth: a.credential }), 400, 'ERR_DMSC_INVALID_AIC');
    refused(await api(node.url, 'POST', '/v1/revocations', { auth: node.token, body: { aic: bad } }), 400, 'ERR_DMSC_INVALID_AIC');
    expect((await api(node.url, 'GET', `/v1/agents/${a.aic}`, { auth: node.token })).status).toBe(200);
  });

  it('keeps serving after all of the above', async () => {
    const health = await api(node.url, 'GET', '/healthz');
    expect(health).toEqual({ status: 200, body: { status: 'ok', node: 'node-1' } });
    const fresh = await register(node, key, [{ name: '/capability/sec/fresh' }], 'http://127.0.0.1:9399');
    expect(fresh.body.denied).toEqual([]);
    const r = await resolve(a.credential, '/capability/sec/fresh/deep');
    expect(r.status).toBe(200);
    expect(r.body.target).toEqual({ aic: fresh.aic, endpoint: 'http://127.0.0.1:9399', gateway: 'node-1' });
    expect(r.body.capability).toBe('/capability/sec/fresh');
  });
});
