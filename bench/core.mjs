#!/usr/bin/env node
// The table's core timed alone, without Node (native/bench/core_bench.cpp): parsing a
// name, lookupPacked and lookup per name, in a table small enough for L2 and in a large
// one. Read beside `npm run bench -- fib`: what the core costs against what a call from
// JavaScript costs, and how much of the core is the CPU's own work rather than memory.
//   npm run bench -- core [--prefixes 1000,1000000] [--json]
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchOptions } from './options.mjs';

const USAGE = `usage: npm run bench -- core [options]
  --prefixes A,B   table sizes (default 1000,1000000)
  --json           print the figures as JSON`;
const { opts } = benchOptions('core', USAGE, {
  prefixes: { type: 'string', default: '1000,1000000' },
  json: { type: 'boolean', default: false },
});
const sizes = opts.prefixes.split(',').map(Number);
if (!sizes.every((n) => Number.isInteger(n) && n >= 1 && n <= 10_000_000)) {
  console.error('dmsc bench core: --prefixes takes sizes from 1 to 10000000, comma-separated');
  process.exit(2);
}
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'build', 'core-bench');
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    console.error(`dmsc bench core: ${cmd} ${args.join(' ')} failed${r.error ? `: ${r.error.message}` : ''}`);
    process.exit(1);
  }
  return r.stdout;
};
process.stderr.write('  building native/bench/core_bench.cpp (Release, -O3)\n');
run('cmake', ['-S', join(root, 'native'), '-B', dir, '-DCMAKE_BUILD_TYPE=Release', '-DCMAKE_CXX_FLAGS_RELEASE=-O3 -DNDEBUG']);
run('cmake', ['--build', dir, '--target', 'core_bench', '--parallel', '2']);
process.stderr.write(`  timing tables of ${sizes.join(', ')} prefixes (median of 5 runs of 1,048,576 names)\n`);
const rows = run(join(dir, 'core_bench'), sizes.map(String)).trim().split('\n').map((l) => JSON.parse(l));
if (opts.json) {
  console.log(JSON.stringify(rows.map(({ sink, ...r }) => r), null, 2));
} else {
  console.log('dmsc core benchmark: the table alone, ns per name (uniform names, 4 next hops, 0-2 extra components)');
  console.log(`${'prefixes'.padStart(12)}${'parse'.padStart(10)}${'lookupPacked'.padStart(15)}${'lookup'.padStart(10)}`);
  for (const r of rows) console.log(`${r.prefixes.toLocaleString('en').padStart(12)}${r.parseNs.toFixed(1).padStart(10)}${r.lookupPackedNs.toFixed(1).padStart(15)}${r.lookupNs.toFixed(1).padStart(10)}`);
}
