#!/usr/bin/env node
// npm run bench -- [NAME...] [options]: runs the named benchmarks (all when none is named).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const BENCHES = {
  fib: { file: 'fib.mjs', what: 'forwarding table: throughput and latency beside a Map table and ReferenceTable; load, setHealth, memory, workers, against DRAM latency' },
  core: { file: 'core.mjs', what: 'the table\'s core alone, without Node: parsing, lookupPacked and lookup in a small and a large table' },
  node: { file: 'node.mjs', what: 'node: durable registrations/s, resolve latency under 50 clients' },
  mesh: { file: 'mesh.mjs', what: 'mesh: digest convergence and bytes per change against a full-state flood' },
  dataplane: { file: 'dataplane.mjs', what: 'data plane: requests/s and latency beside nginx and the bare upstream; failures across a kill' },
  intent: { file: 'intent.mjs', what: 'intent resolution: precision@1/@3 and out-of-scope rejection on a labelled set, time per intent' },
  session: { file: 'session.mjs', what: 'A2ASP: session setup and message round trip across one and two gateways, beside bare WebSocket' },
  push: { file: 'push.mjs', what: 'FIB programming: 1M entries pushed over HTTP, FibClient and Python gRPC beside the table\'s own apply; ack latency; readers during the push' },
};

const args = process.argv.slice(2);
// Names come first; from the first option on, every word is the benchmarks' own
// (`fib --dist uniform`: 'uniform' is a value, not a benchmark).
const firstOption = args.findIndex((a) => a.startsWith('-'));
const names = firstOption < 0 ? args : args.slice(0, firstOption);
const rest = firstOption < 0 ? [] : args.slice(firstOption);
if (names.length === 0 && (rest.includes('--help') || rest.includes('-h'))) {
  console.log('usage: npm run bench -- [NAME...] [options]\n\nbenchmarks:');
  for (const [name, b] of Object.entries(BENCHES)) console.log(`  ${name.padEnd(10)} ${b.what}`);
  console.log('\nnames come first; options after them go to each benchmark named (`npm run bench -- fib --help` lists its own).');
  process.exit(0);
}
const selected = names.length ? names : Object.keys(BENCHES);
const late = rest.find((a) => Object.hasOwn(BENCHES, a));
if (late !== undefined) {
  console.error(`dmsc bench: benchmark names come before options ('${late}' came after ${rest[0]})`);
  process.exit(2);
}
for (const name of selected) {
  if (!BENCHES[name]) {
    console.error(`dmsc bench: unknown benchmark '${name}' (have: ${Object.keys(BENCHES).join(', ')})`);
    process.exit(2);
  }
}
let failed = 0;
for (const name of selected) {
  const r = spawnSync(process.execPath, ['--expose-gc', join(here, BENCHES[name].file), ...rest], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
