// `dmsc node` as a real process on loopback: health, readiness, FIB inspection with the
// admin token, typed errors, clean shutdown.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { cleanEnv } from '../e2e/harness.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;

interface Running {
  proc: ChildProcessWithoutNullStreams;
  base: string;
  token: string;
  /** Every stdout line after the first. */
  output: string[];
}

async function startNode(dir: string, extra: string[]): Promise<Running> {
  // With the hints: this test reads them.
  const { DMSC_HINTS: _, ...env } = cleanEnv();
  const proc = spawn(process.execPath, [CLI, 'node', '--id', 'test-node', '--data', join(dir, 'data'), '--api', '127.0.0.1:0', '--peering', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', ...extra], { env });
  const lines = createInterface({ input: proc.stdout });
  const output: string[] = [];
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', (line) => {
      lines.on('line', (l) => output.push(l));
      resolve(line);
    });
    proc.once('exit', (code) => reject(new Error(`node exited with ${code}`)));
  });
  const started = JSON.parse(first) as { msg: string; api: string };
  expect(started.msg).toBe('listening');
  const token = (await readFile(join(dir, 'data', 'admin-token'), 'utf8')).trim();
  return { proc, base: `http://${started.api}`, token, output };
}

describe('dmsc node', () => {
  let dir: string;
  let node: Running;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmsc-node-'));
    await writeFile(join(dir, 'fib.json'), JSON.stringify([
      { op: 'upsert', prefix: '/capability/ocr', nextHops: [{ id: 'ag1/a', tags: ['gdpr'] }] },
      { op: 'upsert', prefix: '/capability/asr', nextHops: [{ id: 'ag1/b' }] },
      { op: 'upsert', prefix: '/other', nextHops: [{ id: 'ag1/c' }] },
    ]));
    node = await startNode(dir, ['--fib', join(dir, 'fib.json')]);
  });

  afterAll(async () => {
    if (node?.proc.exitCode === null) node.proc.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('prints, after where it listens, how to register a first agent', async () => {
    const deadline = Date.now() + 5000;
    while (!node.output.some((l) => l.includes('/v1/agents')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const text = node.output.join('\n');
    expect(text).toContain(`dmsc node test-node is up on ${node.base}`);
    expect(text).toContain(`dmsc provider add acme --scope '/capability/ocr/**' --url ${node.base} --data ${join(dir, 'data')}`);
    expect(text).toContain(`curl -s -X POST ${node.base}/v1/agents -H "authorization: Bearer <provider key>"`);
  });

  it('answers health and readiness', async () => {
    expect(await (await fetch(`${node.base}/healthz`)).json()).toEqual({ status: 'ok', node: 'test-node' });
    const ready = await fetch(`${node.base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', size: 3, generation: 1 });
  });

  it('keeps the admin token private and requires it for the FIB', async () => {
    expect((await stat(join(dir, 'data', 'admin-token'))).mode & 0o077).toBe(0);
    const denied = await fetch(`${node.base}/v1/fib`);
    expect(denied.status).toBe(401);
    expect(await denied.json()).toEqual({ error: { code: 'ERR_DMSC_UNAUTHORIZED', message: expect.any(String) } });
    const wrong = await fetch(`${node.base}/v1/fib`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
  });

  it('lists FIB entries under a prefix', async () => {
    const auth = { authorization: `Bearer ${node.token}` };
    const res = await fetch(`${node.base}/v1/fib?prefix=/capability`, { headers: auth });
    expect(res.status).toBe(200);
    const body = await res.json() as { entries: Array<{ prefix: string }>; size: number; truncated: boolean };
    expect(body.entries.map((e) => e.prefix)).toEqual(['/capability/asr', '/capability/ocr']);
    expect(body).toMatchObject({ size: 3, truncated: false });
    const one = await (await fetch(`${node.base}/v1/fib?limit=1`, { headers: auth })).json() as { entries: unknown[]; truncated: boolean };
    expect(one.entries).toHaveLength(1);
    expect(one.truncated).toBe(true);
    const exact = await (await fetch(`${node.base}/v1/fib?limit=3`, { headers: auth })).json() as { entries: unknown[]; truncated: boolean };
    expect([exact.entries.length, exact.truncated]).toEqual([3, false]);
  });

  it('rejects bad queries and unknown routes with typed JSON errors', async () => {
    const auth = { authorization: `Bearer ${node.token}` };
    for (const q of ['limit=0', 'limit=abc', 'unknown=1']) {
      const res = await fetch(`${node.base}/v1/fib?${q}`, { headers: auth });
      expect(res.status, q).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('ERR_DMSC_INVALID_ARGUMENT');
    }
    const missing = await fetch(`${node.base}/v1/nothing`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('ERR_DMSC_NOT_FOUND');
  });

  it('stops cleanly on SIGTERM and keeps its admin token across restarts', async () => {
    const exited = new Promise<number | null>((r) => node.proc.once('exit', r));
    node.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    const again = await startNode(dir, []);
    expect(again.token).toBe(node.token);
    const res = await fetch(`${again.base}/readyz`);
    expect(await res.json()).toMatchObject({ size: 0 });
    const done = new Promise((r) => again.proc.once('exit', r));
    again.proc.kill('SIGTERM');
    await done;
  });

  it('refuses a bad FIB file with a typed error and a non-zero exit', async () => {
    await writeFile(join(dir, 'bad.json'), JSON.stringify([{ op: 'upsert', prefix: '/a//b', nextHops: [{ id: 'x' }] }]));
    const proc = spawn(process.execPath, [CLI, 'node', '--data', join(dir, 'data2'), '--api', '127.0.0.1:0', '--peering', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', '--fib', join(dir, 'bad.json')]);
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((r) => proc.once('exit', r));
    expect(code).toBe(1);
    expect(stderr).toContain('ERR_DMSC_INVALID_NAME');
  });
});
