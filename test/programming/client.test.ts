// FibClient and `dmsc fib push|get|watch` against real nodes: entries pushed and read
// back, pipelined batches answered in order, a bad op named by its index (and a bad file
// line by its number), a watch seeing changes, Replace and Flush, refused keys and
// unreachable nodes; and a node killed with a batch on the stream and restarted on the
// same data and port, after which the client is back in sync by itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FibClient, type BatchResult, type FibClientEntry, type FibClientOp, type WatchEvent } from '../../src/programming/client.js';
import { api, CLI, cleanEnv, cleanup, dmsc, freePort, start, tempDir, waitFor, type Proc } from '../e2e/harness.js';

/** A controller key for `name` (admin API). */
async function controllerKey(node: Proc, name: string): Promise<string> {
  const r = await api(node.url, 'POST', '/v1/controllers', { auth: node.token, body: { name, scopes: ['/**'] } });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  expect(r.body).toMatchObject({ name, scopes: ['/**'] });
  return r.body.key as string;
}

const upsert = (prefix: string, id = 'peer:gw2'): FibClientOp => ({ op: 'upsert', prefix, nextHops: [{ id }] });

async function entries(fib: FibClient, controllerId?: string): Promise<FibClientEntry[]> {
  const out: FibClientEntry[] = [];
  for await (const e of fib.get(controllerId)) out.push(e);
  return out.sort((a, b) => (a.prefix < b.prefix ? -1 : 1));
}
const prefixes = (list: { prefix: string }[]) => list.map((e) => e.prefix).sort();

