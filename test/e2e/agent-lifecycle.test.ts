// The whole life of an agent against a real `dmsc node` process: provider added,
// registration, heartbeats, resolution, missed heartbeats (down in the fast path),
// recovery, deregistration; and the directory rebuilt from the store after a restart.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { addProvider, api, cleanup, dmsc, register, start, tempDir, waitFor, type Proc } from './harness.js';

const HEARTBEAT = 200;

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

    // Both heartbeat; a (priority 0) is the choice.
    const beat = (r: { aic: string; credential: string }, body?: object) =>
      api(node.url, 'POST', `/v1/agents/${r.aic}/heartbeat`, { auth: r.credential, ...(body ? { body } : {}) });
    expect((await beat(a)).status).toBe(200);
    expect((await beat(b, { load: 0.2 })).status).toBe(200);
    const resolve = () => api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/ocr/high-precision' } });
    let r = await resolve();
    expect(r.status).toBe(200);
    expect(r.body.target).toEqual({ aic: a.aic, endpoint: 'http://127.0.0.1:9101', gateway: 'node-1' });
    expect(r.body.capability).toBe('/capability/ocr');
    expect(typeof r.body.grant).toBe('string');

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
});
