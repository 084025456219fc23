// What was acknowledged survives `kill -9`: 1,000 concurrent registrations, then SIGKILL
// in the middle of 1,000 more, restart on the same data directory. Every acknowledged agent
// is back, AICs are distinct, and AICs allocated after the restart never repeat one
// allocated before it, answered or not.
import { afterAll, describe, expect, it } from 'vitest';
import { parseAic } from '../../src/identity/aic.js';
import { addProvider, api, cleanup, register, start } from './harness.js';

const N = 1000;
const LATE = 1000;

describe('durability of registrations', () => {
  afterAll(cleanup);

  it(`keeps all ${N} acknowledged registrations across kill -9 and never reuses an AIC`, async () => {
    let node = await start('node');
    const key = await addProvider(node, 'bulk', ['/capability/bulk/**']);
    const acked = await Promise.all(Array.from({ length: N }, (_, i) => register(node, key, [{ name: `/capability/bulk/c${i % 50}` }], `http://127.0.0.1:${10000 + i}`)));
    expect(acked[0]!.body.heartbeat.intervalMs).toBe(1000);
    // Then kill -9 in the middle of 1,000 more, right as the 20th answer arrives: whatever
    // was answered 201 must survive too, and serials handed out to requests that never
    // got their answer are not reused.
    const late: typeof acked = [];
    let killed: Promise<void> | undefined;
    const more = Array.from({ length: LATE }, (_, i) => register(node, key, [{ name: '/capability/bulk/late' }], `http://127.0.0.1:${20000 + i}`).then((r) => {
      late.push(r);
      if (late.length === 20) killed = node.kill9();
    }, () => {}));
    await Promise.all(more);
    await killed;
    expect(late.length).toBeGreaterThanOrEqual(20);
    expect(late.length).toBeLessThan(LATE);
    acked.push(...late);

    const before = new Set(acked.map((a) => a.aic));
    expect(before.size).toBe(acked.length);

    node = await start('node', [], node.dataDir);
    const listed = await api(node.url, 'GET', '/v1/agents', { auth: node.token });
    const after = new Map<string, any>(listed.body.agents.map((a: any) => [a.aic, a]));
    for (const a of acked) {
      expect(after.has(a.aic), a.aic).toBe(true);
    }
    // Registrations still in flight at the kill may or may not have committed.
    expect(after.size).toBeGreaterThanOrEqual(acked.length);
    expect(after.size).toBeLessThanOrEqual(N + LATE);
    // The FIB was rebuilt from the store: 50 capability prefixes, each with its agents.
    const fib = await api(node.url, 'GET', '/v1/fib?prefix=/capability/bulk', { auth: node.token });
    const first = fib.body.entries.filter((e: any) => e.prefix !== '/capability/bulk/late');
    expect(first).toHaveLength(50);
    expect(first.reduce((n: number, e: any) => n + e.nextHops.length, 0)).toBe(N);

    // New serials start past the whole block reserved before the crash, so none that was
    // allocated then, answered or not, comes back.
    const maxOld = Math.max(...[...after.keys()].map((aic) => parseAic(aic).serial));
    const ceiling = Math.ceil(maxOld / 1024) * 1024;
    const fresh = await Promise.all(Array.from({ length: 20 }, () => register(node, key, [{ name: '/capability/bulk/new' }])));
    for (const f of fresh) {
      expect(before.has(f.aic)).toBe(false);
      expect(parseAic(f.aic).serial).toBeGreaterThan(ceiling);
    }
  });
});
