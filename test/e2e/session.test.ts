// A2ASP between agents behind two gateways (real node processes, one standalone AMC):
// resolution through the mesh, SESSION_INIT/ACCEPT straight to the target, 1,000 ordered
// messages each way over WebSocket and over TCP, TERMINATE; grants that are forged,
// expired, for another target, for another initiator, or replayed are rejected; and a
// session keeps going with both gateways killed.
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type Session, type SessionClose } from '../../src/index.js';
import { api, cleanup, dmsc, start, tempDir, waitFor, type Proc } from './harness.js';

const N = 1000;

/** Serves a capability whose sessions send N numbered messages and record what comes in. */
function talker(received: Map<string, unknown[]>, closes: Map<string, SessionClose>) {
  return (session: Session) => {
    const got: unknown[] = [];
    received.set(session.id, got);
    session.on('message', (m) => got.push(m));
    session.once('close', (c: SessionClose) => closes.set(session.id, c));
    void (async () => {
      for (let i = 0; i < N; i++) await session.send({ i, from: 'target' });
    })().catch(() => {});
  };
}

describe('A2ASP sessions across two gateways', () => {
  let amc: Proc;
  const gw: Record<string, Proc> = {};
  let key: string;
  const agents: Agent[] = [];
  const received = new Map<string, unknown[]>();
  const closes = new Map<string, SessionClose>();
  let alice: Agent;
  let bob: Agent;
  let dave: Agent;
  let eve: Agent;

  const agent = async (node: Proc, name: string, options: Partial<ConstructorParameters<typeof Agent>[0]> = {}, serve?: (a: Agent) => void) => {
    const a = new Agent({ node: node.url, providerKey: key, name, ...options });
    serve?.(a);
    agents.push(a);
    await a.start();
    return a;
  };

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro']);
    const keys = await tempDir();
    const gatewayArgs = async (id: string) => {
      const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
      await writeFile(join(keys, id), r.stdout);
      return ['--id', id, '--amc', amc.url, '--amc-key-file', join(keys, id)];
    };
    key = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    gw['A'] = await start('node', await gatewayArgs('A'));
    // B signs grants for its agents with a short life, for the expired case.
    gw['B'] = await start('node', [...(await gatewayArgs('B')), '--peer', `A@${gw['A'].peering}`, '--grant-ttl', '2']);
    alice = await agent(gw['A'], 'alice', {}, (a) => a.serve('/capability/notes', { request: () => ({}) }));
    eve = await agent(gw['A'], 'eve', {}, (a) => a.serve('/capability/notes/eve', { request: () => ({}) }));
    bob = await agent(gw['B'], 'bob', {}, (a) => a.serve('/capability/echo', { session: talker(received, closes) }));
    dave = await agent(gw['B'], 'dave', { sessions: { transport: 'tcp' } }, (a) => a.serve('/capability/echo-tcp', { session: talker(received, closes) }));
    await agent(gw['B'], 'carol', {}, (a) => a.serve('/capability/other', { session: talker(received, closes) }));
    // A has learned B's names.
    await waitFor(async () => {
      const r = await api(gw['A']!.url, 'GET', '/v1/fib?prefix=/capability', { auth: gw['A']!.token });
      return ['/capability/echo', '/capability/echo-tcp', '/capability/other'].every((p) => r.body.entries.some((e: any) => e.prefix === p));
    });
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await cleanup();
  });

  for (const [label, capability, target] of [['WebSocket', '/capability/echo', () => bob], ['TCP', '/capability/echo-tcp', () => dave]] as const) {
    it(`opens a session over ${label} through two gateways, carries ${N} ordered messages each way, and terminates`, async () => {
      const r = await alice.resolve(capability);
      expect(r.target.aic).toBe(target().aic);
      expect(r.path).toEqual(['A', 'B']);
      expect(r.target.session).toMatch(label === 'TCP' ? /^tcp:\/\// : /^ws:\/\/.*\/\.dmsc\/a2asp$/);
      const session = await alice.openSession(r, { params: { idleTimeoutMs: 30_000, app: { lang: 'en' } } });
      expect(session.peer).toBe(target().aic);
      expect(session.params.app).toEqual({ lang: 'en' });
      const got: unknown[] = [];
      session.on('message', (m) => got.push(m));
      for (let i = 0; i < N; i++) await session.send({ i, from: 'initiator' });
      await waitFor(() => got.length === N && received.get(session.id)?.length === N);
      expect(got).toEqual(Array.from({ length: N }, (_, i) => ({ i, from: 'target' })));
      expect(received.get(session.id)).toEqual(Array.from({ length: N }, (_, i) => ({ i, from: 'initiator' })));
      const closed = new Promise<SessionClose>((resolve) => session.once('close', resolve));
      await session.close('finished');
      expect(await closed).toMatchObject({ by: 'local' });
      await waitFor(() => closes.has(session.id));
      expect(closes.get(session.id)).toMatchObject({ by: 'remote', reason: 'finished' });
      await expect(session.send('late')).rejects.toMatchObject({ code: 'ERR_DMSC_SESSION_CLOSED' });
    });
  }

  it('rejects a replayed grant, a grant for another target, and a grant presented by another initiator', async () => {
    const once = await alice.resolve('/capability/echo');
    await (await alice.openSession(once)).close();
    await expect(alice.openSession(once)).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_REPLAYED' });

    const forCarol = await alice.resolve('/capability/other');
    await expect(alice.openSession({ ...forCarol, target: (await alice.resolve('/capability/echo')).target })).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_WRONG_TARGET' });

    const forAlice = await alice.resolve('/capability/echo');
    await expect(eve.openSession(forAlice)).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: expect.stringContaining('not that of') });
    // That grant was not used up by the failed attempt: alice can still use it.
    const s = await alice.openSession(forAlice);
    await s.close();
  });

  it('rejects forged grants: signed by a key the AMC never certified, or certified by a key that is not the AMC', async () => {
    const real = await alice.resolve('/capability/echo');
    const [head, body] = real.grant.split('.');
    const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const jws = (header: object, payload: object) => {
      const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
    };
    const kid = JSON.parse(Buffer.from(head!, 'base64url').toString()).kid;
    // The real certificate, a fresh jti, but our own signature.
    const resigned = jws({ alg: 'EdDSA', kid, typ: 'dmsc-grant+jwt' }, { ...claims, jti: randomUUID() });
    await expect(alice.openSession({ ...real, grant: resigned })).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: expect.stringContaining('not signed by the key of gateway B') });
    // A certificate for our own key, signed by ourselves in the AMC's name.
    const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'forged', alg: 'EdDSA', use: 'sig' };
    const cert = jws({ alg: 'EdDSA', kid: 'forged-amc', typ: 'dmsc-grant-key+jwt' }, { iss: 'dmsc-amc:metro', sub: 'B', dom: 'metro', cnf: { jwk }, exp: claims.exp + 3600 });
    const forged = jws({ alg: 'EdDSA', kid: 'forged', typ: 'dmsc-grant+jwt' }, { ...claims, jti: randomUUID(), gwc: cert });
    await expect(alice.openSession({ ...real, grant: forged })).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_INVALID', message: expect.stringContaining('not certified') });
    // Neither attempt used the real grant up.
    const s = await alice.openSession(real);
    await s.close();
  });

  it('rejects an expired grant', async () => {
    const r = await alice.resolve('/capability/echo');
    // B's grants live 2 s (rounded up to the second).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, r.grantExpiresAt - Date.now()) + 200));
    await expect(alice.openSession(r)).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_EXPIRED' });
  });

  it('keeps exchanging data after both gateways are killed', async () => {
    const session = await alice.openSession(await alice.resolve('/capability/echo'));
    const got: unknown[] = [];
    session.on('message', (m) => got.push(m));
    await gw['A']!.kill9();
    await gw['B']!.kill9();
    for (let i = 0; i < N; i++) await session.send({ i, from: 'initiator' });
    await waitFor(() => got.length === N && received.get(session.id)?.length === N);
    expect(got.at(-1)).toEqual({ i: N - 1, from: 'target' });
    expect(received.get(session.id)!.at(-1)).toEqual({ i: N - 1, from: 'initiator' });
    await session.close();
  });
});
