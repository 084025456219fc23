#!/usr/bin/env node
// The FIB programming benchmark: how fast an external controller loads a node's table,
// and what that costs the node's readers. One run prints, side by side, the floor (the
// table's own `apply` of the same entries, in this process), the baseline (the same
// batches as JSON through POST /v1/fib/batches) and ours (FibClient over gRPC, its
// entries sharing their group's array and again each with its own; and Debian's Python
// grpcio with generated stubs, building its messages as it pushes, with each entry's next
// hops inline and with the batch's next-hop groups, and again with them built
// beforehand), as entries/s and ratios to the floor, with the anchors' published figures
// beside them; then FibClient's ack latency for
// 1-op and 1,000-op batches, and a worker thread's lookups/s on the node's table before
// and during each push. Writes bench/results/push.json.
//
// Each pushed run gets a fresh node, started in this process (so that a worker thread can
// attach a read view of its table) on loopback port 0 with its own temp data directory:
// every run loads an empty table (plus the readers' static entries) and an empty store.
// The pushers run as child processes. On two cores a pusher shares the CPU with the node
// and its readers, which a controller on a machine of its own would not: the run ts-nice
// pushes again with the pusher at nice 10, below the node, to show what the node's own
// work costs the readers; each reader figure comes with the share of a core it was given.
//   npm run bench -- push [--entries N] [--batch N] [--inflight N] [--skip-python] [--json] [--no-write]
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, setPriority, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { benchOptions } from './options.mjs';
import { tempDir } from './procs.mjs';
import { cpuTicks } from './thread-cpu.mjs';
import { pushOps, readerNames, STATIC, staticOps } from './push-workload.mjs';

// The in-process node logs at info on stderr; the benchmark's progress goes there too.
process.env.DMSC_LOG_LEVEL ??= 'warn';
process.env.DMSC_HINTS ??= '0';
const { DmscNode, ForwardingTable, nodeConfig } = await import('../dist/index.js');

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..');
const PYTHON = '/usr/bin/python3';
const USAGE = `usage: npm run bench -- push [options]
  --entries N      entries each pusher loads (default 1000000)
  --batch N        ops per batch (default 1000)
  --inflight N     HTTP baseline: batches in flight (default 4)
  --ack-small N    1-op batches for the ack latency, one at a time (default 2000)
  --ack-large N    1,000-op batches for the ack latency, one at a time (default 200)
  --idle N         seconds of the readers' idle rate before each push (default 2)
  --only=LIST      comma-separated runs (default all): floor, http, ts, ts-fresh, ts-nice,
                   python, python-groups, python-prebuilt; the = form, so that npm run bench
                   does not read LIST as a benchmark's name
  --skip-python    leave out the Python runs
  --json           print the results as JSON instead of the table
  --no-write       do not write bench/results/push.json`;

