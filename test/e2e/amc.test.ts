// A domain of two gateways sharing a standalone AMC (`dmsc amc`), all real processes:
// credentials verify at every gateway, a revocation reaches them all within a second and
// takes the agent out of its FIB, and a key rotation keeps old credentials valid.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peekKid } from '../../src/identity/jwt.js';
import { api, cleanup, dmsc, register, start, tempDir, waitFor, waitUntil, type Proc } from './harness.js';

describe('standalone AMC with two gateways', () => {
  let amc: Proc;
  let gwA: Proc;
  let gwB: Proc;
  /** Polls the AMC only once a minute: it learns keys only through an unknown kid. */
  let gwC: Proc;
  let providerKey: string;
  let keyFileA: string;
  const admin = (p: Proc) => ['--url', p.url, '--data', p.dataDir];

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro-1']);
    const keys = await tempDir();
    const gatewayArgs = async (id: string) => {
      const r = dmsc('amc', 'gateway', 'add', id, ...admin(amc));
      expect(r.status, r.stderr).toBe(0);
      const file = join(keys, id);
      // gw-a gets the key alone; the others the JSON as printed, which the node reads too.
      await writeFile(file, id === 'gw-a' ? JSON.parse(r.stdout).key + '\n' : r.stdout);
      if (id === 'gw-a') keyFileA = file;
      return ['--id', id, '--amc', amc.url, '--amc-key-file', file];
    };
    gwA = await start('node', [...(await gatewayArgs('gw-a')), '--heartbeat-ms', '60000']);
    gwB = await start('node', [...(await gatewayArgs('gw-b')), '--heartbeat-ms', '60000']);
    gwC = await start('node', [...(await gatewayArgs('gw-c')), '--heartbeat-ms', '60000', '--amc-poll-ms', '60000']);
    const p = dmsc('provider', 'add', 'acme', '--scope', '/capability/ocr/**', ...admin(amc));
    expect(p.status, p.stderr).toBe(0);
    providerKey = JSON.parse(p.stdout).key;
  });
  afterAll(cleanup);

  const inFib = async (node: Proc, aic: string) => {
    const r = await api(node.url, 'GET', '/v1/fib?prefix=/capability/ocr', { auth: node.token });
    return r.body.entries.some((e: any) => e.nextHops.some((h: any) => h.id === aic));
  };
  const discoverAt = (node: Proc, credential: string) => api(node.url, 'GET', '/v1/discover?capability=/capability/ocr', { auth: credential });

  it('refuses a gateway whose key the AMC does not know', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'key'), 'dmsc_gk_not-a-real-key\n');
    await expect(start('node', ['--id', 'gw-x', '--amc', amc.url, '--amc-key-file', join(dir, 'key')])).rejects.toThrow(/ERR_DMSC_UNAUTHORIZED/);
  });

  it("refuses a node whose --id is not the gateway its key belongs to", async () => {
    await expect(start('node', ['--id', 'gw-z', '--amc', amc.url, '--amc-key-file', keyFileA])).rejects.toThrow(/ERR_DMSC_INVALID_CONFIG.*'gw-a'/);
  });

  it('issues observer credentials: a domain one reads every gateway, a node one only its own', async () => {
    const issue = (...args: string[]) => {
      const r = dmsc('observer', 'add', ...args, ...admin(amc));
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout).credential as string;
    };
    const domain = issue('soc', '--scope', 'domain');
    const onlyA = issue('ops-a', '--scope', 'node', '--node', 'gw-a');
    const agentsOfAcme = issue('acme-noc', '--scope', 'agents', '--provider', 'acme');
    await register(gwB, providerKey, [{ name: '/capability/ocr/observed' }]);
    for (const gw of [gwA, gwB]) expect((await api(gw.url, 'GET', '/v1/audit', { auth: domain })).status).toBe(200);
    expect((await api(gwA.url, 'GET', '/v1/audit', { auth: onlyA })).status).toBe(200);
    const elsewhere = await api(gwB.url, 'GET', '/v1/audit', { auth: onlyA });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.error.message).toContain('gw-a');
    const acme = await api(gwB.url, 'GET', '/v1/audit?kind=registration', { auth: agentsOfAcme });
    expect(acme.body.events.some((e: { detail: { capabilities: string[] } }) => e.detail.capabilities.includes('/capability/ocr/observed'))).toBe(true);
    expect((await fetch(`${gwB.url}/metrics`, { headers: { authorization: `Bearer ${domain}` } })).status).toBe(200);
    // A gateway on a standalone AMC sends the operator there.
    expect((await api(gwA.url, 'POST', '/v1/observers', { auth: gwA.token, body: { name: 'x', scope: 'domain' } })).body.error.message).toContain(amc.url);
  });

  it('issues credentials that every gateway of the domain accepts', async () => {
    const a = await register(gwA, providerKey, [{ name: '/capability/ocr' }]);
    expect(a.aic.startsWith('gw-a:acme:')).toBe(true);
    expect(a.body.acs.domain).toBe('metro-1');
    expect((await discoverAt(gwB, a.credential)).status).toBe(200);
    // Providers are managed at the AMC, not at its gateways.
    expect((await api(gwA.url, 'GET', '/v1/providers', { auth: gwA.token })).body.error.code).toBe('ERR_DMSC_NOT_FOUND');
  });

  it('revokes in the whole domain within a second; the agent leaves the FIB of its gateway', async () => {
    const a = await register(gwA, providerKey, [{ name: '/capability/ocr' }]);
    expect(await inFib(gwA, a.aic)).toBe(true);
    expect((await discoverAt(gwB, a.credential)).status).toBe(200);
    // The second starts before the revocation is asked for.
    const deadline = Date.now() + 1000;
    expect((await api(amc.url, 'POST', '/v1/revocations', { auth: amc.token, body: { aic: a.aic } })).status).toBe(200);
    await Promise.all([
      waitUntil(async () => (await discoverAt(gwB, a.credential)).status === 401, deadline),
      waitUntil(async () => (await api(gwA.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { auth: a.credential })).status === 401, deadline),
      waitUntil(async () => !(await inFib(gwA, a.aic)), deadline),
    ]);
    expect((await api(gwA.url, 'GET', '/v1/agents', { auth: gwA.token })).body.agents.map((x: any) => x.aic)).not.toContain(a.aic);
  });

  it('takes a revocation asked of a gateway to the AMC and the rest of the domain', async () => {
    const a = await register(gwA, providerKey, [{ name: '/capability/ocr' }]);
    const r = dmsc('agent', 'revoke', a.aic, '--url', gwB.url, '--data', gwB.dataDir);
    expect(r.status, r.stderr).toBe(0);
    await waitFor(async () => !(await inFib(gwA, a.aic)), 2000);
    expect((await discoverAt(gwB, a.credential)).status).toBe(401);
    expect((await api(amc.url, 'GET', '/v1/amc/updates?since=0', { auth: 'dmsc_gk_wrong' })).status).toBe(401);
  });

  it('rotates the signing key: old credentials keep verifying, new ones use the new key everywhere', async () => {
    const old = await register(gwA, providerKey, [{ name: '/capability/ocr' }]);
    const r = dmsc('amc', 'rotate-key', ...admin(amc));
    expect(r.status, r.stderr).toBe(0);
    const { kid, keys } = JSON.parse(r.stdout) as { kid: string; keys: string[] };
    expect(keys).toContain(peekKid(old.credential));
    expect(keys).toContain(kid);
    const jwks = await api(amc.url, 'GET', '/.well-known/jwks.json');
    expect(jwks.body.keys.map((k: any) => k.kid)).toEqual(expect.arrayContaining([kid, peekKid(old.credential)]));
    expect(jwks.body.keys.every((k: any) => k.d === undefined)).toBe(true);

    const fresh = await register(gwA, providerKey, [{ name: '/capability/ocr' }]);
    expect(peekKid(fresh.credential)).toBe(kid);
    expect((await discoverAt(gwB, fresh.credential)).status).toBe(200);
    expect((await discoverAt(gwB, old.credential)).status).toBe(200);
    // gw-c polls once a minute, so it has not seen the new key: the unknown kid makes it
    // fetch the keys before deciding, and a kid the AMC never made is still refused.
    expect((await discoverAt(gwC, old.credential)).status).toBe(200);
    expect((await discoverAt(gwC, fresh.credential)).status).toBe(200);
    const [h, p, s] = fresh.credential.split('.');
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'amc-never-made', typ: 'dmsc-credential+jwt' })).toString('base64url');
    const stranger = await discoverAt(gwC, `${header}.${p}.${s}`);
    expect(stranger.status).toBe(401);
    expect(stranger.body.error.message).toMatch(/unknown key/);
    expect(h).not.toBe(header);
    expect((await api(gwA.url, 'POST', `/v1/agents/${old.aic}/renew`, { auth: old.credential })).status).toBe(200);
  });

  it('keeps serving through an AMC outage: credentials verify with known keys, registration is 503', async () => {
    const a = await register(gwA, providerKey, [{ name: '/capability/ocr' }]);
    // Both gateways have seen this credential (and so the key that signed it, which may
    // be the one just rotated in) before the AMC goes. The last test of the file: the
    // AMC stays down.
    expect((await api(gwA.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { auth: a.credential })).status).toBe(200);
    expect((await discoverAt(gwB, a.credential)).status).toBe(200);
    await amc.stop();
    const hb = await api(gwA.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { auth: a.credential });
    expect(hb.status, JSON.stringify(hb.body)).toBe(200);
    expect((await discoverAt(gwB, a.credential)).status).toBe(200);
    const r = await api(gwA.url, 'POST', '/v1/agents', { auth: providerKey, body: { endpoint: 'http://127.0.0.1:9000', capabilities: [{ name: '/capability/ocr' }] } });
    expect({ status: r.status, code: r.body.error.code }).toEqual({ status: 503, code: 'ERR_DMSC_AMC_UNAVAILABLE' });
    expect((await api(gwA.url, 'GET', '/healthz')).status).toBe(200);
  });
});
