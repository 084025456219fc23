#!/usr/bin/env node
// The forwarding-table benchmark. One run measures, side by side and on the same seeded
// workload: the N-API floor, a Map table as a user would write it, ReferenceTable and the
// native ForwardingTable; throughput (median of trials), per-call latency distributions,
// load, setHealth, memory (fresh processes) and worker scaling, each read against the
// machine's measured DRAM latency. Writes bench/results/fib.json and fib-latency.svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ForwardingTable, ReferenceTable } from '../dist/index.js';
import { loadNative } from '../dist/fastpath/native.js';
import { benchOptions } from './options.mjs';
import { latencyRuns, latencySink, timerLatency } from './fib-latency.mjs';
import { measureSink, memoryOf, setHealthRuns, throughput, timeLoads, workerScaling } from './fib-measure.mjs';
import { header, latencyChart, report, targets } from './fib-report.mjs';
import { MapTable } from './fib-tables.mjs';
import { machine } from './machine.mjs';
import { batches, NEXT_HOP_IDS, prefixes, queries, rng, streamSeed } from './workload.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: npm run bench -- fib [options]     (or: dmsc bench fib [options])
workload
  --prefixes N      table size (default 1000000)
  --depth A-B       components per prefix, uniform in A..B (default 3-5)
  --dist D[,D]      query popularity: uniform, zipf (s = 1.1) or zipf:S for any S > 0;
                    several separated by commas (default uniform,zipf:1.1)
  --queries N       names looked up per trial, and per latency series (default 1000000)
  --seed N          seed of every random choice: prefixes, next hops, queries (default 1)
measurement
  --batch N         names per lookupPacked call (default 256)
  --threads N       worker threads of the scaling run: 1..N are measured (default 2)
  --trials N        trials per throughput figure; the median is reported (default 5)
  --seconds N       duration of each worker-scaling run (default 2)
  --rounds N        worker-scaling rounds, each running 1..threads workers in turn; the
                    median ratio of a round's runs is reported (default 3)
