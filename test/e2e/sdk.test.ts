// The agent SDK against real node processes: heartbeats carry the load, the credential
// is renewed before it expires, a node restart is survived (the same registration when
// the node kept its state, a new one when it lost it), close deregisters, and an agent
// that has closed leaves nothing behind that keeps the process alive.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/index.js';
import { addProvider, api, cleanup, dmsc, freePort, start, startScript, tempDir, waitFor, type Proc } from './harness.js';

describe('agent SDK lifecycle', () => {
  let amc: Proc;
  let node: Proc;
  let key: string;
  let args: string[];
  const events: string[] = [];
  let agent: Agent;
  let load = 0.4;

  beforeAll(async () => {
    // Credentials live 6 s: short enough to see renewals, long enough to outlive a node
    // restart on a loaded machine (a start takes up to 3 s here).
    amc = await start('amc', ['--domain', 'edge', '--credential-ttl', '6']);
    const keys = await tempDir();
    await writeFile(join(keys, 'n1'), dmsc('amc', 'gateway', 'add', 'n1', '--url', amc.url, '--data', amc.dataDir).stdout);
    key = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    // A fixed API port, so the agent finds the node again after a restart.
    args = ['--id', 'n1', '--amc', amc.url, '--amc-key-file', join(keys, 'n1'), '--heartbeat-ms', '100', '--api', `127.0.0.1:${await freePort()}`];
    node = await start('node', args);
    agent = new Agent({ node: node.url, providerKey: key, name: 'worker', load: () => load });
    agent.serve('/capability/sdk/work', { request: () => ({ ok: true }) });
    for (const e of ['registered', 'reregistered', 'renewed', 'unreachable', 'reachable']) agent.on(e, () => events.push(e));
    await agent.start();
  });

  afterAll(async () => {
    await agent.close();
    await cleanup();
  });

  const health = async () => (await api(node.url, 'GET', `/v1/agents/${agent.aic}`, { auth: node.token })).body.health;

  it('heartbeats with its load and state', async () => {
    expect(agent.state).toBe('registered');
    await waitFor(async () => (await health()).load === 0.4);
    load = 0.7;
    agent.setHealth('degraded');
    await waitFor(async () => {
      const h = await health();
      return h.load === 0.7 && h.state === 'degraded';
    });
    agent.setHealth('up');
    await waitFor(async () => (await health()).state === 'up');
  });

  it('renews its credential before it expires and stays up past the first one', async () => {
    const first = agent.credential;
    const firstExp = JSON.parse(Buffer.from(first!.split('.')[1]!, 'base64url').toString()).exp * 1000;
    await waitFor(() => events.includes('renewed'), 10_000);
    expect(agent.credential).not.toBe(first);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExp - Date.now()) + 300));
    // Heartbeats with the renewed credential still land.
    const seen = Date.parse((await health()).lastHeartbeat);
    await waitFor(async () => Date.parse((await health()).lastHeartbeat) > seen);
    expect((await health()).state).toBe('up');
  });

  it('survives a node restart: the same registration when the node kept its state', async () => {
    const aic = agent.aic;
    // The restart starts right after a renewal, so the credential the agent holds outlives
    // it (one that expired meanwhile would rightly be registered again).
    const renewals = events.filter((e) => e === 'renewed').length;
    await waitFor(() => events.filter((e) => e === 'renewed').length > renewals, 10_000);
    await node.kill9();
    await waitFor(() => agent.state === 'unreachable');
    node = await start('node', args, node.dataDir);
    await waitFor(() => agent.state === 'registered' && events.includes('reachable'), 10_000);
    expect(agent.aic).toBe(aic);
    await waitFor(async () => (await health()).state === 'up');
  });

  it('registers again when the node lost its state', async () => {
    await node.kill9();
    node = await start('node', args);
    expect((await api(node.url, 'GET', `/v1/agents/${agent.aic}`, { auth: node.token })).status).toBe(404);
    await waitFor(() => events.includes('reregistered'), 8000);
    await waitFor(async () => (await health())?.state === 'up');
  });

  it('deregisters on close', async () => {
    const aic = agent.aic!;
    await agent.close();
    expect(agent.state).toBe('closed');
    expect((await api(node.url, 'GET', `/v1/agents/${aic}`, { auth: node.token })).status).toBe(404);
    await expect(agent.resolve('/capability/sdk/work')).rejects.toMatchObject({ code: 'ERR_DMSC_NOT_READY' });
  });
});

describe('agent SDK resources', () => {
  afterAll(cleanup);

  it('releases every timer and socket on close: the process ends by itself with nothing left active', async () => {
    const node = await start('node', []);
    const key = await addProvider(node, 'leak', ['/capability/leak/**']);
    const child = await startScript(new URL('./sdk-leak.mjs', import.meta.url).pathname, [node.url, node.dataplane!, key]);
    expect(child.info).toEqual({ answer: { echo: { hello: 1 } }, echoed: { ping: 1 }, state: 'closed', left: [], sockets: 0 });
    const code = await new Promise<number | null>((resolve) => {
      if (child.child.exitCode !== null) return resolve(child.child.exitCode);
      const t = setTimeout(() => resolve(null), 10_000);
      child.child.once('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    expect(code).toBe(0);
  });

  it('refuses bad options and calls with typed errors', async () => {
    expect(() => new Agent({ node: 'ftp://x', providerKey: 'k' })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_ARGUMENT' }));
    expect(() => new Agent({ node: 'http://127.0.0.1:1', providerKey: '' })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_ARGUMENT' }));
    const a = new Agent({ node: 'http://127.0.0.1:1', providerKey: 'k' });
    expect(() => a.serve('no/slash', { request: () => 1 })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_NAME' }));
    expect(() => a.serve('/capability/x', {})).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_ARGUMENT' }));
    await expect(a.resolve('/capability/x')).rejects.toMatchObject({ code: 'ERR_DMSC_NOT_READY' });
    a.serve('/capability/x', { request: () => 1 });
    // No node there: start fails, and leaves nothing open.
    await expect(a.start()).rejects.toMatchObject({ code: 'ERR_DMSC_NOT_READY' });
    expect(a.state).toBe('closed');
  });
});
