// Two reader workers look up continuously while the owner applies batches that each move
// a whole group of entries to a new next hop: no reader may see a mix of two batches.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { ForwardingTable, type FibOp } from '../../src/index.js';

const GROUP = 48;

function groupBatch(round: number): FibOp[] {
  const ops: FibOp[] = [];
  for (let i = 0; i < GROUP; i++) ops.push({ op: 'upsert', prefix: `/group/${i}`, nextHops: [{ id: `gen-${round}` }] });
  // Churn beside the group keeps the index growing, shrinking and reclaiming.
  ops.push({ op: 'upsert', prefix: `/noise/${round}`, nextHops: [{ id: `noise-${round % 7}` }] });
  if (round >= 16) ops.push({ op: 'remove', prefix: `/noise/${round - 16}` });
  return ops;
}

describe('ForwardingTable shared with worker threads', () => {
  it('readers never observe a partial batch while the owner writes', async () => {
    const fib = new ForwardingTable();
    fib.apply(groupBatch(0));
    const stop = new SharedArrayBuffer(4);
    const token = fib.share();
    const url = new URL('./fib-reader.worker.mjs', import.meta.url);
    const workers = [0, 1].map(() => new Worker(url, { workerData: { token, group: GROUP, stop } }));
    const results = workers.map((w) => new Promise<{ batches: number; mixed: number; misses: number; distinct: number }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    }));
    // Let both readers attach before writing.
    while (fib.stats().readers < 2) await new Promise((r) => setTimeout(r, 5));
    for (let round = 1; round <= 3000; round++) {
      fib.apply(groupBatch(round));
      if (round % 500 === 0) await new Promise((r) => setImmediate(r));
    }
    Atomics.store(new Int32Array(stop), 0, 1);
    const got = await Promise.all(results);
    await Promise.all(workers.map((w) => w.terminate()));
    for (const r of got) {
      expect(r.batches).toBeGreaterThan(0);
      expect(r.mixed).toBe(0);
      expect(r.misses).toBe(0);
    }
    expect(got.reduce((n, r) => n + r.distinct, 0)).toBeGreaterThan(2);
    const s = fib.stats();
    expect(s.readers).toBe(0);
    expect(s.pendingReclaim).toBeLessThan(64);
    expect(s.lookups).toBe(got.reduce((n, r) => n + r.batches * GROUP, 0));
    fib.close();
  });

  it('a view in a worker sees health changes and frees its slot when the worker exits', async () => {
    const fib = new ForwardingTable();
    fib.upsert('/h', [{ id: 'a' }, { id: 'b', priority: 1 }]);
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.dist).then(({ ForwardingTable }) => {
        const view = ForwardingTable.attach(workerData.token);
        parentPort.on('message', () => parentPort.postMessage(view.lookup('/h/x')));
        parentPort.postMessage('ready');
      });`;
    const dist = new URL('../../dist/index.js', import.meta.url).href;
    const w = new Worker(code, { eval: true, workerData: { token: fib.share(), dist } });
    const next = () => new Promise((resolve) => w.once('message', resolve));
    expect(await next()).toBe('ready');
    w.postMessage(0);
    expect(await next()).toEqual({ prefix: '/h', nextHop: 'a', failover: false });
    fib.setHealth('a', { state: 'down' });
    w.postMessage(0);
    expect(await next()).toEqual({ prefix: '/h', nextHop: 'b', failover: true });
    expect(fib.stats().readers).toBe(1);
    await w.terminate();
    expect(fib.stats().readers).toBe(0);
    fib.close();
  });
});
