#!/usr/bin/env node
// Builds and runs the native core's own tests with CMake: once plain, once under
// AddressSanitizer + UndefinedBehaviorSanitizer. Exits non-zero if any build or test fails.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'native');
const variants = [
  { name: 'core', dir: join(root, 'build', 'core'), flags: ['-DCMAKE_BUILD_TYPE=RelWithDebInfo'] },
  { name: 'core-asan-ubsan', dir: join(root, 'build', 'core-asan'), flags: ['-DCMAKE_BUILD_TYPE=Debug', '-DDMSC_SANITIZE=ON'] },
];

function run(cmd, args, env) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.error) {
    console.error(`dmsc: could not run ${cmd}: ${r.error.message}`);
    return 1;
  }
  return r.status ?? 1;
}

let failed = 0;
for (const v of variants) {
  console.log(`\n== native tests: ${v.name}`);
  const steps = [
    ['cmake', ['-S', src, '-B', v.dir, ...v.flags]],
    ['cmake', ['--build', v.dir, '--parallel', '2']],
    ['ctest', ['--test-dir', v.dir, '--output-on-failure']],
  ];
  for (const [cmd, args] of steps) {
    if (run(cmd, args, { ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'print_stacktrace=1' }) !== 0) {
      console.error(`dmsc: ${v.name}: '${cmd} ${args[0]}' failed`);
      failed++;
      break;
    }
  }
}
process.exit(failed ? 1 : 0);
