// Controller routes in the mesh: a route a controller pushed at A toward a service or an
// agent is advertised to A's peers like A's own agents, and withdrawn with it; a route
// through a peer is that peer's to advertise, not A's.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, cleanup, dmsc, start, tempDir, waitFor, type Proc } from '../e2e/harness.js';

describe('controller routes across two gateways', () => {
  let amc: Proc;
  let a: Proc;
  let b: Proc;

  const gatewayArgs = async (id: string, dir: string) => {
    const file = join(dir, id);
    const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
    expect(r.status, r.stderr).toBe(0);
    await writeFile(file, r.stdout);
    return ['--id', id, '--amc', amc.url, '--amc-key-file', file];
  };
  const hopsAt = async (p: Proc, prefix: string): Promise<string[]> => {
    const r = await api(p.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: p.token });
    return r.body.entries.find((e: { prefix: string }) => e.prefix === prefix)?.nextHops.map((h: { id: string }) => h.id) ?? [];
  };
  const batch = (ops: unknown[]) => api(a.url, 'POST', '/v1/fib/batches', { auth: a.token, body: { ops } });

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro']);
    const dir = await tempDir();
    a = await start('node', await gatewayArgs('A', dir));
    b = await start('node', [...(await gatewayArgs('B', dir)), '--peer', `A@${a.peering}`]);
  });
  afterAll(cleanup);

  it('advertises a pushed route to a service, not one through a peer, and withdraws it when removed', async () => {
    const r = await batch([
      { op: 'upsert', prefix: '/capability/ctl/svc', nextHops: [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/' }], },
      { op: 'upsert', prefix: '/capability/ctl/via', nextHops: [{ id: 'peer:Z' }] },
    ]);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    await waitFor(async () => (await hopsAt(b, '/capability/ctl/svc')).length > 0);
    expect(await hopsAt(b, '/capability/ctl/svc')).toEqual(['peer:A']);
    // The digest that carried /svc would have carried /via too, had A advertised it.
    expect(await hopsAt(b, '/capability/ctl/via')).toEqual([]);

    expect((await batch([{ op: 'remove', prefix: '/capability/ctl/svc' }])).status).toBe(200);
    await waitFor(async () => (await hopsAt(b, '/capability/ctl/svc')).length === 0);
    expect(await hopsAt(a, '/capability/ctl/via')).toEqual(['peer:Z']);
  });
});
