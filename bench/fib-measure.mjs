// The fib benchmark's throughput measurements: ns per operation as the median of trials,
// setHealth (also through health handles where the table has them), worker scaling, and
// memory in fresh processes. Each timed loop is its own function literal, so that call
// sites are not shared (and made polymorphic) between the tables being compared.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

let sink = 0;
export const measureSink = () => sink;

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** { ns, trials }: ns per operation, the median of `trials` timed runs of fn after a warm-up. */
export function nsPerOp(fn, ops, trials) {
  fn();
  const xs = [];
  for (let i = 0; i < trials; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    xs.push(Number(process.hrtime.bigint() - t0) / ops);
  }
  return { ns: median(xs), trials: xs };
}

/**
 * ns per name of every series over one list of names (and its packed batches). The
 * trials go round the series in turn, so that a slow spell of the machine (another
 * process, frequency scaling) lands on all of them alike rather than on one.
 */
export function throughput({ addon, map, ref, fib, names, packed, batch, trials }) {
  const q = names.length;
  const out = new Int32Array(batch);
  const flows = new Uint32Array(batch).map((_, i) => Math.imul(i + 1, 2654435761) >>> 0);
  const series = {
    floorCall: () => {
      for (let i = 0; i < q; i++) addon.noop();
    },
    floor: () => {
      for (let i = 0; i < q; i++) sink += addon.noopString(names[i]);
    },
    map: () => {
      for (let i = 0; i < q; i++) if (map.lookup(names[i]) === null) sink++;
    },
    reference: () => {
      for (let i = 0; i < q; i++) if (ref.lookup(names[i]) === null) sink++;
    },
    lookup: () => {
      for (let i = 0; i < q; i++) if (fib.lookup(names[i]) === null) sink++;
    },
    lookupPacked: () => {
      for (const b of packed) sink += fib.lookupPacked(b.bytes, b.offsets, out);
    },
    lookupPackedFlows: () => {
      for (const b of packed) sink += fib.lookupPacked(b.bytes, b.offsets, out, { flows });
    },
  };
  const xs = {};
  for (const [k, fn] of Object.entries(series)) {
    fn(); // warm-up: optimized code, and the table's hot data in cache as in steady state
    xs[k] = [];
  }
  for (let t = 0; t < trials; t++) {
    for (const [k, fn] of Object.entries(series)) {
      const t0 = process.hrtime.bigint();
      fn();
      xs[k].push(Number(process.hrtime.bigint() - t0) / q);
    }
  }
  return Object.fromEntries(Object.entries(xs).map(([k, v]) => [k, { ns: median(v), trials: v }]));
}

// A full GC of the workload's heap (~650 MB for 1M ops) leaves the collector's threads
// sweeping it for a few hundred ms after gc() returns; a load timed meanwhile shares the
// two cores with them (the native load uses both), and measured 0.79-1.0 s against
// 0.73-0.79 s once they were done.
const SETTLE_MS = 500;

