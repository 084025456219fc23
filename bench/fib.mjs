#!/usr/bin/env node
// The forwarding-table benchmark: one run prints the N-API floor, ReferenceTable (the
// pure-TypeScript baseline) and the native table side by side, as ratios, and writes
// bench/results/fib.json. Memory is measured in fresh child processes.
//   npm run bench -- fib [--prefixes N] [--queries N] [--trials N] [--batch N] [--seconds N] [--no-write]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ForwardingTable, ReferenceTable } from '../dist/index.js';
import { loadNative } from '../dist/fastpath/native.js';
import { batches, prefixes, queries } from './workload.mjs';
import { benchOptions } from './options.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: npm run bench -- fib [options]
  --prefixes N   table size (default 1000000)
  --queries N    names looked up per trial (default 1000000)
  --trials N     trials per measurement; the median is reported (default 5)
  --batch N      names per lookupPacked call (default 256)
  --seconds N    duration of each worker-scaling run (default 2)
  --no-write     do not write bench/results/fib.json`;

const { opts, int } = benchOptions('fib', USAGE, {
  prefixes: { type: 'string', default: '1000000' },
  queries: { type: 'string', default: '1000000' },
  trials: { type: 'string', default: '5' },
  batch: { type: 'string', default: '256' },
  seconds: { type: 'string', default: '2' },
  child: { type: 'string' },
});
const N = int('prefixes', 1000, 10_000_000);
const Q = int('queries', 1000, 10_000_000);
const TRIALS = int('trials', 1, 100);
const BATCH = int('batch', 1, 65536);
const SECONDS = int('seconds', 1, 600);

const gc = () => {
  for (let i = 0; i < 3; i++) globalThis.gc?.();
};

// ---- child: memory of one implementation, loading in chunks so input garbage stays small
if (opts.child === 'memory-native' || opts.child === 'memory-reference') {
  const native = opts.child === 'memory-native';
  const heapNative = loadNative().nativeHeapBytes;
  gc();
  const m0 = process.memoryUsage();
  const h0 = heapNative();
  const t = native ? new ForwardingTable() : new ReferenceTable();
  for (let start = 0; start < N; start += 10_000) t.apply(prefixes(Math.min(10_000, N - start), 10_000, start));
  gc();
  const m1 = process.memoryUsage();
  const out = {
    rss: m1.rss - m0.rss,
    heap: m1.heapUsed - m0.heapUsed,
    malloc: h0 >= 0 ? heapNative() - h0 : null,
    accounted: native ? t.stats({ top: 0 }).memoryBytes : null,
    size: t.size,
  };
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median ns per operation over TRIALS runs of fn (which performs `ops` operations). */
function nsPerOp(fn, ops) {
  fn(); // warm up
  const xs = [];
  for (let i = 0; i < TRIALS; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    xs.push(Number(process.hrtime.bigint() - t0) / ops);
  }
  return median(xs);
}

function progress(msg) {
  process.stderr.write(`  ${msg}\n`);
}

let sink = 0;
const addon = loadNative();
const cpu = cpus()[0]?.model ?? 'unknown cpu';
console.log(`dmsc fib benchmark: ${N.toLocaleString('en')} prefixes, 10,000 next-hop ids, ${Q.toLocaleString('en')} queries, median of ${TRIALS} trials`);
console.log(`machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}\n`);

progress('generating the workload');
const ops = prefixes(N);
const names = { uniform: queries(ops, Q, 'uniform'), zipf: queries(ops, Q, 'zipf') };

progress('loading ForwardingTable');
const fib = new ForwardingTable();
gc();
let t0 = process.hrtime.bigint();
fib.apply(ops);
const loadNativeS = Number(process.hrtime.bigint() - t0) / 1e9;

progress('loading ReferenceTable');
const ref = new ReferenceTable();
t0 = process.hrtime.bigint();
ref.apply(ops);
const loadRefS = Number(process.hrtime.bigint() - t0) / 1e9;

const packed = { uniform: batches(fib, names.uniform, BATCH), zipf: batches(fib, names.zipf, BATCH) };
const out = new Int32Array(BATCH);
const flows = new Uint32Array(BATCH).map((_, i) => Math.imul(i + 1, 2654435761) >>> 0);

const results = { floor: {}, reference: {}, lookup: {}, lookupPacked: {}, lookupPackedFlows: {} };
for (const dist of ['uniform', 'zipf']) {
  progress(`lookups, ${dist}`);
  const list = names[dist];
  results.floor.call = nsPerOp(() => {
    for (let i = 0; i < Q; i++) addon.noop();
  }, Q);
  results.floor[dist] = nsPerOp(() => {
    for (let i = 0; i < Q; i++) sink += addon.noopString(list[i]);
  }, Q);
  results.reference[dist] = nsPerOp(() => {
    for (let i = 0; i < Q; i++) if (ref.lookup(list[i]) === null) sink++;
  }, Q);
  results.lookup[dist] = nsPerOp(() => {
    for (let i = 0; i < Q; i++) if (fib.lookup(list[i]) === null) sink++;
  }, Q);
  results.lookupPacked[dist] = nsPerOp(() => {
    for (const b of packed[dist]) sink += fib.lookupPacked(b.bytes, b.offsets, out);
  }, Q);
  results.lookupPackedFlows[dist] = nsPerOp(() => {
    for (const b of packed[dist]) sink += fib.lookupPacked(b.bytes, b.offsets, out, { flows });
  }, Q);
}

progress('setHealth');
// 'solo' is referenced by one entry, 'hot' by 200,000 (their last next hop).
const HOT = Math.min(200_000, N - 1);
fib.apply([{ op: 'upsert', prefix: '/bench/solo', nextHops: [{ id: 'solo' }] }]);
const hotOps = [];
for (let i = 0; i < HOT; i++) hotOps.push({ ...ops[i], nextHops: [...ops[i].nextHops.slice(0, 3), { id: 'hot' }] });
fib.apply(hotOps);
ref.apply(hotOps);
ref.apply([{ op: 'upsert', prefix: '/bench/solo', nextHops: [{ id: 'solo' }] }]);
const DOWN = { state: 'down' };
const UP = { state: 'up' };
const healthOps = 200_000;
const setHealth = (t, id) => nsPerOp(() => {
  for (let i = 0; i < healthOps; i += 2) {
    t.setHealth(id, DOWN);
    t.setHealth(id, UP);
  }
}, healthOps);
const health = {
  native1: setHealth(fib, 'solo'),
  native200k: setHealth(fib, 'hot'),
  reference1: setHealth(ref, 'solo'),
  reference200k: setHealth(ref, 'hot'),
};

progress('workers');
async function workerRate(count) {
  const token = fib.share();
  const go = new SharedArrayBuffer(4);
  const url = new URL('./fib-worker.mjs', import.meta.url);
  const ws = [];
  for (let i = 0; i < count; i++) {
    ws.push(new Worker(url, { workerData: { token, names: names.zipf, batch: BATCH, seconds: SECONDS, go } }));
  }
  const ready = ws.map((w) => new Promise((r) => w.once('message', r)));
  await Promise.all(ready);
  const done = ws.map((w) => new Promise((r, j) => { w.once('message', r); w.once('error', j); }));
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  const rates = await Promise.all(done);
  await Promise.all(ws.map((w) => w.terminate()));
  return rates.reduce((a, b) => a + b, 0);
}
const workers = { one: await workerRate(1), two: await workerRate(2) };
fib.close();
ref.close();

progress('memory (fresh processes)');
const memory = {};
for (const impl of ['native', 'reference']) {
  const raw = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', `memory-${impl}`, '--prefixes', String(N)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  memory[impl] = JSON.parse(raw);
}
// Native: what the table maps itself (its own exact count: entry slab, index, ids) plus
// what it holds through malloc (glibc's count); RSS growth where malloc cannot be asked.
// Reference: the JS heap it keeps after a full GC.
const perPrefix = {
  native: (memory.native.malloc === null ? memory.native.rss : memory.native.accounted + memory.native.malloc) / N,
  nativeRss: memory.native.rss / N,
  nativeAccounted: memory.native.accounted / N,
  reference: memory.reference.heap / N,
};

// ---- report
const f = (x, d = 1) => x.toFixed(d);
const ratio = (a, b) => `${(a / b).toFixed(2)}x`;
const row = (label, u, z, note = '') => console.log(`${label.padEnd(38)}${f(u).padStart(10)}${f(z).padStart(12)}   ${note}`);
console.log(`${'ns per lookup'.padEnd(38)}${'uniform'.padStart(10)}${'zipf(1.1)'.padStart(12)}   zipf ratios`);
row('N-API no-op call (floor)', results.floor.call, results.floor.call);
row('N-API no-op + name copy (floor)', results.floor.uniform, results.floor.zipf);
row('ReferenceTable.lookup (baseline)', results.reference.uniform, results.reference.zipf, '1.00x baseline');
row('ForwardingTable.lookup (string)', results.lookup.uniform, results.lookup.zipf,
  `${ratio(results.reference.zipf, results.lookup.zipf)} faster than baseline, ${ratio(results.lookup.zipf, results.floor.zipf)} the floor`);
row(`ForwardingTable.lookupPacked (x${BATCH})`, results.lookupPacked.uniform, results.lookupPacked.zipf,
  `${ratio(results.reference.zipf, results.lookupPacked.zipf)} faster than baseline`);
row(`lookupPacked with flows (x${BATCH})`, results.lookupPackedFlows.uniform, results.lookupPackedFlows.zipf,
  `${ratio(results.reference.zipf, results.lookupPackedFlows.zipf)} faster than baseline`);
console.log('');
console.log(`load ${N.toLocaleString('en')} prefixes (apply)       native ${f(loadNativeS, 2)} s   reference ${f(loadRefS, 2)} s`);
console.log(`setHealth ns (1 / ${HOT.toLocaleString('en')} referencing)     native ${f(health.native1)} / ${f(health.native200k)}   reference ${f(health.reference1)} / ${f(health.reference200k)}`);
console.log(`memory per prefix (bytes)             native ${f(perPrefix.native, 0)} (mapped + malloc; RSS ${f(perPrefix.nativeRss, 0)}, table's own count ${f(perPrefix.nativeAccounted, 0)})   reference ${f(perPrefix.reference, 0)} (JS heap)   ratio ${f(perPrefix.native / perPrefix.reference, 2)}`);
console.log(`lookupPacked/s in workers (zipf)      1 worker ${(workers.one / 1e6).toFixed(2)} M   2 workers ${(workers.two / 1e6).toFixed(2)} M   scaling ${ratio(workers.two, workers.one)}`);

const targets = [
  ['lookupPacked <= 60 ns/lookup on zipf', results.lookupPacked.zipf <= 60],
  ['lookupPacked >= 10x faster than ReferenceTable (zipf)', results.reference.zipf / results.lookupPacked.zipf >= 10],
  ['lookup(string) faster than ReferenceTable.lookup (zipf and uniform)', results.lookup.zipf < results.reference.zipf && results.lookup.uniform < results.reference.uniform],
  ['1M prefixes loaded in <= 2 s', loadNativeS <= 2 * (N / 1e6)],
  ['setHealth <= 1 us and flat in references', health.native1 <= 1000 && health.native200k <= 1000 && health.native200k < 2 * health.native1 + 50],
  ['native memory per prefix <= 1/3 of ReferenceTable', perPrefix.native * 3 <= perPrefix.reference],
  ['2 workers >= 1.7x one', workers.two >= 1.7 * workers.one],
];
console.log('\ntargets:');
for (const [what, ok] of targets) console.log(`  ${ok ? 'met   ' : 'MISSED'} ${what}`);

const report = {
  date: new Date().toISOString(),
  machine: { cpu, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  workload: { prefixes: N, nextHopIds: 10_000, queries: Q, trials: TRIALS, batch: BATCH },
  nsPerLookup: results,
  loadSeconds: { native: loadNativeS, reference: loadRefS },
  setHealthNs: health,
  memory: { ...memory, perPrefix },
  workerLookupsPerSecond: workers,
  targets: Object.fromEntries(targets),
  sink,
};
if (!opts['no-write']) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'fib.json'), JSON.stringify(report, null, 2) + '\n');
  console.log('\nwrote bench/results/fib.json');
}
