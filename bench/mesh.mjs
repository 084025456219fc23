#!/usr/bin/env node
// The mesh benchmark: gateways in this process, each a routing table and digest sync over
// real peering sessions on loopback TCP (msgpack frames, the handshake with Ed25519 keys
// certified by one AMC key).
// It reports, for a chain and a random mesh of N gateways, the time for a new capability
// to reach every gateway and the frames and bytes that one change costs; and, on two
// gateways, the bytes of a one-name change with small and large tables. Each figure is
// printed beside the same run with a naive full-state flood (a whole snapshot on every
// change), the baseline.
//   npm run bench -- mesh [--gateways 100] [--degree 3] [--names 1000,100000] [--trials 5] [--no-write]
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DigestSync } from '../dist/mesh/csp.js';
import { PeerSession } from '../dist/mesh/peer-session.js';
import { Rib } from '../dist/mesh/rib.js';
import { checkGrantKey, GRANT_KEY_TYP } from '../dist/identity/amc.js';
import { JwtVerifier, newSigningKey, signingKey, signJwt } from '../dist/identity/jwt.js';
import { benchOptions } from './options.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: npm run bench -- mesh [options]
  --gateways N   gateways in the chain and in the random mesh (default 100)
  --degree N     extra random links per gateway in the mesh (default 3)
  --names LIST   table sizes for the bytes-per-change runs (default 1000,100000)
  --base N       names already in the tables of the N-gateway runs (default 50)
  --trials N     trials per measurement; the median is reported (default 5)
  --no-write     do not write bench/results/mesh.json`;
const { opts, int } = benchOptions('mesh', USAGE, {
  gateways: { type: 'string', default: '100' },
  degree: { type: 'string', default: '3' },
  names: { type: 'string', default: '1000,100000' },
  base: { type: 'string', default: '50' },
  trials: { type: 'string', default: '5' },
});
const N = int('gateways', 2, 1000);
const DEGREE = int('degree', 0, 20);
const TRIALS = int('trials', 1, 50);
const BASE = int('base', 0, 100_000);
const SIZES = String(opts.names).split(',').map(Number);
if (!SIZES.every((n) => Number.isInteger(n) && n >= 1 && n <= 1_000_000)) {
  console.error(`dmsc bench mesh: --names must be a comma-separated list of table sizes\n${USAGE}`);
  process.exit(2);
}

const amcKey = signingKey(newSigningKey('bench'));
const verifier = new JwtVerifier({ keys: [amcKey.publicJwk] });
/** Each gateway's key and the (bench) AMC's certificate of it. */
const keys = new Map();
async function credentialsOf(id) {
  if (!keys.has(id)) {
    const key = signingKey(newSigningKey(`gw-${id}`));
    const certificate = await signJwt(amcKey, GRANT_KEY_TYP, { sub: id, dom: 'bench', cnf: { jwk: key.publicJwk }, exp: Math.floor(Date.now() / 1000) + 3600 });
    keys.set(id, { certificate, privateKey: key.privateKey });
  }
  return keys.get(id);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const progress = (msg) => process.stderr.write(`  ${msg}\n`);

/** A mesh of gateways over loopback TCP; `full` selects the flooding baseline. */
async function build(ids, links, full) {
  const gws = new Map(ids.map((id) => [id, { rib: new Rib(id), sessions: [], server: undefined, port: 0 }]));
  const attach = (id, session) => {
    const gw = gws.get(id);
    // No route limit: the largest table here is past a node's default.
    const sync = new DigestSync(gw.rib, session, { full, maxRoutes: Number.MAX_SAFE_INTEGER });
    gw.sessions.push({ session, sync });
    session.on('message', (m) => sync.receive(m));
    sync.start();
  };
  for (const id of ids) await credentialsOf(id);
  const options = (id, expect) => ({
    role: expect ? 'dialler' : 'listener',
    local: { gateway: id, domain: 'bench' },
    credentials: () => keys.get(id),
    certified: async (certificate, claimed) => {
      const c = await verifier.verify(certificate, GRANT_KEY_TYP);
      if (c.sub !== claimed.gateway) throw new Error('wrong gateway');
      return checkGrantKey(c.cnf?.jwk);
    },
    holdMs: 600_000,
    maxFrame: 64 << 20,
    ...(expect ? { expect } : {}),
  });
  for (const [id, gw] of gws) {
    gw.server = createServer((socket) => PeerSession.establish(socket, options(id)).then((s) => attach(id, s), () => {}));
    await new Promise((r) => gw.server.listen(0, '127.0.0.1', r));
    gw.port = gw.server.address().port;
  }
  await Promise.all(links.map(async ([a, b]) => {
    const socket = connect(gws.get(b).port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    attach(a, await PeerSession.establish(socket, options(a, b)));
  }));
  // Both ends of every link are up, and the first snapshots have been exchanged.
  await until(() => [...gws.values()].reduce((n, g) => n + g.sessions.length, 0) === links.length * 2);
  await settle(gws);
  return gws;
}

async function until(check, ms = 60_000) {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 1));
  }
}

const totals = (gws) => {
  let frames = 0;
  let bytes = 0;
  for (const g of gws.values()) for (const { session } of g.sessions) {
    frames += session.stats.framesSent;
    bytes += session.stats.bytesSent;
  }
  return { frames, bytes };
};

/** Waits until no frame has moved for 20 ms. */
async function settle(gws) {
  let last = -1;
  for (;;) {
    const now = totals(gws).frames;
    if (now === last) return;
    last = now;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function teardown(gws) {
  for (const g of gws.values()) {
    for (const { session, sync } of g.sessions) {
      sync.stop();
      session.close();
    }
    await new Promise((r) => g.server.close(r));
  }
}

/** One new name at the first gateway: time until every gateway has it; frames and bytes. */
async function propagate(gws, name) {
  await settle(gws);
  const before = totals(gws);
  const ids = [...gws.keys()];
  const t0 = process.hrtime.bigint();
  gws.get(ids[0]).rib.setLocal(name, ['gdpr']);
  await until(() => ids.slice(1).every((id) => gws.get(id).rib.nextHops(name).length > 0));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await settle(gws);
  const after = totals(gws);
  return { ms, frames: after.frames - before.frames, bytes: after.bytes - before.bytes };
}

function chain(n) {
  const ids = Array.from({ length: n }, (_, i) => `g${i}`);
  return { ids, links: ids.slice(1).map((id, i) => [id, ids[i]]) };
}

function randomMesh(n, degree, seed) {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const ids = Array.from({ length: n }, (_, i) => `g${i}`);
  const edges = new Set();
  for (let i = 1; i < n; i++) edges.add(`${Math.floor(rand() * i)}-${i}`); // a random spanning tree
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < degree; d++) {
      const j = Math.floor(rand() * n);
      if (j !== i) edges.add(`${Math.min(i, j)}-${Math.max(i, j)}`);
    }
  }
  return { ids, links: [...edges].map((e) => e.split('-').map((x) => ids[Number(x)])) };
}

const results = { topologies: {}, bytesPerChange: {} };
for (const [label, topo] of [['chain', chain(N)], ['random mesh', randomMesh(N, DEGREE, 42)]]) {
  results.topologies[label] = { links: topo.links.length };
  for (const mode of ['delta', 'flood']) {
    progress(`${label} of ${N} gateways (${topo.links.length} links), ${mode}`);
    const gws = await build(topo.ids, topo.links, mode === 'flood');
    // Names already in every table, so a full-state flood has something to carry.
    for (let i = 0; i < BASE; i++) gws.get(topo.ids[i % topo.ids.length]).rib.setLocal(`/capability/base/n${i}`, []);
    await settle(gws);
    const runs = [];
    for (let t = 0; t < TRIALS; t++) runs.push(await propagate(gws, `/capability/new/t${t}`));
    results.topologies[label][mode] = { ms: median(runs.map((r) => r.ms)), frames: median(runs.map((r) => r.frames)), bytes: median(runs.map((r) => r.bytes)) };
    await teardown(gws);
  }
}

for (const size of SIZES) {
  results.bytesPerChange[size] = {};
  for (const mode of ['delta', 'flood']) {
    progress(`two gateways, ${size} names, ${mode}`);
    const gws = await build(['a', 'b'], [['b', 'a']], mode === 'flood');
    for (let i = 0; i < size; i++) gws.get('a').rib.setLocal(`/capability/table/n${i}`, []);
    await settle(gws);
    const runs = [];
    for (let t = 0; t < TRIALS; t++) runs.push(await propagate(gws, `/capability/one/t${t}`));
    results.bytesPerChange[size][mode] = { bytes: median(runs.map((r) => r.bytes)), frames: median(runs.map((r) => r.frames)), ms: median(runs.map((r) => r.ms)) };
    await teardown(gws);
  }
}

const f = (v, d = 0) => Number(v).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
console.log(`\ndmsc mesh benchmark: ${N} gateways in one process over loopback TCP, ${cpus().length} cores, medians of ${TRIALS} trials`);
console.log(`baseline: a naive full-state flood (every change sends the whole table to every peer); ${BASE} names in the tables of the ${N}-gateway runs\n`);
console.log(`${'one new capability reaching every gateway'.padEnd(44)}${'flood'.padStart(14)}${'dmsc'.padStart(14)}${'ratio'.padStart(9)}`);
for (const [label, r] of Object.entries(results.topologies)) {
  console.log(`${label} (${r.links} links)`);
  console.log(`${'  time to every gateway (ms)'.padEnd(44)}${f(r.flood.ms, 1).padStart(14)}${f(r.delta.ms, 1).padStart(14)}${(r.delta.ms / r.flood.ms).toFixed(2).padStart(9)}`);
  console.log(`${'  frames on the wire'.padEnd(44)}${f(r.flood.frames).padStart(14)}${f(r.delta.frames).padStart(14)}${(r.delta.frames / r.flood.frames).toFixed(3).padStart(9)}`);
  console.log(`${'  bytes on the wire'.padEnd(44)}${f(r.flood.bytes).padStart(14)}${f(r.delta.bytes).padStart(14)}${(r.delta.bytes / r.flood.bytes).toFixed(3).padStart(9)}`);
}
console.log(`\n${'bytes for a one-name change, two gateways'.padEnd(44)}${'flood'.padStart(14)}${'dmsc'.padStart(14)}${'ratio'.padStart(9)}`);
for (const [size, r] of Object.entries(results.bytesPerChange)) {
  console.log(`${`  table of ${f(size)} names`.padEnd(44)}${f(r.flood.bytes).padStart(14)}${f(r.delta.bytes).padStart(14)}${(r.delta.bytes / r.flood.bytes).toFixed(5).padStart(9)}`);
}
const worst = Math.max(...Object.values(results.topologies).map((r) => r.delta.ms));
const perChange = Object.values(results.bytesPerChange).map((r) => r.delta.bytes);
console.log('\ntargets:');
console.log(`  ${worst <= 1000 ? 'met   ' : 'MISSED'} convergence across ${N} gateways <= 1 s (worst ${f(worst, 1)} ms)`);
console.log(`  ${Math.max(...perChange) <= Math.min(...perChange) * 1.1 ? 'met   ' : 'MISSED'} bytes per one-name change independent of table size (${perChange.map((b) => f(b)).join(' / ')} bytes)`);

if (!opts['no-write']) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'mesh.json'), JSON.stringify({ date: new Date().toISOString(), gateways: N, degree: DEGREE, trials: TRIALS, ...results }, null, 2) + '\n');
}
process.exit(0);
