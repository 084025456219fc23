// Operational visibility on real node processes: each event kind appears when its action
// happens; the event stream resumes without loss after a disconnect; scope rules hide
// what they should; the audit log is durable and kept by age and by count; /metrics is
// valid Prometheus text (promtool) that tells the truth; logs are JSON with error codes.
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, logged, register, start, startScript, waitFor, type Proc, type Registered } from './harness.js';

const UPSTREAM = new URL('./upstream.mjs', import.meta.url).pathname;

interface Ev { id: number; kind: string; decision: string; aics: string[]; providers: string[]; capability?: string; reason?: string; detail?: any }

/** Follows /v1/events; `lastId` resumes after it. */
function follow(url: string, token: string, opts: { lastId?: number; query?: string } = {}) {
  const events: Ev[] = [];
  const controller = new AbortController();
  const done = (async () => {
    const res = await fetch(`${url}/v1/events${opts.query ?? ''}`, { headers: { authorization: `Bearer ${token}`, ...(opts.lastId !== undefined ? { 'last-event-id': String(opts.lastId) } : {}) }, signal: controller.signal });
    if (res.status !== 200) throw new Error(`events: ${res.status} ${await res.text()}`);
    let buffer = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const id = /^id: (\d+)$/m.exec(block);
        const data = /^data: (.*)$/m.exec(block);
        if (id && data) {
          const e = JSON.parse(data[1]!) as Ev;
          expect(e.id).toBe(Number(id[1]));
          events.push(e);
        }
      }
    }
  })().catch((e: Error) => {
    // Aborted by close(), or ended by the node.
    if (e.name !== 'AbortError' && !/terminated/.test(e.message)) throw e;
  });
  return { events, done, close: async () => { controller.abort(); await done; } };
}

const audit = async (p: Proc, token: string, query = '') => (await api(p.url, 'GET', `/v1/audit${query}`, { auth: token })).body as { events: Ev[]; next: number | null; viewer: { who: string; scope: string } };

