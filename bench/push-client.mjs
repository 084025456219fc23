#!/usr/bin/env node
// A pushing client of the push benchmark, in its own process (bench/push.mjs starts it):
//   http ORIGIN TOKEN ENTRIES BATCH INFLIGHT
//       POST /v1/fib/batches (JSON, undici), INFLIGHT batches at a time;
//   grpc ADDRESS TOKEN ENTRIES BATCH SMALL LARGE [fresh]
//       FibClient: ENTRIES in batches of BATCH pipelined up to the node's window, then
//       SMALL 1-op batches and LARGE 1,000-op batches one at a time (ack latency; none
//       when SMALL is 0). With `fresh`, each entry has its own array of next hops instead
//       of sharing its group's (push-workload.mjs).
// Prints a JSON line once the push is done: its start and end (CLOCK_MONOTONIC ns, which
// the parent shares), statuses and the client's CPU time; then, in grpc mode, one with
// the latency histograms.
import hdr from 'hdr-histogram-js';
import { Pool } from 'undici';
import { FibClient } from '../dist/index.js';
import { pushOps } from './push-workload.mjs';

const [mode, target, token, ...rest] = process.argv.slice(2);
const now = () => process.hrtime.bigint();

function tally(statuses, s) {
  statuses[s] = (statuses[s] ?? 0) + 1;
}

async function pushHttp(origin, entries, batch, inflight) {
  const pool = new Pool(origin, { connections: inflight });
  const batches = Math.ceil(entries / batch);
  const statuses = {};
  let next = 0;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const cpu0 = process.cpuUsage();
  const t0 = now();
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (next < batches) {
      const b = next++;
      const body = JSON.stringify({ ops: pushOps(b * batch, Math.min(batch, entries - b * batch)) });
      const res = await pool.request({ method: 'POST', path: '/v1/fib/batches', headers, body });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`batch ${b}: ${res.statusCode} ${text.slice(0, 500)}`);
      tally(statuses, JSON.parse(text).status);
    }
  }));
  const t1 = now();
  const cpu = process.cpuUsage(cpu0);
  await pool.close();
  return { start: String(t0), end: String(t1), seconds: Number(t1 - t0) / 1e9, statuses, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

async function pushGrpc(fib, entries, batch, window, fresh) {
  const batches = Math.ceil(entries / batch);
  const statuses = {};
  // Twice the window outstanding: the client sends up to the window and queues the rest,
  // so a batch is ready to go the moment a result frees a slot.
  const depth = 2 * window;
  let next = 0;
  let done = 0;
  const cpu0 = process.cpuUsage();
  let t0;
  await new Promise((resolve, reject) => {
    const launch = () => {
      while (next < batches && next - done < depth) {
        const b = next++;
        const ops = pushOps(b * batch, Math.min(batch, entries - b * batch), fresh);
        t0 ??= now();
        fib.modify(ops).then((r) => {
          tally(statuses, r.status);
          if (r.status !== 'VISIBLE') reject(new Error(`batch ${b}: ${r.status} ${r.message} ${JSON.stringify(r.errors.slice(0, 3))}`));
          if (++done === batches) resolve();
          else launch();
        }, reject);
      }
    };
    launch();
  });
  const t1 = now();
  const cpu = process.cpuUsage(cpu0);
  return { start: String(t0), end: String(t1), seconds: Number(t1 - t0) / 1e9, statuses, cpuSeconds: (cpu.user + cpu.system) / 1e6, window };
}

/** `count` batches of `size` fresh upserts, one at a time; latency in µs in an HDR histogram. */
async function ackLatency(fib, tag, count, size) {
  const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const statuses = {};
  const warmup = Math.min(20, count);
  for (let i = -warmup; i < count; i++) {
    const ops = pushOps(0, size).map((op, j) => ({ ...op, prefix: `/capability/${tag}/b${i + warmup}/n${j}` }));
    const t0 = now();
    const r = await fib.modify(ops);
    const us = Number(now() - t0) / 1000;
    if (r.status !== 'VISIBLE') throw new Error(`${tag} batch ${i}: ${r.status} ${r.message}`);
    if (i >= 0) {
      h.recordValue(Math.max(1, Math.round(us)));
      tally(statuses, r.status);
    }
  }
  const ms = (p) => h.getValueAtPercentile(p) / 1000;
  const out = { batches: count, ops: size, p50: ms(50), p99: ms(99), p999: ms(99.9), max: h.maxValue / 1000, mean: h.mean / 1000, statuses };
  h.destroy();
  return out;
}

const line = (o) => process.stdout.write(JSON.stringify(o) + '\n');
if (mode === 'http') {
  const [entries, batch, inflight] = rest.map(Number);
  line({ push: await pushHttp(target, entries, batch, inflight) });
} else if (mode === 'grpc') {
  const [entries, batch, small, large] = rest.slice(0, 4).map(Number);
  const fib = new FibClient({ address: target, key: token });
  const opened = await fib.open();
  if (!opened.primary) throw new Error('the session is not primary');
  line({ push: await pushGrpc(fib, entries, batch, opened.limits.window, rest[4] === 'fresh'), held: fib.held });
  if (small > 0) line({ ack: { one: await ackLatency(fib, 'ack1', small, 1), thousand: await ackLatency(fib, 'ack1000', large, 1000) } });
  fib.close();
} else {
  console.error(`push-client: unknown mode ${mode}`);
  process.exit(2);
}
