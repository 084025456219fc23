// The push benchmark's workload, a pure function of each entry's index, so that every
// pusher (the in-process floor, the HTTP baseline, FibClient and the Python driver in
// bench/push_client.py, which computes the same entries: keep the two in step) loads the
// same table. Entry i: /capability/t<i % 1000>/n<i>, 4 peer next hops out of 100
// gateways, weights 50..149, priorities 0, 0, 1, 1.

export const HOPS = 4;

/** The next hops of entry i. */
export function hopsOf(i) {
  const hops = new Array(HOPS);
  for (let k = 0; k < HOPS; k++) hops[k] = { id: `peer:gw${(i + 17 * k) % 100}`, weight: 50 + ((i + 31 * k) % 100), priority: k >> 1 };
  return hops;
}

export const prefixOf = (i) => `/capability/t${i % 1000}/n${i}`;

/**
 * Entry i's next hops depend on i % 100 only: 100 next-hop groups, each one array that
 * the entries using it share, as a controller that keeps next-hop groups (gRIBI's model)
 * holds them, and as the Python pusher builds them.
 */
export const GROUPS = 100;
const LISTS = Array.from({ length: GROUPS }, (_, g) => hopsOf(g));

/**
 * Upserts for entries [first, first + count), in the `--fib` file format. `fresh`: each
 * entry with an array of its own (as ops parsed from JSON lines come), the same values.
 */
export function pushOps(first, count, fresh = false) {
  const ops = new Array(count);
  for (let j = 0; j < count; j++) ops[j] = { op: 'upsert', prefix: prefixOf(first + j), nextHops: fresh ? hopsOf(first + j) : LISTS[(first + j) % GROUPS] };
  return ops;
}

/**
 * What every reader looks up: the node is started with STATIC entries of its own (a
 * `--fib` file, /capability/static/s<k>, 2 next hops), present before, during and after
 * a push; names are 0..2 components longer than their entry.
 */
export const STATIC = 10_000;

export function staticOps() {
  const ops = [];
  for (let k = 0; k < STATIC; k++) ops.push({ op: 'upsert', prefix: `/capability/static/s${k}`, nextHops: [{ id: `peer:st${k % 7}` }, { id: `peer:st${(k % 7) + 7}`, weight: 50 }] });
  return ops;
}

export function readerNames(count = 65_536) {
  const out = new Array(count);
  let x = 12345;
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const k = x % STATIC;
    const extra = (x >>> 16) % 3;
    let name = `/capability/static/s${k}`;
    for (let e = 0; e < extra; e++) name += `/q${(x >>> (20 + e)) & 7}`;
    out[i] = name;
  }
  // Flat strings, as names arrive from the wire (not the rope concatenation builds).
  return JSON.parse(JSON.stringify(out));
}
