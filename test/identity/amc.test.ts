// The AMC alone: concurrent mutations do not interleave, revocations reach pollers in
// order, and credentials are bound to the provider named in the AIC.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatAic } from '../../src/identity/aic.js';
import { LocalAmc } from '../../src/identity/amc.js';
import { Store } from '../../src/store/store.js';

describe('LocalAmc', () => {
  let dir: string;
  let store: Store;
  let amc: LocalAmc;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmsc-amc-'));
    store = Store.open(dir);
    amc = await LocalAmc.open(store, { domain: 'd' });
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('numbers concurrent revocations so a poller between them misses none', async () => {
    const aics = [1, 2, 3].map((serial) => formatAic({ registry: 'gw', provider: 'p', serial }));
    const first = amc.revoke(aics[0]!, 'x');
    const rest = Promise.all([amc.revoke(aics[1]!, 'x'), amc.revoke(aics[2]!, 'x')]);
    await first;
    const mid = amc.updates(0, 'gw');
    expect(mid.revoked.map((r) => r.aic)).toEqual([aics[0]]);
    await rest;
    expect(amc.updates(mid.seq, 'gw').revoked.map((r) => r.aic)).toEqual([aics[1], aics[2]]);
    // And after a restart, from the store.
    await store.close();
    store = Store.open(dir);
    amc = await LocalAmc.open(store, { domain: 'd' });
    expect(amc.updates(0, 'gw').revoked.map((r) => r.aic).sort()).toEqual([...aics].sort());
  });

  it('adds a provider once, however many ask at the same time', async () => {
    const results = await Promise.allSettled([amc.addProvider('acme', ['/a/**']), amc.addProvider('acme', ['/b/**'])]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const ok = results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<{ key: string }>;
    expect((await amc.authorize(ok.value.key, 'gw', ['/a/x'])).provider).toBe('acme');
  });

  it('issues only for an AIC of the named provider and within its scope', async () => {
    await amc.addProvider('acme', ['/a/**']);
    await amc.addProvider('evil', ['/**']);
    const aic = formatAic({ registry: 'gw', provider: 'acme', serial: 7 });
    await expect(amc.issue('gw', aic, 'evil', ['/a/x'])).rejects.toMatchObject({ code: 'ERR_DMSC_FORBIDDEN' });
    await expect(amc.issue('gw', aic, 'acme', ['/b/x'])).rejects.toMatchObject({ code: 'ERR_DMSC_FORBIDDEN' });
    await expect(amc.issue('gw', aic, 'acme', ['/a/x'])).resolves.toMatchObject({ credential: expect.any(String) });
    await amc.revoke(aic, 'x');
    await expect(amc.issue('gw', aic, 'acme', ['/a/x'])).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
  });
});
