// The fib benchmark's text report, its targets and its latency chart.
import { describeCaches, formatBytes } from './machine.mjs';
import { latencySvg } from './svg.mjs';

const f = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d));
const n = (x) => x.toLocaleString('en');
const x2 = (x) => `${x.toFixed(2)}x`;
const COL = 50;
const DECIMALS = { ns: 1, x: 2, s: 2, B: 0 };

/** The zipf distribution targets are read on: s = 1.1 where the run has it. */
const targetDist = (o) => o.dists.find((d) => d.kind === 'zipf' && d.s === 1.1) ?? o.dists.find((d) => d.kind === 'zipf') ?? null;

export function header(say, o, m) {
  const dists = o.dists.map((d) => d.label).join(', ');
  say('dmsc fib benchmark');
  say(`workload  ${n(o.prefixes)} prefixes of ${o.depth[0]}-${o.depth[1]} components, 4 next hops each out of 10,000 ids (1 in 5 tagged); seed ${o.seed}`);
  say(`          ${n(o.queries)} query names per series, each a prefix + 0-2 components, popularity ${dists} over shuffled prefixes`);
  say(`          lookupPacked in batches of ${o.batch}; throughput = median of ${o.trials} trials; workers 1..${o.threads}, ${o.seconds} s each, ${o.rounds} rounds`);
  say(`machine   ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.platform}, Node ${m.node}`);
  say(`caches    ${describeCaches(m.caches)} (cpu0, sysfs)`);
  say(`memory    DRAM miss ${f(m.chase.dram.ns)} ns: one dependent random read in ${formatBytes(m.chase.dram.bytes)}, pages ${m.chase.dram.pages} (pointer chase)`);
  say(`          ${f(m.chase.llc.ns)} ns: the same in ${formatBytes(m.chase.llc.bytes)}, half the ${m.llc} sysfs reports (a VM's share of it may be less)`);
  if (m.chase.smallPages) say(`          ${f(m.chase.smallPages.ns)} ns: the same in ${formatBytes(m.chase.smallPages.bytes)} of 4 KiB pages (a JavaScript ArrayBuffer: a TLB miss on top)`);
  say();
}