output
  --json            print one JSON document to stdout instead of the text report
  --no-write        do not write bench/results/fib.json and bench/results/fib-latency.svg`;

const { opts, int } = benchOptions('fib', USAGE, {
  prefixes: { type: 'string', default: '1000000' },
  depth: { type: 'string', default: '3-5' },
  dist: { type: 'string', default: 'uniform,zipf:1.1' },
  queries: { type: 'string', default: '1000000' },
  seed: { type: 'string', default: '1' },
  batch: { type: 'string', default: '256' },
  threads: { type: 'string', default: '2' },
  trials: { type: 'string', default: '5' },
  seconds: { type: 'string', default: '2' },
  rounds: { type: 'string', default: '3' },
  json: { type: 'boolean', default: false },
});
const bad = (msg) => {
  console.error(`dmsc bench fib: ${msg} (--help lists the options)`);
  process.exit(2);
};

function parseDepth(s) {
  const m = /^(\d+)-(\d+)$/.exec(s) ?? /^(\d+)$/.exec(s);
  const [lo, hi] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [NaN, NaN];
  // Names add up to 2 components to a prefix, and a name has at most 32.
  if (!(lo >= 1 && lo <= hi && hi <= 30)) bad(`--depth must be A-B with 1 <= A <= B <= 30, got '${s}'`);
  return [lo, hi];
}

function parseDists(s) {
  const out = [];
  for (const part of s.split(',')) {
    const m = /^zipf(?::(.+))?$/.exec(part.trim());
    if (part.trim() === 'uniform') out.push({ kind: 'uniform', key: 'uniform', label: 'uniform' });
    else if (m) {
      const z = m[1] === undefined ? 1.1 : Number(m[1]);
      if (!(Number.isFinite(z) && z > 0)) bad(`--dist zipf:S needs a number S > 0, got '${part}'`);
      out.push({ kind: 'zipf', s: z, key: `zipf:${z}`, label: `zipf(${z})` });
    } else bad(`--dist takes uniform, zipf or zipf:S (S > 0), comma-separated; got '${part}'`);
  }
  if (new Set(out.map((d) => d.key)).size !== out.length) bad(`--dist names a distribution twice: '${s}'`);
  return out;
}

const o = {
  prefixes: int('prefixes', 1000, 10_000_000),
  depth: parseDepth(opts.depth),
  dists: parseDists(opts.dist),
  queries: int('queries', 1000, 10_000_000),
  seed: int('seed', 0, 2 ** 32 - 1),
  batch: int('batch', 1, 65536),
  threads: int('threads', 1, 63), // a table takes at most 63 attached views
  trials: int('trials', 1, 100),
  seconds: int('seconds', 1, 600),
  rounds: int('rounds', 1, 100),
  json: opts.json,
  write: !opts['no-write'],
};
const N = o.prefixes;

const gc = () => {
  for (let i = 0; i < 3; i++) globalThis.gc?.();
};
const start = Date.now();
const progress = (msg) => process.stderr.write(`  [${((Date.now() - start) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
const say = o.json ? () => {} : (s = '') => process.stdout.write(`${s}\n`);
if (!globalThis.gc) progress('note: run with --expose-gc (npm run bench does) for memory figures taken after a full GC');

progress('machine: caches from sysfs, pointer chase in DRAM and in the LLC');
const mach = await machine({ seed: o.seed });
header(say, o, mach);

progress('generating the workload');
const ops = prefixes(N, { seed: o.seed, depth: o.depth });
const names = {};
for (const d of o.dists) names[d.key] = queries(ops, o.queries, d, o.seed);

progress(`loading ForwardingTable (${Math.min(o.trials, 3)} loads into fresh tables)`);
const addon = loadNative();
const nativeLoad = await timeLoads(() => new ForwardingTable(), ops, Math.min(o.trials, 3), gc);
const fib = nativeLoad.table;
progress('loading ReferenceTable');
const refLoad = await timeLoads(() => new ReferenceTable(), ops, 1, gc);
const ref = refLoad.table;
progress('loading the Map table');
const mapLoad = await timeLoads(() => new MapTable(rng(streamSeed(o.seed, 'picks'))), ops, 1, gc);
const map = mapLoad.table;
const load = {
  native: { seconds: nativeLoad.seconds, trials: nativeLoad.trials },
  reference: { seconds: refLoad.seconds },
  map: { seconds: mapLoad.seconds },
};

const packed = {};
for (const d of o.dists) packed[d.key] = batches(fib, names[d.key], o.batch);

// A comparison is only worth reading if the tables do the same work: every name must find
// the same prefix in all three, and lookupPacked must route every name of a batch.
progress('checking that the tables agree');
for (const d of o.dists) {
  for (const name of names[d.key].slice(0, 10_000)) {
    const a = fib.lookup(name)?.prefix;
    const b = ref.lookup(name)?.prefix;
    const c = map.lookup(name)?.prefix;
    if (a === undefined || a !== b || a !== c) throw new Error(`the tables disagree on ${name}: native ${a}, reference ${b}, Map table ${c}`);
  }
  const b0 = packed[d.key][0];
  const routed = fib.lookupPacked(b0.bytes, b0.offsets, new Int32Array(o.batch));
  if (routed !== b0.offsets.length - 1) throw new Error(`lookupPacked routed ${routed} of ${b0.offsets.length - 1} names`);
}

const tput = {};
for (const d of o.dists) {
  progress(`throughput, ${d.label}: ${o.trials} trials of ${o.queries.toLocaleString('en')} names per series`);
  gc();
  tput[d.key] = throughput({ addon, map, ref, fib, names: names[d.key], packed: packed[d.key], batch: o.batch, trials: o.trials });
}

progress('latency: the timer alone');
const latency = { timer: timerLatency(o.queries, gc) };
for (const d of o.dists) {
  progress(`latency, ${d.label}`);
  latency[d.key] = latencyRuns({
    addon, map, ref, fib, names: names[d.key], packed: packed[d.key], batch: o.batch, gc, progress: (m) => progress(`  ${m}`),
  });
}

// The scaling run reads the table the throughput figures were taken on (before the
// setHealth measurement rewrites 200,000 of its entries).
const workerDist = o.dists.find((d) => d.kind === 'zipf') ?? o.dists[0];
progress(`workers, ${workerDist.label}`);
const workers = { dist: workerDist.key, ...(await workerScaling({ fib, names: names[workerDist.key], threads: o.threads, batch: o.batch, seconds: o.seconds, rounds: o.rounds, progress: (m) => progress(`  ${m}`) })) };

progress('setHealth');
// 'solo' is referenced by one entry, 'hot' by up to 200,000 (as their last next hop).
const HOT = Math.min(200_000, N - 1);
const soloOp = { op: 'upsert', prefix: '/bench/solo', nextHops: [{ id: 'solo' }] };
const hotOps = [soloOp];
for (let i = 0; i < HOT; i++) hotOps.push({ ...ops[i], nextHops: [...ops[i].nextHops.slice(0, 3), { id: 'hot' }] });
for (const t of [fib, ref, map]) t.apply(hotOps);
const health = { referencing: { one: 1, many: HOT }, ...setHealthRuns({ fib, ref, map, trials: o.trials }) };
fib.close();
ref.close();
map.close();

progress('memory, each table in a fresh process');
const memory = {};
for (const impl of ['native', 'reference', 'map']) {
  progress(`  ${impl}`);
  memory[impl] = memoryOf(impl, o);
}
// Native: what the table maps itself (its own exact count: entry slab, index, ids) plus
// what it holds through malloc (glibc's count); RSS growth where malloc cannot be asked.
// The TypeScript tables: the JS heap they keep after a full GC.
const per = (m, bytes) => (m.error ? null : bytes(m) / N);
memory.perPrefix = {
  native: per(memory.native, (m) => (m.malloc === null ? m.rss : m.accounted + m.malloc)),
  nativeRss: per(memory.native, (m) => m.rss),
  nativeAccounted: per(memory.native, (m) => m.accounted),
  reference: per(memory.reference, (m) => m.heap),
  map: per(memory.map, (m) => m.heap),
};
for (const [impl, m] of Object.entries(memory)) if (m.error) progress(`  memory of ${impl} not measured: ${m.error}`);
if (workers.error) progress(`  worker scaling stopped: ${workers.error}`);

const results = { options: o, machine: mach, throughput: tput, latency, load, setHealth: health, memory, workers };
const goals = targets(o, results);
report(say, o, results, goals);

const doc = {
  date: new Date().toISOString(),
  options: { ...o, dists: o.dists.map((d) => d.key) },
  workload: {
    prefixes: N, depth: o.depth, nextHopIds: NEXT_HOP_IDS, nextHopsPerPrefix: 4, queryExtraComponents: [0, 2],
    queries: o.queries, dists: o.dists, seed: o.seed, batch: o.batch,
  },
  machine: mach,
  units: 'ns per name unless named otherwise; latency includes the timer overhead (latency.timer)',
  throughput: tput,
  latency: stripPoints(latency),
  load,
  setHealth: health,
  memory,
  workers,
  targets: goals,
  seconds: (Date.now() - start) / 1000,
  sink: measureSink() + latencySink(),
};
if (o.json) process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
if (o.write) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'fib.json'), JSON.stringify(doc, null, 2) + '\n');
  writeFileSync(join(here, 'results', 'fib-latency.svg'), latencyChart(o, results));
  if (o.json) progress('wrote bench/results/fib.json and bench/results/fib-latency.svg');
  else say('\nwrote bench/results/fib.json and bench/results/fib-latency.svg');
}
progress(`done in ${((Date.now() - start) / 1000).toFixed(0)} s`);

/** The CDF points are for the SVG; the JSON keeps the figures. */
function stripPoints(lat) {
  const strip = (f) => {
    const { points, ...rest } = f;
    return rest;
  };
  const out = { timer: strip(lat.timer) };
  for (const [k, v] of Object.entries(lat)) {
    if (k === 'timer') continue;
    out[k] = Object.fromEntries(Object.entries(v).map(([s, f]) => [s, typeof f === 'object' ? strip(f) : f]));
  }
  return out;
}
