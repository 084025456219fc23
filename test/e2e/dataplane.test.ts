// The data plane with real processes: a node and agent instances (test/e2e/upstream.mjs)
// each in its own process. Requests addressed by capability reach an instance the fast
// path picks (shares follow weights and load), with headers saying what happened; an
// instance killed in the middle of a stream of requests costs no idempotent request and
// gets no traffic until it heartbeats again; slow, resetting and 503 instances are
// failed over; a request whose requester goes away is called off at the instance; 100 MiB
// bodies stream both ways with the node's memory bounded; requests
// that are unauthenticated or denied never reach an instance; and a route toward a peer
// gateway takes the request to that gateway's data plane. Requests the node has admitted
// once are served by the native relay, where a new policy or a revocation holds at once.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, makeCerts, register, start, startScript, tempDir, waitFor, type Proc } from './harness.js';

const UPSTREAM = new URL('./upstream.mjs', import.meta.url).pathname;
type Instance = Awaited<ReturnType<typeof startScript<{ port: number }>>> & { url: string; port: number };

async function instance(name: string, mode = 'normal', port = 0, delay = 3000): Promise<Instance> {
  const s = await startScript<{ port: number }>(UPSTREAM, ['--name', name, '--mode', mode, '--port', String(port), '--delay', String(delay)]);
  return Object.assign(s, { url: `http://127.0.0.1:${s.info.port}`, port: s.info.port });
}
const stats = async (i: Instance) => await (await request(`${i.url}/__stats`)).body.json() as { hits: number; abandoned: number };
const hits = async (i: Instance) => (await stats(i)).hits;

/** Peak resident memory of a process so far, in MiB (Linux). */
async function peakRss(pid: number): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