export function report(say, o, r, goals) {
  const ds = o.dists;
  const cols = (vals, d = 1) => vals.map((v) => (typeof v === 'string' ? v : f(v, d)).padStart(12)).join('');
  const headRow = (label) => say(`${label.padEnd(COL)}${cols(ds.map((d) => d.label))}`);
  const row = (label, get, d = 1) => say(`  ${label.padEnd(COL - 2)}${cols(ds.map((dist) => get(r.throughput[dist.key], dist)), d)}`);

  headRow(`throughput, ns per name (median of ${o.trials})`);
  row('N-API no-op call (floor)', (t) => t.floorCall.ns);
  row('N-API no-op + name copy (floor)', (t) => t.floor.ns);
  row('Map table (plain TypeScript, bench/fib-tables)', (t) => t.map.ns);
  row('ReferenceTable.lookup', (t) => t.reference.ns);
  row('ForwardingTable.lookup(string)', (t) => t.lookup.ns);
  row(`ForwardingTable.lookupPacked (x${o.batch})`, (t) => t.lookupPacked.ns);
  row(`lookupPacked with flows (x${o.batch})`, (t) => t.lookupPackedFlows.ns);
  say();
  const ratio = (label, get) => say(`  ${label.padEnd(COL - 2)}${ds.map((d) => x2(get(r.throughput[d.key])).padStart(12)).join('')}`);
  headRow('native against the others (their ns / native ns)');
  ratio('lookupPacked vs ReferenceTable', (t) => t.reference.ns / t.lookupPacked.ns);
  ratio('lookupPacked vs Map table', (t) => t.map.ns / t.lookupPacked.ns);
  ratio('lookup(string) vs ReferenceTable', (t) => t.reference.ns / t.lookup.ns);
  ratio('lookup(string) vs Map table', (t) => t.map.ns / t.lookup.ns);
  headRow('native in units of the floor (native ns / floor ns)');
  ratio('lookup(string) / no-op + name copy', (t) => t.lookup.ns / t.floor.ns);
  const dram = r.machine.chase.dram.ns;
  headRow(`native in DRAM misses (native ns / ${f(dram)} ns)`);
  row('lookup(string)', (t) => t.lookup.ns / dram, 2);
  row('lookupPacked per name', (t) => t.lookupPacked.ns / dram, 2);
  row('lookupPacked per name, p99 of calls', (_, d) => r.latency[d.key].packedName.p99 / dram, 2);
  say();

  const L = r.latency;
  const lcols = (s) => [s.p50, s.p99, s.p999].map((v) => n(v).padStart(10)).join('') + n(s.max).padStart(13) + n(s.count).padStart(11);
  say(`latency, ns per call: each call timed alone between two process.hrtime.bigint() reads. Every`);
  say(`figure includes the timer's own cost (first row): subtract its p50 for the call alone. The max`);
  say(`is one sample, and can be a GC pause, an interrupt or a preemption.`);
  say(`${''.padEnd(COL)}${['p50', 'p99', 'p99.9'].map((h) => h.padStart(10)).join('')}${'max'.padStart(13)}${'calls'.padStart(11)}`);
  say(`  ${'timer overhead (an empty timed region)'.padEnd(COL - 2)}${lcols(L.timer)}`);
  for (const d of ds) {
    const s = L[d.key];
    say(`  ${d.label}`);
    say(`    ${'N-API noopString (floor)'.padEnd(COL - 4)}${lcols(s.floor)}`);
    say(`    ${'Map table lookup'.padEnd(COL - 4)}${lcols(s.map)}`);
    say(`    ${'ReferenceTable.lookup'.padEnd(COL - 4)}${lcols(s.reference)}`);
    say(`    ${'ForwardingTable.lookup(string)'.padEnd(COL - 4)}${lcols(s.lookup)}`);
    say(`    ${`lookupPacked, one call of ${o.batch} names`.padEnd(COL - 4)}${lcols(s.packedBatch)}`);
    say(`    ${`lookupPacked per name (call / ${o.batch})`.padEnd(COL - 4)}${lcols(s.packedName)}`);
  }
  say();

  const lbl = (s) => s.padEnd(COL);
  const ld = r.load;
  say(`${lbl(`load: apply of ${n(o.prefixes)} upserts`)}native ${f(ld.native.seconds, 2)} s (median of ${ld.native.trials.length})   Map table ${f(ld.map.seconds, 2)} s   ReferenceTable ${f(ld.reference.seconds, 2)} s (one load each)`);
  const h = r.setHealth;
  const pair = (p) => `${f(p.one.ns)} / ${f(p.many.ns)}`;
  const handle = (p, what) => (!p.available ? `${what}: not in this build` : p.error ? `${what}: failed (${p.error})` : `${what} ${pair(p)}`);
  say(`${lbl(`setHealth, ns: id in 1 / ${n(h.referencing.many)} entries`)}native ${pair(h.native)}   ${handle(h.nativeHandle, 'native handle(id)')}`);
  say(`${lbl('')}Map table ${pair(h.map)}   ReferenceTable ${pair(h.reference)}${h.referenceHandle.available ? `   ${handle(h.referenceHandle, 'ReferenceTable handle(id)')}` : ''}`);
  const m = r.memory;
  const pp = m.perPrefix;
  say(`${lbl('memory per prefix, bytes (fresh processes)')}native ${f(pp.native, 0)} (mapped + malloc; RSS growth ${f(pp.nativeRss, 0)}, the table's own count ${f(pp.nativeAccounted, 0)})`);
  say(`${lbl('')}Map table ${f(pp.map, 0)}   ReferenceTable ${f(pp.reference, 0)} (JS heap after GC)`);
  for (const impl of ['native', 'map', 'reference']) if (m[impl].error) say(`${lbl('')}${impl}: not measured (${m[impl].error})`);
  const w = r.workers;
  const wd = ds.find((d) => d.key === w.dist).label;
  say(`${lbl(`workers: lookupPacked names/s, ${wd}`)}${w.rates.map((v, i) => `${i + 1}: ${f(v / 1e6, 2)} M${i ? ` (${x2(w.scaling[i])})` : ''}`).join('   ')}${w.rounds > 1 ? `   (median of ${w.rounds} rounds; ratios ${w.perRound.filter((x) => x.length > 1).map((x) => x2(x[1] / x[0])).join(', ')})` : ''}${w.error ? `   stopped: ${w.error}` : ''}`);
  say();

  const td = targetDist(o);
  const differs = o.prefixes !== 1_000_000 || !td || td.s !== 1.1 || o.depth[0] !== 3 || o.depth[1] !== 5;
  say(`targets (1M prefixes, zipf(1.1), medians)${differs ? ` — this run's workload differs; only the load bound scales with it` : ''}`);
  for (const g of goals) {
    const status = g.met === null ? 'n/a   ' : g.met ? 'met   ' : 'MISSED';
    say(`  ${status} ${g.what.padEnd(74)}${g.value === null ? 'not measured' : `${f(g.value, DECIMALS[g.unit])}${g.unit === 'x' ? 'x' : ` ${g.unit}`}`}`);
  }
}

/** Each target with the figure it is read on; met is null where this run did not measure it. */
export function targets(o, r) {
  const td = targetDist(o);
  const uni = o.dists.find((d) => d.kind === 'uniform');
  const tz = td && r.throughput[td.key];
  const tu = uni && r.throughput[uni.key];
  const zl = td ? td.label : 'zipf';
  const h = r.setHealth;
  const viaHandle = h.nativeHandle.available && !h.nativeHandle.error;
  const hp = viaHandle ? h.nativeHandle : h.native;
  const loadBound = o.prefixes / 1e6;
  const goal = (what, value, unit, ok) => ({ what, value: value ?? null, unit, met: value === null || value === undefined ? null : ok(value) });
  return [
    goal(`lookupPacked <= 80 ns per name, ${zl}`, tz?.lookupPacked.ns, 'ns', (v) => v <= 80),
    goal('lookupPacked <= 120 ns per name, uniform', tu?.lookupPacked.ns, 'ns', (v) => v <= 120),
    goal(`lookupPacked >= 30x ReferenceTable, ${zl}`, tz && tz.reference.ns / tz.lookupPacked.ns, 'x', (v) => v >= 30),
    goal(`lookup(string) <= 400 ns, ${zl}`, tz?.lookup.ns, 'ns', (v) => v <= 400),
    goal(`setHealth <= 50 ns, id in 1 and in ${n(h.referencing.many)} entries (${viaHandle ? 'handle(id).setHealth' : 'setHealth(id)'})`, Math.max(hp.one.ns, hp.many.ns), 'ns', (v) => v <= 50),
    goal(`setHealth flat: id in ${n(h.referencing.many)} entries <= 1.5x id in 1 (${viaHandle ? 'handle' : 'by id'})`, hp.many.ns / hp.one.ns, 'x', (v) => v <= 1.5),
    goal(`apply of ${n(o.prefixes)} upserts <= ${f(loadBound, 2)} s (1 s per 1M)`, r.load.native.seconds, 's', (v) => v <= loadBound),
    goal('native memory <= 150 B per prefix', r.memory.perPrefix.native, 'B', (v) => v <= 150),
    goal('2 workers >= 1.9x one', r.workers.scaling[1], 'x', (v) => v >= 1.9),
  ];
}

const SERIES = [
  ['timer overhead (empty timed region)', '#999', '4 3', (s, L) => L.timer],
  ['N-API noopString (floor)', '#555', null, (s) => s.floor],
  ['Map table lookup (plain TypeScript)', '#e08a00', null, (s) => s.map],
  ['ReferenceTable.lookup', '#c62828', null, (s) => s.reference],
  ['ForwardingTable.lookup(string)', '#1565c0', null, (s) => s.lookup],
  ['ForwardingTable.lookupPacked, per name (call / batch)', '#2e7d32', null, (s) => s.packedName],
];

export function latencyChart(o, r) {
  const m = r.machine;
  return latencySvg({
    title: `dmsc fib: lookup latency, ${n(o.prefixes)} prefixes, ${n(o.queries)} calls per lookup(string) line`,
    subtitle: `${m.cpu}, Node ${m.node}, seed ${o.seed}. Each call timed alone with hrtime.bigint(): the dashed line is the timer alone, included in every other line.`,
    panels: o.dists.map((d) => ({
      title: `${d.label} popularity`,
      series: SERIES.map(([label, color, dash, get]) => ({ label, color, dash, points: get(r.latency[d.key], r.latency).points })),
    })),
  });
}
