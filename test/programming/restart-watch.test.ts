// Generations start again when a node restarts, under a new epoch: a watcher resuming
// from a generation of the old epoch gets a snapshot, not the new node's later changes
// read as if they followed its old ones.
import { afterAll, describe, expect, it } from 'vitest';
import { FibClient } from '../../src/programming/client.js';
import type { WatchEvent } from '../../src/programming/watch.js';
import { api, cleanup, freePort, start, tempDir } from '../e2e/harness.js';

async function take(client: FibClient, since: number, epoch: number, until: (e: WatchEvent) => boolean): Promise<WatchEvent[]> {
  const got: WatchEvent[] = [];
  for await (const e of client.watch(since, epoch)) {
    got.push(e);
    if (until(e)) break;
  }
  return got;
}

describe('Watch across a node restart', () => {
  afterAll(cleanup);

  it('answers a generation of an earlier epoch with a snapshot', async () => {
    const dir = await tempDir();
    const port = await freePort();
    const args = ['--fib-api', `127.0.0.1:${port}`];
    let node = await start('node', args, dir);
    const push = (prefix: string) => api(node.url, 'POST', '/v1/fib/batches', { auth: node.token, body: { ops: [{ op: 'upsert', prefix, nextHops: [{ id: 'peer:r' }] }] } });
    expect((await push('/capability/r/kept')).status).toBe(200);
    let client = new FibClient({ address: node.fibApi!, key: node.token });
    const before = await take(client, 0, 0, (e) => e.type === 'end_of_snapshot');
    const end = before.at(-1)! as Extract<WatchEvent, { type: 'end_of_snapshot' }>;
    expect(end.epoch).toBeGreaterThan(0);
    // The same epoch and generation resume with nothing old.
    expect((await push('/capability/r/next')).status).toBe(200);
    const resumed = await take(client, end.generation, end.epoch!, (e) => e.type === 'entry');
    expect(resumed.map((e) => e.type === 'entry' && e.prefix)).toEqual(['/capability/r/next']);
    client.close();

    await node.stop();
    node = await start('node', args, dir);
    // The new node's generations pass the old one, so it could be read as a resume.
    for (let i = 0; i < end.generation + 2; i++) expect((await push(`/capability/r/new${i}`)).status).toBe(200);
    client = new FibClient({ address: node.fibApi!, key: node.token });
    const after = await take(client, end.generation, end.epoch!, (e) => e.type === 'end_of_snapshot');
    client.close();
    const last = after.at(-1)! as Extract<WatchEvent, { type: 'end_of_snapshot' }>;
    expect(last.type).toBe('end_of_snapshot');
    expect(last.epoch).not.toBe(end.epoch);
    const prefixes = after.filter((e) => e.type === 'entry').map((e) => e.type === 'entry' && e.prefix);
    expect(prefixes).toEqual(expect.arrayContaining(['/capability/r/kept', '/capability/r/next', '/capability/r/new0']));
  });
});
