// Failed authentication against a real node: a flood of forged bearer tokens from one
// address (test/e2e/flood.mjs, its own process, on 127.0.0.2) is throttled (429 with
// retry-after, each answer held up to a second) on the API and on the data plane, whose
// native relay tells the node who the requester is; meanwhile a legitimate client on
// 127.0.0.1 keeps its median latency within twice what it was idle.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { request as httpRequest } from 'node:http';
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
      // The flood takes every failure the address earns back, so ours is all but sure to be held and refused.
      const told = await from('forged', throttled);
      expect([told.status, told.retryAfter >= 1]).toEqual([429, true]);
      expect((await from('forged')).status).toBe(401);
      const counts = await f.stop();
      expect(counts['429'], JSON.stringify(counts)).toBeGreaterThan(0);
      expect(loaded, `idle median ${idle.toFixed(3)} ms, under the flood ${loaded.toFixed(3)} ms (${JSON.stringify(counts)})`).toBeLessThanOrEqual(2 * idle);
    }, 60_000);
  }
});
