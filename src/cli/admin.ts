// Operator commands against a running node or AMC: providers, agents, AICs, the FIB,
// policies, gateway keys and key rotation.
import { readFile } from 'node:fs/promises';
import { Argument, Option, type Command } from 'commander';
import { DmscTypeError } from '../errors.js';
import { aicProblem, parseAic } from '../identity/aic.js';
import { call, callPublic, print, withServer, type ClientOptions } from './client.js';

const collect = (v: string, prev: string[]) => [...prev, v];

/** Prints `ok` (with `detail`) or `invalid: why` for each item; exits 1 if any is invalid. */
export function reportChecks(items: string[], problemOf: (item: string) => string | null, label: (item: string) => string, detail?: (item: string) => string): never {
  let bad = 0;
  for (const item of items) {
    const problem = problemOf(item);
    if (problem) bad++;
    process.stdout.write(problem ? `invalid ${label(item)}: ${problem}\n` : `ok      ${label(item)}${detail ? ` ${detail(item)}` : ''}\n`);
  }
  process.exit(bad ? 1 : 0);
}

export function adminCommands(program: Command): void {
  const provider = program.command('provider').description('agent providers (at the AMC: a node with the embedded AMC, or `dmsc amc`)');
  withServer(provider.command('add'))
    .description('add a provider; prints its key once (only a hash is kept)')
    .argument('<name>', 'provider name')
    .option('--scope <pattern>', 'capability name, optionally ending in /** (repeatable; at least one)', collect, [])
    .action(async (name: string, o: ClientOptions & { scope: string[] }) => {
      if (o.scope.length === 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'a provider needs at least one --scope PATTERN');
      const r = (await call(o, 'POST', '/v1/providers', { name, scopes: o.scope })) as { key: string };
      print(r);
      process.stderr.write('Keep the key: it is shown only this once. Agents present it as `Authorization: Bearer <key>` to POST /v1/agents.\n');
    });
  withServer(provider.command('list')).description('list providers and their scopes').action(async (o: ClientOptions) => print(await call(o, 'GET', '/v1/providers')));

  const observer = program.command('observer').description('observer credentials: read access to events, the audit log, metrics and the console');
  withServer(observer.command('add'))
    .description('issue an observer credential (at the AMC: a node with the embedded AMC, or `dmsc amc`)')
    .argument('<name>', 'who it is for')
    .addOption(new Option('--scope <scope>', 'agents: one provider\'s agents; node: everything at one node; domain: every node of the domain').choices(['agents', 'node', 'domain']).makeOptionMandatory())
    .option('--provider <name>', 'the provider, with --scope agents')
    .option('--node <id>', 'the node, with --scope node')
    .option('--ttl <seconds>', 'lifetime (60 s to 366 days)', String(30 * 86400))
    .action(async (name: string, o: ClientOptions & { scope: string; provider?: string; node?: string; ttl: string }) => {
      const ttlSeconds = Number(o.ttl);
      if (!Number.isInteger(ttlSeconds)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', '--ttl is a whole number of seconds');
      print(await call(o, 'POST', '/v1/observers', { name, scope: o.scope, ttlSeconds, ...(o.provider ? { provider: o.provider } : {}), ...(o.node ? { node: o.node } : {}) }));
    });
  withServer(program.command('audit'))
    .description("page through a node's audit log (oldest first), as the token's scope allows")
    .option('--since <id>', 'events after this id', '0')
    .addOption(new Option('--kind <kind>', 'only this kind').choices(['registration', 'deregistration', 'health', 'discovery', 'resolution', 'invocation', 'policy', 'peer']))
    .option('--aic <aic>', 'only events about this agent')
    .option('--limit <n>', 'events a page (1 to 1000)', '100')
    .action(async (o: ClientOptions & { since: string; kind?: string; aic?: string; limit: string }) => {
      const q = new URLSearchParams({ since: o.since, limit: o.limit, ...(o.kind ? { kind: o.kind } : {}), ...(o.aic ? { aic: o.aic } : {}) });
      print(await call(o, 'GET', `/v1/audit?${q}`));
    });

  withServer(program.command('intent'))
    .description('show how the node reads an intent: capability candidates with their confidence, and the answer (match, no-match, ambiguous)')
    .argument('<text...>', 'the intent, in words')
    .option('--limit <n>', 'candidates to show (1 to 20)', '5')
    .option('--json', 'print the JSON answer')
    .action(async (text: string[], o: ClientOptions & { limit: string; json?: boolean }) => {
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 20) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', '--limit is an integer from 1 to 20');
      const a = (await call(o, 'POST', '/v1/intents', { intent: text.join(' '), limit })) as {
        status: string; capability?: string; threshold: number; taxonomy: string;
        candidates: { capability: string; label: string; confidence: number; score: number; ranker: string; matched: string[] }[];
      };
      if (o.json) return print(a);
      process.stdout.write(`${a.status}${a.capability ? ` ${a.capability}` : ''}   (threshold ${a.threshold}, taxonomy ${a.taxonomy})\n`);
      for (const c of a.candidates) {
        process.stdout.write(`  ${c.confidence.toFixed(3)}  ${c.capability.padEnd(40)} ${c.label}  [${c.ranker}: ${c.matched.join(', ')}; bm25 ${c.score}]\n`);
      }
    });
  const taxonomy = program.command('taxonomy').description('the capability taxonomy');
  withServer(taxonomy.command('show'))
    .description("print the node's taxonomy (or, with --default, the built-in one, to copy and edit for --taxonomy)")
    .option('--default', 'the built-in taxonomy, without asking a node')
    .action(async (o: ClientOptions & { default?: boolean }) => {
      if (o.default) {
        const { DEFAULT_TAXONOMY } = await import('../semantic/default-taxonomy.js');
        return print(DEFAULT_TAXONOMY);
      }
      print(await callPublic(o, '/v1/taxonomy'));
    });

  const task = program.command('task').description('tasks (TIP) at a node: see them, cancel them, decide on escalated ones');
  const taskId = (id: string) => {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `a task id is up to 64 letters, digits, _ or -, got ${JSON.stringify(id.slice(0, 80))}`);
    return id;
  };
  withServer(task.command('list'))
    .description('list the newest tasks')
    .option('--limit <n>', 'how many (1 to 1000)', '100')
    .action(async (o: ClientOptions & { limit: string }) => print(await call(o, 'GET', `/v1/tasks?limit=${encodeURIComponent(o.limit)}`)));
  withServer(task.command('show'))
    .description('show a task and each sub-task: state, attempts, outputs, timings')
    .argument('<id>', 'task id')
    .action(async (id: string, o: ClientOptions) => print(await call(o, 'GET', `/v1/tasks/${taskId(id)}`)));
  withServer(task.command('cancel'))
    .description('cancel a task: running sub-tasks are stopped, pending ones never start')
    .argument('<id>', 'task id')
    .action(async (id: string, o: ClientOptions) => print(await call(o, 'DELETE', `/v1/tasks/${taskId(id)}`)));
  withServer(task.command('decide'))
    .description('decide on an escalated task: retry (every candidate again), skip (dependents read null), or abort')
    .argument('<id>', 'task id')
    .addArgument(new Argument('<decision>', 'what to do').choices(['retry', 'skip', 'abort']))
    .option('--subtask <id>', 'only this escalated sub-task')
    .action(async (id: string, decision: string, o: ClientOptions & { subtask?: string }) => {
      print(await call(o, 'POST', `/v1/tasks/${taskId(id)}/decision`, { decision, ...(o.subtask !== undefined ? { subtask: o.subtask } : {}) }));
    });
  task.command('rules')
    .description('print the built-in decomposition rules, to copy, edit and give to `dmsc node --task-rules`')
    .action(async () => {
      const { DEFAULT_RULES } = await import('../task/default-rules.js');
      process.stdout.write(JSON.stringify(DEFAULT_RULES, null, 2) + '\n');
    });

  const agent = program.command('agent').description('registered agents of a node');
  withServer(agent.command('list')).description('list the agents registered at the node').action(async (o: ClientOptions) => print(await call(o, 'GET', '/v1/agents')));
  withServer(agent.command('show'))
    .description("show an agent's ACS and health")
    .argument('<aic>', 'agent identity code')
    .action(async (aic: string, o: ClientOptions) => print(await call(o, 'GET', `/v1/agents/${encodeURIComponent(checked(aic))}`)));
  withServer(agent.command('revoke'))
    .description("revoke an agent's credentials in the whole domain; it leaves the FIB")
    .argument('<aic>', 'agent identity code')
    .option('--reason <text>', 'recorded with the revocation')
    .action(async (aic: string, o: ClientOptions & { reason?: string }) => print(await call(o, 'POST', '/v1/revocations', { aic: checked(aic), ...(o.reason ? { reason: o.reason } : {}) })));

  program
    .command('aic')
    .description('agent identity codes')
    .command('check')
    .description('validate AICs offline (check code and format); exits 1 if any is invalid')
    .argument('<aic...>', 'AICs')
    .action((aics: string[]) =>
      reportChecks(aics, aicProblem, (aic) => aic, (aic) => {
        const { registry, provider, serial } = parseAic(aic);
        return `(registry ${registry}, provider ${provider}, serial ${serial})`;
      }));

  const policy = program.command('policy').description("the node's policy document");
  withServer(policy.command('get'))
    .description('print the current policy (or an older version)')
    .option('--version <n>', 'a version from the history')
    .action(async (o: ClientOptions & { version?: string }) => print(await call(o, 'GET', `/v1/policies${o.version ? `?version=${encodeURIComponent(o.version)}` : ''}`)));
  withServer(policy.command('set'))
    .description('replace the policy with the document in FILE (its version must be newer)')
    .argument('<file>', 'JSON policy document')
    .action(async (file: string, o: ClientOptions) => {
      let doc: unknown;
      try {
        doc = JSON.parse(await readFile(file, 'utf8'));
      } catch (e) {
        throw new DmscTypeError('ERR_DMSC_INVALID_POLICY', `cannot read policy ${file}: ${(e as Error).message}`);
      }
      print(await call(o, 'PUT', '/v1/policies', doc));
    });
  withServer(policy.command('history')).description('list stored policy versions').action(async (o: ClientOptions) => print(await call(o, 'GET', '/v1/policies/history')));
}

