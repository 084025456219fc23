#!/usr/bin/env node
// The session benchmark: a standalone AMC and two peered gateways as real processes,
// agents (the SDK) in this process. It measures session setup (resolve + SESSION_INIT +
// SESSION_ACCEPT) and the message round trip of an open session, to a target behind the
// same gateway and behind the other one (resolution through the mesh), over WebSocket
// and TCP; beside the floor: a bare WebSocket (ws) connection set up and an echo round
// trip on it, in the same process, with no dmsc code. Medians across rounds of each
// round's p50 and p99.
//   npm run bench -- session [--setups 300] [--messages 5000] [--rounds 3] [--no-write]
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { Agent } from '../dist/index.js';
import { benchOptions } from './options.mjs';
import { startLine, tempDir } from './procs.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '../dist/cli/main.js');
const USAGE = `usage: npm run bench -- session [options]
  --setups N     sessions set up per round and target (default 300)
  --messages N   round trips per round on one session (default 5000)
  --rounds N     rounds; each figure is the median of the rounds' (default 3)
  --no-write     do not write bench/results/session.json`;
const { opts, int } = benchOptions('session', USAGE, {
  setups: { type: 'string', default: '300' },
  messages: { type: 'string', default: '5000' },
  rounds: { type: 'string', default: '3' },
});
const SETUPS = int('setups', 10, 100_000);
const MESSAGES = int('messages', 10, 1_000_000);
const ROUNDS = int('rounds', 1, 20);
const progress = (msg) => process.stderr.write(`  ${msg}\n`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const cli = (...args) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dmsc ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
const PAYLOAD = { text: 'x'.repeat(48), n: 0 };

// --- the deployment ---------------------------------------------------------------------
progress('starting an AMC and two peered gateways');
const amcDir = tempDir('dmsc-bench-amc-');
const amc = (await startLine(process.execPath, [CLI, 'amc', '--api', '127.0.0.1:0', '--data', amcDir, '--domain', 'bench'])).info;
const amcUrl = `http://${amc.api}`;
const keys = tempDir('dmsc-bench-keys-');
const gateway = async (id, extra = []) => {
  const file = join(keys, id);
  writeFileSync(file, cli('amc', 'gateway', 'add', id, '--url', amcUrl, '--data', amcDir));
  const { info } = await startLine(process.execPath, [CLI, 'node', '--id', id, '--amc', amcUrl, '--amc-key-file', file, '--api', '127.0.0.1:0', '--peering', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', '--data', tempDir(`dmsc-bench-${id}-`), ...extra]);
  return info;
};
const A = await gateway('A');
const B = await gateway('B', ['--peer', `A@${A.peering}`]);
const providerKey = JSON.parse(cli('provider', 'add', 'bench', '--scope', '/capability/**', '--url', amcUrl, '--data', amcDir)).key;

const agents = [];
const agent = async (node, capability, transport) => {
  const a = new Agent({ node: `http://${node.api}`, providerKey, name: capability.split('/').pop(), sessions: { transport } });
  a.serve(capability, { request: () => ({}), session: (s) => s.on('message', (m) => void s.send(m).catch(() => {})) });
  agents.push(a);
  await a.start();
  return a;
};
const initiator = await agent(A, '/capability/bench/initiator', 'ws');
await agent(A, '/capability/bench/local', 'ws');
await agent(B, '/capability/bench/remote', 'ws');
await agent(B, '/capability/bench/remote-tcp', 'tcp');
// A has learned B's names.
for (const name of ['/capability/bench/remote', '/capability/bench/remote-tcp']) {
  for (let i = 0; ; i++) {
    try {
      await initiator.resolve(name);
      break;
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

// --- the floor: bare ws in this process ------------------------------------------------------
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws) => ws.on('message', (data) => ws.send(data, { binary: true })));
await new Promise((r) => wss.once('listening', r));
const floorUrl = `ws://127.0.0.1:${wss.address().port}`;
const openWs = () => new Promise((resolve, reject) => {
  const ws = new WebSocket(floorUrl, { perMessageDeflate: false });
  ws.once('open', () => resolve(ws));
  ws.once('error', reject);
});
const closeWs = (ws) => new Promise((r) => {
  ws.once('close', r);
  ws.close();
});

async function floorSetup() {
  const xs = [];
  for (let i = 0; i < SETUPS; i++) {
    const t = process.hrtime.bigint();
    const ws = await openWs();
    xs.push(Number(process.hrtime.bigint() - t) / 1e6);
    await closeWs(ws);
  }
  return xs;
}

async function floorRoundTrip() {
  const ws = await openWs();
  const bytes = Buffer.from(JSON.stringify(PAYLOAD));
  const xs = [];
  for (let i = 0; i < MESSAGES; i++) {
    const t = process.hrtime.bigint();
    await new Promise((resolve) => {
      ws.once('message', resolve);
      ws.send(bytes, { binary: true });
    });
    xs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  await closeWs(ws);
  return xs;
}

// --- dmsc sessions -------------------------------------------------------------------------
async function sessionSetup(capability) {
  const xs = [];
  for (let i = 0; i < SETUPS; i++) {
    const t = process.hrtime.bigint();
    const s = await initiator.openSession(await initiator.resolve(capability));
    xs.push(Number(process.hrtime.bigint() - t) / 1e6);
    await s.close();
  }
  return xs;
}

async function resolveOnly(capability) {
  const xs = [];
  for (let i = 0; i < SETUPS; i++) {
    const t = process.hrtime.bigint();
    await initiator.resolve(capability);
    xs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return xs;
}

async function sessionRoundTrip(capability) {
  const s = await initiator.openSession(await initiator.resolve(capability));
  const xs = [];
  for (let i = 0; i < MESSAGES; i++) {
    const t = process.hrtime.bigint();
    await new Promise((resolve, reject) => {
      s.once('message', resolve);
      s.send({ ...PAYLOAD, n: i }).catch(reject);
    });
    xs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  await s.close();
  return xs;
}

const cases = [
  { key: 'setup.floor', label: 'setup: bare WebSocket connect (floor)', run: floorSetup, floor: 'setup.floor' },
  { key: 'resolve.one', label: 'of which the resolution, 1 gateway', run: () => resolveOnly('/capability/bench/local'), floor: 'setup.floor' },
  { key: 'resolve.two', label: 'of which the resolution, 2 gateways', run: () => resolveOnly('/capability/bench/remote'), floor: 'setup.floor' },
  { key: 'setup.one', label: 'setup: resolve + INIT + ACCEPT, 1 gateway', run: () => sessionSetup('/capability/bench/local'), floor: 'setup.floor' },
  { key: 'setup.two', label: 'setup: resolve + INIT + ACCEPT, 2 gateways', run: () => sessionSetup('/capability/bench/remote'), floor: 'setup.floor' },
  { key: 'setup.twoTcp', label: 'setup: the same over TCP, 2 gateways', run: () => sessionSetup('/capability/bench/remote-tcp'), floor: 'setup.floor' },
  { key: 'rtt.floor', label: 'round trip: bare WebSocket echo (floor)', run: floorRoundTrip, floor: 'rtt.floor' },
  { key: 'rtt.one', label: 'round trip: session, 1 gateway', run: () => sessionRoundTrip('/capability/bench/local'), floor: 'rtt.floor' },
  { key: 'rtt.two', label: 'round trip: session, 2 gateways', run: () => sessionRoundTrip('/capability/bench/remote'), floor: 'rtt.floor' },
  { key: 'rtt.twoTcp', label: 'round trip: session over TCP, 2 gateways', run: () => sessionRoundTrip('/capability/bench/remote-tcp'), floor: 'rtt.floor' },
];

// Warm-up: JIT, connection pools, credential caches.
progress('warming up');
for (const c of cases) await c.run();

const rounds = Object.fromEntries(cases.map((c) => [c.key, { p50: [], p99: [] }]));
for (let r = 1; r <= ROUNDS; r++) {
  progress(`round ${r}/${ROUNDS}`);
  for (const c of cases) {
    const xs = await c.run();
    rounds[c.key].p50.push(quantile(xs, 0.5));
    rounds[c.key].p99.push(quantile(xs, 0.99));
  }
}

const results = Object.fromEntries(cases.map((c) => [c.key, { label: c.label, p50Ms: median(rounds[c.key].p50), p99Ms: median(rounds[c.key].p99) }]));
const fmt = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
console.log(`\nA2ASP sessions: ${SETUPS} setups and ${MESSAGES} round trips per case and round, ${ROUNDS} rounds (medians of the rounds' p50 and p99); ${cpus().length} CPUs shared by the AMC, both gateways and this process`);
console.log(`${'case'.padEnd(46)} ${'p50'.padStart(9)} ${'p99'.padStart(9)}  ${'p50 / floor'.padStart(11)} ${'p99 / floor'.padStart(11)}`);
for (const c of cases) {
  const r = results[c.key];
  const f = results[c.floor];
  console.log(`${c.label.padEnd(46)} ${fmt(r.p50Ms).padStart(9)} ${fmt(r.p99Ms).padStart(9)}  ${`${(r.p50Ms / f.p50Ms).toFixed(2)}x`.padStart(11)} ${`${(r.p99Ms / f.p99Ms).toFixed(2)}x`.padStart(11)}`);
}
console.log('\nSetup includes the resolution at the gateway (through the mesh for 2 gateways), the grant check at the target and the TCP/WebSocket connect; the floor is the connect alone.');

if (!opts['no-write']) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'session.json'), JSON.stringify({ date: new Date().toISOString(), cpus: cpus().length, setups: SETUPS, messages: MESSAGES, rounds: ROUNDS, results }, null, 2) + '\n');
}
await Promise.all(agents.map((a) => a.close()));
await new Promise((r) => wss.close(r));
process.exit(0);
