#!/usr/bin/env node
// The dmsc command.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { DmscError } from '../errors.js';
import { ForwardingTable } from '../fastpath/forwarding-table.js';
import { ReferenceTable } from '../fastpath/reference-table.js';
import { nameProblem } from '../fastpath/validate.js';
import { nodeConfig, readFibFile } from '../node/config.js';
import { DmscNode } from '../node/node.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const collect = (v: string, prev: string[]) => [...prev, v];

function fail(e: unknown): never {
  const err = e as Error & { code?: string };
  const code = err instanceof DmscError ? err.code : 'ERR_DMSC_INTERNAL';
  process.stderr.write(`dmsc: ${code}: ${err.message}\n`);
  process.exit(1);
}

const program = new Command('dmsc')
  .description('DMSC node: capability-addressed routing for AI agents')
  .version((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version)
  .showHelpAfterError()
  .exitOverride();

program
  .command('node')
  .description('run a node (this release: the forwarding plane with health and FIB inspection)')
  .option('--id <id>', 'node id', 'node-1')
  .option('--data <dir>', 'data directory (default ./.dmsc/<id>)')
  .option('--api <host:port>', 'API listener', '127.0.0.1:7070')
  .option('--fib <file>', 'JSON array of FIB operations to apply at start')
  .action(async (opts: { id: string; data?: string; api: string; fib?: string }) => {
    const config = nodeConfig(opts);
    const node = await DmscNode.start(config);
    const { host, port } = node.apiAddress;
    process.stdout.write(JSON.stringify({ msg: 'listening', node: config.id, api: `${host}:${port}`, data: config.dataDir, fib: { size: node.fib.size, generation: node.fib.generation } }) + '\n');
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      await node.stop();
      process.stdout.write(JSON.stringify({ msg: 'stopped', signal }) + '\n');
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
  });

const fib = program.command('fib').description('work with forwarding tables offline');

fib
  .command('check')
  .description('validate capability names; exits 1 if any is invalid')
  .argument('<name...>', 'capability names')
  .action((names: string[]) => {
    let bad = 0;
    for (const name of names) {
      const problem = nameProblem(name);
      if (problem) bad++;
      process.stdout.write(`${problem ? 'invalid' : 'ok     '} ${JSON.stringify(name)}${problem ? `: ${problem}` : ''}\n`);
    }
    process.exit(bad ? 1 : 0);
  });

fib
  .command('lookup')
  .description('load a FIB file and look names up in it')
  .requiredOption('--fib <file>', 'JSON array of FIB operations')
  .option('--require <tag>', 'required tag (repeatable)', collect, [])
  .option('--flow <key>', 'flow key, for a sticky choice')
  .addOption(new Option('--table <kind>', 'implementation').choices(['native', 'reference']).default('native'))
  .argument('<name...>', 'names to look up')
  .action(async (names: string[], opts: { fib: string; require: string[]; flow?: string; table: string }) => {
    const t = opts.table === 'native' ? new ForwardingTable() : new ReferenceTable();
    t.apply(await readFibFile(resolve(opts.fib)));
    for (const name of names) {
      const r = t.lookup(name, { require: opts.require, ...(opts.flow !== undefined ? { flow: opts.flow } : {}) });
      process.stdout.write(JSON.stringify({ name, ...(r ?? { nextHop: null }) }) + '\n');
    }
    t.close();
  });

program
  .command('bench')
  .description('run benchmarks from a source checkout (npm run bench -- --help)')
  .argument('[args...]', 'benchmark names and options')
  .allowUnknownOption()
  .action((args: string[]) => {
    const script = join(root, 'bench', 'run.mjs');
    if (!existsSync(script)) fail(new DmscError('ERR_DMSC_NOT_FOUND', 'benchmarks ship with the source checkout, not the package'));
    const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  });

program
  .command('doctor')
  .description('check that the native fast path loads')
  .action(() => {
    try {
      new ForwardingTable().close();
      process.stdout.write('native fast path: ok\n');
    } catch (e) {
      process.stdout.write(`native fast path: unavailable\n${(e as Error).message}\n`);
      process.exit(1);
    }
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  fail(e);
}
