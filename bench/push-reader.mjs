// A reader of the node's table during the push benchmark: attaches a read view (the
// token from `fib.share()`), checks that its names are found, then runs lookupPacked
// over them in a closed loop until told to stop, recording (CLOCK_MONOTONIC ns, lookups
// so far, this thread's CPU time in clock ticks) about every 5 ms in a shared array so
// the main thread can compute its rate, and the share of a core the scheduler gave it,
// over any interval.
import { parentPort, workerData } from 'node:worker_threads';
import { ForwardingTable } from '../dist/index.js';
import { cpuTicks } from './thread-cpu.mjs';
import { batches } from './workload.mjs';

const { token, names, batch, samples, control } = workerData;
const view = ForwardingTable.attach(token);
const packed = batches(view, names, batch);
const out = new Int32Array(batch);
const series = new Float64Array(samples); // triples: time ns, lookups, CPU ticks
const ctl = new Int32Array(control); // [0]: stop flag, [1]: samples written
const triples = series.length / 3;

let misses = 0;
for (const b of packed) {
  view.lookupPacked(b.bytes, b.offsets, out);
  for (let i = 0; i < b.offsets.length - 1; i++) if (out[i] < 0) misses++;
}
parentPort.postMessage({ ready: true, misses });

let lookups = 0;
let n = 0;
const record = () => {
  if (n >= triples) return;
  series[3 * n] = Number(process.hrtime.bigint());
  series[3 * n + 1] = lookups;
  series[3 * n + 2] = cpuTicks('/proc/thread-self/stat');
  n++;
  Atomics.store(ctl, 1, n);
};
record();
let last = process.hrtime.bigint();
outer: for (;;) {
  for (let i = 0; i < packed.length; i++) {
    view.lookupPacked(packed[i].bytes, packed[i].offsets, out);
    lookups += packed[i].offsets.length - 1;
    if ((i & 7) === 7) {
      const now = process.hrtime.bigint();
      if (now - last >= 5_000_000n) {
        last = now;
        record();
        if (Atomics.load(ctl, 0) !== 0) break outer;
      }
    }
  }
}
record();
view.close();
parentPort.postMessage({ done: true, lookups });
