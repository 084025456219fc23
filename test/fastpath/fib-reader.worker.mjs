// A reader worker: attaches to a shared table and looks up one group of names in packed
// batches until told to stop, counting batches whose answers mix two generations.
import { parentPort, workerData } from 'node:worker_threads';
import { ForwardingTable } from '../../dist/index.js';

const { token, group, stop } = workerData;
const view = ForwardingTable.attach(token);
const names = view.pack(Array.from({ length: group }, (_, i) => `/group/${i}/leaf`));
const out = new Int32Array(group);
const flag = new Int32Array(stop);
let batches = 0;
let mixed = 0;
let misses = 0;
const seen = new Set();
while (Atomics.load(flag, 0) === 0) {
  view.lookupPacked(names.bytes, names.offsets, out);
  batches++;
  // Handles of one call come from one snapshot, and an index is recycled only once no
  // snapshot can see a version using it: within a call, equal handles mean equal ids.
  const first = out[0];
  if (first < 0) misses++;
  for (let i = 1; i < group; i++) if (out[i] !== first) { mixed++; break; }
  // The id behind a handle is asked later, so it may have been recycled: null then.
  if ((batches & 63) === 0 && first >= 0) {
    const id = view.nextHopId(first);
    if (id !== null) seen.add(id);
  }
}
view.close();
parentPort.postMessage({ batches, mixed, misses, distinct: seen.size });
