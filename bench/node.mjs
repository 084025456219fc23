#!/usr/bin/env node
// The node benchmark: registrations per second with durable writes, and POST /v1/resolve
// latency with 1,000 registered agents under 50 concurrent clients. Each is printed
// beside the same requests against a bare fastify route (the floor), from one run, as
// medians of several trials. The node is the real `dmsc node` process; the load comes
// from this process over loopback.
//   npm run bench -- node [--trials N] [--registrations N] [--seconds N] [--clients N] [--no-write]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { benchOptions } from './options.mjs';
import { cleanupAll, startLine, tempDir } from './procs.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'dist', 'cli', 'main.js');
const USAGE = `usage: npm run bench -- node [options]
  --trials N          trials per measurement; the median is reported (default 5)
  --registrations N   registrations per throughput trial (default 5000)
  --agents N          agents registered before the resolve trials (default 1000)
  --clients N         concurrent clients (default 50)
  --seconds N         duration of each resolve trial (default 3)
  --no-write          do not write bench/results/node.json`;

const { opts, int } = benchOptions('node', USAGE, {
  trials: { type: 'string', default: '5' },
  registrations: { type: 'string', default: '5000' },
  agents: { type: 'string', default: '1000' },
  clients: { type: 'string', default: '50' },
  seconds: { type: 'string', default: '3' },
});
const TRIALS = int('trials', 1, 50);
const REGS = int('registrations', 100, 1_000_000);
const AGENTS = int('agents', 10, 100_000);
const CLIENTS = int('clients', 1, 1000);
const SECONDS = int('seconds', 1, 600);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function startProc(args) {
  const { child, info } = await startLine(process.execPath, args);
  return { child, url: `http://${info.api}` };
}

async function stopProc(p) {
  p.child.kill('SIGTERM');
  await new Promise((r) => (p.child.exitCode !== null ? r() : p.child.once('exit', r)));
}

async function startNode() {
  const dir = tempDir('dmsc-bench-node-');
  const p = await startProc([CLI, 'node', '--api', '127.0.0.1:0', '--peering', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', '--data', dir, '--heartbeat-ms', '3600000']);
  const token = readFileSync(join(dir, 'admin-token'), 'utf8').trim();
  const pool = new Pool(p.url, { connections: CLIENTS });
  const res = await pool.request({ method: 'POST', path: '/v1/providers', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'bench', scopes: ['/capability/**'] }) });
  const { key } = await res.body.json();
  return { ...p, pool, key };
}

async function post(pool, path, auth, body) {
  const res = await pool.request({ method: 'POST', path, headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' }, body });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${path}: ${res.statusCode} ${text}`);
  return text;
}

const regBody = (i) => JSON.stringify({ endpoint: `http://127.0.0.1:${20000 + (i % 40000)}`, capabilities: [{ name: `/capability/bench/c${i % 100}`, attributes: { zone: 'a' } }] });

/** `total` requests from `CLIENTS` concurrent loops; returns requests per second. */
async function throughput(total, send) {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < total) await send(next++);
  }));
  return total / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Closed loops for SECONDS; returns { p50, p99, rps } in ms and requests/s. */
async function latency(send) {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const end = Date.now() + SECONDS * 1000;
  let n = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    for (let i = c; Date.now() < end; i += CLIENTS) {
      const t0 = process.hrtime.bigint();
      await send(i);
      h.recordValue(Number(process.hrtime.bigint() - t0) / 1000);
      n++;
    }
  }));
  const r = { p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, rps: n / SECONDS };
  h.destroy();
  return r;
}

const progress = (msg) => process.stderr.write(`  ${msg}\n`);
const results = { registrations: { floor: [], dmsc: [] }, resolve: { floor: [], dmsc: [] } };

try {
  const floor = await startProc([join(here, 'floor-server.mjs')]);
  const floorPool = new Pool(floor.url, { connections: CLIENTS });

  // Warm the load generator and the floor up, so the first trial is not a cold one.
  await throughput(Math.min(REGS, 2000), (i) => post(floorPool, '/v1/agents', 'k', regBody(i)));
  // Registrations: every trial on a fresh node, so each starts from the same state.
  for (let t = 0; t < TRIALS; t++) {
    progress(`registrations trial ${t + 1}/${TRIALS}`);
    results.registrations.floor.push(await throughput(REGS, (i) => post(floorPool, '/v1/agents', 'k', regBody(i))));
    const node = await startNode();
    results.registrations.dmsc.push(await throughput(REGS, (i) => post(node.pool, '/v1/agents', node.key, regBody(i))));
    await node.pool.close();
    await stopProc(node);
  }

  // Resolve: one node with AGENTS agents on 100 capabilities; requesters are 50 of them.
  progress(`registering ${AGENTS} agents for the resolve trials`);
  const node = await startNode();
  const creds = [];
  await throughput(AGENTS, async (i) => {
    const r = JSON.parse(await post(node.pool, '/v1/agents', node.key, regBody(i)));
    if (creds.length < CLIENTS) creds.push(r.credential);
  });
  const resolveBody = (i) => JSON.stringify({ capability: `/capability/bench/c${i % 100}/task`, flow: `f${i}` });
  await latency((i) => post(node.pool, '/v1/resolve', creds[i % creds.length], resolveBody(i))); // warm-up
  for (let t = 0; t < TRIALS; t++) {
    progress(`resolve trial ${t + 1}/${TRIALS}`);
    results.resolve.floor.push(await latency((i) => post(floorPool, '/v1/resolve', 'k', resolveBody(i))));
    results.resolve.dmsc.push(await latency((i) => post(node.pool, '/v1/resolve', creds[i % creds.length], resolveBody(i))));
  }
  await node.pool.close();
  await floorPool.close();
} finally {
  cleanupAll();
}

const reg = { floor: median(results.registrations.floor), dmsc: median(results.registrations.dmsc) };
const pick = (side, k) => median(results.resolve[side].map((r) => r[k]));
const res = Object.fromEntries(['p50', 'p99', 'rps'].map((k) => [k, { floor: pick('floor', k), dmsc: pick('dmsc', k) }]));

const f = (v, d = 0) => v.toFixed(d);
console.log(`\ndmsc node benchmark: ${cpus().length} cores, ${CLIENTS} concurrent clients, medians of ${TRIALS} trials`);
console.log(`${'measure'.padEnd(44)}${'floor'.padStart(10)}${'dmsc'.padStart(10)}${'ratio'.padStart(8)}   target`);
const line = (name, a, b, d, target) => console.log(`${name.padEnd(44)}${f(a, d).padStart(10)}${f(b, d).padStart(10)}${(b / a).toFixed(2).padStart(8)}   ${target}`);
line('registrations/s (durable, fresh node)', reg.floor, reg.dmsc, 0, '>= 5000/s');
line(`resolve p50 ms (${AGENTS} agents)`, res.p50.floor, res.p50.dmsc, 3, '');
line(`resolve p99 ms (${AGENTS} agents)`, res.p99.floor, res.p99.dmsc, 3, '<= 2 ms');
line('resolve requests/s', res.rps.floor, res.rps.dmsc, 0, '');
console.log('floor: a bare fastify route in its own process that does nothing.');

if (!opts['no-write']) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'node.json'), JSON.stringify({
    date: new Date().toISOString(), cores: cpus().length, clients: CLIENTS, trials: TRIALS, registrationsPerTrial: REGS, agents: AGENTS, seconds: SECONDS,
    registrationsPerSecond: reg, resolve: res, raw: results,
  }, null, 2) + '\n');
}
