// Per-call latency of the fib benchmark's tables: each call is timed alone between two
// process.hrtime.bigint() reads and the samples go to HdrHistogram afterwards. Every
// table gets its own loop, written out, so that no call site inside a timed region is
// shared (and made polymorphic) between tables.
import { cdfPoints, histogramOf, summarize, timerOverhead } from './latency.mjs';

let sink = 0;

function noopString(addon, list) {
  const s = new Float64Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const t0 = process.hrtime.bigint();
    const r = addon.noopString(list[i]);
    const t1 = process.hrtime.bigint();
    sink += r;
    s[i] = Number(t1 - t0);
  }
  return s;
}

function mapLookup(map, list) {
  const s = new Float64Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const t0 = process.hrtime.bigint();
    const r = map.lookup(list[i]);
    const t1 = process.hrtime.bigint();
    if (r === null) sink++;
    s[i] = Number(t1 - t0);
  }
  return s;
}

function refLookup(ref, list) {
  const s = new Float64Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const t0 = process.hrtime.bigint();
    const r = ref.lookup(list[i]);
    const t1 = process.hrtime.bigint();
    if (r === null) sink++;
    s[i] = Number(t1 - t0);
  }
  return s;
}

function fibLookup(fib, list) {
  const s = new Float64Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const t0 = process.hrtime.bigint();
    const r = fib.lookup(list[i]);
    const t1 = process.hrtime.bigint();
    if (r === null) sink++;
    s[i] = Number(t1 - t0);
  }
  return s;
}

/** One sample per call of lookupPacked: the batch's time, and that time per name. */
function fibPacked(fib, packed, out, passes) {
  const batch = new Float64Array(packed.length * passes);
  const perName = new Float64Array(packed.length * passes);
  let k = 0;
  for (let p = 0; p < passes; p++) {
    for (let i = 0; i < packed.length; i++) {
      const b = packed[i];
      const t0 = process.hrtime.bigint();
      const r = fib.lookupPacked(b.bytes, b.offsets, out);
      const t1 = process.hrtime.bigint();
      sink += r;
      const ns = Number(t1 - t0);
      batch[k] = ns;
      perName[k++] = ns / (b.offsets.length - 1);
    }
  }
  return { batch, perName };
}

const figure = (samples) => {
  const h = histogramOf(samples);
  return { ...summarize(h), points: cdfPoints(h) };
};

/** The empty timed region, measured as many times as there are names. */
export function timerLatency(n, gc) {
  timerOverhead(Math.min(n, 100_000)); // warm-up: the JIT compiles the loop first
  gc();
  return figure(timerOverhead(n));
}

/**
 * Latency of every series for one query distribution. lookupPacked is timed over enough
 * passes of the batches for at least `minBatches` samples, so its p99.9 has 50 behind it.
 */
export function latencyRuns({ addon, map, ref, fib, names, packed, batch, minBatches = 50_000, gc, progress }) {
  const out = new Int32Array(batch);
  const passes = Math.max(1, Math.min(50, Math.ceil(minBatches / packed.length)));
  // Each loop first runs over a slice of the names, so the samples are of optimized code.
  const run = (label, loop, table) => {
    progress(label);
    loop(table, names.slice(0, 20_000));
    gc();
    return figure(loop(table, names));
  };
  const res = {
    floor: run('floor', noopString, addon),
    map: run('Map table', mapLookup, map),
    reference: run('ReferenceTable', refLookup, ref),
    lookup: run('ForwardingTable.lookup', fibLookup, fib),
  };
  progress(`ForwardingTable.lookupPacked, ${passes} pass(es) over ${packed.length} batches`);
  fibPacked(fib, packed.slice(0, 200), out, 1);
  gc();
  const p = fibPacked(fib, packed, out, passes);
  res.packedBatch = figure(p.batch);
  res.packedName = figure(p.perName);
  res.packedPasses = passes;
  return res;
}

export const latencySink = () => sink;
