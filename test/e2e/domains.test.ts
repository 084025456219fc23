// Two trust domains peering as real processes over mutual TLS: alpha (a1) and beta (b1),
// each with its own embedded AMC, each trusting the other's AMC keys (alpha's from a file
// its operator printed with `dmsc amc keys`, beta's fetched from its /v1/amc/jwks). Beta
// exports only /capability/ocr/** to alpha, showing its `eu-privacy` tag; alpha imports
// only that, exports nothing, and reads beta's `eu-privacy` as its own `gdpr` (beta reads
// alpha's `gdpr` as `eu-privacy`). What is not exported is never seen on the other side,
// in digests or in answers. Alpha also trusts gamma (a standalone AMC) but imports
// nothing from it: a gamma gateway can neither take over alpha's names nor pass for b1.
// Untrusted gateways and peers without the CA's certificate are refused, and the session
// between the two domains carries on.
import { readFile, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { JWK } from 'jose';
import { GRANT_KEY_TYP } from '../../src/identity/amc.js';
import { newSigningKey, peekClaim, signingKey, signJwt } from '../../src/identity/jwt.js';
import { encodeFrame } from '../../src/mesh/frames.js';
import { PeerSession } from '../../src/mesh/peer-session.js';
import { addProvider, api, cleanup, dmsc, handGateway, logged, makeCerts, register, start, tempDir, waitFor, type Proc } from './harness.js';

describe('two trust domains peering over mutual TLS', () => {
  let a: Proc;
  let b: Proc;
  let gamma: Proc;
  let dir: string;
  let certs: Awaited<ReturnType<typeof makeCerts>>;
  const agents: Record<string, { aic: string; credential: string }> = {};

  const entries = async (p: Proc, prefix = '/') => (await api(p.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: p.token })).body.entries as { prefix: string; nextHops: { id: string; state: string; tags: string[] }[] }[];
  const hops = async (p: Proc, prefix: string) => (await entries(p, prefix)).find((e) => e.prefix === prefix)?.nextHops.map((h) => ({ id: h.id, state: h.state, tags: h.tags })) ?? [];
  const resolve = (capability: string, require: string[] = []) => api(a.url, 'POST', '/v1/resolve', { auth: agents['requester']!.credential, body: { capability, require } });
  const policy = (p: Proc, body: object) => api(p.url, 'PUT', '/v1/policies', { auth: p.token, body: { version: 1, ...body } });

  beforeAll(async () => {
    dir = await tempDir();
    certs = await makeCerts(dir);
    const tls = { cert: certs.cert, key: certs.key, ca: certs.ca, requireClientCert: true };
    // Alpha's operator hands its AMC keys over to beta's.
    const first = await start('node', ['--id', 'a1', '--domain', 'alpha']);
    const keys = dmsc('amc', 'keys', '--url', first.url);
    expect(keys.status, keys.stderr).toBe(0);
    expect(JSON.parse(keys.stdout).keys.map((k: { kid: string }) => k.kid).every((kid: string) => !kid.startsWith('gw-'))).toBe(true);
    await writeFile(join(dir, 'alpha-keys.json'), keys.stdout);
    const alphaData = first.dataDir;
    await first.stop();

    gamma = await start('amc', ['--domain', 'gamma']);
    await writeFile(join(dir, 'beta.json'), JSON.stringify({
      holdMs: 3000, tls, domains: [{ domain: 'alpha', jwks: 'alpha-keys.json', export: ['/capability/ocr/**'], exportTags: ['eu-privacy'], tags: { gdpr: 'eu-privacy' } }],
    }));
    b = await start('node', ['--id', 'b1', '--domain', 'beta', '--heartbeat-ms', '60000', '--mesh-config', join(dir, 'beta.json')]);
    await writeFile(join(dir, 'alpha.json'), JSON.stringify({
      holdMs: 3000, tls, upstream: 'b1',
      peers: [{ id: 'b1', address: b.peering, domain: 'beta' }],
      domains: [
        { domain: 'beta', jwks: `${b.url}/v1/amc/jwks`, import: ['/capability/ocr/**'], tags: { 'eu-privacy': 'gdpr' } },
        { domain: 'gamma', jwks: `${gamma.url}/v1/amc/jwks` },
      ],
    }));
    a = await start('node', ['--id', 'a1', '--domain', 'alpha', '--heartbeat-ms', '60000', '--mesh-config', join(dir, 'alpha.json')], alphaData);

    // Each domain tags by its own vocabulary; beta denies one name to alpha's agents.
    expect((await policy(b, {
      tags: [{ tag: 'eu-privacy', attribute: 'compliance', values: ['eu'] }],
      rules: [
        { id: 'no-alpha-plain', effect: 'deny', on: ['resolve'], requesters: { domains: ['alpha'] }, capabilities: ['/capability/ocr/plain'] },
        { id: 'secret-hr', effect: 'deny', on: ['resolve'], requesters: { domains: ['alpha'] }, capabilities: ['/capability/hr/**'] },
        // About beta's own provider of that name: alpha's 'acorp' is another provider.
        { id: 'no-local-acorp', effect: 'deny', on: ['resolve'], requesters: { providers: ['acorp'] }, capabilities: ['/capability/ocr/**'] },
      ],
    })).status).toBe(200);
    expect((await policy(a, { tags: [{ tag: 'gdpr', attribute: 'compliance', values: ['gdpr'] }], rules: [] })).status).toBe(200);
    const betaKey = await addProvider(b, 'bcorp', ['/capability/**']);
    const alphaKey = await addProvider(a, 'acorp', ['/capability/**']);
    agents['invoice'] = await register(b, betaKey, [{ name: '/capability/ocr/invoice', attributes: { compliance: 'eu' } }], 'http://127.0.0.1:9501');
    agents['plain'] = await register(b, betaKey, [{ name: '/capability/ocr/plain' }], 'http://127.0.0.1:9502');
    agents['payroll'] = await register(b, betaKey, [{ name: '/capability/payroll' }], 'http://127.0.0.1:9503');
    agents['betaRequester'] = await register(b, betaKey, [{ name: '/capability/beta-requester' }]);
    agents['alphaOnly'] = await register(a, alphaKey, [{ name: '/capability/alpha-only' }]);
    agents['requester'] = await register(a, alphaKey, [{ name: '/capability/requester' }]);
    await waitFor(async () => (await hops(a, '/capability/ocr/plain')).length > 0, 10_000);
  }, 60_000);
  afterAll(cleanup);

  it('exchanges digests only through the export policy, with tags in each side\'s own words', async () => {
    expect(await hops(a, '/capability/ocr/invoice')).toEqual([{ id: 'peer:b1', state: 'up', tags: ['gdpr'] }]);
    expect(await hops(a, '/capability/ocr/plain')).toEqual([{ id: 'peer:b1', state: 'up', tags: [] }]);
    // Not exported: no route at alpha; the only way toward beta for it is the upstream.
    expect((await entries(a)).map((e) => e.prefix).filter((p) => p.includes('payroll') || p.includes('beta-requester'))).toEqual([]);
    expect(await hops(a, '/')).toEqual([{ id: 'peer:b1', state: 'up', tags: [] }]);
    // Alpha exports nothing: beta has no route through a1 at all.
    expect((await entries(b)).filter((e) => e.nextHops.some((h) => h.id === 'peer:a1'))).toEqual([]);
    const peers = async (p: Proc) => (await api(p.url, 'GET', '/v1/peers', { auth: p.token })).body.peers.map((x: any) => ({ gateway: x.gateway, domain: x.domain, routes: x.routes }));
    expect(await peers(a)).toEqual([{ gateway: 'b1', domain: 'beta', routes: 2 }]);
    expect(await peers(b)).toEqual([{ gateway: 'a1', domain: 'alpha', routes: 0 }]);
  });

  it('resolves across the boundary: beta checks alpha\'s requester with alpha\'s keys, reads its tags, and applies its own policy', async () => {
    const r = await resolve('/capability/ocr/invoice', ['gdpr']);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.target).toEqual({ aic: agents['invoice']!.aic, endpoint: 'http://127.0.0.1:9501', gateway: 'b1' });
    expect(r.body.path).toEqual(['a1', 'b1']);
    // The plain agent carries no tag that means gdpr here.
    const untagged = await resolve('/capability/ocr/plain', ['gdpr']);
    expect({ status: untagged.status, code: untagged.body.error?.code }).toEqual({ status: 404, code: 'ERR_DMSC_NO_ROUTE' });
    const denied = await resolve('/capability/ocr/plain');
    expect({ status: denied.status, code: denied.body.error?.code }).toEqual({ status: 403, code: 'ERR_DMSC_FORBIDDEN' });
    expect(denied.body.error.message).toMatch(/b1: .*no-alpha-plain/);
    const d = await api(a.url, 'GET', '/v1/discover?capability=/capability/ocr/invoice', { auth: agents['requester']!.credential });
    expect(d.status, JSON.stringify(d.body)).toBe(200);
    expect(d.body.candidates.map((c: any) => [c.aic, c.gateway, c.tags])).toEqual([[agents['invoice']!.aic, 'b1', ['gdpr']]]);
  });

  it('never shows the other side what is not exported, even asked for by name through the upstream', async () => {
    const r = await resolve('/capability/payroll');
    expect({ status: r.status, code: r.body.error?.code }).toEqual({ status: 404, code: 'ERR_DMSC_NO_ROUTE' });
    // Beta was asked (through the upstream) and answered exactly as for a name nobody offers.
    const nobody = await resolve('/capability/nobody-offers-this');
    expect(r.body.error.message).toBe('b1: no reachable agent offers /capability/payroll');
    expect(nobody.body.error.message).toBe('b1: no reachable agent offers /capability/nobody-offers-this');
    // Not even a policy rule about a name it may not see gives the name away.
    const hr = await resolve('/capability/hr/salaries');
    expect({ status: hr.status, message: hr.body.error?.message }).toEqual({ status: 404, message: 'b1: no reachable agent offers /capability/hr/salaries' });
    const d = await api(a.url, 'GET', '/v1/discover?capability=/capability/payroll', { auth: agents['requester']!.credential });
    expect(d.status, JSON.stringify(d.body)).toBe(200);
    expect(d.body).toEqual({ capability: '/capability/payroll', candidates: [], path: ['a1', 'b1'] });
    // The other way: nothing of alpha's reaches beta.
    const back = await api(b.url, 'POST', '/v1/resolve', { auth: agents['betaRequester']!.credential, body: { capability: '/capability/alpha-only' } });
    expect({ status: back.status, code: back.body.error?.code }).toEqual({ status: 404, code: 'ERR_DMSC_NO_ROUTE' });
  });

  it('refuses untrusted domains, forged credentials and peers without the CA\'s certificate; the session between the domains carries on', async () => {
    const [host, port] = b.peering!.split(':') as [string, string];
    const closed = (s: { once(e: 'close', f: () => void): unknown }) => new Promise<void>((r) => s.once('close', () => r()));

    // Plain TCP to a TLS listener.
    const plain = tcpConnect(Number(port), host);
    plain.on('error', () => {});
    plain.write(encodeFrame({ type: 'HELLO', version: 2, gateway: 'x1', domain: 'alpha', nonce: 'n'.repeat(43) }));
    await closed(plain);
    // A certificate from another CA, and none at all.
    const stranger = tlsConnect({ host, port: Number(port), ca: await readFile(certs.ca), cert: await readFile(certs.otherCa), key: await readFile(join(dir, 'other-ca.key')) });
    stranger.on('error', () => {});
    await closed(stranger);
    const anonymous = tlsConnect({ host, port: Number(port), ca: await readFile(certs.ca) });
    anonymous.on('error', () => {});
    anonymous.resume();
    await closed(anonymous);
    await waitFor(() => logged(b, { msg: 'peer refused', reason: /TLS/ }, 3));

    // The right TLS certificate, claiming to be of alpha, with a key certificate alpha's AMC never signed.
    const socket = tlsConnect({ host, port: Number(port), ca: await readFile(certs.ca), cert: await readFile(certs.cert), key: await readFile(certs.key) });
    await new Promise((r) => socket.once('secureConnect', r));
    const key = signingKey(newSigningKey('gw-a9'));
    const forged = await signJwt(signingKey(newSigningKey('forger')), GRANT_KEY_TYP, { iss: 'dmsc-amc:alpha', sub: 'a9', dom: 'alpha', cnf: { jwk: key.publicJwk }, exp: Math.floor(Date.now() / 1000) + 600 });
    await expect(PeerSession.establish(socket, {
      role: 'dialler', local: { gateway: 'a9', domain: 'alpha' }, holdMs: 3000,
      credentials: () => ({ certificate: forged, privateKey: key.privateKey }), certified: async (cert) => (peekClaim(cert, 'cnf') as { jwk: JWK }).jwk,
    })).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: expect.stringMatching(/unknown key/) });

    // A real gateway of a domain beta does not trust.
    await writeFile(join(dir, 'gamma.json'), JSON.stringify({ tls: { cert: certs.cert, key: certs.key, ca: certs.ca }, peers: [{ id: 'b1', address: b.peering }] }));
    const g = await start('node', ['--id', 'g1', '--domain', 'gamma', '--mesh-config', join(dir, 'gamma.json')]);
    await waitFor(() => /gamma, which this node does not trust/.test(b.stderr()));
    await waitFor(() => logged(g, { msg: 'peering failed', peer: 'b1' }));

    // Gamma is trusted by alpha, but nothing is imported from it: its gateway cannot take
    // over alpha's own names or beta's, nor pass for b1.
    const gatewayOf = async (id: string) => {
      const add = dmsc('amc', 'gateway', 'add', id, '--url', gamma.url, '--data', gamma.dataDir);
      expect(add.status, add.stderr).toBe(0);
      return handGateway(gamma.url, JSON.parse(add.stdout).key, id, 'gamma', { holdMs: 3000 });
    };
    const [aHost, aPort] = a.peering!.split(':') as [string, string];
    const dialAlpha = async (id: string) => {
      const s = tlsConnect({ host: aHost, port: Number(aPort), ca: await readFile(certs.ca), cert: await readFile(certs.cert), key: await readFile(certs.key) });
      await new Promise((r) => s.once('secureConnect', r));
      return PeerSession.establish(s, await gatewayOf(id));
    };
    await expect(dialAlpha('b1')).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: expect.stringMatching(/b1 is a gateway of domain beta, not gamma/) });
    const g7 = await dialAlpha('g7');
    g7.send({ type: 'CSP_SNAPSHOT' });
    g7.send({ type: 'CSP_ROUTES', entries: ['/capability/requester', '/capability/ocr/invoice/x', '/capability/ocr/invoice'].map((name) => ({ name, tags: [], cost: 0, path: ['g7'] })) });
    g7.send({ type: 'CSP_EOS', version: 1 });
    const alphaPeers = async () => (await api(a.url, 'GET', '/v1/peers', { auth: a.token })).body.peers.map((x: any) => [x.gateway, x.domain, x.routes]);
    // The end of g7's snapshot is acknowledged once alpha has taken (or left) its routes.
    await new Promise<void>((r) => g7.on('message', (m) => m.type === 'CSP_ACK' && r()));
    expect(await alphaPeers()).toEqual([['b1', 'beta', 2], ['g7', 'gamma', 0]]);
    expect((await entries(a)).filter((e) => e.nextHops.some((h) => h.id === 'peer:g7'))).toEqual([]);
    g7.close();

    // Through all of it, alpha and beta kept their session.
    const peers = (await api(b.url, 'GET', '/v1/peers', { auth: b.token })).body.peers.map((x: any) => x.gateway);
    expect(peers).toEqual(['a1']);
    expect((await resolve('/capability/ocr/invoice', ['gdpr'])).status).toBe(200);

    // A connection that never starts its TLS handshake does not hold up a stop: the node
    // closes it itself and exits cleanly. (A node that left it open did not stop within
    // this test's time.)
    const idle = tcpConnect(Number(port), host);
    idle.on('error', () => {});
    await new Promise((r) => idle.once('connect', r));
    let closedByNode = false;
    idle.once('close', () => (closedByNode = true));
    await b.stop();
    expect(b.child.exitCode).toBe(0);
    await vi.waitFor(() => expect(closedByNode).toBe(true));
  }, 30_000);
});