/** Loads `ops` into fresh tables `loads` times, each after a full GC has settled; the last table is kept. */
export async function timeLoads(make, ops, loads, gc) {
  const seconds = [];
  let table;
  for (let i = 0; i < loads; i++) {
    table?.close();
    gc();
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    table = make();
    const t0 = process.hrtime.bigint();
    table.apply(ops);
    seconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { table, seconds: median(seconds), trials: seconds };
}

const DOWN = { state: 'down' };
const UP = { state: 'up' };
const HEALTH_OPS = 200_000;

/**
 * setHealth of an id referenced by one entry ('solo') and by `hot` entries ('hot'),
 * toggling down and up; the tables must already hold both ids. With a `handle(id)`
 * method, the same through the handles, which skip the id's lookup.
 */
export function setHealthRuns({ fib, ref, map, trials }) {
  const per = (fn) => nsPerOp(fn, HEALTH_OPS, trials);
  const out = {
    native: {
      one: per(() => { for (let i = 0; i < HEALTH_OPS; i += 2) { fib.setHealth('solo', DOWN); fib.setHealth('solo', UP); } }),
      many: per(() => { for (let i = 0; i < HEALTH_OPS; i += 2) { fib.setHealth('hot', DOWN); fib.setHealth('hot', UP); } }),
    },
    reference: {
      one: per(() => { for (let i = 0; i < HEALTH_OPS; i += 2) { ref.setHealth('solo', DOWN); ref.setHealth('solo', UP); } }),
      many: per(() => { for (let i = 0; i < HEALTH_OPS; i += 2) { ref.setHealth('hot', DOWN); ref.setHealth('hot', UP); } }),
    },
    map: {
      one: per(() => { for (let i = 0; i < HEALTH_OPS; i += 2) { map.setHealth('solo', DOWN); map.setHealth('solo', UP); } }),
      many: per(() => { for (let i = 0; i < HEALTH_OPS; i += 2) { map.setHealth('hot', DOWN); map.setHealth('hot', UP); } }),
    },
    nativeHandle: handleRuns(fib, per, (h) => () => { for (let i = 0; i < HEALTH_OPS; i += 2) { h.setHealth(DOWN); h.setHealth(UP); } }),
    referenceHandle: handleRuns(ref, per, (h) => () => { for (let i = 0; i < HEALTH_OPS; i += 2) { h.setHealth(DOWN); h.setHealth(UP); } }),
  };
  if (!fib.setHealth('solo', UP) || !fib.setHealth('hot', UP)) throw new Error('setHealth: the ids are not in the table');
  return out;
}

/**
 * { available: false } until the table has handle(id); otherwise as the id paths, or the
 * error. Whether handle() of an id no entry references is null or a handle whose setHealth
 * returns false is the API's choice; it is recorded, not judged.
 */
function handleRuns(table, per, loop) {
  if (typeof table.handle !== 'function') return { available: false };
  try {
    const solo = table.handle('solo');
    const hot = table.handle('hot');
    if (!solo || !hot) throw new Error(`handle() gave ${solo} / ${hot} for ids the table references`);
    if (solo.setHealth(UP) !== true || hot.setHealth(UP) !== true) throw new Error('handle(id).setHealth() did not return true');
    const none = table.handle('bench-no-such-id');
    const unreferenced = none === null ? 'null' : `a handle whose setHealth gives ${none.setHealth(UP)}`;
    return { available: true, unreferenced, one: per(loop(solo)), many: per(loop(hot)) };
  } catch (e) {
    return { available: true, error: e.message };
  }
}

/** lookupPacked names/s of `count` workers reading `names` through shared views at once. */
async function workerRate(fib, names, count, batch, seconds) {
  const token = fib.share();
  const go = new SharedArrayBuffer(4);
  const url = new URL('./fib-worker.mjs', import.meta.url);
  const ws = [];
  for (let i = 0; i < count; i++) ws.push(new Worker(url, { workerData: { token, names, batch, seconds, go } }));
  try {
    await Promise.all(ws.map((w) => new Promise((r, j) => { w.once('message', r); w.once('error', j); })));
    const done = ws.map((w) => new Promise((r, j) => { w.once('message', r); w.once('error', j); }));
    Atomics.store(new Int32Array(go), 0, 1);
    Atomics.notify(new Int32Array(go), 0);
    const rates = await Promise.all(done);
    return rates.reduce((a, b) => a + b, 0);
  } finally {
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

/**
 * names/s with 1..threads workers, measured in `rounds` rounds of 1..threads each. A
 * round's runs are adjacent in time, so its ratios are read against one state of the
 * machine (a slow spell of a shared host lands on one round, not on the 2-worker figure
 * alone); scaling[k] is the median over rounds of (k+1 workers / one), rates[k] the
 * median rate. `perRound` keeps every run. On an error: what ran, and the error.
 */
export async function workerScaling({ fib, names, threads, batch, seconds, rounds = 3, progress }) {
  const perRound = [];
  // Figures for the worker counts some round reached, each from the rounds that reached
  // it: a run that failed part way leaves the counts after it out, not NaN.
  const summary = () => {
    const reached = Math.max(0, ...perRound.map((r) => r.length));
    const upTo = (k) => perRound.filter((r) => r.length > k);
    const rates = Array.from({ length: reached }, (_, k) => median(upTo(k).map((r) => r[k])));
    const scaling = Array.from({ length: reached }, (_, k) => median(upTo(k).map((r) => r[k] / r[0])));
    return { rounds: upTo(1).length, rates, scaling, perRound };
  };
  try {
    for (let round = 1; round <= rounds; round++) {
      const rates = [];
      perRound.push(rates);
      for (let n = 1; n <= threads; n++) {
        progress(`round ${round} of ${rounds}: ${n} worker${n > 1 ? 's' : ''}, ${seconds} s`);
        rates.push(await workerRate(fib, names, n, batch, seconds));
      }
    }
  } catch (e) {
    return { ...summary(), error: e.message.split('\n')[0] };
  }
  return summary();
}

/**
 * Memory of one table implementation, loaded in a fresh process with the same workload;
 * { error } if the child fails (say the addon is being rebuilt), so the run still reports.
 */
export function memoryOf(impl, o) {
  const script = fileURLToPath(new URL('./fib-memory.mjs', import.meta.url));
  const args = ['--expose-gc', script, impl, String(o.prefixes), `${o.depth[0]}-${o.depth[1]}`, String(o.seed)];
  try {
    return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'pipe'] }));
  } catch (e) {
    const why = String(e.stderr ?? '').split('\n').find((l) => /^\w*Error: /.test(l)) ?? e.message.split('\n')[0];
    return { error: why.trim() };
  }
}
