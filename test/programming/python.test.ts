// The FIB programming interface driven by a client none of dmsc wrote: Debian's Python
// grpcio with stubs protoc generates, at test time, from the shipped
// proto/dmsc/fib/v1/fib.proto (fib_client.py beside this file prints what it saw as JSON
// lines). Against real nodes: external-endpoint next hops that the data plane reaches,
// that follow the health a controller sets, and between which it fails over; a takeover
// by a higher election id; Replace; bad ops named one by one with nothing applied; a
// LEASE outliving its session by its lease only; scopes and bad keys; 100,000 entries in
// batches of 1,000, all VISIBLE and then listed; kill -9 between acknowledgements, with
// every VISIBLE batch back after the restart.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, register, start, waitFor, type Proc, type Registered } from '../e2e/harness.js';

// Debian's interpreter, where python3-grpcio is: the `python3` on PATH may be another.
const PYTHON = '/usr/bin/python3';
const DRIVER = new URL('./fib_client.py', import.meta.url).pathname;
const ROOT = new URL('../..', import.meta.url).pathname;

/** One JSON line the driver printed. */
interface Line {
  event: string;
  [field: string]: any;
}

const drivers = new Set<ChildProcess>();
const services = new Set<Server>();
let stubs: string;

/** How long a driver may run: less than the test's timeout (60 s). */
const DRIVER_MS = 50_000;

/**
 * Runs the driver against `node`'s FIB programming listener; `onLine` sees each line as
 * it comes. Resolves with every line once the driver exits (rejects if it fails).
 */

function drive(node: Proc, key: string, args: string[], onLine?: (line: Line) => void): Promise<Line[]> {
  const child = spawn(PYTHON, [DRIVER, '--stubs', stubs, '--addr', node.fibApi!, `--key=${key}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  drivers.add(child);
  const lines: Line[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    const line = JSON.parse(text) as Line;
    lines.push(line);
    onLine?.(line);
  });
  return new Promise((resolve, reject) => {
    // Ended before the test's own timeout, so that a driver left waiting says what it saw.
    const stuck = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fib_client.py ${args[0]} still running after ${DRIVER_MS} ms: ${stderr}\n${lines.map((l) => JSON.stringify(l)).join('\n')}`));
    }, DRIVER_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(stuck);
      drivers.delete(child);
      if (code === 0) resolve(lines);
      else reject(new Error(`fib_client.py ${args[0]} exited ${code}: ${stderr}\n${lines.map((l) => JSON.stringify(l)).join('\n')}`));
    });
  });
}

/** Runs a list of steps (see fib_client.py). */
const steps = (node: Proc, key: string, list: object[], onLine?: (line: Line) => void) => drive(node, key, ['steps', JSON.stringify(list)], onLine);

const results = (lines: Line[], session?: string) => lines.filter((l) => l.event === 'result' && (session === undefined || l.session === session));
const only = (lines: Line[], event: string, session?: string) => {
  const found = lines.filter((l) => l.event === event && (session === undefined || l.session === session));
  expect(found, `one ${event} line in ${JSON.stringify(lines)}`).toHaveLength(1);
  return found[0]!;
};
/** What a result says, without its timings and generations. */
const outcome = (r: Line) => ({ seq: r.seq, status: r.status, errors: r.errors.map((e: any) => ({ op_index: e.op_index, code: e.code })) });

// Requests as proto JSON (what json_format.ParseDict reads on the Python side).
interface Hop {
  id: string;
  weight?: number;
  priority?: number;
  tags?: string[];
  endpoint?: string;
}
const upsert = (prefix: string, nextHops: Hop[]) => ({ upsert: { prefix, nextHops } });
const remove = (prefix: string) => ({ remove: { prefix } });
const batch = (session: string, seq: number, ops: object[], wait = true) => ({ session, send: { batch: { seq: String(seq), ops } }, wait });
const open = (session: string, election: number, extra: object = {}, key?: string) => ({ session, open: { electionId: { low: String(election) }, ...extra }, ...(key ? { key } : {}) });
const svc = (id: string, priority = 0, weight?: number): Hop => ({ id, endpoint: 'http://127.0.0.1:9', priority, ...(weight !== undefined ? { weight } : {}) });