describe('data plane', () => {
  let node: Proc;
  let key: string;
  let requester: { aic: string; credential: string };
  const send = (path: string, init: { method?: string; body?: string | Buffer | Readable; headers?: Record<string, string>; auth?: string | null } = {}) => request(`${node.dataplane}${path}`, {
    method: (init.method ?? 'GET') as 'GET',
    headers: { ...(init.auth === null ? {} : { authorization: `Bearer ${init.auth ?? requester.credential}` }), ...init.headers },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  /** node:http, which sends the path as written (undici normalizes dot segments) and can use Expect. */
  const raw = (path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) => new Promise<{ status: number; json: any }>((resolve, reject) => {
    const u = new URL(node.dataplane!);
    const r = httpRequest({ host: u.hostname, port: u.port, path, method: init.method ?? 'GET', headers: { authorization: `Bearer ${requester.credential}`, ...init.headers } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : null }));
    });
    r.on('error', reject);
    if (init.body === undefined) return void r.end();
    // With Expect: 100-continue, the body goes only once the node says so.
    if (init.headers?.['expect']) r.once('continue', () => r.end(init.body));
    else r.end(init.body);
  });
  const heartbeat = (aic: string, credential: string, body: object = {}) => api(node.url, 'POST', `/v1/agents/${aic}/heartbeat`, { auth: credential, body });
  const state = async (prefix: string, aic: string) => {
    const r = await api(node.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: node.token });
    return r.body.entries.find((e: any) => e.prefix === prefix)?.nextHops.find((h: any) => h.id === aic)?.state;
  };

  beforeAll(async () => {
    node = await start('node', ['--heartbeat-ms', '600000', '--upstream-timeout-ms', '1000']);
    key = await addProvider(node, 'acme', ['/capability/**']);
    requester = await register(node, key, [{ name: '/capability/requester' }]);
  });
  afterAll(cleanup);

  it('forwards by capability to instances in proportion to weight and load, saying what it chose', async () => {
    const [u1, u2] = [await instance('u1'), await instance('u2')];
    const a1 = await register(node, key, [{ name: '/capability/echo', weight: 100 }], u1.url);
    const a2 = await register(node, key, [{ name: '/capability/echo', weight: 300 }], `${u2.url}/base`);
    const count = async (n: number) => {
      const seen: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const r = await send(`/capability/echo/jobs/${i}?x=1`);
        const body = await r.body.json() as any;
        expect(r.statusCode).toBe(200);
        expect(r.headers['x-dmsc-capability']).toBe('/capability/echo');
        expect(r.headers['x-dmsc-attempts']).toBe('1');
        expect(body.requester).toBe(requester.aic);
        // The instance never sees the requester's credential.
        expect(body.authorization).toBeNull();
        expect(body.path).toBe(body.name === 'u1' ? `/jobs/${i}?x=1` : `/base/jobs/${i}?x=1`);
        seen[r.headers['x-dmsc-instance'] as string] = (seen[r.headers['x-dmsc-instance'] as string] ?? 0) + 1;
      }
      return seen;
    };
    const even = await count(800);
    // 1:3 by weight; the tolerance is far outside sampling noise at 800 requests (sd ≈ 1.5%).
    expect(even[a2.aic]! / 800).toBeGreaterThan(0.68);
    expect(even[a2.aic]! / 800).toBeLessThan(0.82);
    // a2 at load 0.8: 300 × 0.2 = 60 against 100, so a2 gets about 37%.
    expect((await heartbeat(a2.aic, a2.credential, { load: 0.8 })).status).toBe(200);
    const loaded = await count(800);
    expect(loaded[a2.aic]! / 800).toBeGreaterThan(0.28);
    expect(loaded[a2.aic]! / 800).toBeLessThan(0.46);
    // A flow key keeps a requester on one instance.
    const flows = new Set<string>();
    for (let i = 0; i < 20; i++) flows.add((await send('/capability/echo', { headers: { 'x-dmsc-flow': 'session-7' } })).headers['x-dmsc-instance'] as string);
    expect(flows.size).toBe(1);
    // The relay (these requests) and the node's own data plane (a request it hands over,
    // as it does any carrying x-dmsc-via) pick the same instance for the same flow key.
    for (let k = 0; k < 8; k++) {
      const flow = `session-${k}-é`;
      const relayed = await send('/capability/echo', { headers: { 'x-dmsc-flow': flow } });
      const handed = await send('/capability/echo', { headers: { 'x-dmsc-flow': flow, 'x-dmsc-via': 'elsewhere' } });
      expect(handed.headers['x-dmsc-instance']).toBe(relayed.headers['x-dmsc-instance']);
      await Promise.all([relayed.body.dump(), handed.body.dump()]);
    }
    await Promise.all([api(node.url, 'DELETE', `/v1/agents/${a1.aic}`, { auth: node.token }), api(node.url, 'DELETE', `/v1/agents/${a2.aic}`, { auth: node.token })]);
  }, 60_000);

  it('loses no idempotent request when an instance is killed mid-stream, and sends it nothing until it heartbeats', async () => {
    const us = [await instance('k1'), await instance('k2'), await instance('k3')];
    const agents = [];
    for (const u of us) agents.push(await register(node, key, [{ name: '/capability/kill' }], u.url));
    let failures = 0;
    let done = 0;
    let stop = false;
    const workers = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const r = await send('/capability/kill');
        await r.body.dump();
        if (r.statusCode !== 200) failures++;
        done++;
      }
    });
    await waitFor(() => done >= 200);
    await us[0]!.kill9();
    const atKill = done;
    await waitFor(() => done >= atKill + 600, 20_000);
    stop = true;
    await Promise.all(workers);
    expect(failures).toBe(0);
    expect(await state('/capability/kill', agents[0]!.aic)).toBe('down');
    // The instance comes back on the same port: nothing reaches it until its agent heartbeats.
    const back = await instance('k1-again', 'normal', us[0]!.port);
    for (let i = 0; i < 60; i++) await (await send('/capability/kill')).body.dump();
    expect(await hits(back)).toBe(0);
    expect((await heartbeat(agents[0]!.aic, agents[0]!.credential)).status).toBe(200);
    for (let i = 0; i < 60; i++) await (await send('/capability/kill')).body.dump();
    expect(await hits(back)).toBeGreaterThan(0);
    for (const a of agents) await api(node.url, 'DELETE', `/v1/agents/${a.aic}`, { auth: node.token });
  }, 60_000);

  it('fails over from a slow, a resetting, a 503 and a garbage-speaking instance, marking each down', async () => {
    for (const mode of ['slow', 'reset', '503', 'garbage']) {
      const bad = await instance(`bad-${mode}`, mode, 0, 3000);
      const good = await instance(`good-${mode}`);
      const name = `/capability/fo-${mode}`;
      // The bad one first by priority, so every request meets it until it is down.
      const b = await register(node, key, [{ name, priority: 0 }], bad.url);
      const g = await register(node, key, [{ name, priority: 1 }], good.url);
      const r = await send(name);
      const body = await r.body.json() as any;
      expect({ mode, status: r.statusCode, name: body.name, attempts: r.headers['x-dmsc-attempts'], instance: r.headers['x-dmsc-instance'] })
        .toEqual({ mode, status: 200, name: `good-${mode}`, attempts: '2', instance: g.aic });
      expect(await state(name, b.aic)).toBe('down');
      // From now on straight to the good one.
      const next = await send(name);
      await next.body.dump();
      expect(next.headers['x-dmsc-attempts']).toBe('1');
      expect(await hits(bad)).toBe(1);
      // Back again (a heartbeat): now the relay, taught both instances by the requests
      // above, meets the bad one, fails over itself and marks it down.
      await heartbeat(b.aic, b.credential);
      const relay = async () => (await api(node.url, 'GET', '/v1/dataplane', { auth: node.token })).body.relay;
      const before = await relay();
      const again = await send(name);
      const againBody = await again.body.json() as any;
      expect({ mode, status: again.statusCode, name: againBody.name, attempts: again.headers['x-dmsc-attempts'] })
        .toEqual({ mode, status: 200, name: `good-${mode}`, attempts: '2' });
      const after = await relay();
      expect([after.retries - before.retries, after.handed - before.handed]).toEqual([1, 0]);
      await waitFor(async () => (await state(name, b.aic)) === 'down');
      // The relay marks the FIB at once and tells the directory within 50 ms; the heartbeat
      // below must come after the directory has heard, or that news would undo it.
      await waitFor(async () => (await api(node.url, 'GET', `/v1/agents/${b.aic}`, { auth: node.token })).body.health.state === 'down');
      expect(await hits(bad)).toBe(2);
      // A POST whose body was sent is not sent twice: the 503 goes back as it is.
      if (mode === '503') {
        await heartbeat(b.aic, b.credential);
        const post = await send(name, { method: 'POST', body: 'once' });
        expect(post.statusCode).toBe(503);
        expect((await post.body.json() as any).name).toBe('bad-503');
        expect(await state(name, b.aic)).toBe('down');
      }
    }
  }, 60_000);

  it('sends an agent registered at the root the whole name as its path, from the Node data plane and from the relay', async () => {
    const rooted = await start('node', ['--heartbeat-ms', '600000']);
    const root = await instance('root');
    await register(rooted, await addProvider(rooted, 'everything', ['/']), [{ name: '/' }], root.url);
    const asker = await register(rooted, await addProvider(rooted, 'asker', ['/capability/asker']), [{ name: '/capability/asker' }]);
    const relayed = async () => (await api(rooted.url, 'GET', '/v1/dataplane', { auth: rooted.token })).body.relay.forwarded as number;
    const before = await relayed();
    // The first request goes through the Node data plane and teaches the relay; the second is the relay's.
    for (let i = 0; i < 2; i++) {
      const r = await request(`${rooted.dataplane}/capability/any/where?q=${i}`, { headers: { authorization: `Bearer ${asker.credential}` } });
      const body = await r.body.json() as any;
      expect({ status: r.statusCode, path: body.path, capability: r.headers['x-dmsc-capability'] }).toEqual({ status: 200, path: `/capability/any/where?q=${i}`, capability: '/' });
    }
    expect(await relayed()).toBe(before + 1);
  });

  it('calls the instance off when the requester goes away, without blaming the instance', async () => {
    // A node that would wait a minute for the instance, and an instance that takes a
    // minute: the instance sees its request given up within the test only if the node
    // called it off when the requester went away.
    const patient = await start('node', ['--heartbeat-ms', '600000', '--upstream-timeout-ms', '60000']);
    const k = await addProvider(patient, 'acme', ['/capability/**']);
    const who = await register(patient, k, [{ name: '/capability/requester' }]);
    const slow = await instance('slow-cancel', 'slow', 0, 60_000);
    const s = await register(patient, k, [{ name: '/capability/cancel' }], slow.url);
    const gone = new AbortController();
    const asked = request(`${patient.dataplane}/capability/cancel`, { headers: { authorization: `Bearer ${who.credential}` }, signal: gone.signal }).catch((e: Error) => e);
    await waitFor(async () => (await hits(slow)) === 1);
    gone.abort();
    expect(await asked).toBeInstanceOf(Error);
    await waitFor(async () => (await stats(slow)).abandoned === 1);
    const fib = await api(patient.url, 'GET', `/v1/fib?prefix=${encodeURIComponent('/capability/cancel')}`, { auth: patient.token });
    expect(fib.body.entries[0].nextHops.find((h: any) => h.id === s.aic)?.state).toBe('up');
  });

  it('answers 502 when every instance fails, 404 with no route, and refuses unauthenticated and denied requests before any instance is contacted', async () => {
    const dead = await instance('dead', 'reset');
    const d = await register(node, key, [{ name: '/capability/dead' }], dead.url);
    const all = await send('/capability/dead');
    expect({ status: all.statusCode, code: (await all.body.json() as any).error.code }).toEqual({ status: 502, code: 'ERR_DMSC_UPSTREAM_FAILED' });
    const none = await send('/capability/nobody');
    expect({ status: none.statusCode, code: (await none.body.json() as any).error.code }).toEqual({ status: 404, code: 'ERR_DMSC_NO_ROUTE' });

    const guarded = await instance('guarded');
    await register(node, key, [{ name: '/capability/guarded' }], guarded.url);
    const policy = { version: 1, rules: [{ id: 'no-guarded', effect: 'deny', capabilities: ['/capability/guarded'] }] };
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: policy })).status).toBe(200);
    const cases = [
      { auth: null, status: 401, code: 'ERR_DMSC_UNAUTHORIZED' },
      { auth: 'forged', status: 401, code: 'ERR_DMSC_UNAUTHORIZED' },
      { auth: undefined, status: 403, code: 'ERR_DMSC_FORBIDDEN' },
    ];
    for (const c of cases) {
      const r = await send('/capability/guarded', { method: 'POST', body: 'x', auth: c.auth as string | null | undefined });
      expect({ status: r.statusCode, code: (await r.body.json() as any).error.code }).toEqual({ status: c.status, code: c.code });
    }
    expect(await hits(guarded)).toBe(0);
    // Outside /capability, and names that are not names.
    expect((await send('/other')).statusCode).toBe(404);
    expect((await send('/capability//x')).statusCode).toBe(400);
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: { version: 2, rules: [] } })).status).toBe(200);
    await api(node.url, 'DELETE', `/v1/agents/${d.aic}`, { auth: node.token });
  }, 30_000);

  it('sends a small body again after a refused connection, a large one once, and never blames the next instance for the request', async () => {
    const dead = await instance('dead-body');
    const deadPort = dead.port;
    await dead.kill9();
    const good = await instance('good-body');
    const d = await register(node, key, [{ name: '/capability/body', priority: 0 }], `http://127.0.0.1:${deadPort}`);
    const g = await register(node, key, [{ name: '/capability/body', priority: 1 }], good.url);
    const revive = () => heartbeat(d.aic, d.credential);
    // A POST the dead instance never got is sent to the next one, whole.
    const small = await send('/capability/body', { method: 'POST', body: 'x'.repeat(1000) });
    expect([small.statusCode, (await small.body.json() as any).bytes, small.headers['x-dmsc-attempts']]).toEqual([200, 1000, '2']);
    expect(await state('/capability/body', g.aic)).toBe('up');
    // A body too big to keep streams once: the request fails, and only the dead one is blamed.
    await revive();
    const large = await send('/capability/body', { method: 'POST', body: Buffer.alloc(200_000, 1) });
    expect({ status: large.statusCode, code: (await large.body.json() as any).error.code }).toEqual({ status: 502, code: 'ERR_DMSC_UPSTREAM_FAILED' });
    expect([await state('/capability/body', d.aic), await state('/capability/body', g.aic)]).toEqual(['down', 'up']);
    // Expect: 100-continue is answered here; the instance gets the body, nobody is blamed.
    await revive();
    const expecting = await raw('/capability/body', { method: 'PUT', body: 'y'.repeat(5000), headers: { expect: '100-continue', 'content-length': '5000' } });
    expect([expecting.status, expecting.json.bytes]).toEqual([200, 5000]);
    expect(await state('/capability/body', g.aic)).toBe('up');
  }, 30_000);

  it('decides policy on the capability that matched, refuses paths that climb, and stops requests that come back', async () => {
    const sub = await instance('sub');
    await register(node, key, [{ name: '/capability/secret' }], `${sub.url}/base`);
    const deny = { version: 10, rules: [{ id: 'no-secret', effect: 'deny', capabilities: ['/capability/secret'] }] };
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: deny })).status).toBe(200);
    const below = await send('/capability/secret/anything/below');
    expect({ status: below.statusCode, code: (await below.body.json() as any).error.code }).toEqual({ status: 403, code: 'ERR_DMSC_FORBIDDEN' });
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: { version: 11, rules: [] } })).status).toBe(200);
    for (const path of ['/capability/secret/../../admin', '/capability/secret/%2e%2e/admin', '/capability/secret/a%2Fb']) {
      const r = await raw(path);
      expect({ path, status: r.status, code: r.json.error.code }).toEqual({ path, status: 400, code: 'ERR_DMSC_INVALID_NAME' });
    }
    const loop = await send('/capability/secret', { headers: { 'x-dmsc-via': 'other,node-1' } });
    expect({ status: loop.statusCode, code: (await loop.body.json() as any).error.code }).toEqual({ status: 508, code: 'ERR_DMSC_LOOP' });
    for (const hops of ['many', '-1', '99']) {
      const bad = await send('/capability/secret', { headers: { 'x-dmsc-hops': hops } });
      expect({ hops, status: bad.statusCode, code: (await bad.body.json() as any).error.code }).toEqual({ hops, status: 400, code: 'ERR_DMSC_INVALID_ARGUMENT' });
    }
    // Headers an instance sets in our name never reach the requester as ours.
    const ok = await send('/capability/secret/x');
    expect([ok.statusCode, (await ok.body.json() as any).path]).toEqual([200, '/base/x']);
    expect(await hits(sub)).toBe(1);
  }, 30_000);

  it('serves what it has admitted from the native relay; a new policy and a revocation hold there at once', async () => {
    const u = await instance('relayed');
    const a = await register(node, key, [{ name: '/capability/relayed' }], u.url);
    const asker = await register(node, key, [{ name: '/capability/asker' }]);
    const dataplane = async () => (await api(node.url, 'GET', '/v1/dataplane', { auth: node.token })).body;
    const before = await dataplane();
    expect(before.listener).toBe('native');
    for (let i = 0; i < 50; i++) {
      const r = await send(`/capability/relayed/${i}`, { auth: asker.credential });
      expect([r.statusCode, r.headers['x-dmsc-instance'], (await r.body.json() as any).path]).toEqual([200, a.aic, `/${i}`]);
    }
    const after = await dataplane();
    // The node's own data plane admitted the first request of each path; it taught the
    // relay, which served the rest itself.
    expect(after.relay.forwarded - before.relay.forwarded).toBeGreaterThanOrEqual(1);
    expect(after.relay.handed - before.relay.handed).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 20; i++) await (await send('/capability/relayed', { auth: asker.credential })).body.dump();
    const warm = await dataplane();
    expect(warm.relay.forwarded - after.relay.forwarded).toBeGreaterThanOrEqual(19);
    // A policy that denies it: the very next request is refused, the instance never sees it.
    const seen = await hits(u);
    const deny = { version: 20, rules: [{ id: 'no-relayed', effect: 'deny', capabilities: ['/capability/relayed'] }] };
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: deny })).status).toBe(200);
    const denied = await send('/capability/relayed', { auth: asker.credential });
    expect({ status: denied.statusCode, code: (await denied.body.json() as any).error.code }).toEqual({ status: 403, code: 'ERR_DMSC_FORBIDDEN' });
    expect(await hits(u)).toBe(seen);
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: { version: 21, rules: [] } })).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await send('/capability/relayed', { auth: asker.credential })).statusCode).toBe(200);
    // A revoked credential: refused at once.
    const out = dmsc('agent', 'revoke', asker.aic, '--url', node.url, '--data', node.dataDir, '--reason', 'test');
    expect(out.status, out.stderr).toBe(0);
    const revoked = await send('/capability/relayed', { auth: asker.credential });
    expect({ status: revoked.statusCode, code: (await revoked.body.json() as any).error.code }).toEqual({ status: 401, code: 'ERR_DMSC_UNAUTHORIZED' });
    await api(node.url, 'DELETE', `/v1/agents/${a.aic}`, { auth: node.token });
  }, 30_000);

  it('streams 100 MiB each way with the node\'s memory bounded', async () => {
    const big = await instance('big');
    await register(node, key, [{ name: '/capability/big' }], big.url);
    const pid = node.child.pid!;
    const before = await peakRss(pid);
    const size = 100 << 20;
    const chunk = Buffer.alloc(1 << 20, 3);
    const hash = createHash('sha256');
    for (let i = 0; i < 100; i++) hash.update(chunk);
    const up = await send('/capability/big', {
      method: 'POST', headers: { 'content-length': String(size) },
      body: Readable.from((function* () { for (let i = 0; i < 100; i++) yield chunk; })()),
    });
    const got = await up.body.json() as any;
    expect({ bytes: got.bytes, sha256: got.sha256 }).toEqual({ bytes: size, sha256: hash.digest('hex') });
    const down = await send('/capability/big/file?mb=100');
    let received = 0;
    for await (const c of down.body) received += (c as Buffer).length;
    expect(received).toBe(size);
    // 200 MiB went through; the node's peak grew by far less than one body.
    expect(await peakRss(pid) - before).toBeLessThan(64);
  }, 60_000);

  it('takes a request toward a peer gateway to that gateway\'s data plane', async () => {
    // Two gateways of one domain (a standalone AMC): the agent at B, the request at A.
    const amc = await start('amc', ['--domain', 'dp']);
    const dir = await tempDir();
    const gateway = async (id: string, peers: string[]) => {
      const add = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
      await writeFile(join(dir, id), add.stdout);
      return start('node', ['--id', id, '--amc', amc.url, '--amc-key-file', join(dir, id), '--heartbeat-ms', '600000', ...peers.flatMap((p) => ['--peer', p])]);
    };
    const b = await gateway('B', []);
    const a = await gateway('A', [`B@${b.peering}`]);
    const pk = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    const far = await instance('far');
    const agent = await register(b, pk, [{ name: '/capability/far' }], far.url);
    const asker = await register(a, pk, [{ name: '/capability/asker' }]);
    await waitFor(async () => (await api(a.url, 'GET', '/v1/fib?prefix=/capability/far', { auth: a.token })).body.entries.length > 0);
    const r = await request(`${a.dataplane}/capability/far/x`, { headers: { authorization: `Bearer ${asker.credential}` } });
    const body = await r.body.json() as any;
    expect({ status: r.statusCode, name: body.name, path: body.path, requester: body.requester }).toEqual({ status: 200, name: 'far', path: '/x', requester: asker.aic });
    // The instance is B's choice, and the path says how the request got there.
    expect([r.headers['x-dmsc-instance'], r.headers['x-dmsc-capability'], r.headers['x-dmsc-path']]).toEqual([agent.aic, '/capability/far', 'A,B']);
    // A hop limit that is used up is refused, before any instance.
    const spent = await request(`${b.dataplane}/capability/far`, { headers: { authorization: `Bearer ${asker.credential}`, 'x-dmsc-hops': '0' } });
    expect({ status: spent.statusCode, code: (await spent.body.json() as any).error.code }).toEqual({ status: 508, code: 'ERR_DMSC_TTL_EXPIRED' });
    expect(await hits(far)).toBe(1);
  }, 60_000);

  it('sends requests between gateways over mutual TLS on a mesh with TLS, and never in clear text', async () => {
    // A and B take requests from peers on a TLS listener of their own; C is on the same
    // mesh TLS but offers only its clear-text data plane, so A sends it nothing.
    const amc = await start('amc', ['--domain', 'dpt']);
    const dir = await tempDir();
    const certs = await makeCerts(dir);
    const tls = { cert: certs.cert, key: certs.key, ca: certs.ca, requireClientCert: true };
    const gateway = async (id: string, mesh: object) => {
      const add = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
      await writeFile(join(dir, id), add.stdout);
      await writeFile(join(dir, `${id}.json`), JSON.stringify({ tls, ...mesh }));
      return start('node', ['--id', id, '--amc', amc.url, '--amc-key-file', join(dir, id), '--heartbeat-ms', '600000', '--mesh-config', join(dir, `${id}.json`)]);
    };
    const b = await gateway('B', { peerDataplane: '127.0.0.1:0' });
    const c = await gateway('C', {});
    const a = await gateway('A', { peerDataplane: '127.0.0.1:0', peers: [{ id: 'B', address: b.peering }, { id: 'C', address: c.peering }] });
    expect(b.peerDataplane).toMatch(/^127\.0\.0\.1:\d+$/);
    const pk = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    const atB = await instance('tls-far');
    const atC = await instance('clear-far');
    const agent = await register(b, pk, [{ name: '/capability/tls-far' }], atB.url);
    await register(c, pk, [{ name: '/capability/clear-far' }], atC.url);
    const asker = await register(a, pk, [{ name: '/capability/asker' }]);
    const routed = async (name: string) => (await api(a.url, 'GET', `/v1/fib?prefix=${name}`, { auth: a.token })).body.entries.length > 0;
    await waitFor(async () => (await routed('/capability/tls-far')) && (await routed('/capability/clear-far')));

    const r = await request(`${a.dataplane}/capability/tls-far/x`, { headers: { authorization: `Bearer ${asker.credential}` } });
    const body = await r.body.json() as any;
    expect({ status: r.statusCode, name: body.name, requester: body.requester, instance: r.headers['x-dmsc-instance'], path: r.headers['x-dmsc-path'] })
      .toEqual({ status: 200, name: 'tls-far', requester: asker.aic, instance: agent.aic, path: 'A,B' });

    // C offered clear text only: the credential does not go there.
    const clear = await request(`${a.dataplane}/capability/clear-far`, { headers: { authorization: `Bearer ${asker.credential}` } });
    const refused = await clear.body.json() as any;
    expect([clear.statusCode, refused.error.code]).toEqual([502, 'ERR_DMSC_UPSTREAM_FAILED']);
    expect(refused.error.message).toContain('peer:C: no address');
    expect(await hits(atC)).toBe(0);

    // B's listener for peers speaks only TLS, and only to holders of a certificate of the CA.
    const [host, port] = b.peerDataplane!.split(':');
    const plain = await request(`http://${b.peerDataplane}/capability/tls-far`, { headers: { authorization: `Bearer ${asker.credential}` } }).then((x) => x.statusCode, (e: Error) => e);
    expect(plain).toBeInstanceOf(Error);
    const anonymous = await new Promise<Error | string>((resolve) => {
      const s = tlsConnect({ host, port: Number(port), ca: readFileSync(certs.ca) }, () => {
        s.write('GET /capability/tls-far HTTP/1.1\r\nhost: x\r\n\r\n');
      });
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('error', (e) => resolve(e));
      s.on('close', () => resolve(got));
    });
    expect(anonymous instanceof Error || !anonymous.startsWith('HTTP/1.1 ')).toBe(true);
    expect(await hits(atB)).toBe(1);
  }, 60_000);
});
