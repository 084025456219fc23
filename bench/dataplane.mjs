#!/usr/bin/env node
// The data-plane benchmark, side by side with nginx in one run. Three upstream instances
// (bench/upstream.mjs, each its own process); wrk (Debian's package) drives, in turn:
//   - one upstream directly: the floor;
//   - dmsc's data plane in front of the three: its native relay (one thread, one epoll
//     loop) serves what the node's own data plane admitted once;
//   - nginx `proxy_pass` to the same three with keepalive, `worker_processes 1`;
//   - for reference, bench/node-proxy.mjs: node:http and undici with no dmsc code at
//     all, what a proxy on Node alone reaches here.
// Each is warmed for --warmup seconds first. Peak: requests/s and p50/p99 with wrk's
// closed loop (--connections, --seconds). Then added latency at half of dmsc's peak
// rate: wrk paced (each connection waits between requests, a Lua `delay`, so the rate is
// about half the peak), for all four, in --trials rounds. (An open-loop generator in Node could not keep a
// steady few thousand requests a second on this machine: its own stalls showed as tens
// of milliseconds of p99 against the bare upstream.) Then the same wrk run with one
// upstream killed a third of the way in: failed requests (non-2xx and socket errors) for
// dmsc and for nginx. Installs wrk and nginx with apt-get when missing.
//   npm run bench -- dataplane [--seconds N] [--connections N] [--trials N] [--warmup N] [--no-write]
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { ensureTools } from '../scripts/debian-tools.mjs';
import { cleanupAll, startLine, tempDir, track } from './procs.mjs';
import { benchOptions } from './options.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLI = join(here, '..', 'dist', 'cli', 'main.js');
const USAGE = `usage: npm run bench -- dataplane [options]
  --seconds N       length of each wrk run (default 10)
  --connections N   wrk connections (default 32)
  --trials N        peak runs per target, and paced rounds; medians are reported (default 3)
  --warmup N        seconds of unmeasured load on each target first (default 3)
  --no-write        do not write bench/results/dataplane.json`;
const { opts, int } = benchOptions('dataplane', USAGE, {
  seconds: { type: 'string', default: '10' },
  connections: { type: 'string', default: '32' },
  trials: { type: 'string', default: '3' },
  warmup: { type: 'string', default: '3' },
});
const SECONDS = int('seconds', 2, 600);
const CONNECTIONS = int('connections', 1, 4096);
const TRIALS = int('trials', 1, 20);
const WARMUP = int('warmup', 0, 60);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const progress = (m) => process.stderr.write(`  ${m}\n`);

// --- processes ---------------------------------------------------------------------
process.on('SIGINT', () => process.exit(130));

const upstream = (port = 0) => startLine(process.execPath, [join(here, 'upstream.mjs'), String(port)]);

function nginxStart(ports, listen, dir) {
  const conf = join(dir, 'nginx.conf');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  writeFileSync(conf, `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body; proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fcgi; uwsgi_temp_path ${dir}/tmp/uwsgi; scgi_temp_path ${dir}/tmp/scgi;
  upstream agents { ${ports.map((p) => `server 127.0.0.1:${p} max_fails=1 fail_timeout=10s;`).join(' ')} keepalive 64; }
  server {
    listen 127.0.0.1:${listen};
    location /capability/echo/ {
      proxy_pass http://agents/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}`);
  return track(spawn('nginx', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] }), 'SIGTERM');
}

async function freePort() {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitUp(url, headers = {}) {
  for (let i = 0; i < 100; i++) {
    try {
      const r = await request(url, { headers });
      await r.body.dump();
      if (r.statusCode === 200) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

// --- wrk -----------------------------------------------------------------------------
function toMs(v, unit) {
  return Number(v) * ({ us: 0.001, ms: 1, s: 1000 }[unit] ?? 1);
}
/** Runs wrk; returns requests/s, p50/p99 (ms), requests, and failed (non-2xx + socket errors). */
function wrk(url, headers = {}, seconds = SECONDS, script = undefined) {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', ...(script ? ['-s', script] : []), ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url];
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${out}`));
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
      const p = (q) => {
        const m = new RegExp(`${q}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
        return m ? toMs(m[1], m[2]) : NaN;
      };
      const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
      const socketErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
      resolve({ rps, p50: p(50), p99: p(99), requests, failed: non2xx + socketErrors });
    });
  });
}

