// Failed authentication against a real node: a flood of forged bearer tokens from one
// address (test/e2e/flood.mjs, its own process, on 127.0.0.2) is throttled (429 with
// retry-after, each answer held up to a second) on the API and on the data plane, whose
// native relay tells the node who the requester is; meanwhile a legitimate client on
// 127.0.0.1 keeps its median latency within twice what it was idle.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, cleanup, cleanEnv, register, start, startScript, type Proc } from './harness.js';

const FLOOD = new URL('./flood.mjs', import.meta.url).pathname;
const UPSTREAM = new URL('./upstream.mjs', import.meta.url).pathname;

/** The median of `n` sequential calls' latencies, in ms. */
async function median(n: number, call: () => Promise<number>): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const status = await call();
    ms.push(performance.now() - t0);
    expect(status).toBe(200);
  }
  return ms.sort((a, b) => a - b)[n >> 1]!;
}

function flood(args: string[]): Promise<{ stop(): Promise<Record<string, number>> }> {
  const child: ChildProcess = spawn(process.execPath, [FLOOD, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: cleanEnv() });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return lines.next().then(() => ({
    async stop() {
      child.kill('SIGTERM');
      const counts = await lines.next();
      return JSON.parse(String(counts.value)) as Record<string, number>;
    },
  }));
}

describe('failed authentication', () => {
  let node: Proc;
  let agent: { aic: string; credential: string };
  let kid: string;

  beforeAll(async () => {
    node = await start('node', ['--heartbeat-ms', '600000']);
    const key = await addProvider(node, 'acme', ['/capability/**']);
    const echo = await startScript<{ port: number }>(UPSTREAM, ['--name', 'echo']);
    agent = await register(node, key, [{ name: '/capability/echo' }], `http://127.0.0.1:${echo.info.port}`);
    kid = JSON.parse(Buffer.from(agent.credential.split('.')[0]!, 'base64url').toString()).kid;
  });
  afterAll(cleanup);

  for (const [surface, path, method] of [['API', '/v1/agents/AIC/heartbeat', 'POST'], ['data plane', '/capability/echo/x', 'GET']] as const) {
    it(`throttles a flood of forged tokens on the ${surface}, and a legitimate client's median stays within twice idle`, async () => {
      const url = surface === 'API' ? node.url : node.dataplane!;
      const target = path.replace('AIC', agent.aic);
      const call = async () => {
        const r = await request(`${url}${target}`, { method, headers: { authorization: `Bearer ${agent.credential}`, 'content-type': 'application/json' }, ...(method === 'POST' ? { body: '{}' } : {}) });
        await r.body.dump();
        return r.statusCode;
      };
      await median(50, call);
      const idle = await median(200, call);
      const f = await flood(['--url', url, '--path', target, '--method', method, '--from', '127.0.0.2', '--connections', '32', '--kind', 'forged', '--kid', kid]);
      // Past the burst the flood is throttled; measure the legitimate client meanwhile.
      await new Promise((r) => setTimeout(r, 1000));
      const loaded = await median(200, call);
      // The throttled address is told when to come back, yet gets through at once with a
      // credential already proved; another address is not throttled.
      const from = (auth: string, localAddress?: string) => new Promise<{ status: number; retryAfter: number; ms: number }>((resolve, reject) => {
        const t0 = performance.now();
        const u = new URL(url);
        const r = httpRequest({ host: u.hostname, port: u.port, path: target, method, ...(localAddress ? { localAddress } : {}), headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, retryAfter: Number(res.headers['retry-after'] ?? 0), ms: performance.now() - t0 }));
        });
        r.on('error', reject);
        r.end(method === 'POST' ? '{}' : undefined);
      });
      const throttled = '127.0.0.2';
      const proved = await from(agent.credential, throttled);
      expect(proved.status).toBe(200);
      expect(proved.ms).toBeLessThan(500);
      // The flood takes nearly every failure the address earns back: ours is held and
      // refused, if not on the first try then on one of the next.
      let told = await from('forged', throttled);
      for (let i = 0; i < 10 && told.status !== 429; i++) told = await from('forged', throttled);
      expect([told.status, told.retryAfter >= 1]).toEqual([429, true]);
      expect((await from('forged')).status).toBe(401);
      const counts = await f.stop();
      expect(counts['429'], JSON.stringify(counts)).toBeGreaterThan(0);
      expect(loaded, `idle median ${idle.toFixed(3)} ms, under the flood ${loaded.toFixed(3)} ms (${JSON.stringify(counts)})`).toBeLessThanOrEqual(2 * idle);
    }, 60_000);
  }

  it('counts a requester\'s failures against its own address, whatever x-dmsc-from it writes, through the relay', async () => {
    const u = new URL(node.dataplane!);
    // One kept-alive connection from 127.0.0.3: a chunked request first (with the agent's
    // own credential, so the connection stays open), which makes the relay hand the whole
    // connection over, then forged tokens each claiming to come from 127.0.0.4.
    const agentFrom3 = new HttpAgent({ keepAlive: true, maxSockets: 1, localAddress: '127.0.0.3' } as never);
    const send = (headers: Record<string, string>, body?: string, localAgent: HttpAgent = agentFrom3) => new Promise<number>((resolve, reject) => {
      const r = httpRequest({ host: u.hostname, port: u.port, path: '/capability/echo/x', method: body === undefined ? 'GET' : 'POST', agent: localAgent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      r.on('error', reject);
      if (body !== undefined) r.write(body);
      r.end();
    });
    const spoof = { authorization: 'Bearer forged', 'x-dmsc-from': '127.0.0.4' };
    expect(await send({ authorization: `Bearer ${agent.credential}`, 'x-dmsc-from': '127.0.0.4', 'transfer-encoding': 'chunked' }, 'x')).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 24; i++) statuses.push(await send(spoof));
    agentFrom3.destroy();
    // The burst, then throttled: at most one failure is let by for each one earned back
    // (5 a second), the rest are held and 429.
    expect(statuses.slice(0, 20).every((st) => st === 401), statuses.join()).toBe(true);
    expect(statuses.slice(20), statuses.join()).toContain(429);
    // 127.0.0.4, whose address was claimed, is not throttled.
    const agentFrom4 = new HttpAgent({ localAddress: '127.0.0.4' } as never);
    expect(await send({ authorization: 'Bearer forged' }, undefined, agentFrom4)).toBe(401);
    agentFrom4.destroy();
  }, 60_000);
});
