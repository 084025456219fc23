// Gateways of one domain (a standalone AMC) peering as real processes: digests travel
// the chain A — B — C, learned routes become FIB entries toward the peer with priority by
// path cost, a withdrawal reaches every gateway, and a gateway that dies has its next hop
// down at once and its routes dropped after the hold time.
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../src/mesh/frames.js';
import { PeerSession } from '../../src/mesh/peer-session.js';
import { api, cleanup, dmsc, handGateway, logged, register, start, tempDir, waitFor, type Proc } from './harness.js';

describe('mesh of three gateways (chain)', () => {
  let amc: Proc;
  const gw: Record<string, Proc> = {};
  let keyDir: string;
  let providerKey: string;

  const gatewayArgs = async (id: string) => {
    const file = join(keyDir, id);
    const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
    if (r.status === 0) await writeFile(file, r.stdout);
    return ['--id', id, '--amc', amc.url, '--amc-key-file', file, '--heartbeat-ms', '60000'];
  };
  const peerOf = (id: string) => `${id}@${gw[id]!.peering}`;
  const fibHops = async (p: Proc, prefix: string) => {
    const r = await api(p.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: p.token });
    return r.body.entries.find((e: any) => e.prefix === prefix)?.nextHops.map((h: any) => ({ id: h.id, priority: h.priority, state: h.state, tags: h.tags })) ?? [];
  };

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro']);
    keyDir = await tempDir();
    providerKey = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    gw['A'] = await start('node', await gatewayArgs('A'));
    gw['B'] = await start('node', [...(await gatewayArgs('B')), '--peer', peerOf('A')]);
    gw['C'] = await start('node', [...(await gatewayArgs('C')), '--peer', peerOf('B')]);
  });
  afterAll(cleanup);

  it('carries a capability registered at C to A, two hops away, as a route toward B', async () => {
    await register(gw['C']!, providerKey, [{ name: '/capability/ocr/fast', attributes: {} }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast')).length > 0);
    expect(await fibHops(gw['A']!, '/capability/ocr/fast')).toEqual([{ id: 'peer:B', priority: 32769, state: 'up', tags: [] }]);
    expect(await fibHops(gw['B']!, '/capability/ocr/fast')).toEqual([{ id: 'peer:C', priority: 32768, state: 'up', tags: [] }]);
    // C never learns its own capability back.
    expect((await fibHops(gw['C']!, '/capability/ocr/fast')).map((h: any) => h.id).filter((id: string) => id.startsWith('peer:'))).toEqual([]);
  });

  it('shows its peer sessions, the routes learned and the digest versions in /metrics and as peer events', async () => {
    const text = await (await fetch(`${gw['B']!.url}/metrics`, { headers: { authorization: `Bearer ${gw['B']!.token}` } })).text();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(text).toMatch(/^dmsc_peer_sessions\{node="B"\} 2$/m);
    expect(text).toMatch(/^dmsc_peer_routes\{peer="C",node="B"\} 1$/m);
    // B holds a complete digest of C's (version 0 or more), and has sent its own.
    expect(Number(/^dmsc_digest_version\{peer="C",side="theirs",node="B"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(0);
    expect(Number(/^dmsc_digest_version\{peer="A",side="ours",node="B"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThan(0);
    const peers = (await api(gw['B']!.url, 'GET', '/v1/audit?kind=peer', { auth: gw['B']!.token })).body.events as { decision: string; detail: { peer: string } }[];
    expect(peers.filter((e) => e.decision === 'up').map((e) => e.detail.peer).sort()).toEqual(['A', 'C']);
  });

  it('resolves hop by hop (SRRP): A finds the agent at C through B, and reports the path', async () => {
    const requester = await register(gw['A']!, providerKey, [{ name: '/capability/requester' }]);
    const r = await api(gw['A']!.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/ocr/fast/x' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.path).toEqual(['A', 'B', 'C']);
    expect(r.body.capability).toBe('/capability/ocr/fast');
    expect(r.body.target.gateway).toBe('C');
    // Discovery follows the same way when A has no candidate of its own.
    const d = await api(gw['A']!.url, 'GET', '/v1/discover?capability=/capability/ocr/fast/x', { auth: requester.credential });
    expect(d.status, JSON.stringify(d.body)).toBe(200);
    expect(d.body.path).toEqual(['A', 'B', 'C']);
    expect(d.body.candidates.map((c: any) => [c.gateway, c.capability, c.aic])).toEqual([['C', '/capability/ocr/fast', r.body.target.aic]]);
    // Every hop applies its own policy: C denies this requester's provider.
    const deny = { version: 1, rules: [{ id: 'no-acme', effect: 'deny', requesters: { providers: ['acme'] }, capabilities: ['/capability/ocr/**'] }] };
    expect((await api(gw['C']!.url, 'PUT', '/v1/policies', { auth: gw['C']!.token, body: deny })).status).toBe(200);
    const refused = await api(gw['A']!.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/ocr/fast' } });
    expect({ status: refused.status, code: refused.body.error.code }).toEqual({ status: 403, code: 'ERR_DMSC_FORBIDDEN' });
    expect(refused.body.error.message).toMatch(/no-acme/);
    expect((await api(gw['C']!.url, 'PUT', '/v1/policies', { auth: gw['C']!.token, body: { version: 2, rules: [] } })).status).toBe(200);
  });

  it('answers SRRP on the wire with typed errors for TTL expiry and loops', async () => {
    // A gateway of the domain, speaking the protocol by hand.
    const add = dmsc('amc', 'gateway', 'add', 'X', '--url', amc.url, '--data', amc.dataDir);
    expect(add.status, add.stderr).toBe(0);
    const [host, port] = gw['B']!.peering!.split(':');
    const socket = connect(Number(port), host!);
    await new Promise((r) => socket.once('connect', r));
    const session = await PeerSession.establish(socket, await handGateway(amc.url, JSON.parse(add.stdout).key, 'X', 'metro', { holdMs: 5000 }));
    const requester = await register(gw['A']!, providerKey, [{ name: '/capability/req2' }]);
    const ask = (request: object) => new Promise<any>((resolve) => {
      const id = Math.random().toString(36).slice(2);
      const on = (m: any) => {
        if (m.type === 'SRRP_RESULT' && m.id === id) {
          session.off('message', on);
          resolve(m);
        }
      };
      session.on('message', on);
      session.send({ type: 'SRRP_RESOLVE', id, request: { capability: '/capability/ocr/fast', require: [], credential: requester.credential, ...request } });
    });
    expect((await ask({ ttl: 1, path: ['X'] })).error.code).toBe('ERR_DMSC_TTL_EXPIRED');
    expect((await ask({ ttl: 8, path: ['X', 'B'] })).error.code).toBe('ERR_DMSC_LOOP');
    expect((await ask({ ttl: 8, path: ['X'], credential: 'forged' })).error.code).toBe('ERR_DMSC_UNAUTHORIZED');
    expect((await ask({ ttl: 'many', path: ['X'] })).error.code).toBe('ERR_DMSC_MALFORMED_FRAME');
    const ok = await ask({ ttl: 8, path: ['X'] });
    expect(ok.answer.path).toEqual(['X', 'B', 'C']);
    session.close();
  });

  it('routes around a peer that advertises a name but never answers, at the far hop', async () => {
    // X joins B, advertises /capability/slow, and stays silent on SRRP; C has a real agent.
    const add = dmsc('amc', 'gateway', 'add', 'Xslow', '--url', amc.url, '--data', amc.dataDir);
    const [host, port] = gw['B']!.peering!.split(':');
    const socket = connect(Number(port), host!);
    await new Promise((r) => socket.once('connect', r));
    const x = await PeerSession.establish(socket, await handGateway(amc.url, JSON.parse(add.stdout).key, 'Xslow', 'metro'));
    let askedX = 0;
    x.on('message', (m) => {
      if (m.type === 'SRRP_RESOLVE') askedX++;
    });
    x.send({ type: 'CSP_SNAPSHOT' });
    x.send({ type: 'CSP_ROUTES', entries: [{ name: '/capability/slow', tags: [], cost: 0, path: ['Xslow'] }] });
    x.send({ type: 'CSP_EOS', version: 1 });
    const agent = await register(gw['C']!, providerKey, [{ name: '/capability/slow' }]);
    await waitFor(async () => (await fibHops(gw['B']!, '/capability/slow')).length === 2);
    const requester = await register(gw['A']!, providerKey, [{ name: '/capability/req3' }]);
    // Flows until B has tried X first at least once (X's share is half).
    for (let i = 0; i < 40 && (i < 4 || askedX === 0); i++) {
      const r = await api(gw['A']!.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/slow', flow: `s${i}` } });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.target.aic).toBe(agent.aic);
      expect(r.body.path).toEqual(['A', 'B', 'C']);
    }
    // X was asked, never answered, and the request still came back from C.
    expect(askedX).toBeGreaterThan(0);
    x.close();
  }, 30_000);

  it('asks for a snapshot after a delta with a gap; cuts off a peer that sends an oversized frame, garbage or a bad OPEN, and logs it; the other sessions carry on', async () => {
    const add = dmsc('amc', 'gateway', 'add', 'Ygap', '--url', amc.url, '--data', amc.dataDir);
    const [host, port] = gw['B']!.peering!.split(':');
    const socket = connect(Number(port), host!);
    await new Promise((r) => socket.once('connect', r));
    const y = await PeerSession.establish(socket, await handGateway(amc.url, JSON.parse(add.stdout).key, 'Ygap', 'metro'));
    const seen: any[] = [];
    y.on('message', (m) => seen.push(m));
    const route = (name: string) => ({ name, tags: [], cost: 0, path: ['Ygap'] });
    const snapshot = (names: string[], version: number) => {
      y.send({ type: 'CSP_SNAPSHOT' });
      y.send({ type: 'CSP_ROUTES', entries: names.map(route) });
      y.send({ type: 'CSP_EOS', version });
    };
    const acked = (version: number) => waitFor(() => seen.some((m) => m.type === 'CSP_ACK' && m.version === version));
    snapshot(['/capability/y-one'], 1);
    await acked(1);
    y.send({ type: 'CSP_DELTA', base: 1, version: 2, added: [route('/capability/y-two')], updated: [], withdrawn: [] });
    await acked(2);
    expect((await fibHops(gw['B']!, '/capability/y-two')).map((h: any) => h.id)).toEqual(['peer:Ygap']);
    // Deltas 3 and 4 never came: B asks for a snapshot instead of applying 5.
    y.send({ type: 'CSP_DELTA', base: 4, version: 5, added: [route('/capability/y-gap')], updated: [], withdrawn: [] });
    await waitFor(() => seen.some((m) => m.type === 'CSP_RESYNC'));
    expect(await fibHops(gw['B']!, '/capability/y-gap')).toEqual([]);
    snapshot(['/capability/y-one', '/capability/y-three'], 6);
    await acked(6);
    expect((await fibHops(gw['B']!, '/capability/y-three')).map((h: any) => h.id)).toEqual(['peer:Ygap']);
    // What the fresh snapshot did not re-announce is gone.
    expect(await fibHops(gw['B']!, '/capability/y-two')).toEqual([]);

    // A frame announced at 2 MiB (the limit is 1 MiB) ends Ygap's session, with the reason.
    const ended = new Promise<any>((r) => y.once('close', r));
    socket.write(Buffer.from([0, 0x20, 0, 0]));
    await ended;
    await waitFor(() => logged(gw['B']!, { msg: 'peer down', peer: 'Ygap', code: 'ERR_DMSC_FRAME_TOO_LARGE', level: 'warn' }));
    await waitFor(async () => (await fibHops(gw['B']!, '/capability/y-one'))[0]?.state === 'down');
    // Garbage and a bad OPEN on fresh connections.
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), encodeFrame({ type: 'HELLO', version: 99, gateway: 'Z', domain: 'metro', nonce: 'n'.repeat(43) })]) {
      const s = connect(Number(port), host!);
      s.on('error', () => {});
      s.write(bytes);
      s.resume();
      await new Promise((r) => s.once('close', r));
    }
    await waitFor(() => logged(gw['B']!, { msg: 'peer refused', code: /^ERR_DMSC_(MALFORMED_FRAME|FRAME_TOO_LARGE)$/ }));
    await waitFor(() => logged(gw['B']!, { msg: 'peer refused', code: 'ERR_DMSC_BAD_HANDSHAKE', reason: /^unsupported protocol version 99 / }));
    // B's sessions with A and C never noticed.
    const peers = (await api(gw['B']!.url, 'GET', '/v1/peers', { auth: gw['B']!.token })).body.peers.map((p: any) => p.gateway).sort();
    expect(peers).toEqual(['A', 'C']);
    expect((await fibHops(gw['A']!, '/capability/ocr/fast'))[0]?.state).toBe('up');
  }, 30_000);

  it('sends names it has no route for to its upstream peer', async () => {
    const d = await start('node', [...(await gatewayArgs('D')), '--peer', peerOf('A'), '--upstream', 'A']);
    await waitFor(async () => (await fibHops(d, '/'))[0]?.state === 'up');
    expect(await fibHops(d, '/')).toEqual([{ id: 'peer:A', priority: 65000, state: 'up', tags: [] }]);
    // A decides about a name nobody offers: its rule id in the answer shows D asked A.
    const rule = { version: 1, rules: [{ id: 'a-nowhere', effect: 'deny', capabilities: ['/capability/nowhere/**'] }] };
    expect((await api(gw['A']!.url, 'PUT', '/v1/policies', { auth: gw['A']!.token, body: rule })).status).toBe(200);
    const requester = await register(d, providerKey, [{ name: '/capability/d-req' }]);
    const r = await api(d.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/nowhere/x' } });
    expect({ status: r.status, code: r.body.error.code }).toEqual({ status: 403, code: 'ERR_DMSC_FORBIDDEN' });
    expect(r.body.error.message).toMatch(/a-nowhere/);
    expect(dmsc('node', '--peer', 'A@127.0.0.1:1', '--upstream', 'B').stderr).toContain('upstream B must be one of the peers');
  });

  it('programs learned tags only when its own policy knows them', async () => {
    const mapping = { tags: [{ tag: 'gdpr', attribute: 'compliance', values: ['gdpr'] }], rules: [] };
    const put = (p: Proc, version: number) => api(p.url, 'PUT', '/v1/policies', { auth: p.token, body: { version, ...mapping } });
    const current = async (p: Proc) => (await api(p.url, 'GET', '/v1/policies', { auth: p.token })).body.version as number;
    expect((await put(gw['C']!, (await current(gw['C']!)) + 1)).status).toBe(200);
    expect((await put(gw['B']!, (await current(gw['B']!)) + 1)).status).toBe(200);
    await register(gw['C']!, providerKey, [{ name: '/capability/eu', attributes: { compliance: 'gdpr' } }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/eu')).length > 0);
    expect((await fibHops(gw['B']!, '/capability/eu'))[0].tags).toEqual(['gdpr']);
    expect((await fibHops(gw['A']!, '/capability/eu'))[0].tags).toEqual([]);
    expect((await put(gw['A']!, (await current(gw['A']!)) + 1)).status).toBe(200);
    expect((await fibHops(gw['A']!, '/capability/eu'))[0].tags).toEqual(['gdpr']);
  });

  it('puts local agents first: a name offered at A and at C goes to A\'s own agent', async () => {
    await register(gw['C']!, providerKey, [{ name: '/capability/both' }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/both')).length > 0);
    const local = await register(gw['A']!, providerKey, [{ name: '/capability/both' }]);
    const hops = await fibHops(gw['A']!, '/capability/both');
    expect(hops.map((h: any) => h.id)).toEqual([local.aic, 'peer:B']);
    expect(hops[0].priority).toBeLessThan(hops[1].priority);
  });

  it('withdraws a deregistered capability from every gateway', async () => {
    const x = await register(gw['C']!, providerKey, [{ name: '/capability/gone' }]);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/gone')).length > 0);
    expect((await api(gw['C']!.url, 'DELETE', `/v1/agents/${x.aic}`, { auth: gw['C']!.token })).status).toBe(204);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/gone')).length === 0 && (await fibHops(gw['B']!, '/capability/gone')).length === 0);
  });

  it('marks a dead gateway down at once, then drops its routes after the hold time', async () => {
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast')).length > 0);
    await gw['B']!.kill9();
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast'))[0]?.state === 'down', 12_000);
    await waitFor(async () => (await fibHops(gw['A']!, '/capability/ocr/fast')).length === 0, 20_000);
  }, 40_000);
});

describe('the four gateways of MACP figure 6', () => {
  // AG1 — AG2 across the top, each linked down to AG3 and AG4 (the diagonals too); no
  // direct AG3 — AG4 link, so AG3 reaches AG4's agents in two hops, by two paths.
  let amc: Proc;
  const gw: Record<string, Proc> = {};
  let providerKey: string;
  let keyDir: string;
  const args = async (id: string, peers: string[]) => {
    const file = join(keyDir, id);
    const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
    if (r.status === 0) await writeFile(file, r.stdout);
    return ['--id', id, '--amc', amc.url, '--amc-key-file', file, '--heartbeat-ms', '60000', ...peers.flatMap((p) => ['--peer', `${p}@${gw[p]!.peering}`])];
  };
  const fibIds = async (p: Proc, prefix: string) => {
    const r = await api(p.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: p.token });
    return (r.body.entries.find((e: any) => e.prefix === prefix)?.nextHops ?? []).filter((h: any) => h.state === 'up').map((h: any) => h.id).sort();
  };

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'fig6']);
    keyDir = await tempDir();
    providerKey = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    gw['AG3'] = await start('node', await args('AG3', []));
    gw['AG4'] = await start('node', await args('AG4', []));
    gw['AG2'] = await start('node', await args('AG2', ['AG3', 'AG4']));
    gw['AG1'] = await start('node', await args('AG1', ['AG2', 'AG3', 'AG4']));
  });
  afterAll(cleanup);

  it('resolves from AG3 to the agent at AG4 in two hops, survives AG1 dying, and resyncs AG1 when it returns', async () => {
    const agentB = await register(gw['AG4']!, providerKey, [{ name: '/capability/translate' }], 'http://127.0.0.1:9404');
    const agentA = await register(gw['AG3']!, providerKey, [{ name: '/capability/asks' }], 'http://127.0.0.1:9403');
    await waitFor(async () => (await fibIds(gw['AG3']!, '/capability/translate')).length === 2);
    expect(await fibIds(gw['AG3']!, '/capability/translate')).toEqual(['peer:AG1', 'peer:AG2']);
    const resolve = (flow: string) => api(gw['AG3']!.url, 'POST', '/v1/resolve', { auth: agentA.credential, body: { capability: '/capability/translate', flow } });
    const via = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const r = await resolve(`f${i}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.target).toEqual({ aic: agentB.aic, endpoint: 'http://127.0.0.1:9404', gateway: 'AG4' });
      expect(r.body.path).toHaveLength(3);
      expect([r.body.path[0], r.body.path[2]]).toEqual(['AG3', 'AG4']);
      via.add(r.body.path[1]);
    }
    expect(via).toEqual(new Set(['AG1', 'AG2']));

    // AG1 dies: its next hop is down at once, every resolution goes through AG2.
    const ag1Data = gw['AG1']!.dataDir;
    await gw['AG1']!.kill9();
    await waitFor(async () => (await fibIds(gw['AG3']!, '/capability/translate')).join() === 'peer:AG2', 5000);
    for (let i = 0; i < 8; i++) expect((await resolve(`g${i}`)).body.path).toEqual(['AG3', 'AG2', 'AG4']);

    // A gateway that speaks garbage to AG4's peering port is cut off; the rest carry on.
    const [host, port] = gw['AG4']!.peering!.split(':');
    const { connect } = await import('node:net');
    const junk = connect(Number(port), host!);
    await new Promise((r) => junk.once('connect', r));
    junk.write(Buffer.from([0, 0, 0, 3, 1, 2, 3]));
    junk.resume();
    await new Promise((r) => junk.once('close', r));
    expect((await resolve('after-junk')).status).toBe(200);

    // AG1 returns (same data, new port: it dials its peers), gets snapshots, and routes
    // converge back.
    gw['AG1'] = await start('node', await args('AG1', ['AG2', 'AG3', 'AG4']), ag1Data);
    await waitFor(async () => (await fibIds(gw['AG1']!, '/capability/translate')).includes('peer:AG4'), 10_000);
    await waitFor(async () => (await fibIds(gw['AG3']!, '/capability/translate')).length === 2, 10_000);
  }, 60_000);
});