describe('events, audit, metrics and logs', () => {
  let node: Proc;
  let acme: string;
  let other: string;
  let a: Registered;
  let b: Registered;
  let upstream: Awaited<ReturnType<typeof startScript<{ port: number }>>>;
  let ghost: Server;

  beforeAll(async () => {
    // A "peer" that answers the handshake with garbage: the node reports its failed attempts.
    ghost = createServer((s) => s.end('not a dmsc peer\n'));
    await new Promise<void>((r) => ghost.listen(0, '127.0.0.1', r));
    node = await start('node', ['--heartbeat-ms', '60000', '--peer', `ghost@127.0.0.1:${(ghost.address() as { port: number }).port}`]);
    acme = await addProvider(node, 'acme', ['/capability/**']);
    other = await addProvider(node, 'other', ['/capability/**']);
    upstream = await startScript<{ port: number }>(UPSTREAM, ['--name', 'ocr-1']);
    a = await register(node, acme, [{ name: '/capability/ocr' }], `http://127.0.0.1:${upstream.info.port}`);
    b = await register(node, other, [{ name: '/capability/translate' }], 'http://127.0.0.1:9');
  });
  afterAll(async () => {
    ghost.close();
    await cleanup();
  });

  it('records each kind of event when its action happens, with the decision and the reason', async () => {
    const live = follow(node.url, node.token, { lastId: 0 });
    const kinds = (k: string) => live.events.filter((e) => e.kind === k);
    // Registrations, accepted and denied.
    const refused = await api(node.url, 'POST', '/v1/agents', { auth: acme, body: { endpoint: 'http://127.0.0.1:9001', capabilities: [{ name: '/forbidden/x' }] } });
    expect(refused.status).toBe(403);
    // A key that is nobody's makes no event: strangers cannot fill the audit log.
    const stranger = await api(node.url, 'POST', '/v1/agents', { auth: 'not-a-key', body: { endpoint: 'http://127.0.0.1:9001', capabilities: [{ name: '/capability/x' }] } });
    expect(stranger.status).toBe(401);
    // A resolution and a discovery.
    expect((await api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/ocr/fast' } })).status).toBe(200);
    expect((await api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/none' } })).status).toBe(404);
    expect((await api(node.url, 'GET', '/v1/discover?capability=/capability/ocr', { auth: b.credential })).status).toBe(200);
    // An invocation through the data plane, with its payload, which is never recorded.
    const call = await fetch(`${node.dataplane}/capability/ocr`, { method: 'POST', headers: { authorization: `Bearer ${b.credential}` }, body: 'secret-payload-7f3a' });
    expect(call.status).toBe(200);
    await call.arrayBuffer();
    const nowhere = await fetch(`${node.dataplane}/capability/none`, { headers: { authorization: `Bearer ${b.credential}` } });
    expect(nowhere.status).toBe(404);
    await nowhere.arrayBuffer();
    // Health: the agent says it is degraded. A policy. A deregistration.
    expect((await api(node.url, 'POST', `/v1/agents/${a.aic}/heartbeat`, { auth: a.credential, body: { state: 'degraded' } })).status).toBe(200);
    expect((await api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: { version: 1, rules: [] } })).status).toBe(200);
    const c = await register(node, acme, [{ name: '/capability/tmp' }], 'http://127.0.0.1:9002');
    expect((await api(node.url, 'DELETE', `/v1/agents/${c.aic}`, { auth: c.credential })).status).toBe(204);
    await waitFor(() => kinds('deregistration').length > 0 && kinds('peer').length > 0);
    await live.close();

    expect(kinds('registration').map((e) => e.decision)).toEqual(['accepted', 'accepted', 'denied', 'accepted']);
    expect(kinds('registration')[2]).toMatchObject({ reason: 'ERR_DMSC_FORBIDDEN', detail: { declared: ['/forbidden/x'] } });
    const [chosen, none] = kinds('resolution');
    expect(chosen).toMatchObject({ decision: 'chosen', capability: '/capability/ocr/fast', aics: [b.aic, a.aic], providers: ['other', 'acme'], detail: { chosen: a.aic, prefix: '/capability/ocr', failover: false, candidates: [{ aic: a.aic, state: 'up' }] } });
    expect(none).toMatchObject({ decision: 'refused', reason: 'ERR_DMSC_NO_ROUTE', aics: [b.aic] });
    expect(kinds('discovery')[0]).toMatchObject({ decision: 'found', capability: '/capability/ocr', aics: [b.aic, a.aic] });
    expect(kinds('invocation')[0]).toMatchObject({ decision: 'ok', capability: '/capability/ocr', aics: [b.aic, a.aic], detail: { target: a.aic, status: 200, failover: false } });
    expect(kinds('invocation')[1]).toMatchObject({ decision: 'failed', capability: '/capability/none', reason: 'ERR_DMSC_NO_ROUTE', aics: [b.aic], detail: { tried: [] } });
    expect(kinds('health')[0]).toMatchObject({ decision: 'degraded', aics: [a.aic], reason: 'heartbeat', detail: { from: 'up' } });
    expect(kinds('policy')[0]).toMatchObject({ decision: 'applied', detail: { version: 1 } });
    expect(kinds('deregistration')[0]).toMatchObject({ decision: 'removed', aics: [c.aic], reason: 'by the agent' });
    expect(kinds('peer')[0]).toMatchObject({ decision: 'failed', detail: { peer: 'ghost' } });
    expect(kinds('peer')[0]!.reason).toMatch(/^ERR_DMSC_/);
    // Ids are consecutive; payloads are nowhere.
    const ids = live.events.map((e) => e.id);
    expect(ids).toEqual(ids.map((_, i) => ids[0]! + i));
    expect(JSON.stringify(live.events)).not.toContain('secret-payload');
  });

  it('resumes the stream after a disconnect with nothing lost and nothing twice', async () => {
    const first = follow(node.url, node.token);
    for (let i = 0; i < 5; i++) await api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/ocr' } });
    await waitFor(() => first.events.length >= 5);
    await first.close();
    const seen = first.events.at(-1)!.id;
    // While no one follows.
    for (let i = 0; i < 7; i++) await api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/ocr' } });
    const again = follow(node.url, node.token, { lastId: seen });
    for (let i = 0; i < 3; i++) await api(node.url, 'POST', '/v1/resolve', { auth: b.credential, body: { capability: '/capability/ocr' } });
    await waitFor(() => again.events.length >= 10);
    await again.close();
    const ids = [...first.events, ...again.events].map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(ids.map((_, i) => ids[0]! + i));
    expect(again.events[0]!.id).toBe(seen + 1);
  });

  it('shows each viewer only what its scope allows', async () => {
    // Another provider's agent for the same capability: a candidate of acme's resolutions.
    const d = await register(node, other, [{ name: '/capability/ocr' }], 'http://127.0.0.1:9003');
    expect((await api(node.url, 'POST', '/v1/resolve', { auth: a.credential, body: { capability: '/capability/ocr' } })).status).toBe(200);
    const issue = async (body: object) => api(node.url, 'POST', '/v1/observers', { auth: node.token, body });
    const acmeObs = (await issue({ name: 'acme-noc', scope: 'agents', provider: 'acme' })).body.credential as string;
    const nodeObs = (await issue({ name: 'ops', scope: 'node', node: 'node-1' })).body.credential as string;
    const elsewhere = (await issue({ name: 'ops-b', scope: 'node', node: 'node-2' })).body.credential as string;
    const domainObs = (await issue({ name: 'soc', scope: 'domain' })).body.credential as string;
    expect((await issue({ name: 'x', scope: 'agents' })).body.error.code).toBe('ERR_DMSC_INVALID_BODY');
    expect((await issue({ name: 'x', scope: 'node', node: 'node-1', provider: 'acme' })).body.error.code).toBe('ERR_DMSC_INVALID_BODY');
    expect((await api(node.url, 'POST', '/v1/observers', { auth: acmeObs, body: { name: 'y', scope: 'domain' } })).status).toBe(401);

    const all = (await audit(node, node.token, '?limit=1000')).events;
    expect(all.length).toBeGreaterThan(20);
    // An agent sees only events about itself.
    const own = await audit(node, a.credential, '?limit=1000');
    expect(own.viewer).toEqual({ who: `agent:${a.aic}`, scope: 'self' });
    expect(own.events.length).toBeGreaterThan(0);
    expect(own.events.every((e) => e.aics.includes(a.aic))).toBe(true);
    expect(own.events.map((e) => e.id)).toEqual(all.filter((e) => e.aics.includes(a.aic)).map((e) => e.id));
    // A provider's observer: its agents' events, not the others'.
    const acmeOnly = (await audit(node, acmeObs, '?limit=1000')).events;
    expect(acmeOnly.map((e) => e.id)).toEqual(all.filter((e) => e.providers.includes('acme')).map((e) => e.id));
    expect(acmeOnly.some((e) => e.kind === 'policy' || e.kind === 'peer')).toBe(false);
    // Candidates of another provider are left out of what acme's viewers read.
    const lastResolution = (events: Ev[]) => events.filter((e) => e.kind === 'resolution' && e.aics[0] === a.aic).at(-1)!;
    const candidates = (events: Ev[]) => lastResolution(events).detail.candidates.map((c: { aic: string }) => c.aic).sort();
    expect(candidates(all)).toEqual([a.aic, d.aic].sort());
    expect(candidates(acmeOnly)).toEqual([a.aic]);
    expect(candidates(own.events)).toEqual([a.aic]);
    // Node and domain observers see everything here; one for another node, nothing. (Up
    // to the last event read above: the ghost peer's failures keep coming.)
    const upTo = (events: Ev[]) => events.filter((e) => e.id <= all.at(-1)!.id).map((e) => e.id);
    expect(upTo((await audit(node, nodeObs, '?limit=1000')).events)).toEqual(all.map((e) => e.id));
    expect(upTo((await audit(node, domainObs, '?limit=1000')).events)).toEqual(all.map((e) => e.id));
    expect((await api(node.url, 'GET', '/v1/audit', { auth: elsewhere })).status).toBe(403);
    expect((await api(node.url, 'GET', '/v1/audit')).status).toBe(401);
    expect((await api(node.url, 'GET', '/v1/audit', { auth: `${nodeObs.slice(0, -4)}AAAA` })).status).toBe(401);
    // The live stream applies the same scope.
    const agentLive = follow(node.url, b.credential, { lastId: 0 });
    await waitFor(() => agentLive.events.length > 0);
    await new Promise((r) => setTimeout(r, 200));
    await agentLive.close();
    expect(agentLive.events.every((e) => e.aics.includes(b.aic))).toBe(true);
    // The whole node's metrics and overview: not for a provider's observer or an agent.
    expect((await api(node.url, 'GET', '/metrics', { auth: acmeObs })).status).toBe(403);
    expect((await api(node.url, 'GET', '/v1/overview', { auth: a.credential })).status).toBe(403);
    expect((await api(node.url, 'GET', '/v1/overview', { auth: domainObs })).status).toBe(200);
  });

  it('pages the audit log by id, kind and agent', async () => {
    const p1 = await audit(node, node.token, '?kind=resolution&limit=3');
    expect(p1.events.map((e) => e.kind)).toEqual(['resolution', 'resolution', 'resolution']);
    const p2 = await audit(node, node.token, `?kind=resolution&limit=3&since=${p1.next}`);
    expect(p2.events[0]!.id).toBeGreaterThan(p1.events[2]!.id);
    const byAgent = await audit(node, node.token, `?aic=${encodeURIComponent(a.aic)}&limit=1000`);
    expect(byAgent.events.every((e) => e.aics.includes(a.aic))).toBe(true);
    expect((await api(node.url, 'GET', '/v1/audit?kind=nonsense', { auth: node.token })).body.error.code).toBe('ERR_DMSC_INVALID_ARGUMENT');
    // The CLI: an observer credential issued, and the log paged.
    const issued = dmsc('observer', 'add', 'cli-noc', '--scope', 'domain', '--url', node.url, '--data', node.dataDir);
    expect(JSON.parse(issued.stdout)).toMatchObject({ name: 'cli-noc', scope: 'domain', credential: expect.any(String) });
    const paged = dmsc('audit', '--kind', 'policy', '--url', node.url, '--data', node.dataDir);
    expect(JSON.parse(paged.stdout).events.map((e: Ev) => e.kind)).toEqual(['policy']);
    expect((await api(node.url, 'GET', '/v1/events', { auth: node.token, headers: { 'last-event-id': 'abc' } })).status).toBe(400);
  });

  it('serves metrics that promtool accepts and that match what happened', async () => {
    const r = await fetch(`${node.url}/metrics`, { headers: { authorization: `Bearer ${node.token}` } });
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // A series' value, whatever the order of its labels.
    const value = (series: string) => {
      const [name, labels = ''] = series.replace('}', '').split('{');
      const want = labels.split(',').filter(Boolean).sort().join(',');
      for (const line of text.split('\n')) {
        const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (m && m[1] === name && (m[2] ?? '').split(',').filter(Boolean).sort().join(',') === want) return Number(m[3]);
      }
      return NaN;
    };
    expect(value('dmsc_agents{state="degraded",node="node-1"}')).toBe(1);
    expect(value('dmsc_agents{state="up",node="node-1"}')).toBe(2);
    expect(value('dmsc_registrations_total{decision="accepted",node="node-1"}')).toBe(4);
    expect(value('dmsc_registrations_total{decision="denied",node="node-1"}')).toBe(1);
    expect(value('dmsc_fib_entries{node="node-1"}')).toBe(2);
    expect(value('dmsc_fastpath_lookups_total{node="node-1"}')).toBeGreaterThan(10);
    expect(value('dmsc_resolution_seconds_count{kind="resolve",outcome="ok",node="node-1"}')).toBeGreaterThan(10);
    expect(value('dmsc_forwarding_seconds_count{outcome="ok",node="node-1"}')).toBe(1);
    expect(value('dmsc_peer_sessions{node="node-1"}')).toBe(0);
  });

  it('logs JSON lines with the API error codes', async () => {
    await waitFor(() => logged(node, { msg: 'peering failed', peer: 'ghost', level: 'warn', node: 'node-1', code: /^ERR_DMSC_/, time: /^\d{4}-\d\d-\d\dT/ }));
    // Every line is JSON.
    const lines = node.stderr().split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
  });
});

describe('audit retention and durability', () => {
  afterAll(cleanup);

  it('keeps the newest events up to the count and drops those past the age, and never gives an id twice, through kill -9', async () => {
    let node = await start('node', ['--heartbeat-ms', '60000', '--audit-max-entries', '10', '--audit-prune-ms', '100']);
    const key = await addProvider(node, 'acme', ['/capability/**']);
    const agent = await register(node, key, [{ name: '/capability/ocr' }]);
    const seen = follow(node.url, node.token, { lastId: 0 });
    for (let i = 0; i < 30; i++) await api(node.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/ocr' } });
    await waitFor(async () => seen.events.length === 31 && (await audit(node, node.token, '?limit=1000')).events.length <= 10);
    const kept = (await audit(node, node.token, '?limit=1000')).events;
    expect(kept.length).toBeGreaterThanOrEqual(9);
    // The newest are the ones kept.
    expect(kept.map((e) => e.id)).toEqual(seen.events.slice(-kept.length).map((e) => e.id));
    // kill -9 at once, then a start on the same data: what the log kept is there, and no
    // id a follower was given comes back.
    await node.kill9();
    await seen.close();
    const maxSeen = Math.max(...seen.events.map((e) => e.id));
    node = await start('node', ['--heartbeat-ms', '60000'], node.dataDir);
    const after = (await audit(node, node.token, '?limit=1000')).events;
    expect(after.length).toBeGreaterThan(0);
    for (const e of after) expect(seen.events.map((x) => x.id)).toContain(e.id);
    await api(node.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/ocr' } });
    const next = (await audit(node, node.token, '?kind=resolution&limit=1000')).events.at(-1)!;
    expect(next.id).toBeGreaterThan(maxSeen);
    // A node stops with a follower still connected.
    const open = follow(node.url, node.token);
    await api(node.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/ocr' } });
    await waitFor(() => open.events.length === 1);
    await node.stop();
    await open.done;
    // By age: with a one-second limit, retention takes everything older, in memory too;
    // and ids still go on.
    node = await start('node', ['--heartbeat-ms', '60000', '--audit-max-age', '1', '--audit-prune-ms', '200'], node.dataDir);
    await waitFor(async () => (await audit(node, node.token, '?limit=1000')).events.length === 0, 5000);
    await api(node.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/ocr' } });
    const fresh = (await audit(node, node.token, '?limit=1000')).events;
    expect(fresh.length).toBe(1);
    expect(fresh[0]!.id).toBeGreaterThan(open.events[0]!.id);
    await waitFor(async () => (await audit(node, node.token, '?limit=1000')).events.length === 0, 5000);
    // Started again on an empty log: ids go on still.
    await node.stop();
    node = await start('node', ['--heartbeat-ms', '60000'], node.dataDir);
    await api(node.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/ocr' } });
    expect((await audit(node, node.token, '?limit=1000')).events.map((e) => e.id)).toEqual([expect.any(Number)]);
    expect((await audit(node, node.token, '?limit=1000')).events[0]!.id).toBeGreaterThan(fresh[0]!.id);
  });
});
