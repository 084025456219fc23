#!/usr/bin/env node
// Runs a libFuzzer target over the native core for a bounded time, from its checked-in
// corpus: `table` (name parser and table operations, native/fuzz/corpus) or `http1` (the
// relay's HTTP/1.1 heads and chunked framing, native/fuzz/corpus-http1).
//   npm run fuzz -- --seconds 60 [--jobs 2] [--target table|http1]
// libFuzzer needs clang; on Debian this script installs clang and its runtime if missing.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let opts;
try {
  opts = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      jobs: { type: 'string', default: '1' },
      target: { type: 'string', default: 'table' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (e) {
  console.error(`dmsc fuzz: ${e.message}\nusage: npm run fuzz -- [--seconds N] [--jobs N] [--target table|http1]`);
  process.exit(2);
}
if (opts.help) {
  console.log('usage: npm run fuzz -- [--seconds N] [--jobs N] [--target table|http1]\n\n' +
    'Fuzzes the native core for N seconds (default 60) with libFuzzer + ASan + UBSan:\n' +
    'the table (default) or the relay\'s HTTP/1.1 parsing (--target http1).\n' +
    'Crashes are written to build/fuzz/ as crash-*; new corpus inputs to build/fuzz/corpus (table) or build/fuzz/corpus-http1.');
  process.exit(0);
}
const targets = { table: { bin: 'fuzz_table', corpus: 'corpus', maxLen: 512 }, http1: { bin: 'fuzz_http1', corpus: 'corpus-http1', maxLen: 4096 } };
const target = targets[opts.target];
if (!target) {
  console.error(`dmsc fuzz: --target must be one of ${Object.keys(targets).join(', ')}`);
  process.exit(2);
}
const seconds = Number(opts.seconds);
const jobs = Number(opts.jobs);
if (!Number.isInteger(seconds) || seconds < 1 || seconds > 86400) {
  console.error('dmsc fuzz: --seconds must be an integer from 1 to 86400');
  process.exit(2);
}
if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) {
  console.error('dmsc fuzz: --jobs must be an integer from 1 to 64');
  process.exit(2);
}

function sh(cmd, args, cwd = root) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit' });
  return r.error ? 1 : (r.status ?? 1);
}

function haveLibFuzzer() {
  const probe = spawnSync('sh', ['-c', 'echo "extern \\"C\\" int LLVMFuzzerTestOneInput(const char*, unsigned long){return 0;}" | clang++ -x c++ -fsanitize=fuzzer - -o /dev/null'], { stdio: 'ignore' });
  return probe.status === 0;
}

if (!haveLibFuzzer()) {
  console.log('dmsc fuzz: clang with libFuzzer not found; installing clang and libclang-rt-dev from Debian');
  if (process.getuid?.() !== 0 || sh('apt-get', ['update', '-qq']) !== 0 ||
      sh('apt-get', ['install', '-y', '-qq', 'clang', 'libclang-rt-dev']) !== 0) {
    if (!haveLibFuzzer() && (sh('apt-get', ['install', '-y', '-qq', 'clang', 'libclang-rt-14-dev']) !== 0 || !haveLibFuzzer())) {
      console.error('dmsc fuzz: could not install clang with libFuzzer (needs root and Debian packages)');
      process.exit(1);
    }
  }
}

const dir = join(root, 'build', 'fuzz');
const corpus = join(dir, target.corpus);
mkdirSync(corpus, { recursive: true });
cpSync(join(root, 'native', 'fuzz', target.corpus), corpus, { recursive: true });
if (sh('cmake', ['-S', join(root, 'native'), '-B', dir, '-DDMSC_FUZZ=ON', '-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DCMAKE_CXX_COMPILER=clang++']) !== 0 ||
    sh('cmake', ['--build', dir, '--target', target.bin, '--parallel', '2']) !== 0) {
  console.error('dmsc fuzz: build failed');
  process.exit(1);
}
const bin = join(dir, target.bin);
if (!existsSync(bin)) {
  console.error(`dmsc fuzz: ${bin} was not built`);
  process.exit(1);
}
console.log(`dmsc fuzz: fuzzing for ${seconds}s with ${jobs} job(s)`);
const args = [`-max_total_time=${seconds}`, '-print_final_stats=1', `-max_len=${target.maxLen}`, `-artifact_prefix=${dir}/`];
if (jobs > 1) args.push(`-jobs=${jobs}`, `-workers=${jobs}`);
process.exit(sh(bin, [...args, corpus], dir));
