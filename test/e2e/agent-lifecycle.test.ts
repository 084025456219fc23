// The whole life of an agent against a real `dmsc node` process: provider added,
// registration, heartbeats, resolution, missed heartbeats (down in the fast path),
// recovery, deregistration; and the directory rebuilt from the store after a restart.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, register, start, tempDir, waitFor, type Proc, type Registered } from './harness.js';

const HEARTBEAT = 300;

describe('agent lifecycle on one node', () => {
  let node: Proc;
  beforeAll(async () => {
    node = await start('node', ['--heartbeat-ms', String(HEARTBEAT)]);
  });
  afterAll(cleanup);

  const fibState = async (aic: string) => {
    const r = await api(node.url, 'GET', '/v1/fib?prefix=/capability/ocr', { auth: node.token });
    return r.body.entries.flatMap((e: any) => e.nextHops).find((h: any) => h.id === aic)?.state as string | undefined;
  };

  it('registers, heartbeats, resolves, goes down when silent, comes back, deregisters', async () => {
    const add = dmsc('provider', 'add', 'acme', '--scope', '/capability/ocr/**', '--url', node.url, '--data', node.dataDir);
    expect(add.status, add.stderr).toBe(0);
    const key = JSON.parse(add.stdout).key as string;
    expect(key).toMatch(/^dmsc_pk_/);

    const a = await register(node, key, [{ name: '/capability/ocr' }], 'http://127.0.0.1:9101');
    const b = await register(node, key, [{ name: '/capability/ocr', priority: 1 }], 'http://127.0.0.1:9102');
    expect(a.body.heartbeat).toEqual({ intervalMs: HEARTBEAT, misses: 3 });
    expect(dmsc('aic', 'check', a.aic).status).toBe(0);
    expect(a.body.acs.capabilities.map((c: any) => c.name)).toEqual(['/capability/ocr']);

    // The operator's view through the CLI.
    const cli = (...args: string[]) => {
      const out = dmsc(...args, '--url', node.url, '--data', node.dataDir);
      expect(out.status, out.stderr).toBe(0);
      return JSON.parse(out.stdout);
    };
    expect(cli('agent', 'list').agents.map((x: any) => x.aic)).toEqual([a.aic, b.aic]);
    expect(cli('agent', 'show', a.aic).acs).toMatchObject({ aic: a.aic, provider: 'acme', endpoints: [{ url: 'http://127.0.0.1:9101' }] });
    expect(cli('fib', 'show', '--prefix', '/capability/ocr').entries.map((e: any) => e.prefix)).toEqual(['/capability/ocr']);
    expect(cli('provider', 'list').providers).toEqual([{ name: 'acme', scopes: ['/capability/ocr/**'], createdAt: expect.any(Number) }]);

    // Both heartbeat; a (priority 0) is the choice.
    const beat = (r: { aic: string; credential: string }, body?: object) =>
      api(node.url, 'POST', `/v1/agents/${r.aic}/heartbeat`, { auth: r.credential, ...(body ? { body } : {}) });
    expect((await beat(b, { load: 0.2 })).status).toBe(200);
    expect((await beat(a)).status).toBe(200);
    const resolve = () => api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/ocr/high-precision' } });
    let r = await resolve();
    expect(r.status).toBe(200);
    expect(r.body.target).toEqual({ aic: a.aic, endpoint: 'http://127.0.0.1:9101', gateway: 'node-1' });
    expect(r.body.capability).toBe('/capability/ocr');
    expect(r.body.path).toEqual(['node-1']);
    // The grant is a JWT signed by the gateway's published key, naming requester, target
    // and capability, valid for 60 s.
    const jwks = createLocalJWKSet((await api(node.url, 'GET', '/.well-known/jwks.json')).body);
    const { payload } = await jwtVerify(r.body.grant, jwks, { typ: 'dmsc-grant+jwt', issuer: 'dmsc-gw:node-1', audience: a.aic });
    expect(payload).toMatchObject({ sub: b.aic, aud: a.aic, cap: '/capability/ocr', req: '/capability/ocr/high-precision' });
    expect(payload.exp! - payload.iat!).toBeGreaterThanOrEqual(60);
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(61);
    // Load reached the fast path.
    const hops = (await api(node.url, 'GET', '/v1/fib?prefix=/capability/ocr', { auth: node.token })).body.entries[0].nextHops;
    expect(hops.find((h: any) => h.id === b.aic)).toMatchObject({ state: 'up', load: 0.2 });


    // a goes silent while b keeps beating: after 3 missed intervals a is down in the FIB
    // and resolution fails over to b.
    const keepB = setInterval(() => void beat(b).catch(() => {}), HEARTBEAT / 2);
    try {
      await waitFor(async () => (await fibState(a.aic)) === 'down', 10 * HEARTBEAT);
      r = await resolve();
      expect(r.body.target.aic).toBe(b.aic);
      expect(r.body.failover).toBe(true);
      const show = await api(node.url, 'GET', `/v1/agents/${a.aic}`, { auth: node.token });
      expect(show.body.health).toMatchObject({ state: 'down', missed: true });

      // The next heartbeat brings it back.
      expect((await beat(a)).status).toBe(200);
      expect(await fibState(a.aic)).toBe('up');
      expect((await beat(a)).status).toBe(200);
      expect((await resolve()).body.target.aic).toBe(a.aic);
    } finally {
      clearInterval(keepB);
    }

    // Deregistration removes it from the FIB and ends its credential.
    expect((await api(node.url, 'DELETE', `/v1/agents/${a.aic}`, { auth: a.credential })).status).toBe(204);
    expect(await fibState(a.aic)).toBeUndefined();
    expect((await beat(a)).status).toBe(401);
    expect((await api(node.url, 'GET', `/v1/agents/${a.aic}`, { auth: node.token })).status).toBe(404);
  });

  it('rebuilds the directory and FIB from the store after a restart; agents return on their next heartbeat', async () => {
    const key = await addProvider(node, 'restart-co', ['/capability/restart/**']);
    const a = await register(node, key, [{ name: '/capability/restart/x' }]);
    await node.stop();
    node = await start('node', ['--heartbeat-ms', String(HEARTBEAT)], node.dataDir);
    const listed = await api(node.url, 'GET', '/v1/agents', { auth: node.token });
    expect(listed.body.agents.map((x: any) => x.aic)).toContain(a.aic);
    const resolve = () => api(node.url, 'POST', '/v1/resolve', { auth: a.credential, body: { capability: '/capability/restart/x' } });
    expect((await resolve()).status).toBe(404);
    expect((await api(node.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { auth: a.credential })).status).toBe(200);
    const r = await resolve();
    expect(r.status).toBe(200);
    expect(r.body.target.aic).toBe(a.aic);
  });

  it('keeps static routes from --fib beside agents on the same prefix', async () => {
    const dir = await tempDir();
    const fibFile = join(dir, 'static.json');
    await writeFile(fibFile, JSON.stringify([{ op: 'upsert', prefix: '/capability/static', nextHops: [{ id: 'peer:ag2', priority: 5 }] }]));
    const n = await start('node', ['--fib', fibFile]);
    const hops = async () => (await api(n.url, 'GET', '/v1/fib?prefix=/capability/static', { auth: n.token })).body.entries[0]?.nextHops.map((h: any) => h.id);
    expect(await hops()).toEqual(['peer:ag2']);
    const a = await register(n, await addProvider(n, 'st', ['/capability/static/**']), [{ name: '/capability/static' }]);
    expect(await hops()).toEqual(['peer:ag2', a.aic]);
    expect((await api(n.url, 'DELETE', `/v1/agents/${a.aic}`, { auth: n.token })).status).toBe(204);
    expect(await hops()).toEqual(['peer:ag2']);
  });

  it('gives a 1 s heartbeat by default; a degraded agent is chosen only when no up one of its priority is left', async () => {
    const n = await start('node');
    const key = await addProvider(n, 'hb', ['/capability/hb/**']);
    const up = await register(n, key, [{ name: '/capability/hb' }]);
    const degraded = await register(n, key, [{ name: '/capability/hb' }]);
    expect(up.body.heartbeat).toEqual({ intervalMs: 1000, misses: 3 });
    const beat = (r: Registered, state: string) => api(n.url, 'POST', `/v1/agents/${r.aic}/heartbeat`, { auth: r.credential, body: { state } });
    expect((await beat(up, 'up')).status).toBe(200);
    expect((await beat(degraded, 'degraded')).status).toBe(200);
    const chosen = async (flow: string) => (await api(n.url, 'POST', '/v1/resolve', { auth: up.credential, body: { capability: '/capability/hb', flow } })).body;
    for (let i = 0; i < 20; i++) expect((await chosen(`f${i}`)).target.aic).toBe(up.aic);
    // The up one reports itself down (draining): the degraded one takes over, as a failover.
    expect((await beat(up, 'down')).status).toBe(200);
    const r = await chosen('f0');
    expect(r.target.aic).toBe(degraded.aic);
    expect(r.failover).toBe(true);
  });
});
