// Gateways of one domain (a standalone AMC) peering as real processes: digests travel
// the chain A — B — C, learned routes become FIB entries toward the peer with priority by
// path cost, a withdrawal reaches every gateway, and a gateway that dies has its next hop
// down at once and its routes dropped after the hold time.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, register, start, tempDir, waitFor, type Proc } from './harness.js';

describe('mesh of three gateways (chain)', () => {
  let amc: Proc;
  const gw: Record<string, Proc> = {};
  let keyDir: string;
  let providerKey: string;

  const gatewayArgs = async (id: string) => {
    const file = join(keyDir, id);
    const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
    if (r.status === 0) await writeFile(file, r.stdout);
    return ['--id', id, '--amc', amc.url, '--amc-key-file', file, '--heartbeat-ms', '60000'];
  };
  const peerOf = (id: string) => `${id}@${gw[id]!.peering}`;
  const fibHops = async (p: Proc, prefix: string) => {
    const r = await api(p.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: p.token });
    return r.body.entries.find((e: any) => e.prefix === prefix)?.nextHops.map((h: any) => ({ id: h.id, priority: h.priority, state: h.state, tags: h.tags })) ?? [];
  };

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro']);
    keyDir = await tempDir();
    providerKey = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    gw['A'] = await start('node', await gatewayArgs('A'));
    gw['B'] = await start('node', [...(await gatewayArgs('B')), '--peer', peerOf('A')]);
    gw['C'] = await start('node', [...(await gatewayArgs('C')), '--peer', peerOf('B')]);
  });
  afterAll(cleanup);

  it('carries a capability registered at C to A, two hops away, as a route toward B', async () => {
    await register(gw['C']!, providerKey, [{ name: '/capability/ocr/fast', attributes: {} }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast')).length > 0);
    expect(await fibHops(gw['A']!, '/capability/ocr/fast')).toEqual([{ id: 'peer:B', priority: 32769, state: 'up', tags: [] }]);
    expect(await fibHops(gw['B']!, '/capability/ocr/fast')).toEqual([{ id: 'peer:C', priority: 32768, state: 'up', tags: [] }]);
    // C never learns its own capability back.
    expect((await fibHops(gw['C']!, '/capability/ocr/fast')).map((h: any) => h.id).filter((id: string) => id.startsWith('peer:'))).toEqual([]);
  });

  it('resolves hop by hop (SRRP): A finds the agent at C through B, and reports the path', async () => {
    const requester = await register(gw['A']!, providerKey, [{ name: '/capability/requester' }]);
    const r = await api(gw['A']!.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/ocr/fast/x' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.path).toEqual(['A', 'B', 'C']);
    expect(r.body.capability).toBe('/capability/ocr/fast');
    expect(r.body.target.gateway).toBe('C');
    // Every hop applies its own policy: C denies this requester's provider.
    const deny = { version: 1, rules: [{ id: 'no-acme', effect: 'deny', requesters: { providers: ['acme'] }, capabilities: ['/capability/ocr/**'] }] };
    expect((await api(gw['C']!.url, 'PUT', '/v1/policies', { auth: gw['C']!.token, body: deny })).status).toBe(200);
    const refused = await api(gw['A']!.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/ocr/fast' } });
    expect({ status: refused.status, code: refused.body.error.code }).toEqual({ status: 403, code: 'ERR_DMSC_FORBIDDEN' });
    expect(refused.body.error.message).toMatch(/no-acme/);
    expect((await api(gw['C']!.url, 'PUT', '/v1/policies', { auth: gw['C']!.token, body: { version: 2, rules: [] } })).status).toBe(200);
  });

  it('puts local agents first: a name offered at A and at C goes to A\'s own agent', async () => {
    await register(gw['C']!, providerKey, [{ name: '/capability/both' }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/both')).length > 0);
    const local = await register(gw['A']!, providerKey, [{ name: '/capability/both' }]);
    const hops = await fibHops(gw['A']!, '/capability/both');
    expect(hops.map((h: any) => h.id)).toEqual([local.aic, 'peer:B']);
    expect(hops[0].priority).toBeLessThan(hops[1].priority);
  });

  it('withdraws a deregistered capability from every gateway', async () => {
    const x = await register(gw['C']!, providerKey, [{ name: '/capability/gone' }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/gone')).length > 0);
    expect((await api(gw['C']!.url, 'DELETE', `/v1/agents/${x.aic}`, { auth: gw['C']!.token })).status).toBe(204);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/gone')).length === 0 && (await fibHops(gw['B']!, '/capability/gone')).length === 0);
  });

  it('marks a dead gateway down at once, then drops its routes after the hold time', async () => {
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast')).length > 0);
    await gw['B']!.kill9();
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast'))[0]?.state === 'down', 12_000);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast')).length === 0, 20_000);
  }, 40_000);
});
