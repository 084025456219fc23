// The fib benchmark's workload, generated deterministically from a seed so that every
// process (parent, memory probes, workers) builds the same table and queries.

/** mulberry32: a small, fast, seeded generator of floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The generator seed of one stream of random choices under the run's --seed. The streams
 * are offset so that seed 1 (the default) reproduces the workload of results written
 * before --seed existed: prefixes mixed with 0, queries seeded with 2.
 */
export function streamSeed(seed, stream) {
  switch (stream) {
    case 'prefixes': return Math.imul(seed - 1, 0x85ebca6b) >>> 0;
    case 'queries': return (seed + 1) >>> 0;
    default: return (Math.imul(seed, 0xc2b2ae35) ^ 0x27d4eb2f) >>> 0; // 'picks': the Map table's draws
  }
}

const TOP = ['capability', 'skill', 'service', 'tool'];
const DOMAINS = ['ocr', 'asr', 'tts', 'translate', 'vision', 'nlp', 'payments', 'search', 'security', 'data', 'code', 'audio', 'video', 'maps', 'chem', 'legal'];
export const NEXT_HOP_IDS = 10_000;

/**
 * Prefixes [start, start + count) of the workload: depth[0] to depth[1] components, each
 * with 4 distinct next hops out of 10,000 ids, a fifth of the hops tagged. Each is a
 * function of (seed, index), so a child process can build any slice of the same table.
 * The component `s<index>` keeps prefixes distinct at any depth.
 */
export function prefixes(count, { start = 0, seed = 1, depth = [3, 5] } = {}) {
  const [lo, hi] = depth;
  const mix = streamSeed(seed, 'prefixes');
  const out = new Array(count);
  for (let j = 0; j < count; j++) {
    const i = start + j;
    const r = rng(Math.imul(i, 0x9e3779b1) ^ 0x5bd1e995 ^ mix);
    const d = lo + Math.floor(r() * (hi - lo + 1));
    let p = d === 1 ? '' : d === 2 ? `/${TOP[i & 3]}` : `/${TOP[i & 3]}/${DOMAINS[(i >> 2) & 15]}`;
    p += `/s${i.toString(36)}`;
    for (let k = 3; k < d; k++) p += `/v${Math.floor(r() * 100)}`;
    const hops = [];
    const used = new Set();
    while (hops.length < 4) {
      const id = Math.floor(r() * NEXT_HOP_IDS);
      if (used.has(id)) continue;
      used.add(id);
      const hop = { id: `agent-${id}`, weight: 50 + Math.floor(r() * 100) };
      if (r() < 0.2) hop.tags = r() < 0.5 ? ['gdpr'] : ['gdpr', 'eu'];
      hops.push(hop);
    }
    out[j] = { op: 'upsert', prefix: p, nextHops: hops };
  }
  return out;
}

/** Zipf(s) sampler over ranks 0..n-1 by inverse CDF. */
function zipf(n, s, r) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s);
    cdf[k] = sum;
  }
  return () => {
    const u = r() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/**
 * q query names, each 0 to 2 components longer than its prefix; popularity uniform
 * (`{ kind: 'uniform' }`) or Zipf(s) (`{ kind: 'zipf', s }`) over a random permutation of
 * the prefixes, so that hot prefixes are scattered in memory rather than adjacent.
 */
export function queries(ops, q, dist, seed = 1) {
  const r = rng(streamSeed(seed, 'queries'));
  const n = ops.length;
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  const pick = dist.kind === 'zipf' ? zipf(n, dist.s, r) : () => Math.floor(r() * n);
  const out = new Array(q);
  for (let i = 0; i < q; i++) {
    let name = ops[perm[pick()]].prefix;
    const extra = Math.floor(r() * 3);
    for (let k = 0; k < extra; k++) name += `/q${Math.floor(r() * 10)}`;
    out[i] = name;
  }
  // Names arrive from the wire as flat strings, not as the rope a concatenation builds.
  return JSON.parse(JSON.stringify(out));
}

/** Packs names in batches of `size` for lookupPacked. */
export function batches(table, names, size) {
  const out = [];
  for (let i = 0; i < names.length; i += size) out.push(table.pack(names.slice(i, i + size)));
  return out;
}