/** The next event of a watch that matches, within `ms`. */
async function next(it: AsyncIterator<WatchEvent>, match: (e: WatchEvent) => boolean, ms = 5000): Promise<WatchEvent> {
  const deadline = Date.now() + ms;
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([it.next(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no matching watch event in time')), deadline - Date.now())))]);
    clearTimeout(timer);
    if (r.done) throw new Error('the watch ended');
    if (match(r.value)) return r.value;
  }
}

describe('FibClient', () => {
  let node: Proc;
  let key: string;
  const clients: FibClient[] = [];
  const client = (extra: Partial<ConstructorParameters<typeof FibClient>[0]> = {}) => {
    const c = new FibClient({ address: node.fibApi!, key, ...extra });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    node = await start('node');
    key = await controllerKey(node, 'te');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await cleanup();
  });

  it('pushes entries, reads them back with get, and flushes them', async () => {
    const fib = client();
    const opened = await fib.open();
    expect(opened).toMatchObject({ primary: true, controllerId: 'te' });
    expect(opened.limits.window).toBeGreaterThan(0);
    expect(opened.limits.maxOpsPerBatch).toBeGreaterThan(0);
    const r = await fib.modify([
      { op: 'upsert', prefix: '/capability/te/a', nextHops: [{ id: 'peer:gw2', weight: 50, priority: 1, tags: ['eu'] }] },
      { op: 'upsert', prefix: '/capability/te/b', nextHops: [{ id: 'svc-b', endpoint: 'http://127.0.0.1:9' }] },
    ]);
    expect(r).toMatchObject({ status: 'VISIBLE', errors: [], message: '' });
    expect(r.generation).toBeGreaterThan(opened.generation);
    expect(r.fibGeneration).toBeGreaterThan(opened.fibGeneration);
    const got = await entries(fib);
    expect(got).toHaveLength(2);
    expect(got[0]).toEqual({ prefix: '/capability/te/a', nextHops: [{ id: 'peer:gw2', weight: 50, priority: 1, tags: ['eu'] }] });
    expect(got[1]).toMatchObject({ prefix: '/capability/te/b', nextHops: [{ id: 'svc-b', endpoint: expect.stringContaining('127.0.0.1:9') }] });
    expect(got[1]!.nextHops[0]).not.toHaveProperty('weight');
    expect(fib.held).toBe(2);

    const flushed = await fib.flush();
    expect(flushed.removed).toBe(2);
    expect(flushed.generation).toBeGreaterThan(r.generation);
    expect(await entries(fib)).toEqual([]);
    expect(fib.held).toBe(0);
    fib.close();
    await expect(fib.modify([upsert('/capability/te/late')])).rejects.toMatchObject({ code: 'ERR_DMSC_CLOSED' });
  });

  it('pipelines more batches than the window, answered in order, one result each', async () => {
    const fib = client();
    const { limits } = await fib.open();
    const n = limits.window * 3 + 7;
    const order: number[] = [];
    const results = await Promise.all(Array.from({ length: n }, (_, i) => fib.modify([upsert(`/capability/te/p/${i}`)]).then((r) => {
      order.push(i);
      return r;
    })));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(results.every((r) => r.status === 'VISIBLE')).toBe(true);
    for (let i = 1; i < n; i++) {
      expect(results[i]!.seq).toBeGreaterThan(results[i - 1]!.seq);
      expect(results[i]!.generation).toBe(results[i - 1]!.generation + 1);
    }
    expect((await entries(fib)).filter((e) => e.prefix.startsWith('/capability/te/p/'))).toHaveLength(n);
    await fib.flush();
    fib.close();
  });

  it('names a bad op by its index and applies nothing of its batch', async () => {
    const fib = client();
    await fib.open();
    const r = await fib.modify([upsert('/capability/te/good'), upsert('capability/te/no-slash'), { op: 'remove', prefix: '/capability/te/x' }]);
    expect(r.status).toBe('REJECTED');
    expect(r.errors[0]).toMatchObject({ opIndex: 1, code: 'ERR_DMSC_INVALID_NAME' });
    expect(prefixes(await entries(fib))).not.toContain('/capability/te/good');
    expect(fib.held).toBe(0);
    // What the wire would drop silently is refused before anything is sent.
    await expect(fib.modify([{ op: 'upsert', prefix: '/capability/te/y', nextHops: [{ id: 'peer:gw2', wieght: 5 } as never] }]))
      .rejects.toMatchObject({ code: 'ERR_DMSC_INVALID_ARGUMENT', message: expect.stringMatching(/ops\[0\]: nextHops\[0\] has unknown field 'wieght'/) });
    await expect(fib.modify([{ op: 'health', nextHopId: 'x', state: 'sideways' } as never])).rejects.toMatchObject({ code: 'ERR_DMSC_INVALID_ARGUMENT' });
    fib.close();
  });

  it('watches entry and health changes after a snapshot', async () => {
    const fib = client();
    await fib.open();
    await fib.modify([upsert('/capability/te/before')]);
    const it = fib.watch(0)[Symbol.asyncIterator]();
    const snapshot: WatchEvent[] = [];
    const end = await next(it, (e) => (snapshot.push(e), e.type === 'end_of_snapshot'));
    expect(snapshot.some((e) => e.type === 'entry' && e.prefix === '/capability/te/before')).toBe(true);
    const r = await fib.modify([{ op: 'upsert', prefix: '/capability/te/watched', nextHops: [{ id: 'svc-w', endpoint: 'http://127.0.0.1:9', weight: 7 }] }]);
    const change = await next(it, (e) => e.type === 'entry' && e.prefix === '/capability/te/watched');
    expect(change).toMatchObject({ type: 'entry', removed: false, nextHops: [{ id: 'svc-w', weight: 7, state: 'up' }] });
    expect(change.generation).toBeGreaterThan(end.generation);
    expect(change.generation).toBeLessThanOrEqual(r.fibGeneration);
    expect((await fib.modify([{ op: 'health', nextHopId: 'svc-w', state: 'down' }])).status).toBe('VISIBLE');
    expect(await next(it, (e) => e.type === 'health')).toMatchObject({ type: 'health', nextHopId: 'svc-w', state: 'down' });
    await fib.modify([{ op: 'remove', prefix: '/capability/te/watched' }]);
    expect(await next(it, (e) => e.type === 'entry' && e.prefix === '/capability/te/watched')).toMatchObject({ removed: true });
    await it.return!(undefined);
    await fib.flush();
    fib.close();
  });

  it('replaces the whole table from batches, staged one by one', async () => {
    const fib = client();
    await fib.open();
    await fib.modify([upsert('/capability/te/old1'), upsert('/capability/te/old2')]);
    const staged: BatchResult[] = [];
    async function* batches() {
      yield [upsert('/capability/te/r/1'), upsert('/capability/te/r/2')];
      yield [upsert('/capability/te/r/3'), { op: 'remove', prefix: '/capability/te/r/2' } as const];
    }
    const r = await fib.replace(batches(), { onBatch: (b) => staged.push(b) });
    expect(staged.map((b) => b.status)).toEqual(['STAGED', 'STAGED']);
    expect(r.status).toBe('VISIBLE');
    expect(prefixes(await entries(fib))).toEqual(['/capability/te/r/1', '/capability/te/r/3']);
    expect(fib.held).toBe(2);
    // A batch sent while a Replace is being queued goes after its end.
    const during = fib.replace([[upsert('/capability/te/r/9')]]);
    const after = fib.modify([upsert('/capability/te/r/10')]);
    expect((await during).status).toBe('VISIBLE');
    expect((await after).status).toBe('VISIBLE');
    expect(prefixes(await entries(fib))).toEqual(['/capability/te/r/10', '/capability/te/r/9']);
    await fib.flush();
    fib.close();
  });

  it('drops a Replace whose batches fail, reopens and resyncs, and carries on', async () => {
    const fib = client();
    await fib.open();
    await fib.modify([upsert('/capability/te/kept')]);
    async function* failing() {
      yield [upsert('/capability/te/staged')];
      await new Promise((r) => setTimeout(r, 50));
      throw new Error('the source failed');
    }
    const resynced = once(fib, 'resync') as Promise<[BatchResult]>;
    await expect(fib.replace(failing())).rejects.toThrow('the source failed');
    expect((await resynced)[0].status).toBe('VISIBLE');
    expect((await fib.modify([upsert('/capability/te/after')])).status).toBe('VISIBLE');
    expect(prefixes(await entries(fib))).toEqual(['/capability/te/after', '/capability/te/kept']);
    await fib.flush();
    fib.close();
  });

  it('refuses a bad key and reports an unreachable node, with typed errors', async () => {
    await expect(client({ key: 'not-a-key' }).open()).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED', message: expect.stringContaining(node.fibApi!) });
    const nobody = `127.0.0.1:${await freePort()}`;
    await expect(client({ address: nobody }).open()).rejects.toMatchObject({ code: 'ERR_DMSC_UNAVAILABLE', message: expect.stringContaining(nobody) });
    const gets = client({ key: 'not-a-key' }).get();
    await expect(gets.next()).rejects.toMatchObject({ code: 'ERR_DMSC_UNAUTHORIZED' });
    expect(() => new FibClient({ address: node.fibApi!, key, electionId: 1n << 128n })).toThrow(/electionId/);
    await expect(client().modify([])).rejects.toMatchObject({ code: 'ERR_DMSC_NOT_READY' });
  });
});

describe('dmsc fib push|get|watch', () => {
  let node: Proc;
  let dir: string;
  let keyFile: string;
  const watchers: ChildProcess[] = [];
  const conn = () => ['--fib-api', node.fibApi!, '--key-file', keyFile];

  beforeAll(async () => {
    node = await start('node');
    dir = await tempDir();
    keyFile = join(dir, 'cli.key');
    await writeFile(keyFile, (await controllerKey(node, 'cli')) + '\n');
  });
  afterAll(async () => {
    for (const w of watchers) w.kill('SIGKILL');
    await cleanup();
  });

  const lines = (stdout: string) => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));

  it('pushes JSON lines in pipelined batches and gets them back', async () => {
    const file = join(dir, 'routes.jsonl');
    const n = 2500;
    await writeFile(file, Array.from({ length: n }, (_, i) => JSON.stringify({ op: 'upsert', prefix: `/capability/cli/${i}`, nextHops: [{ id: `peer:gw${i % 3}`, weight: 10 }] })).join('\n') + '\n');
    const r = dmsc('fib', 'push', file, ...conn());
    expect(r.status, r.stderr).toBe(0);
    const [summary] = lines(r.stdout);
    expect(summary).toMatchObject({ entries: n, batches: 3, failed: 0, errors: [] });
    expect(summary.entriesPerSecond).toBeGreaterThan(0);
    const got = dmsc('fib', 'get', ...conn());
    expect(got.status, got.stderr).toBe(0);
    const listed = lines(got.stdout);
    expect(listed).toHaveLength(n);
    expect(listed.find((e) => e.prefix === '/capability/cli/7')).toEqual({ prefix: '/capability/cli/7', nextHops: [{ id: 'peer:gw1', weight: 10 }] });
  });

  it('replaces the table from a JSON array (the --fib file format), with the admin token', async () => {
    const file = join(dir, 'table.json');
    await writeFile(file, JSON.stringify([upsert('/capability/cli/only'), upsert('/capability/cli/too', 'peer:gw9')], null, 2));
    const r = dmsc('fib', 'push', file, '--replace', '--fib-api', node.fibApi!, '--data', node.dataDir, '--controller', 'cli');
    expect(r.status, r.stderr).toBe(0);
    expect(lines(r.stdout)[0]).toMatchObject({ replace: { status: 'VISIBLE' }, entries: 2, batches: 1, failed: 0 });
    expect(prefixes(lines(dmsc('fib', 'get', ...conn()).stdout))).toEqual(['/capability/cli/only', '/capability/cli/too']);
  });

  it('names a bad line, and the line of an op the node refused', async () => {
    const bad = join(dir, 'bad.jsonl');
    await writeFile(bad, `${JSON.stringify(upsert('/capability/cli/l1'))}\n\n{"op":"upsert",\n`);
    const r = dmsc('fib', 'push', bad, ...conn());
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ERR_DMSC_INVALID_ARGUMENT: .*bad\.jsonl line 3: not JSON/);
    const typo = join(dir, 'typo.jsonl');
    await writeFile(typo, `${JSON.stringify(upsert('/capability/cli/l1'))}\n{"op":"upsert","prefix":"/capability/cli/l2","nextHops":[{"id":"peer:x","wieght":1}]}\n`);
    expect(dmsc('fib', 'push', typo, ...conn()).stderr).toMatch(/typo\.jsonl line 2: nextHops\[0\] has unknown field 'wieght'/);
    // With --replace, batches already staged are dropped with the session: nothing changes.
    const before = prefixes(lines(dmsc('fib', 'get', ...conn()).stdout));
    const late = join(dir, 'late.jsonl');
    await writeFile(late, [...Array.from({ length: 6 }, (_, i) => JSON.stringify(upsert(`/capability/cli/late/${i}`))), '{"op":"remove"}'].join('\n'));
    const rep = dmsc('fib', 'push', late, '--replace', '--batch', '2', ...conn());
    expect(rep.status).toBe(1);
    expect(rep.stderr).toMatch(/late\.jsonl line 7: prefix must be a string/);
    expect(lines(rep.stdout)[0]).toMatchObject({ replace: null, failed: 0 });
    expect(prefixes(lines(dmsc('fib', 'get', ...conn()).stdout))).toEqual(before);
    const refused = join(dir, 'refused.jsonl');
    await writeFile(refused, [upsert('/capability/cli/ok'), upsert('/capability/cli/x y')].map((o) => JSON.stringify(o)).join('\n'));
    const p = dmsc('fib', 'push', refused, ...conn());
    expect(p.status).toBe(1);
    const [summary] = lines(p.stdout);
    expect(summary).toMatchObject({ entries: 0, batches: 1, failed: 1 });
    expect(summary.errors[0]).toMatchObject({ status: 'REJECTED', from: 'line 1', to: 'line 2', errors: [{ at: 'line 2', code: 'ERR_DMSC_INVALID_NAME' }] });
  });

  it('says so when the key is refused or the node is not there', async () => {
    const wrong = join(dir, 'wrong.key');
    await writeFile(wrong, 'nope\n');
    const r = dmsc('fib', 'get', '--fib-api', node.fibApi!, '--key-file', wrong);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^dmsc: ERR_DMSC_UNAUTHORIZED: /);
    const nobody = `127.0.0.1:${await freePort()}`;
    const u = dmsc('fib', 'push', keyFile, '--fib-api', nobody, '--key-file', keyFile);
    expect(u.status).toBe(1);
    expect(u.stderr).toMatch(new RegExp(`^dmsc: ERR_DMSC_UNAVAILABLE: cannot reach the FIB API at ${nobody}`));
    const e = dmsc('fib', 'push', keyFile, ...conn(), '--election', String(1n << 128n));
    expect(e.stderr).toMatch(/ERR_DMSC_OUT_OF_RANGE: --election/);
    // A session with a higher election id holds the primary: the push says so before sending anything.
    const holder = new FibClient({ address: node.fibApi!, key: node.token, controllerId: 'other', electionId: 5n });
    await holder.open();
    const one = join(dir, 'one.jsonl');
    await writeFile(one, JSON.stringify(upsert('/capability/cli/one')));
    const low = dmsc('fib', 'push', one, ...conn(), '--election', '4');
    expect(low.status).toBe(1);
    expect(low.stderr).toMatch(/^dmsc: ERR_DMSC_NOT_PRIMARY: another session is primary \(election id 5\)/);
    expect(dmsc('fib', 'push', one, ...conn(), '--election', '6').status).toBe(0);
    holder.close();
    const help = dmsc('fib', 'push', '--help');
    expect(help.stdout).toMatch(/--replace/);
    expect(help.stdout).toMatch(/JSON lines/);
  });

  it('watches changes as JSON lines until interrupted', async () => {
    const child = spawn(process.execPath, [CLI, 'fib', 'watch', ...conn()], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
    watchers.push(child);
    const seen: any[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => seen.push(JSON.parse(l)));
    await waitFor(() => seen.some((e) => e.type === 'end_of_snapshot'), 10_000);
    const fib = new FibClient({ address: node.fibApi!, key: node.token, controllerId: 'cli' });
    await fib.open();
    expect((await fib.modify([upsert('/capability/cli/watched')])).status).toBe('VISIBLE');
    fib.close();
    await waitFor(() => seen.some((e) => e.type === 'entry' && e.prefix === '/capability/cli/watched' && !e.removed));
    child.kill('SIGINT');
    await once(child, 'exit');
  });
});

