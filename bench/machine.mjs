// The machine a benchmark ran on, and its physical limits: the caches sysfs reports and
// the latency of one dependent random memory access, in DRAM and in the last-level cache,
// measured with a pointer chase. Lookup figures are then read against those limits (a
// longest-prefix lookup in a 1M-entry table cannot beat a DRAM miss or two for long).
//   node bench/machine.mjs            prints the machine as JSON (with the chase)
//   node bench/machine.mjs --chase BYTES STEPS SEED   one chase, as JSON (used as a child)
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { rng } from './workload.mjs';

const LINE = 64;
const DRAM_BYTES = 256 * 2 ** 20;
const CACHE_DIR = '/sys/devices/system/cpu/cpu0/cache';

/** Caches of cpu0 from sysfs, smallest level first; [] where sysfs does not say. */
export function caches() {
  let dirs;
  try {
    dirs = readdirSync(CACHE_DIR).filter((d) => /^index\d+$/.test(d));
  } catch {
    return [];
  }
  const read = (d, f) => {
    try {
      return readFileSync(`${CACHE_DIR}/${d}/${f}`, 'utf8').trim();
    } catch {
      return null;
    }
  };
  const out = [];
  for (const d of dirs) {
    const level = Number(read(d, 'level'));
    const type = read(d, 'type');
    const size = read(d, 'size');
    const m = /^(\d+)([KMG]?)$/.exec(size ?? '');
    if (!level || !type || !m) continue;
    const bytes = Number(m[1]) * ({ '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 })[m[2]];
    out.push({ level, type, bytes, sharedBy: read(d, 'shared_cpu_list') });
  }
  return out.sort((a, b) => a.level - b.level || a.type.localeCompare(b.type));
}

export function formatBytes(b) {
  if (b >= 2 ** 30 && b % 2 ** 30 === 0) return `${b / 2 ** 30} GiB`;
  if (b >= 2 ** 20) return `${+(b / 2 ** 20).toFixed(2)} MiB`;
  if (b >= 2 ** 10) return `${+(b / 2 ** 10).toFixed(2)} KiB`;
  return `${b} B`;
}

/** "L1d 48 KiB, L1i 32 KiB, L2 1.25 MiB, L3 48 MiB" */
export function describeCaches(list) {
  if (list.length === 0) return 'not reported by sysfs';
  const tag = (c) => `L${c.level}${c.type === 'Data' ? 'd' : c.type === 'Instruction' ? 'i' : ''}`;
  return list.map((c) => `${tag(c)} ${formatBytes(c.bytes)}`).join(', ');
}

/**
 * ns per step of i = a[i] over a random cyclic permutation of the cache lines of an
 * Int32Array of `bytes`: one slot per 64-byte line, so every step touches a line the
 * cycle has not visited for bytes/64 steps, and no prefetcher can guess the next one.
 * Median of 3 timed runs of `steps` steps after a warm-up.
 */
export function pointerChase(bytes, steps, seed = 1) {
  const stride = LINE / 4;
  const lines = Math.floor(bytes / LINE);
  const a = new Int32Array(lines * stride);
  // Sattolo's shuffle: a permutation that is a single cycle through every line.
  const r = rng(seed ^ 0x3c6ef372);
  const next = new Uint32Array(lines);
  for (let i = 0; i < lines; i++) next[i] = i;
  for (let i = lines - 1; i > 0; i--) {
    const j = Math.floor(r() * i);
    const t = next[i];
    next[i] = next[j];
    next[j] = t;
  }
  for (let i = 0; i < lines; i++) a[i * stride] = next[i] * stride;
  const chase = (n, from) => {
    let i = from;
    for (let k = 0; k < n; k++) i = a[i];
    return i;
  };
  let at = chase(Math.min(steps, 1_000_000), 0);
  const trials = [];
  for (let t = 0; t < 3; t++) {
    const t0 = process.hrtime.bigint();
    at = chase(steps, at);
    trials.push(Number(process.hrtime.bigint() - t0) / steps);
  }
  trials.sort((x, y) => x - y);
  return { bytes, steps, ns: trials[1], trials, end: at };
}

/**
 * Both chases. In memory the addon maps as the table maps its own (huge pages where the
 * kernel gives them), since that is the miss a lookup pays; a chase in a JavaScript
 * ArrayBuffer sits on 4 KiB pages and adds a TLB miss to every step, so it is kept as
 * a second figure only. The ArrayBuffer chase runs in a child process, so that its
 * 256 MiB never sit in the caller's heap.
 */
async function chases(llcBytes, steps, seed) {
  const js = (bytes) => JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--chase', String(bytes), String(steps), String(seed)], { encoding: 'utf8' }));
  let native;
  try {
    const { loadNative } = await import('../dist/fastpath/native.js');
    native = loadNative();
  } catch {
    native = undefined;
  }
  // Half the LLC: the chase then stays resident beside the process's other data, which a
  // full-size array would partly push out (and the LLC is shared with the other cores).
  const llcSize = Math.max(LINE * 1024, Math.floor(llcBytes / 2 / LINE) * LINE);
  const run = (bytes) => {
    if (!native?.pointerChase) return { ...js(bytes), pages: '4 KiB (JavaScript ArrayBuffer)' };
    const trials = [0, 1, 2].map(() => native.pointerChase(bytes, steps, seed)).sort((a, b) => a - b);
    return { bytes, steps, ns: trials[1], trials, pages: 'as the table\'s (huge pages where the kernel gives them)' };
  };
  return { dram: run(DRAM_BYTES), llc: run(llcSize), smallPages: js(DRAM_BYTES) };
}

/** What the report prints at the top and stores in the JSON. */
export async function machine({ seed = 1, steps = 4_000_000 } = {}) {
  const list = caches();
  const llcCache = list.filter((c) => c.type !== 'Instruction').at(-1) ?? null;
  const llcBytes = llcCache?.bytes ?? 8 * 2 ** 20;
  return {
    cpu: cpus()[0]?.model?.trim() ?? 'unknown cpu',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    caches: list,
    llc: llcCache ? `L${llcCache.level}` : 'unknown (assumed 8 MiB)',
    chase: await chases(llcBytes, steps, seed),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args[0] === '--chase') {
    process.stdout.write(JSON.stringify(pointerChase(Number(args[1]), Number(args[2]), Number(args[3]))));
  } else {
    process.stdout.write(JSON.stringify(await machine(), null, 2) + '\n');
  }
}