/** wrk with each connection pausing between requests so the whole runs at about `rate`/s. */
function paced(url, rate, headers = {}) {
  const script = join(dir, `paced-${rate}.lua`);
  writeFileSync(script, `function delay() return ${Math.max(1, Math.round((CONNECTIONS * 1000) / rate))} end\n`);
  return wrk(url, headers, SECONDS, script);
}

// --- run -----------------------------------------------------------------------------
ensureTools([{ command: 'wrk', pkg: 'wrk' }, { command: 'nginx', pkg: 'nginx' }], 'dmsc bench dataplane');
const dir = tempDir('dmsc-bench-dp-');
progress('starting three upstreams, a dmsc node and nginx');
const ups = [await upstream(), await upstream(), await upstream()];
const ports = ups.map((u) => u.info.port);
const node = await startLine(process.execPath, [CLI, 'node', '--id', 'bench', '--data', join(dir, 'node'), '--api', '127.0.0.1:0', '--peering', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', '--heartbeat-ms', '3600000']);
const api = `http://${node.info.api}`;
const dp = `http://${node.info.dataplane}`;
const token = readFileSync(join(dir, 'node', 'admin-token'), 'utf8').trim();
const call = async (method, path, body, auth = token) => {
  const r = await request(`${api}${path}`, { method, headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
  const text = await r.body.text();
  if (r.statusCode >= 300) throw new Error(`${method} ${path}: ${r.statusCode} ${text}`);
  return JSON.parse(text);
};
const { key } = await call('POST', '/v1/providers', { name: 'bench', scopes: ['/capability/**'] });
const agents = [];
for (const p of ports) agents.push(await call('POST', '/v1/agents', { endpoint: `http://127.0.0.1:${p}`, capabilities: [{ name: '/capability/echo' }] }, key));
const { credential } = await call('POST', '/v1/agents', { endpoint: 'http://127.0.0.1:1', capabilities: [{ name: '/capability/requester' }] }, key);
const auth = { authorization: `Bearer ${credential}` };
const nginxPort = await freePort();
nginxStart(ports, nginxPort, dir);
const reference = await startLine(process.execPath, [join(here, 'node-proxy.mjs'), ...ports.map(String)]);
const targets = {
  floor: { url: `http://127.0.0.1:${ports[0]}/`, headers: {} },
  dmsc: { url: `${dp}/capability/echo/`, headers: auth },
  nginx: { url: `http://127.0.0.1:${nginxPort}/capability/echo/`, headers: {} },
  node: { url: `http://127.0.0.1:${reference.info.port}/capability/echo/`, headers: auth },
};
for (const t of Object.values(targets)) await waitUp(t.url, t.headers);

const peak = {};
for (const [name, t] of Object.entries(targets)) {
  // Each target is warmed the same way before it is measured: connection pools filled
  // and, for dmsc (and the Node upstreams), the JIT past its first tiers.
  if (WARMUP > 0) {
    progress(`warm-up, ${name}, ${WARMUP} s`);
    await wrk(t.url, t.headers, WARMUP);
  }
  const runs = [];
  for (let i = 0; i < TRIALS; i++) {
    progress(`peak, ${name}, trial ${i + 1}/${TRIALS}`);
    runs.push(await wrk(t.url, t.headers));
  }
  peak[name] = { rps: median(runs.map((r) => r.rps)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)), failed: runs.reduce((a, r) => a + r.failed, 0) };
}

const half = Math.round(peak.dmsc.rps / 2);
// Paced runs go in rounds, one run of each target per round, so drift on this shared
// machine falls on all of them alike; a target's added p99 is the median over rounds of
// its p99 less the floor's p99 in the same round.
const rounds = Object.fromEntries(Object.keys(targets).map((n) => [n, []]));
for (let i = 0; i < TRIALS; i++) {
  for (const [name, t] of Object.entries(targets)) {
    progress(`paced at about ${half}/s (half of dmsc's peak), ${name}, round ${i + 1}/${TRIALS}`);
    rounds[name].push(await paced(t.url, half, t.headers));
  }
}
const atHalf = {};
for (const [name, runs] of Object.entries(rounds)) {
  atHalf[name] = {
    rps: median(runs.map((r) => r.rps)), p50: median(runs.map((r) => r.p50)), p99: median(runs.map((r) => r.p99)),
    added: median(runs.map((r, i) => r.p99 - rounds.floor[i].p99)), failed: runs.reduce((a, r) => a + r.failed, 0),
  };
}

async function killRun(name) {
  // All three up; the first dies a third of the way in; then it is back (and its agent
  // heartbeats) for the next run.
  progress(`kill run, ${name}`);
  const t = targets[name];
  const run = wrk(t.url, t.headers);
  await new Promise((r) => setTimeout(r, (SECONDS * 1000) / 3));
  ups[0].child.kill('SIGKILL');
  const result = await run;
  ups[0] = await upstream(ports[0]);
  await call('POST', `/v1/agents/${agents[0].aic}/heartbeat`, {}, agents[0].credential);
  return result;
}
const killed = { dmsc: await killRun('dmsc'), nginx: await killRun('nginx') };

// --- report ----------------------------------------------------------------------------
const f = (v, d = 1) => (Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
const ratio = (a, b) => (b ? (a / b).toFixed(2) : 'n/a');
console.log(`\ndmsc data-plane benchmark: wrk -t1 -c${CONNECTIONS} -d${SECONDS}s, ${cpus().length} cores, medians of ${TRIALS} trials after ${WARMUP} s of warm-up each`);
console.log('three upstream processes; the floor is one of them asked directly; nginx: worker_processes 1, keepalive 64;');
console.log('node ref.: node:http + undici with no dmsc code (bench/node-proxy.mjs), a proxy on Node alone\n');
const row = (label, xs, d) => console.log(`  ${label.padEnd(20)}${xs.map((x) => f(x, d).padStart(12)).join('')}`);
const names = ['floor', 'dmsc', 'nginx', 'node'];
console.log('peak (closed loop)          floor        dmsc       nginx   node ref.');
row('requests/s', names.map((n) => peak[n].rps), 0);
row('p50 (ms)', names.map((n) => peak[n].p50), 2);
row('p99 (ms)', names.map((n) => peak[n].p99), 2);
console.log(`  dmsc/nginx ${ratio(peak.dmsc.rps, peak.nginx.rps)}x requests/s; dmsc/node ref. ${ratio(peak.dmsc.rps, peak.node.rps)}x; node ref./nginx ${ratio(peak.node.rps, peak.nginx.rps)}x`);
const added = (n) => atHalf[n].added;
console.log(`\npaced at about ${half}/s (half of dmsc's peak); medians of ${TRIALS} rounds, added p99 against the floor's in the same round`);
console.log('                            floor        dmsc       nginx   node ref.');
row('requests/s achieved', names.map((n) => atHalf[n].rps), 0);
row('p50 (ms)', names.map((n) => atHalf[n].p50), 3);
row('p99 (ms)', names.map((n) => atHalf[n].p99), 3);
row('added p99 (ms)', names.map((n) => added(n)), 3);
row('failed', names.map((n) => atHalf[n].failed), 0);
console.log('\none upstream killed a third of the way in      dmsc        nginx');
console.log(`  requests                           ${f(killed.dmsc.requests, 0).padStart(9)} ${f(killed.nginx.requests, 0).padStart(12)}`);
console.log(`  failed                             ${String(killed.dmsc.failed).padStart(9)} ${String(killed.nginx.failed).padStart(12)}`);
// Who served dmsc's requests: the relay, or the node's own data plane it hands to.
const served = (await (await request(`${api}/v1/dataplane`, { headers: { authorization: `Bearer ${token}` } })).body.json());
if (served.relay) {
  console.log(`\ndmsc's listener: the native relay; it served ${f(served.relay.forwarded, 0)} requests itself and handed ${f(served.relay.handed, 0)} to the node's data plane`);
}
const targetsMet = [
  [peak.dmsc.rps >= 0.5 * peak.nginx.rps, `throughput >= 0.5x nginx (${ratio(peak.dmsc.rps, peak.nginx.rps)}x)`],
  [atHalf.dmsc.added <= 1, `added p99 over direct <= 1 ms at half of peak (${f(atHalf.dmsc.added, 3)} ms)`],
  [killed.dmsc.failed === 0, `zero failed requests across the kill (${killed.dmsc.failed})`],
];
console.log('\ntargets:');
for (const [ok, what] of targetsMet) console.log(`  ${ok ? 'met   ' : 'MISSED'} ${what}`);
if (!opts['no-write']) {
  const out = join(here, 'results', 'dataplane.json');
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cores: cpus().length, seconds: SECONDS, connections: CONNECTIONS, trials: TRIALS, warmup: WARMUP, peak, half, atHalf, killed, relay: served.relay ?? null }, null, 2) + '\n');
}
cleanupAll();
process.exit(0);