/** `dmsc fib show`: the node's FIB over its admin API. */
export function fibShow(fib: Command): void {
  withServer(fib.command('show'))
    .description("show a running node's FIB entries")
    .option('--prefix <name>', 'only entries at or under this name')
    .option('--limit <n>', 'at most this many entries', '1000')
    .action(async (o: ClientOptions & { prefix?: string; limit: string }) => {
      const q = new URLSearchParams({ limit: o.limit, ...(o.prefix ? { prefix: o.prefix } : {}) });
      print(await call(o, 'GET', `/v1/fib?${q}`));
    });
}

/** `dmsc peer list`: the node's peering sessions. */
export function peerCommands(program: Command): void {
  const peer = program.command('peer').description("a node's peer gateways");
  withServer(peer.command('list'))
    .description('list open peering sessions (domain, hold time, routes learned, frames and digest counters) and the configured peers')
    .action(async (o: ClientOptions) => print(await call(o, 'GET', '/v1/peers')));
}

/** `dmsc controller add|list|revoke`: the keys external controllers program the FIB with. */
export function controllerCommands(program: Command): void {
  const controller = program.command('controller').description("keys of the external controllers that program a node's FIB (gRPC on --fib-api, or POST /v1/fib/batches)");
  withServer(controller.command('add'))
    .description('make a controller key; prints it once (the node keeps only its hash)')
    .argument('<name>', 'controller name (its controller_id)')
    .option('--scope <pattern>', 'prefixes it may program: a capability name, optionally ending in /** (repeatable; at least one)', collect, [])
    .action(async (name: string, o: ClientOptions & { scope: string[] }) => {
      if (o.scope.length === 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', "a controller needs at least one --scope PATTERN (for example --scope '/capability/**')");
      print(await call(o, 'POST', '/v1/controllers', { name, scopes: o.scope }));
      process.stderr.write('Keep the key: it is shown only this once. Controllers send it as `authorization: Bearer <key>` metadata (or set DMSC_FIB_KEY for `dmsc fib push`).\n');
    });
  withServer(controller.command('list'))
    .description("list controllers: scopes, table generation, and the primary session's controller and election id")
    .action(async (o: ClientOptions) => print(await call(o, 'GET', '/v1/controllers')));
  withServer(controller.command('revoke'))
    .description('revoke a controller key: its calls are refused and its open sessions end (its routes stay, as its persistence says)')
    .argument('<name>', 'controller name')
    .action(async (name: string, o: ClientOptions) => {
      await call(o, 'DELETE', `/v1/controllers/${encodeURIComponent(name)}`);
      process.stdout.write(`revoked ${name}\n`);
    });
}

/** `dmsc amc gateway add`, `dmsc amc rotate-key` and `dmsc amc keys`, against an AMC's API. */
export function amcAdminCommands(amc: Command): void {
  amc.command('keys')
    .description("print the AMC's public keys (JWKS): what another domain's mesh config trusts (`domains[].jwks`) to accept this domain's gateways and agents")
    .addOption(new Option('--url <url>', 'the node or AMC to ask').default('http://127.0.0.1:7070').env('DMSC_URL'))
    .action(async (o: { url: string }) => print(await callPublic(o, '/v1/amc/jwks')));
  withServer(amc.command('rotate-key'))
    .description('make a new signing key; old keys verify until their credentials expire (default: the embedded AMC of node-1; for `dmsc amc` pass --url http://127.0.0.1:7060 --data .dmsc/amc)')
    .action(async (o: ClientOptions) => print(await call(o, 'POST', '/v1/amc/rotate-key')));
  const gateway = amc.command('gateway').description('gateways allowed to use a standalone AMC');
  withServer(gateway.command('add'), 'amc')
    .description('add a gateway; prints its key once (give it to `dmsc node --amc URL --amc-key-file FILE`)')
    .argument('<id>', 'the node id of the gateway')
    .action(async (id: string, o: ClientOptions) => print(await call(o, 'POST', '/v1/gateways', { id })));
}

/** The AIC if valid, else the ERR_DMSC_INVALID_AIC error, before any request is sent. */
function checked(aic: string): string {
  parseAic(aic);
  return aic;
}