describe('FibClient across a node restart', () => {
  afterAll(cleanup);

  it('rejects the batch on the stream, reconnects, and resyncs the node to what it holds', async () => {
    const port = await freePort();
    const fibApi = ['--fib-api', `127.0.0.1:${port}`];
    let node = await start('node', fibApi);
    const key = await controllerKey(node, 'ctl');
    const fib = new FibClient({ address: `127.0.0.1:${port}`, key });
    try {
      const primary: boolean[] = [];
      fib.on('primary', (p) => primary.push(p.primary));
      await fib.open();
      // keep1 and keep2 share one list of next hops: the second is sent naming it as a
      // group of the batch, and held inline for the resync.
      const via = [{ id: 'peer:gw2' }];
      expect((await fib.modify([{ op: 'upsert', prefix: '/capability/ctl/keep1', nextHops: via }, { op: 'upsert', prefix: '/capability/ctl/keep2', nextHops: via }, upsert('/capability/ctl/gone')])).status).toBe('VISIBLE');

      // Another session of the same controller leaves an entry this client does not hold.
      const dir = await tempDir();
      await writeFile(join(dir, 'key'), key);
      await writeFile(join(dir, 'stale.jsonl'), JSON.stringify(upsert('/capability/ctl/stale')));
      const pushed = dmsc('fib', 'push', join(dir, 'stale.jsonl'), '--fib-api', `127.0.0.1:${port}`, '--key-file', join(dir, 'key'));
      expect(pushed.status, pushed.stderr).toBe(0);
      await waitFor(() => primary.at(-1) === true);
      expect(primary).toEqual([false, true]);

      // A batch on the stream of a node that stops answering, then dies: in doubt.
      const reconnecting = once(fib, 'reconnecting');
      node.child.kill('SIGSTOP');
      const inDoubt = fib.modify([upsert('/capability/ctl/doubt')]);
      inDoubt.catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
      await node.kill9();
      await expect(inDoubt).rejects.toMatchObject({ code: 'ERR_DMSC_UNAVAILABLE', message: expect.stringMatching(/may or may not have been applied/) });
      await reconnecting;

      // While the node is down: a removal waits in the client.
      const removal = fib.modify([{ op: 'remove', prefix: '/capability/ctl/gone' }]);
      const resynced = once(fib, 'resync') as Promise<[BatchResult]>;
      const reopened = once(fib, 'reopened');
      node = await start('node', fibApi, node.dataDir);
      await reopened;
      const [resync] = await resynced;
      expect(resync.status).toBe('VISIBLE');
      expect((await removal).status).toBe('VISIBLE');
      expect(fib.held).toBe(2);
      expect(prefixes(await entries(fib))).toEqual(['/capability/ctl/keep1', '/capability/ctl/keep2']);
      expect(fib.primary).toBe(true);
    } finally {
      fib.close();
    }
  });
});
