// Memory of one table implementation in a fresh process (run by fib.mjs with --expose-gc):
//   node --expose-gc bench/fib-memory.mjs native|reference|map PREFIXES DEPTH SEED
// The table is loaded in chunks so the input's garbage stays small next to the table,
// with the same workload (prefixes, depth, seed) as the benchmark's own tables.
import { ForwardingTable, ReferenceTable } from '../dist/index.js';
import { loadNative } from '../dist/fastpath/native.js';
import { MapTable } from './fib-tables.mjs';
import { prefixes } from './workload.mjs';

const [impl, count, depthArg, seedArg] = process.argv.slice(2);
const N = Number(count);
const depth = depthArg.split('-').map(Number);
const seed = Number(seedArg);
const gc = () => {
  for (let i = 0; i < 3; i++) globalThis.gc?.();
};

const heapNative = loadNative().nativeHeapBytes;
gc();
const m0 = process.memoryUsage();
const h0 = heapNative();
const t = impl === 'native' ? new ForwardingTable() : impl === 'reference' ? new ReferenceTable() : new MapTable();
for (let start = 0; start < N; start += 10_000) t.apply(prefixes(Math.min(10_000, N - start), { start, seed, depth }));
gc();
const m1 = process.memoryUsage();
process.stdout.write(JSON.stringify({
  rss: m1.rss - m0.rss,
  heap: m1.heapUsed - m0.heapUsed,
  malloc: h0 >= 0 ? heapNative() - h0 : null,
  accounted: impl === 'native' ? t.stats({ top: 0 }).memoryBytes : null,
  size: t.size,
}));
