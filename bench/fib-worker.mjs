// One worker of the scaling measurement: attaches to the shared table, waits for the
// start signal, then runs lookupPacked over its batches for a fixed time.
import { parentPort, workerData } from 'node:worker_threads';
import { ForwardingTable } from '../dist/index.js';
import { batches } from './workload.mjs';

const { token, names, batch, seconds, go } = workerData;
const view = ForwardingTable.attach(token);
const packed = batches(view, names, batch);
const out = new Int32Array(batch);
const flag = new Int32Array(go);
parentPort.postMessage('ready');
Atomics.wait(flag, 0, 0);
let lookups = 0;
const start = process.hrtime.bigint();
const end = start + BigInt(seconds) * 1_000_000_000n;
let now = start;
outer: for (;;) {
  for (let i = 0; i < packed.length; i++) {
    view.lookupPacked(packed[i].bytes, packed[i].offsets, out);
    lookups += packed[i].offsets.length - 1;
    if ((i & 63) === 0) {
      now = process.hrtime.bigint();
      if (now >= end) break outer;
    }
  }
}
view.close();
parentPort.postMessage(lookups / (Number(now - start) / 1e9));
