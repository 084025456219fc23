// The embedded store's durable writes: a small write alone is committed in place, and
// never ahead of a transaction still waiting on the write thread, so commits keep the
// order they were asked for.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../../src/store/store.js';

let dir: string | undefined;
let store: Store | undefined;

afterEach(async () => {
  await store?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  store = undefined;
  dir = undefined;
});

async function open(): Promise<Store> {
  dir = await mkdtemp(join(tmpdir(), 'dmsc-store-'));
  store = Store.open(dir);
  return store;
}

describe('Store.durable', () => {
  it('commits an inline write before it returns, when nothing waits on the write thread', async () => {
    const s = await open();
    const db = s.db<number>('t');
    const done = s.durable(() => void db.put('k', 1), { inline: true });
    expect(db.get('k')).toBe(1);
    await done;
  });

  it('puts an inline write behind a transaction still waiting, so the later write wins', async () => {
    const s = await open();
    const db = s.db<string>('t');
    for (let round = 0; round < 20; round++) {
      const first = s.durable(() => void db.put('a', `first ${round}`));
      const second = s.durable(() => void db.put('a', `second ${round}`), { inline: true });
      // Not committed in place: the first has not committed yet.
      expect(db.get('a')).not.toBe(`second ${round}`);
      await Promise.all([first, second]);
      expect(db.get('a')).toBe(`second ${round}`);
    }
  });

  it('refuses writes once closed, inline or not', async () => {
    const s = await open();
    await s.close();
    await expect(s.durable(() => {}, { inline: true })).rejects.toMatchObject({ code: 'ERR_DMSC_CLOSED' });
    await expect(s.durable(() => {})).rejects.toMatchObject({ code: 'ERR_DMSC_CLOSED' });
  });
});

describe('Store.durable, many writes at once', () => {
  it('commits at most one write in place a turn of the event loop; the others wait, in order', async () => {
    const s = await open();
    const db = s.db<string>('t');
    const writes = Array.from({ length: 5 }, (_, i) => s.durable(() => void db.put('k', `w${i}`), { inline: true }));
    expect(db.get('k')).toBe('w0');
    await Promise.all(writes);
    expect(db.get('k')).toBe('w4');
    // A later turn commits in place again.
    await new Promise((r) => setImmediate(r));
    const later = s.durable(() => void db.put('k', 'later'), { inline: true });
    expect(db.get('k')).toBe('later');
    await later;
  });
});
