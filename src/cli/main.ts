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
import { formatListen, nodeConfig, readFibFile } from '../node/config.js';
import { adminCommands, amcAdminCommands, controllerCommands, fibShow, peerCommands, reportChecks } from './admin.js';
import { fibClientCommands } from './fib.js';

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
  .enablePositionalOptions()
  .exitOverride();

/** HOST:PORT, with an IPv6 host in brackets. */

/** Stops a server on SIGINT/SIGTERM, printing one JSON line. */
function stopOn(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    await stop();
    process.stdout.write(JSON.stringify({ msg: 'stopped', signal }) + '\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void handler('SIGINT'));
  process.on('SIGTERM', () => void handler('SIGTERM'));
}

program
  .command('node')
  .description('run a node: Agent Gateway and forwarding plane, with the AMC embedded unless --amc is given')
  .option('--id <id>', 'node id (also the registry part of the AICs it allocates)', 'node-1')
  .option('--data <dir>', 'data directory (default ./.dmsc/<id>)')
  .option('--api <host:port>', 'API listener', '127.0.0.1:7070')
  .option('--fib <file>', 'JSON array of static FIB operations to apply at start')
  .option('--domain <name>', 'trust domain of the embedded AMC', 'local')
  .option('--credential-ttl <seconds>', 'lifetime of agent credentials (embedded AMC)', '3600')
  .option('--heartbeat-ms <ms>', 'heartbeat interval given to agents; 3 missed ones mark an agent down', '1000')
  .option('--grant-ttl <seconds>', 'lifetime of the session grants signed on resolution', '60')
  .option('--taxonomy <file>', 'JSON capability taxonomy (re-read when the file changes; the built-in one without it)')
  .option('--task-rules <file>', 'JSON rules for decomposing text tasks (re-read when the file changes; built-in rules without it)')
  .option('--amc <url>', 'use the standalone AMC at this URL instead of the embedded one')
  .option('--amc-key-file <file>', "this gateway's key at that AMC (or set DMSC_AMC_KEY)")
  .option('--amc-poll-ms <ms>', 'how often to ask that AMC for revocations and keys', '200')
  .option('--peering <host:port>', 'peering listener (gateway-to-gateway sessions)', '127.0.0.1:7071')
  .option('--dataplane <host:port>', 'data-plane listener (requests addressed by capability)', '127.0.0.1:7080')
  .option('--fib-api <host:port|off>', 'FIB programming listener (gRPC dmsc.fib.v1.FibProgramming, for external controllers), or off', '127.0.0.1:7072')
  .option('--fib-api-tls', "serve the FIB programming listener over the mesh config's TLS; with its CA, controllers must present a certificate it signed (mutual TLS)")
  .option('--upstream-timeout-ms <ms>', 'how long an instance may take to start answering a data-plane request before the next is tried', '30000')
  .option('--auth-fail-burst <n>', 'failed authentications one address may make in a row before it is answered 429 (API and data plane)', '20')
  .option('--auth-fail-rate <n>', 'failed authentications a second an address earns back', '5')
  .option('--audit-max-age <seconds>', 'how long the audit log keeps an event', String(7 * 86400))
  .option('--audit-max-entries <n>', 'how many events the audit log keeps at most (the oldest go first)', '1000000')
  .option('--audit-prune-ms <ms>', 'how often audit retention runs', '60000')
  .option('--peer <id@host:port>', 'a peer gateway to keep a session with (repeatable)', collect, [])
  .option('--upstream <id>', 'the peer (one of the peers) to ask for names with no route here')
  .option('--mesh-config <file>', 'JSON file: peers, upstream, other trust domains (keys, export policy, tag table), route limits, hold time, TLS')
  .action(async (opts: { id: string; data?: string; api: string; fib?: string; domain: string; credentialTtl: string; grantTtl: string; taskRules?: string; taxonomy?: string; heartbeatMs: string; amc?: string; amcKeyFile?: string; amcPollMs: string; peering: string; dataplane: string; fibApi: string; fibApiTls?: boolean; upstreamTimeoutMs: string; auditMaxAge: string; auditMaxEntries: string; auditPruneMs: string; peer: string[]; upstream?: string; meshConfig?: string }) => {
    const config = nodeConfig({ ...opts, heartbeat: opts.heartbeatMs, upstreamTimeout: opts.upstreamTimeoutMs });
    // The servers' modules (fastify, lmdb, jose) load only for the commands that run one.
    const { DmscNode } = await import('../node/node.js');
    const node = await DmscNode.start(config);
    const { host, port } = node.apiAddress;
    const api = formatListen({ host, port });
    const peering = node.mesh.address ? formatListen(node.mesh.address) : null;
    const dataplane = node.dataPlane.address ? formatListen(node.dataPlane.address) : null;
    const peerDataplane = node.dataPlane.peerAddress ? { peerDataplane: formatListen(node.dataPlane.peerAddress) } : {};
    const fibApi = node.fibApiAddress ? formatListen(node.fibApiAddress) : null;
    process.stdout.write(JSON.stringify({ msg: 'listening', node: config.id, api, peering, dataplane, ...peerDataplane, fibApi, data: config.dataDir, amc: config.amc?.url ?? 'embedded', agents: node.gateway.directory.size, fib: { size: node.fib.size, generation: node.fib.generation } }) + '\n');
    if (process.stdout.isTTY || process.env['DMSC_HINTS'] !== '0') {
      const data = config.dataDir;
      process.stdout.write([
        '',
        `dmsc node ${config.id} is up on http://${api}. To register a first agent:`,
        `  dmsc provider add acme --scope '/capability/ocr/**' --url http://${api} --data ${data}`,
        `  curl -s -X POST http://${api}/v1/agents -H "authorization: Bearer <provider key>" \\`,
        `    -H 'content-type: application/json' -d '{"endpoint":"http://127.0.0.1:9000","capabilities":[{"name":"/capability/ocr"}]}'`,
        '',
      ].join('\n') + '\n');
    }
    stopOn(() => node.stop());
  });

const amc = program
  .command('amc')
  .description('run a standalone Agent Management Center (subcommands manage one)')
  .option('--id <id>', 'AMC id', 'amc')
  .option('--data <dir>', 'data directory (default ./.dmsc/<id>)')
  .option('--api <host:port>', 'API listener', '127.0.0.1:7060')
  .option('--domain <name>', 'trust domain', 'local')
  .option('--credential-ttl <seconds>', 'lifetime of agent credentials', '3600')
  .action(async (opts: { id: string; data?: string; api: string; domain: string; credentialTtl: string }) => {
    const c = nodeConfig({ id: opts.id, api: opts.api, domain: opts.domain, credentialTtl: opts.credentialTtl, ...(opts.data ? { data: opts.data } : {}) });
    const { AmcServer } = await import('../identity/amc-server.js');
    const server = await AmcServer.start({ id: c.id, dataDir: c.dataDir, api: c.api, domain: c.domain, credentialTtlMs: c.credentialTtlMs });
    const { host, port } = server.apiAddress;
    process.stdout.write(JSON.stringify({ msg: 'listening', amc: c.id, domain: c.domain, api: formatListen({ host, port }), data: c.dataDir }) + '\n');
    stopOn(() => server.stop());
  });
amcAdminCommands(amc);
adminCommands(program);
peerCommands(program);
controllerCommands(program);

const fib = program.command('fib').description('forwarding tables: offline tools, and a running node\'s FIB');
fibShow(fib);
fibClientCommands(fib);

fib
  .command('check')
  .description('validate capability names; exits 1 if any is invalid')
  .argument('<name...>', 'capability names')
  .action((names: string[]) => reportChecks(names, nameProblem, (name) => JSON.stringify(name)));

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
  // `bench fib --help` is the benchmark's own help, which commander would answer itself.
  .helpOption(false)
  .action((args: string[], _opts: unknown, cmd: Command) => {
    const asksHelp = args.includes('--help') || args.includes('-h');
    if (asksHelp && !args.some((a) => !a.startsWith('-'))) process.stdout.write(cmd.helpInformation() + '\n');
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