/** A controller key for `name` (admin API). */
async function controller(node: Proc, name: string, scopes = ['/capability/**']): Promise<string> {
  const r = await api(node.url, 'POST', '/v1/controllers', { auth: node.token, body: { name, scopes } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  expect(r.body).toMatchObject({ name, scopes });
  return r.body.key as string;
}

/** The node's FIB entries at and below `prefix` (admin API). */
async function fib(node: Proc, prefix: string): Promise<Map<string, any[]>> {
  const r = await api(node.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}&limit=100000`, { auth: node.token });
  expect(r.status).toBe(200);
  return new Map(r.body.entries.map((e: any) => [e.prefix, e.nextHops]));
}
const ids = (hops: any[] | undefined) => hops?.map((h) => h.id).sort();

/**
 * The next hops fib_client.py's `bulk` gives entry i (keep in step with bulk_ops there):
 * a registered AIC, a peer gateway and two external endpoints.
 */
function bulkHops(i: number, aics: string[], extBase: string): Hop[] {
  const ext = (k: number): Hop => ({ id: `ext-${k}`, weight: 10 + (i % 90), priority: 2, tags: [], endpoint: `${extBase}/${k}` });
  return [
    ...(aics.length ? [{ id: aics[i % aics.length]!, weight: 100, priority: 0, tags: i % 2 === 0 ? ['bulk'] : [], endpoint: '' }] : []),
    { id: `peer:gw-${i % 5}`, weight: 50, priority: 1, tags: [], endpoint: '' },
    ext(i % 40), ext(40 + (i % 40)),
  ];
}
const bulkPrefix = (root: string, i: number, per = 1000) => `${root}/${Math.floor(i / per)}/e${i}`;

/** A plain HTTP service outside dmsc: answers who it is, the path and the requester it was told. */
async function service(name: string): Promise<{ url: string; server: Server; hits: () => number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => {
      // No kept-alive connections: once closed, the service refuses connections at once.
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ name, path: req.url, requester: req.headers['x-dmsc-requester'] ?? null, authorization: req.headers.authorization ?? null }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  services.add(server);
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, hits: () => hits };
}

describe('FIB programming from Python grpcio', () => {
  let node: Proc;
  let agents: Registered[];
  let requester: Registered;

  beforeAll(async () => {
    const missing = ['protoc', 'grpc_python_plugin'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0);
    if (spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf']).status !== 0) missing.push('python3-grpcio, python3-protobuf');
    if (missing.length) throw new Error(`missing ${missing.join(', ')}: run node scripts/test-tools.mjs (npm test does)`);
    stubs = await mkdtemp(join(tmpdir(), 'dmsc-fib-stubs-'));
    const plugin = spawnSync('sh', ['-c', 'command -v grpc_python_plugin'], { encoding: 'utf8' }).stdout.trim();
    const protoc = spawnSync('protoc', ['-I', 'proto', `--python_out=${stubs}`, `--grpc_out=${stubs}`, `--plugin=protoc-gen-grpc=${plugin}`, 'proto/dmsc/fib/v1/fib.proto'], { cwd: ROOT, encoding: 'utf8' });
    if (protoc.status !== 0) throw new Error(`protoc: ${protoc.error?.message ?? protoc.stderr}`);

    node = await start('node', ['--heartbeat-ms', '600000']);
    const key = await addProvider(node, 'acme', ['/capability/**']);
    agents = [await register(node, key, [{ name: '/capability/agent-one' }]), await register(node, key, [{ name: '/capability/agent-two' }])];
    requester = await register(node, key, [{ name: '/capability/requester' }]);
  });
  afterAll(async () => {
    for (const d of drivers) d.kill('SIGKILL');
    for (const s of services) s.close().closeAllConnections();
    await cleanup();
    if (stubs) await rm(stubs, { recursive: true, force: true });
  });

  it('reaches external-endpoint next hops from the data plane, following their health, and fails over when one dies', async () => {
    const [a, b] = [await service('a'), await service('b')];
    const key = await controller(node, 'dp');
    // Each call is a session of its own (PRESERVE: what it set stays).
    const program = async (...ops: object[]) => {
      const lines = await steps(node, key, [open('c', 1), batch('c', 1, ops)]);
      expect(results(lines).map(outcome)).toEqual([{ seq: 1, status: 'VISIBLE', errors: [] }]);
    };
    const send = async (i: number) => {
      const r = await request(`${node.dataplane}/capability/ext/jobs/${i}?x=1`, { method: 'POST', body: `job ${i}`, headers: { authorization: `Bearer ${requester.credential}` } });
      const text = await r.body.text();
      return { status: r.statusCode, attempts: r.headers['x-dmsc-attempts'], capability: r.headers['x-dmsc-capability'], body: r.statusCode === 200 ? JSON.parse(text) : text };
    };
    const states = async () => Object.fromEntries((await fib(node, '/capability/ext')).get('/capability/ext')!.map((h) => [h.id, h.state]));
    const health = (state: string) => ({ health: { nextHopId: 'svc-a', state } });

    await program(upsert('/capability/ext', [{ id: 'svc-a', endpoint: a.url, priority: 0 }, { id: 'svc-b', endpoint: `${b.url}/b`, priority: 1 }]));
    for (let i = 0; i < 3; i++) {
      expect(await send(i)).toEqual({
        status: 200, attempts: '1', capability: '/capability/ext',
        body: { name: 'a', path: `/jobs/${i}?x=1`, requester: requester.aic, authorization: null },
      });
    }
    expect(b.hits()).toBe(0);
    // The controller says svc-a is down: svc-b takes the requests (and both listeners of
    // the data plane, the Node one and the native relay, come to know it), until svc-a is up again.
    await program(health('DOWN'));
    expect(await states()).toEqual({ 'svc-a': 'down', 'svc-b': 'up' });
    for (let i = 3; i < 6; i++) expect(await send(i)).toMatchObject({ status: 200, attempts: '1', body: { name: 'b', path: `/b/jobs/${i}?x=1`, requester: requester.aic } });
    await program(health('UP'));
    expect(await states()).toEqual({ 'svc-a': 'up', 'svc-b': 'up' });
    expect(await send(6)).toMatchObject({ status: 200, attempts: '1', body: { name: 'a' } });

    // svc-a dies: the next request finds it refusing connections and goes on to svc-b,
    // which takes the requests from then on, svc-a being down in the FIB.
    await new Promise<void>((r) => a.server.close(() => r()));
    const hitsOfA = a.hits();
    expect(await send(7)).toMatchObject({ status: 200, attempts: '2', body: { name: 'b', path: '/b/jobs/7?x=1', requester: requester.aic } });
    for (let i = 8; i < 11; i++) expect(await send(i)).toMatchObject({ status: 200, attempts: '1', body: { name: 'b' } });
    expect(await states()).toEqual({ 'svc-a': 'down', 'svc-b': 'up' });
    expect(a.hits()).toBe(hitsOfA);
    b.server.close();
  });

  it('hands the primary role to a higher election id: the old primary is told, and its next batch is NOT_PRIMARY', async () => {
    const key = await controller(node, 'elect');
    // Two replicas of one controller, each on its own connection.
    const lines = await steps(node, key, [
      open('first', 1),
      batch('first', 1, [upsert('/capability/elect/before', [svc('svc-e')])]),
      open('second', 2),
      { session: 'first', wait_primary: 5000 },
      batch('first', 2, [upsert('/capability/elect/from-first', [svc('svc-e')])]),
      batch('second', 1, [upsert('/capability/elect/from-second', [svc('svc-e')])]),
    ]);
    expect(only(lines, 'opened', 'first')).toMatchObject({ primary: true, primary_election_id: '1' });
    expect(only(lines, 'opened', 'second')).toMatchObject({ primary: true, primary_election_id: '2' });
    const told = lines.filter((l) => l.event === 'primary' && l.session === 'first');
    expect(told.at(-1), JSON.stringify(lines)).toMatchObject({ primary: false, primary_election_id: '2' });
    expect(results(lines, 'first').map((r) => [r.seq, r.status])).toEqual([[1, 'VISIBLE'], [2, 'NOT_PRIMARY']]);
    expect(results(lines, 'second').map((r) => [r.seq, r.status])).toEqual([[1, 'VISIBLE']]);
    const entries = await fib(node, '/capability/elect');
    expect([...entries.keys()].sort()).toEqual(['/capability/elect/before', '/capability/elect/from-second']);
  });

  it('replaces the whole table: entries not announced again go, in one change at replace_end', async () => {
    const key = await controller(node, 'replace');
    const names = ['a', 'b', 'c'].map((n) => `/capability/rep/${n}`);
    const lines = await steps(node, key, [
      open('c', 1),
      batch('c', 1, names.map((n) => upsert(n, [svc('svc-r')]))),
      { session: 'c', send: { replaceBegin: { seq: '2' } }, wait: false },
      batch('c', 3, [upsert('/capability/rep/a', [svc('svc-r', 0, 7)]), upsert('/capability/rep/d', [svc('svc-r')])]),
      // Staged, not applied: Get still shows the table from before.
      { get: {}, sample: ['/capability/rep/a', '/capability/rep/d'] },
      { session: 'c', send: { replaceEnd: { seq: '4' } } },
      { get: {}, sample: ['/capability/rep/a', '/capability/rep/d'] },
    ]);
    const acks = results(lines);
    const bySeq = new Map(acks.map((r) => [r.seq, r]));
    expect(bySeq.get(1)?.status).toBe('VISIBLE');
    // replace_begin may be answered (STAGED) or not.
    if (bySeq.has(2)) expect(outcome(bySeq.get(2)!)).toEqual({ seq: 2, status: 'STAGED', errors: [] });
    expect(bySeq.get(3)?.status).toBe('STAGED');
    expect(bySeq.get(4)?.status).toBe('VISIBLE');
    expect(bySeq.get(4)!.generation).toBe(bySeq.get(1)!.generation + 1);
    const [during, after] = lines.filter((l) => l.event === 'get');
    expect(during!.count).toBe(3);
    expect(Object.keys(during!.sample)).toEqual(['/capability/rep/a']);
    expect(during!.sample['/capability/rep/a'][0].weight ?? 100).toBe(100);
    expect(after!.count).toBe(2);
    expect(after!.sample['/capability/rep/a'][0].weight).toBe(7);
    expect(after!.sample['/capability/rep/d']).toHaveLength(1);
    const entries = await fib(node, '/capability/rep');
    expect([...entries.keys()].sort()).toEqual(['/capability/rep/a', '/capability/rep/d']);
    expect(entries.get('/capability/rep/a')![0].weight).toBe(7);
  });

  it('rejects a batch with a bad op as a whole, naming each bad op and its code', async () => {
    const key = await controller(node, 'bad');
    const good = upsert('/capability/bad/ok', [svc('svc-x')]);
    const many = Array.from({ length: 65 }, (_, i) => svc(`svc-m${i}`));
    const lines = await steps(node, key, [
      open('c', 1),
      batch('c', 1, [good, upsert('/capability/a b', [svc('svc-x')]), upsert('/capability/bad/ok2', [svc('svc-x')])]),
      batch('c', 2, [good, upsert('/capability/bad/many', many)]),
      batch('c', 3, [upsert('/capability/bad/dup', [svc('svc-x'), svc('svc-y'), svc('svc-x', 1)]), good]),
      batch('c', 4, [upsert('/capability/bad/ dup', [svc('svc-x')]), good, upsert('/capability/bad/z', [svc('svc-y')]), upsert('/capability/bad/y', [svc('svc-y'), svc('svc-y')])]),
      { get: {} },
      batch('c', 5, [good]),
    ]);
    const opened = only(lines, 'opened');
    expect(results(lines).map(outcome)).toEqual([
      { seq: 1, status: 'REJECTED', errors: [{ op_index: 1, code: 'ERR_DMSC_INVALID_NAME' }] },
      { seq: 2, status: 'REJECTED', errors: [{ op_index: 1, code: 'ERR_DMSC_LIMIT_EXCEEDED' }] },
      { seq: 3, status: 'REJECTED', errors: [{ op_index: 0, code: 'ERR_DMSC_DUPLICATE_NEXT_HOP' }] },
      { seq: 4, status: 'REJECTED', errors: [{ op_index: 0, code: 'ERR_DMSC_INVALID_NAME' }, { op_index: 3, code: 'ERR_DMSC_DUPLICATE_NEXT_HOP' }] },
      { seq: 5, status: 'VISIBLE', errors: [] },
    ]);
    for (const r of results(lines).slice(0, 4)) {
      expect(r.generation, 'nothing applied').toBe(opened.generation);
      for (const e of r.errors) expect(e.message).not.toBe('');
    }
    expect(only(lines, 'get').count).toBe(0);
    expect([...(await fib(node, '/capability/bad')).keys()]).toEqual(['/capability/bad/ok']);
  });

  it('takes next-hop groups sent once a batch, and names an upsert of a group the batch lacks', async () => {
    const key = await controller(node, 'grouped');
    const [a, b, c] = [svc('svc-ga'), svc('svc-gb', 1, 7), svc('svc-gc')];
    const grouped = (seq: number, groups: Hop[][], ops: object[]) => ({ session: 'g', send: { batch: { seq: String(seq), groups: groups.map((nextHops) => ({ nextHops })), ops } } });
    const ref = (prefix: string, group: number, nextHops: Hop[] = []) => ({ upsert: { prefix, group, nextHops } });
    const lines = await steps(node, key, [
      open('g', 1),
      grouped(1, [[a, b], [c]], [ref('/capability/grp/x', 0), ref('/capability/grp/y', 1), ref('/capability/grp/z', 0), upsert('/capability/grp/w', [c])]),
      grouped(2, [[c]], [ref('/capability/grp/x', 1), ref('/capability/grp/v', 0), ref('/capability/grp/u', 0, [a]), ref('/capability/grp/bad name', 0)]),
      { get: {}, sample: ['/capability/grp/x', '/capability/grp/y', '/capability/grp/z'] },
    ]);
    expect(results(lines).map(outcome)).toEqual([
      { seq: 1, status: 'VISIBLE', errors: [] },
      // A bad group hides no other bad op.
      { seq: 2, status: 'REJECTED', errors: [{ op_index: 0, code: 'ERR_DMSC_NOT_FOUND' }, { op_index: 2, code: 'ERR_DMSC_INVALID_ARGUMENT' }, { op_index: 3, code: 'ERR_DMSC_INVALID_NAME' }] },
    ]);
    const got = only(lines, 'get');
    expect(got.count).toBe(4);
    expect(got.sample['/capability/grp/x'].map((h: Hop) => h.id)).toEqual(['svc-ga', 'svc-gb']);
    expect(got.sample['/capability/grp/y'].map((h: Hop) => h.id)).toEqual(['svc-gc']);
    const table = await fib(node, '/capability/grp');
    expect([...table.keys()].sort()).toEqual(['/capability/grp/w', '/capability/grp/x', '/capability/grp/y', '/capability/grp/z']);
    expect(table.get('/capability/grp/z')!.map((h) => [h.id, h.weight, h.priority])).toEqual([['svc-ga', 100, 0], ['svc-gb', 7, 1]]);
  });

  it('keeps a LEASE session\'s entries for the lease after the session ends, and no longer', async () => {
    const key = await controller(node, 'lease');
    const prefix = '/capability/lease/a';
    const has = async () => (await fib(node, prefix)).has(prefix);
    let closedAt = 0;
    let justAfter: Promise<[boolean, number]> | undefined;
    const lines = await steps(node, key, [
      open('c', 1, { persistence: 'LEASE', leaseMs: '1500' }),
      batch('c', 1, [upsert(prefix, [svc('svc-l')])]),
      { session: 'c', close: true },
    ], (line) => {
      if (line.event !== 'closed') return;
      closedAt = Date.now();
      justAfter = has().then((present) => [present, Date.now() - closedAt]);
    });
    expect(results(lines).map(outcome)).toEqual([{ seq: 1, status: 'VISIBLE', errors: [] }]);
    expect(lines.some((l) => l.event === 'cancelled'), 'the node ended the call on half-close').toBe(false);
    const [present, checkedAfter] = await justAfter!;
    expect(present).toBe(true);
    expect(checkedAfter).toBeLessThan(1000);
    await waitFor(async () => !(await has()), 4000);
    // Gone, and not before the lease (less a margin for when the node saw the end).
    expect(Date.now() - closedAt).toBeGreaterThan(1200);
  });

  it('refuses ops outside a controller\'s scope one by one, and a bad key outright', async () => {
    const key = await controller(node, 'narrow', ['/capability/narrow/**']);
    const lines = await steps(node, key, [
      open('c', 1),
      batch('c', 1, [upsert('/capability/narrow/x', [svc('svc-n')]), upsert('/capability/wide/y', [svc('svc-n')]), remove('/capability/other')]),
      batch('c', 2, [upsert('/capability/narrow/x', [svc('svc-n')])]),
      open('stranger', 1, {}, 'not-a-controller-key'),
      { get: {}, key: 'not-a-controller-key' },
    ]);
    expect(results(lines, 'c').map(outcome)).toEqual([
      { seq: 1, status: 'REJECTED', errors: [{ op_index: 1, code: 'ERR_DMSC_FORBIDDEN' }, { op_index: 2, code: 'ERR_DMSC_FORBIDDEN' }] },
      { seq: 2, status: 'VISIBLE', errors: [] },
    ]);
    expect(only(lines, 'rpc_error', 'stranger').code).toBe('UNAUTHENTICATED');
    expect(lines.filter((l) => l.event === 'rpc_error' && l.call === 'get').map((l) => l.code)).toEqual(['UNAUTHENTICATED']);
    expect(lines.some((l) => l.event === 'opened' && l.session === 'stranger')).toBe(false);
    // A key may begin with '-' (a 64th of them do): the driver takes it as a key, not an option.
    const dashed = await steps(node, '-IsAKeyNotAnOption', [{ get: {} }]);
    expect(dashed.filter((l) => l.event === 'rpc_error').map((l) => l.code)).toEqual(['UNAUTHENTICATED']);
    expect([...(await fib(node, '/capability/narrow')).keys()]).toEqual(['/capability/narrow/x']);
    expect((await fib(node, '/capability/wide')).size).toBe(0);
  });

  it('takes 100,000 entries in batches of 1,000, each VISIBLE, then lists them all', async () => {
    const key = await controller(node, 'bulk');
    const aics = agents.map((a) => a.aic);
    const sample = [0, 1, 999, 1000, 54_321, 99_999];
    const lines = await drive(node, key, ['bulk', '--root', '/capability/bulk', '--count', '100000', '--batch', '1000', '--aics', aics.join(','),
      '--ext-base', 'http://127.0.0.1:9', '--get', '--sample', sample.map((i) => bulkPrefix('/capability/bulk', i)).join(',')]);
    expect(only(lines, 'opened')).toMatchObject({ primary: true, controller_id: 'bulk' });
    const acks = results(lines);
    expect(acks.map(outcome)).toEqual(Array.from({ length: 100 }, (_, i) => ({ seq: i + 1, status: 'VISIBLE', errors: [] })));
    // Each batch moves the controller's generation and the node's on.
    for (let i = 1; i < acks.length; i++) {
      expect(acks[i]!.generation).toBeGreaterThan(acks[i - 1]!.generation);
      expect(acks[i]!.fib_generation).toBeGreaterThan(acks[i - 1]!.fib_generation);
    }
    const got = only(lines, 'get');
    expect({ count: got.count, generations: got.generations.length, last_end: got.last_end }).toEqual({ count: 100_000, generations: 1, last_end: true });
    for (const i of sample) {
      const hops = (got.sample[bulkPrefix('/capability/bulk', i)] as Hop[] | undefined)?.map((h) => ({ ...h, weight: h.weight ?? 100 }));
      expect(hops, `entry ${i}`).toEqual(bulkHops(i, aics, 'http://127.0.0.1:9'));
    }
    // And the node's FIB, over the admin API (one call: each lists the whole table first).
    const prefix = bulkPrefix('/capability/bulk', 54_321);
    const one = await api(node.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: node.token });
    expect(one.body.size).toBeGreaterThanOrEqual(100_000);
    expect(one.body.entries.map((e: any) => [e.prefix, ids(e.nextHops)])).toEqual([[prefix, ids(bulkHops(54_321, aics, 'http://127.0.0.1:9'))]]);
  }, 90_000);

  it('has every batch acknowledged VISIBLE back after kill -9 and a restart, and no batch in part', async () => {
    const crash = await start('node', ['--heartbeat-ms', '600000']);
    const key = await controller(crash, 'crash');
    const acked: number[] = [];
    let killed: Promise<void> | undefined;
    // With next-hop groups: the journal keeps each batch as it came, groups and all.
    const lines = await drive(crash, key, ['bulk', '--root', '/capability/crash', '--count', '100000', '--batch', '1000', '--ext-base', 'http://127.0.0.1:9', '--groups'], (line) => {
      if (line.event !== 'result' || line.status !== 'VISIBLE') return;
      acked.push(line.seq);
      if (acked.length === 5) killed = crash.kill9();
    });
    await killed;
    // The kill came in the middle: the stream broke before the last batch.
    expect(lines.some((l) => l.event === 'rpc_error' || l.event === 'end'), JSON.stringify(lines.slice(-3))).toBe(true);
    expect(acked.length).toBeGreaterThanOrEqual(5);
    expect(acked.length).toBeLessThan(100);

    const again = await start('node', ['--heartbeat-ms', '600000'], crash.dataDir);
    const entries = await fib(again, '/capability/crash');
    const perBatch = new Map<number, number>();
    for (const prefix of entries.keys()) {
      const b = Number(prefix.split('/')[3]);
      perBatch.set(b, (perBatch.get(b) ?? 0) + 1);
    }
    for (const seq of acked) expect(perBatch.get(seq - 1), `batch ${seq}`).toBe(1000);
    // A batch in flight at the kill is there whole or not at all.
    for (const [b, n] of perBatch) expect(n, `batch ${b + 1}`).toBe(1000);
    const sample = bulkPrefix('/capability/crash', (acked.at(-1)! - 1) * 1000 + 999);
    expect(ids(entries.get(sample))).toEqual(ids(bulkHops((acked.at(-1)! - 1) * 1000 + 999, [], 'http://127.0.0.1:9')));
    // The controller's own table came back too.
    const listed = await steps(again, key, [{ get: {} }]);
    expect(only(listed, 'get').count).toBe(entries.size);
  }, 60_000);
});
