// What was acknowledged survives `kill -9`: 1,000 concurrent registrations, SIGKILL right
// after the last 201, restart on the same data directory. Every acknowledged agent is
// back, AICs are distinct, and AICs allocated after the restart never repeat an old one.
import { afterAll, describe, expect, it } from 'vitest';
import { parseAic } from '../../src/identity/aic.js';
import { addProvider, api, cleanup, register, start } from './harness.js';

const N = 1000;

describe('durability of registrations', () => {
  afterAll(cleanup);

  it(`keeps all ${N} acknowledged registrations across kill -9 and never reuses an AIC`, async () => {
    let node = await start('node');
    const key = await addProvider(node, 'bulk', ['/capability/bulk/**']);
    const acked = await Promise.all(Array.from({ length: N }, (_, i) => register(node, key, [{ name: `/capability/bulk/c${i % 50}` }], `http://127.0.0.1:${10000 + i}`)));
    await node.kill9();

    const before = new Set(acked.map((a) => a.aic));
    expect(before.size).toBe(N);

    node = await start('node', [], node.dataDir);
    const listed = await api(node.url, 'GET', '/v1/agents', { auth: node.token });
    const after = new Map<string, any>(listed.body.agents.map((a: any) => [a.aic, a]));
    for (const a of acked) {
      expect(after.has(a.aic), a.aic).toBe(true);
    }
    expect(after.size).toBe(N);
    // The FIB was rebuilt from the store: 50 capability prefixes, each with its agents.
    const fib = await api(node.url, 'GET', '/v1/fib?prefix=/capability/bulk', { auth: node.token });
    expect(fib.body.entries).toHaveLength(50);
    expect(fib.body.entries.reduce((n: number, e: any) => n + e.nextHops.length, 0)).toBe(N);

    const maxOld = Math.max(...acked.map((a) => parseAic(a.aic).serial));
    const fresh = await Promise.all(Array.from({ length: 20 }, () => register(node, key, [{ name: '/capability/bulk/new' }])));
    for (const f of fresh) {
      expect(before.has(f.aic)).toBe(false);
      expect(parseAic(f.aic).serial).toBeGreaterThan(maxOld);
    }
  });
});