const RUN_NAMES_DEFAULT = 'floor,http,ts,ts-fresh,ts-nice,python,python-groups,python-prebuilt';
const { opts, int } = benchOptions('push', USAGE, {
  entries: { type: 'string', default: '1000000' },
  batch: { type: 'string', default: '1000' },
  inflight: { type: 'string', default: '4' },
  'ack-small': { type: 'string', default: '2000' },
  'ack-large': { type: 'string', default: '200' },
  idle: { type: 'string', default: '2' },
  only: { type: 'string', default: RUN_NAMES_DEFAULT },
  'skip-python': { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
});
const N = int('entries', 1000, 10_000_000);
const BATCH = int('batch', 1, 10_000);
const INFLIGHT = int('inflight', 1, 64);
const ACK_SMALL = int('ack-small', 10, 1_000_000);
const ACK_LARGE = int('ack-large', 10, 100_000);
const IDLE_S = int('idle', 1, 60);
const RUN_NAMES = ['floor', 'http', 'ts', 'ts-fresh', 'ts-nice', 'python', 'python-groups', 'python-prebuilt'];
/** The ts-nice pusher's nice value: below the node and its readers, which run at 0. */
const NICE = 10;
const ONLY = new Set(opts.only.split(',').map((s) => s.trim()).filter(Boolean));
for (const r of ONLY) {
  if (!RUN_NAMES.includes(r)) {
    console.error(`dmsc bench push: --only takes ${RUN_NAMES.join(', ')}; got ${r}\n${USAGE}`);
    process.exit(2);
  }
}
if (opts['skip-python']) {
  ONLY.delete('python');
  ONLY.delete('python-groups');
  ONLY.delete('python-prebuilt');
}

const READER_BATCH = 256;
// Extra node flags for the TypeScript and HTTP pushers, e.g. to profile one:
// DMSC_BENCH_CHILD_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (not allowed in NODE_OPTIONS).
const CHILD_FLAGS = (process.env.DMSC_BENCH_CHILD_FLAGS ?? '').split(' ').filter(Boolean);
const progress = (msg) => process.stderr.write(`  ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hr = () => Number(process.hrtime.bigint());
const gc = () => {
  for (let i = 0; i < 3; i++) globalThis.gc?.();
};

// ---- the reader: a worker thread on a read view of a table, sampling its lookups
const names = readerNames();

async function startReader(table) {
  const samples = new SharedArrayBuffer(8 * 3 * 200_000);
  const control = new SharedArrayBuffer(8);
  const w = new Worker(new URL('./push-reader.mjs', import.meta.url), {
    workerData: { token: table.share(), names, batch: READER_BATCH, samples, control },
  });
  const ready = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  if (ready.misses) throw new Error(`the reader's names are not all in the table: ${ready.misses} misses`);
  const series = new Float64Array(samples);
  const ctl = new Int32Array(control);
  return {
    /**
     * Between two CLOCK_MONOTONIC times (ns), from the samples around them: lookups/s,
     * and the share of one core the reader thread ran for.
     */
    rate(t0, t1) {
      const n = Atomics.load(ctl, 1);
      let a = -1;
      let b = -1;
      for (let i = 0; i < n; i++) {
        const t = series[3 * i];
        if (t <= t0) a = i;
        if (b < 0 && t >= t1) b = i;
      }
      if (a < 0) a = 0;
      if (b < 0) b = n - 1;
      const dt = series[3 * b] - series[3 * a];
      if (!(dt > 0)) return { rate: 0, share: 0 };
      return { rate: (series[3 * b + 1] - series[3 * a + 1]) / (dt / 1e9), share: (series[3 * b + 2] - series[3 * a + 2]) / TICK / (dt / 1e9) };
    },
    async stop() {
      Atomics.store(ctl, 0, 1);
      const done = await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      await w.terminate();
      return done;
    },
  };
}

// CPU seconds of this process's main thread (the node's event loop): utime + stime.
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function mainThreadCpu() {
  return cpuTicks(`/proc/self/task/${process.pid}/stat`) / TICK;
}

// ---- a fresh node per pushed run
async function startNode() {
  const dir = tempDir('dmsc-bench-push-');
  const fibFile = join(dir, 'static.json');
  writeFileSync(fibFile, JSON.stringify(staticOps()));
  const node = await DmscNode.start(nodeConfig({
    data: join(dir, 'data'), api: '127.0.0.1:0', peering: '127.0.0.1:0', dataplane: '127.0.0.1:0', fibApi: '127.0.0.1:0',
    fib: fibFile, heartbeat: '3600000',
  }));
  const token = readFileSync(join(dir, 'data', 'admin-token'), 'utf8').trim();
  const api = node.apiAddress;
  const fibApi = node.fibApiAddress;
  return { node, dir, token, origin: `http://${api.host}:${api.port}`, fibAddress: `${fibApi.host}:${fibApi.port}` };
}

/**
 * Runs a pusher at `nice`; resolves with its JSON lines merged into one object. `onLine`
 * hears of each line as it comes (the push's end, before the ack latency runs).
 */
function runChild(cmd, args, onLine, nice = 0) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, DMSC_HINTS: '0' } });
    if (nice && child.pid !== undefined) setPriority(child.pid, nice);
    const result = {};
    let bad;
    createInterface({ input: child.stdout }).on('line', (text) => {
      try {
        const o = JSON.parse(text);
        onLine?.(o);
        Object.assign(result, o);
      } catch (e) {
        bad ??= `${text.slice(0, 500)} (${e.message})`;
      }
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) return reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}`));
      if (bad || !result.push) return reject(new Error(`${cmd} ${args.join(' ')}: no JSON result: ${bad ?? JSON.stringify(result)}`));
      resolve(result);
    });
  });
}

/** Idle reader rate over IDLE_S seconds, then the push; the reader's rate over the push. */
async function measured(label, table, push) {
  const reader = await startReader(table);
  await sleep(300); // the worker past its first tiers
  const i0 = hr();
  await sleep(IDLE_S * 1000);
  const i1 = hr();
  const { rate: idle, share: idleShare } = reader.rate(i0, i1);
  progress(`${label}: pushing (readers idle at ${(idle / 1e6).toFixed(2)} M lookups/s)`);
  // The node's event loop: its CPU time from the pusher's start to the push's end.
  const cpu0 = mainThreadCpu();
  let mainCpu;
  const out = await push((line) => {
    if (line.push) mainCpu = mainThreadCpu() - cpu0;
  });
  mainCpu ??= mainThreadCpu() - cpu0;
  const { rate: during, share } = reader.rate(Number(out.push.start), Number(out.push.end));
  await reader.stop();
  return { ...out, readers: { idle, during, ratio: during / idle, coreShareIdle: idleShare, coreShareDuring: share }, mainThreadCpuSeconds: mainCpu };
}

function checkLoaded(fib, extra, label) {
  const want = STATIC + N + extra;
  if (fib.size !== want) throw new Error(`${label}: the table holds ${fib.size} entries, expected ${want}`);
  const last = fib.lookup(`/capability/t${(N - 1) % 1000}/n${N - 1}/x`);
  if (!last || !last.nextHop.startsWith('peer:gw')) throw new Error(`${label}: the last entry does not resolve: ${JSON.stringify(last)}`);
}

async function floorRun() {
  progress('floor: generating the batches');
  const batches = [];
  for (let b = 0; b * BATCH < N; b++) batches.push(pushOps(b * BATCH, Math.min(BATCH, N - b * BATCH)));
  const table = new ForwardingTable();
  table.apply(staticOps());
  gc();
  const r = await measured('floor', table, async () => {
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let g = 0;
    for (const ops of batches) g = table.apply(ops);
    await table.visible(g);
    const t1 = process.hrtime.bigint();
    return { push: { start: String(t0), end: String(t1), seconds: Number(t1 - t0) / 1e9, statuses: { VISIBLE: batches.length } } };
  });
  checkLoaded(table, 0, 'floor');
  table.close();
  batches.length = 0;
  gc();
  return r;
}

let stubs;
function pythonStubs() {
  if (stubs) return stubs;
  const dir = tempDir('dmsc-bench-push-stubs-');
  const plugin = execFileSync('sh', ['-c', 'command -v grpc_python_plugin'], { encoding: 'utf8' }).trim();
  execFileSync('protoc', ['-I', join(ROOT, 'proto'), `--python_out=${dir}`, `--grpc_out=${dir}`, `--plugin=protoc-gen-grpc=${plugin}`, join(ROOT, 'proto/dmsc/fib/v1/fib.proto')]);
  return (stubs = dir);
}

async function nodeRun(label, child) {
  const n = await startNode();
  try {
    const r = await measured(label, n.node.fib, (onLine) => child(n, onLine));
    // FibClient's ack batches (each after up to 20 unmeasured ones) add fresh entries too.
    const warm = (c) => c + Math.min(20, c);
    checkLoaded(n.node.fib, r.ack ? warm(ACK_SMALL) + warm(ACK_LARGE) * 1000 : 0, label);
    return r;
  } finally {
    await n.node.stop();
    rmSync(n.dir, { recursive: true, force: true });
    gc();
  }
}

const RUNS = {
  floor: floorRun,
  http: () => nodeRun('baseline (HTTP)', (n, onLine) => runChild(process.execPath, [...CHILD_FLAGS, join(here, 'push-client.mjs'), 'http', n.origin, n.token, String(N), String(BATCH), String(INFLIGHT)], onLine)),
  ts: () => nodeRun('ours (TypeScript)', (n, onLine) => runChild(process.execPath, [...CHILD_FLAGS, join(here, 'push-client.mjs'), 'grpc', n.fibAddress, n.token, String(N), String(BATCH), String(ACK_SMALL), String(ACK_LARGE)], onLine)),
  // Each entry with an array of next hops of its own, as ops parsed from JSON come: no
  // list for FibClient to send once as a group.
  'ts-fresh': () => nodeRun('ours (TypeScript, a list per entry)', (n, onLine) => runChild(process.execPath, [...CHILD_FLAGS, join(here, 'push-client.mjs'), 'grpc', n.fibAddress, n.token, String(N), String(BATCH), '0', '0', 'fresh'], onLine)),
  'ts-nice': () => nodeRun('ours (TypeScript, pusher at nice 10)', (n, onLine) => runChild(process.execPath, [...CHILD_FLAGS, join(here, 'push-client.mjs'), 'grpc', n.fibAddress, n.token, String(N), String(BATCH), '0', '0'], onLine, NICE)),
  python: () => pythonRun('ours (Python)', []),
  // Each batch's 100 next-hop lists sent once, as its groups (Batch.groups, Upsert.group).
  'python-groups': () => pythonRun('ours (Python, next-hop groups)', ['--groups']),
  // The same pusher with every message built before its clock starts, as a controller
  // that keeps its table as messages would: what the node and the transport take from
  // Python, apart from what Python's protobuf takes to build the messages.
  'python-prebuilt': () => pythonRun('ours (Python, prebuilt)', ['--prebuild']),
};

function pythonRun(label, extra) {
  const dir = pythonStubs();
  return nodeRun(label, (n, onLine) => runChild(PYTHON, [join(here, 'push_client.py'), '--stubs', dir, '--addr', n.fibAddress, `--key=${n.token}`, '--entries', String(N), '--batch', String(BATCH), ...extra], onLine));
}

const cpu = cpus()[0]?.model ?? 'unknown cpu';
const machine = { cpu, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, loadAverage: loadavg().map((x) => Math.round(x * 100) / 100) };
progress(`push benchmark: ${N.toLocaleString('en')} entries in batches of ${BATCH.toLocaleString('en')}; load average ${machine.loadAverage.join(' ')}`);
const results = {};
for (const name of RUN_NAMES) {
  if (!ONLY.has(name)) continue;
  results[name] = await RUNS[name]();
  progress(`${name}: ${results[name].push.seconds.toFixed(2)} s`);
}
machine.loadAverageAfter = loadavg().map((x) => Math.round(x * 100) / 100);

// ---- report
const rate = (r) => N / r.push.seconds;
const floorRate = results.floor ? rate(results.floor) : undefined;
const fmt = (x, d = 0) => x.toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d });
const rows = [
  ['floor', 'floor: ForwardingTable.apply, in-process'],
  ['http', `baseline: POST /v1/fib/batches (JSON), ${INFLIGHT} in flight`],
  ['ts', 'ours: FibClient (TypeScript), gRPC, window'],
  ['ts-fresh', '  the same, each entry a list of its own'],
  ['ts-nice', `  the same, the pusher at nice ${NICE}`],
  ['python', 'ours: Python grpcio, generated stubs, window'],
  ['python-groups', '  the same, next hops as the batch\'s groups'],
  ['python-prebuilt', 'ours: Python grpcio, messages built beforehand'],
].filter(([k]) => results[k]);

const ts = results.ts;
const py = results.python;
const targets = [];
if (ts) {
  targets.push([`${fmt(N)} entries VISIBLE in <= ${fmt(5 * N / 1e6, N < 1e5 ? 3 : 1)} s from TypeScript (${ts.push.seconds.toFixed(2)} s)`, ts.push.seconds <= 5 * N / 1e6]);
}
const pyGroups = results['python-groups'];
if (pyGroups) targets.push([`>= 100,000 entries/s from Python, next-hop groups, messages built during the push (${fmt(rate(pyGroups))}/s)`, rate(pyGroups) >= 100_000]);
if (py) targets.push([`>= 100,000 entries/s from Python, next hops inline in every upsert (${fmt(rate(py))}/s)`, rate(py) >= 100_000]);
const pyPre = results['python-prebuilt'];
if (pyPre) targets.push([`>= 100,000 entries/s from Python, its messages built beforehand (${fmt(rate(pyPre))}/s)`, rate(pyPre) >= 100_000]);
if (ts) {
  targets.push([`1-op ack p50 <= 1 ms (${ts.ack.one.p50.toFixed(3)} ms)`, ts.ack.one.p50 <= 1]);
  targets.push([`readers keep >= 80% of their idle lookup rate during the TypeScript push (${(100 * ts.readers.ratio).toFixed(0)}%)`, ts.readers.ratio >= 0.8]);
}
// Not a target: where the readers' loss comes from when the pusher shares the cores.
const tsNice = results['ts-nice'];
const niceNote = tsNice && `with the pusher at nice ${NICE} (ts-nice), readers keep ${(100 * tsNice.readers.ratio).toFixed(0)}% and the push takes ${tsNice.push.seconds.toFixed(2)} s`;

const report = {
  date: new Date().toISOString(),
  machine,
  workload: { entries: N, batch: BATCH, nextHopsPerEntry: 4, httpInflight: INFLIGHT, staticEntries: STATIC, readerNames: names.length, readerBatch: READER_BATCH, freshNodePerRun: true, persistence: 'PRESERVE' },
  anchors: { vppIpTableReplaceRoutesPerSecond: [111_000, 189_000], gobgpAddPathStreamPathsPerSecond: 30_000 },
  runs: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, { ...r, entriesPerSecond: rate(r), ratioToFloor: floorRate ? rate(r) / floorRate : null }])),
  targets: Object.fromEntries(targets),
};

if (opts.json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  console.log(`\ndmsc FIB programming benchmark: ${fmt(N)} entries (4 next hops each) in batches of ${fmt(BATCH)}, one run each, a fresh node per run`);
  console.log(`machine: ${cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${process.version}; load average ${machine.loadAverage.join(' ')} before, ${machine.loadAverageAfter.join(' ')} after\n`);
  const L = 50;
  const head = `s for ${N % 1e6 === 0 ? `${N / 1e6}M` : fmt(N)}`;
  console.log(`${'load'.padEnd(L)}${'entries/s'.padStart(11)}${head.padStart(14)}${'vs floor'.padStart(10)}${'readers'.padStart(9)}`);
  for (const [k, label] of rows) {
    const r = results[k];
    console.log(`${label.padEnd(L)}${fmt(rate(r)).padStart(11)}${r.push.seconds.toFixed(2).padStart(14)}${(floorRate ? `${(rate(r) / floorRate).toFixed(2)}x` : '-').padStart(10)}${`${(100 * r.readers.ratio).toFixed(0)}%`.padStart(9)}`);
  }
  console.log(`${'anchor: VPP ip_table_replace (published)'.padEnd(L)}${'111k-189k'.padStart(11)}${`${(N / 189e3).toFixed(1)}-${(N / 111e3).toFixed(1)}`.padStart(14)}`);
  console.log(`${'anchor: GoBGP AddPathStream (published)'.padEnd(L)}${'~30k'.padStart(11)}${`~${(N / 30e3).toFixed(N < 1e5 ? 1 : 0)}`.padStart(14)}`);
  console.log('readers: a worker thread\'s lookupPacked/s on the table during the push, against its rate just before (idle),');
  console.log('  and the share of one core the scheduler gave that thread (its CPU time over the interval).');
  for (const [k, label] of rows) {
    const r = results[k];
    const extra = [];
    if (r.push.cpuSeconds !== undefined) extra.push(`client CPU ${r.push.cpuSeconds.toFixed(1)} s`);
    if (r.push.prebuildSeconds !== undefined) extra.push(`building the messages beforehand ${r.push.prebuildSeconds.toFixed(1)} s`);
    else if (r.push.buildSeconds !== undefined) extra.push(`building messages ${r.push.buildSeconds.toFixed(1)} s (wall, its request thread)`);
    if (k !== 'floor') extra.push(`node's main thread CPU ${r.mainThreadCpuSeconds.toFixed(1)} s`);
    const core = (x) => `${(100 * x).toFixed(0)}% of a core`;
    console.log(`  ${k.padEnd(15)} idle ${(r.readers.idle / 1e6).toFixed(2)} M/s (${core(r.readers.coreShareIdle)}), during ${(r.readers.during / 1e6).toFixed(2)} M/s (${core(r.readers.coreShareDuring)})${extra.length ? `; ${extra.join(', ')}` : ''}`);
  }
  if (ts) {
    console.log(`\nack latency, FibClient, one batch at a time, on the node holding the ${fmt(N)} pushed entries;`);
    console.log('PRESERVE: each batch committed to LMDB and flushed before VISIBLE (ms)     p50      p99    p99.9      max');
    for (const [what, a] of [['1-op batches', ts.ack.one], ['1,000-op batches', ts.ack.thousand]]) {
      console.log(`  ${`${what} (${fmt(a.batches)})`.padEnd(70)}${a.p50.toFixed(3).padStart(8)}${a.p99.toFixed(3).padStart(9)}${a.p999.toFixed(3).padStart(9)}${a.max.toFixed(3).padStart(9)}`);
    }
  }
  if (targets.length) {
    console.log('\ntargets:');
    for (const [what, ok] of targets) console.log(`  ${ok ? 'met   ' : 'MISSED'} ${what}`);
    if (niceNote) console.log(`  (${niceNote})`);
  }
}
if (!opts['no-write']) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'push.json'), JSON.stringify(report, null, 2) + '\n');
  if (!opts.json) console.log('\nwrote bench/results/push.json');
}
process.exit(0);
