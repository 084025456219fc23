// Controller routes in process, over a real ForwardingTable, Directory and Store: a
// controller's next hops sit beside static, agent and other controllers' next hops on the
// same prefix and never remove them; a batch is checked whole (every bad op named) and
// applies all or nothing; persistence (PRESERVE reloads, DELETE goes with the session,
// LEASE outlives it by its lease); the single-primary election; the watch history.
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Directory } from '../../src/directory/directory.js';
import { ForwardingTable } from '../../src/fastpath/forwarding-table.js';
import { immutableList } from '../../src/fastpath/validate.js';
import { formatAic } from '../../src/identity/aic.js';
import { Programming } from '../../src/programming/programming.js';
import type { Persistence } from '../../src/programming/proto.js';
import type { WatchEvent } from '../../src/programming/watch.js';
import { Store } from '../../src/store/store.js';
import {
  ADMIN, admin, agent, apply, as, close, closeAll, ids, newDir, open, peers, remove, removeDirs, sleep, table, upsert, world, worlds, type World,
} from './rib-world.js';

afterEach(closeAll);
afterAll(removeDirs);

describe('controller next hops beside other sources', () => {
  it('unites a controller with static routes and agents on one prefix, and never removes their next hops', async () => {
    const w = await world();
    const aic = formatAic({ registry: 'gw', provider: 'acme', serial: 1 });
    w.directory.setStatic([{ op: 'upsert', prefix: '/cap/ocr', nextHops: [{ id: 'static-a' }] }]);
    w.directory.add([agent(1, ['/cap/ocr'])], true);
    expect(ids(w.fib, '/cap/ocr')).toEqual([aic, 'static-a'].sort());

    // The controller names the agent's AIC too: it shows once, and stays when the controller goes.
    expect((await apply(w, 'ctl', [upsert('/cap/ocr', [{ id: 'peer:gw2' }, { id: aic, weight: 7 }, { id: 'svc-1', endpoint: 'http://127.0.0.1:9/svc' }])])).status).toBe('VISIBLE');
    expect(ids(w.fib, '/cap/ocr')).toEqual([aic, 'peer:gw2', 'static-a', 'svc-1'].sort());
    expect(w.directory.endpointOf('svc-1')).toBe('http://127.0.0.1:9/svc');

    expect((await apply(w, 'ctl', [remove('/cap/ocr')])).status).toBe('VISIBLE');
    expect(ids(w.fib, '/cap/ocr')).toEqual([aic, 'static-a'].sort());
    expect(w.directory.endpointOf('svc-1')).toBeUndefined();

    // A Replace that announces nothing, and a flush, leave the other sources alone too.
    await apply(w, 'ctl', [upsert('/cap/ocr', [{ id: 'peer:gw2' }]), upsert('/cap/only', [{ id: 'peer:gw2' }])]);
    expect((await apply(w, 'ctl', [], { replace: true })).status).toBe('VISIBLE');
    expect(ids(w.fib, '/cap/ocr')).toEqual([aic, 'static-a'].sort());
    expect(ids(w.fib, '/cap/only')).toBeNull();
    await apply(w, 'ctl', [upsert('/cap/ocr', [{ id: 'peer:gw2' }])]);
    await w.programming.rib.flush('ctl').done;
    expect(ids(w.fib, '/cap/ocr')).toEqual([aic, 'static-a'].sort());

    // And the other sources going leave the controller's next hops in place.
    await apply(w, 'ctl', [upsert('/cap/ocr', [{ id: 'peer:gw2' }])]);
    w.directory.remove(aic);
    w.directory.setStatic([{ op: 'remove', prefix: '/cap/ocr' }]);
    expect(ids(w.fib, '/cap/ocr')).toEqual(['peer:gw2']);
  });

  it('keeps each controller to its own next hops: one removing or replacing leaves the other\'s', async () => {
    const w = await world();
    await apply(w, 'a', [upsert('/x', [{ id: 'peer:shared' }, { id: 'peer:a' }])]);
    await apply(w, 'b', [upsert('/x', [{ id: 'peer:shared' }, { id: 'peer:b' }])]);
    expect(ids(w.fib, '/x')).toEqual(['peer:a', 'peer:b', 'peer:shared']);
    await apply(w, 'a', [remove('/x')]);
    expect(ids(w.fib, '/x')).toEqual(['peer:b', 'peer:shared']);
    await apply(w, 'a', [upsert('/y', [{ id: 'peer:a' }])]);
    await apply(w, 'b', [upsert('/y', [{ id: 'peer:b' }])], { replace: true });
    // b's Replace removed b's /x, not a's /y.
    expect(ids(w.fib, '/x')).toBeNull();
    expect(ids(w.fib, '/y')).toEqual(['peer:a', 'peer:b']);
    expect([...w.programming.rib.entries('a')].map((e) => e.prefix)).toEqual(['/y']);
  });

  it('any sequence of accepted batches from two controllers leaves each entry the union of both (and of the static route)', async () => {
    const w = await world();
    const rib = w.programming.rib;
    // DELETE controllers: nothing goes to disk, so a run takes no fsync.
    rib.sessionOpened('a', 'DELETE', 0);
    rib.sessionOpened('b', 'DELETE', 0);
    const aic = formatAic({ registry: 'gw', provider: 'acme', serial: 9 });
    w.directory.setStatic([{ op: 'upsert', prefix: '/p/0', nextHops: [{ id: 'static-0' }] }]);
    w.directory.add([agent(9, ['/p/1'])], true);
    const fixed = new Map<string, string[]>([['/p/0', ['static-0']], ['/p/1', [aic]]]);
    const prefixes = ['/p/0', '/p/1', '/p/2', '/p/2/x'];
    const pool = ['peer:h0', 'peer:h1', 'peer:h2', 'peer:h3', 'peer:h4', aic];
    const op = fc.oneof(
      fc.record({ kind: fc.constant('upsert' as const), prefix: fc.constantFrom(...prefixes), hops: fc.uniqueArray(fc.constantFrom(...pool), { minLength: 1, maxLength: pool.length }) }),
      fc.record({ kind: fc.constant('remove' as const), prefix: fc.constantFrom(...prefixes) }),
    );
    const batch = fc.record({ controller: fc.constantFrom('a', 'b'), replace: fc.boolean(), ops: fc.array(op, { maxLength: 6 }) });
    await fc.assert(fc.asyncProperty(fc.array(batch, { minLength: 1, maxLength: 12 }), async (batches) => {
      await rib.flush('a').done;
      await rib.flush('b').done;
      const model = new Map<string, Map<string, string[]>>([['a', new Map()], ['b', new Map()]]);
      for (const b of batches) {
        const ops = b.ops.map((o) => (o.kind === 'upsert' ? upsert(o.prefix, o.hops.map((id) => ({ id }))) : remove(o.prefix)));
        const r = await apply(w, b.controller, ops, { replace: b.replace });
        expect(r.status).toBe('VISIBLE');
        const mine = b.replace ? new Map<string, string[]>() : model.get(b.controller)!;
        for (const o of b.ops) {
          if (o.kind === 'upsert') mine.set(o.prefix, o.hops);
          else mine.delete(o.prefix);
        }
        model.set(b.controller, mine);
        for (const p of prefixes) {
          const want = new Set([...(fixed.get(p) ?? []), ...(model.get('a')!.get(p) ?? []), ...(model.get('b')!.get(p) ?? [])]);
          expect(ids(w.fib, p)).toEqual(want.size ? [...want].sort() : null);
        }
        for (const c of ['a', 'b']) {
          const got = new Map([...rib.entries(c)].map((e) => [e.prefix, e.nextHops.map((h) => h.id)]));
          expect(got).toEqual(model.get(c));
        }
      }
    }), { numRuns: 60 });
  });
});

describe('listeners', () => {
  it('keeps the directory, the rib and the FIB in step when a listener of a change throws', async () => {
    const w = await world();
    const warnings: string[] = [];
    const onWarning = (e: Error) => warnings.push(e.message);
    process.on('warning', onWarning);
    try {
      // Each list of listeners gets one that throws, then one that counts what it hears.
      const heard: Record<string, number> = {};
      const boom = () => {
        throw new Error('listener bug');
      };
      const after = (list: string) => () => {
        heard[list] = (heard[list] ?? 0) + 1;
      };
      for (const [list, on] of [
        ['fib', (l: () => void) => w.directory.onFibChange(l)],
        ['local', (l: () => void) => w.directory.onLocalChange(l)],
        ['agent', (l: () => void) => w.directory.onAgentChange(l)],
        ['health', (l: () => void) => w.directory.onHealthChange(l)],
        ['hop', (l: () => void) => w.directory.onNextHopHealth(l)],
        ['rib', (l: () => void) => w.programming.rib.onChange(l)],
      ] as const) {
        on(boom);
        on(after(list));
      }
      const r = await apply(w, 'ctl', [upsert('/cap/a', [{ id: 'svc', endpoint: 'http://127.0.0.1:9/' }])]);
      expect(r.status).toBe('VISIBLE');
      expect(ids(w.fib, '/cap/a')).toEqual(['svc']);
      expect([...w.programming.rib.entries('ctl')].map((e) => e.prefix)).toEqual(['/cap/a']);
      expect(w.directory.endpointOf('svc')).toBe('http://127.0.0.1:9/');
      // Agents and static routes too: the change is made, and heard of by the listeners after it.
      const aic = formatAic({ registry: 'gw', provider: 'acme', serial: 1 });
      w.directory.add([agent(1, ['/cap/b'])], true);
      expect(ids(w.fib, '/cap/b')).toEqual([aic]);
      expect(w.directory.get(aic)).toBeDefined();
      w.directory.setStatic([{ op: 'upsert', prefix: '/cap/c', nextHops: [{ id: 'static-c' }] }]);
      expect(ids(w.fib, '/cap/c')).toEqual(['static-c']);
      // A request to the agent failing changes its health and its next hop's.
      expect(w.directory.markDown(aic)).toBe(true);
      expect(Object.keys(heard).sort()).toEqual(['agent', 'fib', 'health', 'hop', 'local', 'rib']);
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((m) => m.includes('listener bug')).length).toBeGreaterThan(0);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe('per-op checks', () => {
  it('counts every source against the 64 next hops of an entry, and refuses the op over it by its prefix', async () => {
    const w = await world();
    w.directory.setStatic([{ op: 'upsert', prefix: '/cap/full', nextHops: peers(10, 's') }]);
    w.directory.add(Array.from({ length: 20 }, (_, i) => agent(100 + i, ['/cap/full'])), true);
    expect((await apply(w, 'b', [upsert('/cap/full', peers(30, 'b'))])).status).toBe('VISIBLE');
    const before = { generation: w.fib.generation, entries: w.fib.entries() };

    const over = w.programming.rib.apply(as('a'), [upsert('/cap/other', peers(1, 'a')), upsert('/cap/full', peers(5, 'a'))]);
    expect(over.status).toBe('REJECTED');
    if (over.status !== 'REJECTED') return;
    expect(over.errors).toHaveLength(1);
    expect(over.errors[0]).toMatchObject({ opIndex: 1, code: 'ERR_DMSC_LIMIT_EXCEEDED' });
    expect(over.errors[0]!.message).toContain('/cap/full');
    expect(over.errors[0]!.message).toMatch(/65/);
    expect(w.fib.generation).toBe(before.generation);
    expect(w.fib.entries()).toEqual(before.entries);

    // Exactly 64 together is taken; every source is in the entry.
    expect((await apply(w, 'a', [upsert('/cap/full', peers(4, 'a'))])).status).toBe('VISIBLE');
    expect(ids(w.fib, '/cap/full')).toHaveLength(64);
    // A controller may raise its own count only within what the others leave.
    expect(w.programming.rib.apply(as('b'), [upsert('/cap/full', peers(31, 'b'))]).status).toBe('REJECTED');
    expect((await apply(w, 'b', [upsert('/cap/full', peers(29, 'b'))])).status).toBe('VISIBLE');
    // 65 next hops from one controller alone are refused too.
    const alone = w.programming.rib.apply(as('c'), [upsert('/cap/lone', peers(65, 'c'))]);
    expect(alone.status === 'REJECTED' && alone.errors[0]).toMatchObject({ opIndex: 0, code: 'ERR_DMSC_LIMIT_EXCEEDED' });
  });

  it('counts static routes and agents against a controller alone too', async () => {
    const w = await world();
    w.directory.setStatic([{ op: 'upsert', prefix: '/cap/s', nextHops: peers(10, 's') }]);
    expect(w.programming.rib.apply(as('a'), [upsert('/cap/s', peers(55, 'a'))])).toMatchObject({ status: 'REJECTED', errors: [{ code: 'ERR_DMSC_LIMIT_EXCEEDED', message: expect.stringContaining('/cap/s would have 65 next hops') }] });
    // More agents on one prefix than next hops on any static route.
    w.directory.add(Array.from({ length: 12 }, (_, i) => agent(200 + i, ['/cap/ag'])), true);
    expect(w.programming.rib.apply(as('a'), [upsert('/cap/ag', peers(53, 'a'))])).toMatchObject({ status: 'REJECTED', errors: [{ code: 'ERR_DMSC_LIMIT_EXCEEDED', message: expect.stringContaining('/cap/ag would have 65 next hops') }] });
    expect((await apply(w, 'a', [upsert('/cap/s', peers(54, 'a')), upsert('/cap/ag', peers(52, 'a'))])).status).toBe('VISIBLE');
    expect([ids(w.fib, '/cap/s').length, ids(w.fib, '/cap/ag').length]).toEqual([64, 64]);
  });

  it('checks again a next-hop list the caller changed after an accepted batch', async () => {
    const w = await world();
    const hops = [{ id: 'peer:a', weight: 1 }];
    expect(await apply(w, 'a', [upsert('/cap/one', hops)])).toMatchObject({ status: 'VISIBLE' });
    // An id the table would take, but a controller may not name (neither AIC nor peer).
    hops[0]!.id = 'service-without-endpoint';
    expect(await apply(w, 'a', [upsert('/cap/two', hops)])).toMatchObject({ status: 'REJECTED', errors: [{ opIndex: 0, code: 'ERR_DMSC_INVALID_ARGUMENT' }] });
    expect(ids(w.fib, '/cap/two')).toBeNull();
  });

  it('names every bad op of a batch (duplicate ids, bad names, bad ids, ranges) and applies none of it', async () => {
    const w = await world();
    await apply(w, 'a', [upsert('/cap/keep', [{ id: 'peer:k' }])]);
    const generation = w.programming.rib.generation('a');
    const before = { fib: w.fib.generation, entries: w.fib.entries() };
    const r = w.programming.rib.apply(as('a'), [
      upsert('/cap/good', [{ id: 'peer:g' }]),
      upsert('/cap/dup', [{ id: 'peer:d' }, { id: 'peer:x' }, { id: 'peer:d' }]),
      upsert('no-slash', [{ id: 'peer:g' }]),
      upsert('/cap//empty', [{ id: 'peer:g' }]),
      upsert('/cap/../up', [{ id: 'peer:g' }]),
      upsert('/cap/ok', [{ id: 'plain-service-without-endpoint' }]),
      upsert('/cap/ok', [{ id: 'peer:' }]),
      upsert('/cap/ok', [{ id: 'peer:w', weight: 70_000 }]),
      upsert('/cap/ok', [{ id: 'peer:w', priority: -1 }]),
      upsert('/cap/ok', []),
      remove('/cap/keep'),
      upsert(`/${'x'.repeat(1100)}`, [{ id: 'peer:g' }]),
      upsert('/cap/ok', [{ id: 'x'.repeat(300) }]),
    ]);
    expect(r.status).toBe('REJECTED');
    if (r.status !== 'REJECTED') return;
    expect(r.errors.map((e) => [e.opIndex, e.code])).toEqual([
      [1, 'ERR_DMSC_DUPLICATE_NEXT_HOP'],
      [2, 'ERR_DMSC_INVALID_NAME'],
      [3, 'ERR_DMSC_INVALID_NAME'],
      [4, 'ERR_DMSC_INVALID_NAME'],
      [5, 'ERR_DMSC_INVALID_ARGUMENT'],
      [6, 'ERR_DMSC_INVALID_ARGUMENT'],
      [7, 'ERR_DMSC_OUT_OF_RANGE'],
      [8, 'ERR_DMSC_OUT_OF_RANGE'],
      [9, 'ERR_DMSC_INVALID_ARGUMENT'],
      [11, 'ERR_DMSC_INVALID_NAME'],
      [12, expect.stringMatching(/^ERR_DMSC_/)],
    ]);
    expect(r.errors[0]!.message).toContain('peer:d');
    expect(r.generation).toBe(generation);
    expect(w.programming.rib.generation('a')).toBe(generation);
    expect(w.fib.generation).toBe(before.fib);
    expect(w.fib.entries()).toEqual(before.entries);
    expect([...w.programming.rib.entries('a')].map((e) => e.prefix)).toEqual(['/cap/keep']);
  });

  it('refuses a prefix outside the key\'s scopes, naming it', async () => {
    const w = await world();
    const { key } = await w.programming.keys.add('scoped', ['/cap/ocr/**']);
    const caller = w.programming.authenticate(key)!;
    expect(caller).toMatchObject({ name: 'scoped', admin: false });
    const out = await w.programming.batch(caller, undefined, [upsert('/cap/ocr/fast', [{ id: 'peer:a' }]), upsert('/cap/asr', [{ id: 'peer:a' }])]);
    expect(out.status).toBe('REJECTED');
    expect(out.errors).toEqual([expect.objectContaining({ opIndex: 1, code: 'ERR_DMSC_FORBIDDEN', message: expect.stringContaining('/cap/asr') })]);
    expect(ids(w.fib, '/cap/ocr/fast')).toBeNull();
    expect((await w.programming.batch(caller, undefined, [upsert('/cap/ocr/fast', [{ id: 'peer:a' }])])).status).toBe('VISIBLE');
    await expect(w.programming.batch(caller, 'someone-else', [])).rejects.toMatchObject({ code: 'ERR_DMSC_FORBIDDEN' });
  });

  it('names the first problem of a list hop by hop, another controller\'s endpoint before a later bad weight', async () => {
    const w = await world();
    expect(await apply(w, 'b', [upsert('/svc/b', [{ id: 'svc-b', endpoint: 'http://127.0.0.1:9/b' }])])).toMatchObject({ status: 'VISIBLE' });
    const r = w.programming.rib.apply(as('a'), [upsert('/svc/a', [{ id: 'svc-b', endpoint: 'http://127.0.0.1:9/b' }, { id: 'peer:a', weight: 70_000 }])]);
    expect(r).toMatchObject({ status: 'REJECTED', errors: [{ opIndex: 0, code: 'ERR_DMSC_CONFLICT', message: expect.stringContaining('nextHops[0]') }] });
  });

  it('takes endpoint next hops with an id of their own and one URL per id, across batches and controllers', async () => {
    const w = await world();
    const aic = formatAic({ registry: 'gw', provider: 'acme', serial: 3 });
    const r = w.programming.rib.apply(as('a'), [
      upsert('/svc/aic', [{ id: aic, endpoint: 'http://127.0.0.1:9/' }]),
      upsert('/svc/peer', [{ id: 'peer:gw2', endpoint: 'http://127.0.0.1:9/' }]),
      upsert('/svc/https', [{ id: 'svc-tls', endpoint: 'https://127.0.0.1:9/' }]),
      upsert('/svc/junk', [{ id: 'svc-junk', endpoint: 'not a url' }]),
      upsert('/svc/one', [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/one' }]),
      upsert('/svc/two', [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/two' }]),
    ]);
    expect(r.status === 'REJECTED' && r.errors.map((e) => [e.opIndex, e.code])).toEqual([
      [0, 'ERR_DMSC_INVALID_ARGUMENT'],
      [1, 'ERR_DMSC_INVALID_ARGUMENT'],
      [2, 'ERR_DMSC_INVALID_ARGUMENT'],
      [3, 'ERR_DMSC_INVALID_ARGUMENT'],
      [5, 'ERR_DMSC_CONFLICT'],
    ]);
    expect(w.fib.entries()).toEqual([]);
    expect(w.directory.endpointOf('svc-1')).toBeUndefined();

    expect((await apply(w, 'a', [upsert('/svc/one', [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/one' }])])).status).toBe('VISIBLE');
    // Another batch giving svc-1 another URL is a conflict; another controller may not use
    // a's id at all (nor learn its URL from the refusal).
    const again = w.programming.rib.apply(as('a'), [upsert('/svc/two', [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/two' }])]);
    expect(again.status === 'REJECTED' && again.errors[0]).toMatchObject({ opIndex: 0, code: 'ERR_DMSC_CONFLICT' });
    const other = w.programming.rib.apply(as('b'), [upsert('/svc/two', [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/one' }])]);
    expect(other.status === 'REJECTED' && other.errors[0]).toMatchObject({ opIndex: 0, code: 'ERR_DMSC_CONFLICT' });
    expect(other.status === 'REJECTED' && other.errors[0]!.message).not.toContain('127.0.0.1');

    // Health is set on one's own endpoint next hops only.
    const h = w.programming.rib.apply(as('b'), [{ op: 'health', nextHopId: 'svc-1', state: 'down' }]);
    expect(h.status === 'REJECTED' && h.errors[0]).toMatchObject({ opIndex: 0, code: 'ERR_DMSC_NOT_FOUND' });
    expect((await apply(w, 'a', [{ op: 'health', nextHopId: 'svc-1', state: 'degraded', load: 0.5 }])).status).toBe('VISIBLE');
    expect(w.fib.entries().find((e) => e.prefix === '/svc/one')!.nextHops[0]).toMatchObject({ id: 'svc-1', state: 'degraded', load: 0.5 });

    // Once no entry uses svc-1, the id is free, for another URL or another controller.
    await apply(w, 'a', [remove('/svc/one')]);
    expect(w.directory.endpointOf('svc-1')).toBeUndefined();
    expect((await apply(w, 'b', [upsert('/svc/two', [{ id: 'svc-1', endpoint: 'http://127.0.0.1:9/two' }])])).status).toBe('VISIBLE');
    expect(w.directory.endpointOf('svc-1')).toBe('http://127.0.0.1:9/two');
    // A fresh endpoint next hop starts up, whatever its id's earlier life.
    expect(w.fib.entries().find((e) => e.prefix === '/svc/two')!.nextHops[0]).toMatchObject({ id: 'svc-1', state: 'up', load: 0 });
  });

  it('applies nothing of a batch that would take the tags the table keeps for the policy', async () => {
    const w = await world();
    await apply(w, 'a', [upsert('/t/keep', [{ id: 'peer:k', tags: ['t-keep'] }])]);
    const before = { fib: w.fib.generation, entries: w.fib.entries(), generation: w.programming.rib.generation('a') };
    // 70 distinct tags: each op is fine alone; controllers may bring the table to 48.
    const ops = Array.from({ length: 70 }, (_, i) => upsert(`/t/${i}`, [{ id: `svc-${i}`, endpoint: `http://127.0.0.1:9/${i}`, tags: [`tag-${i}`] }]));
    const r = w.programming.rib.apply(as('a'), [...ops, remove('/t/keep')]);
    expect(r.status).toBe('REJECTED');
    expect(r.status === 'REJECTED' && r.errors[0]!.code).toBe('ERR_DMSC_LIMIT_EXCEEDED');
    // The table holds t-keep: the ops bringing its 48th tag and on are named (16 stay free).
    expect(r.status === 'REJECTED' && r.errors.map((e) => e.opIndex)).toEqual(Array.from({ length: 23 }, (_, i) => 47 + i));
    expect(w.fib.generation).toBe(before.fib);
    expect(w.fib.entries()).toEqual(before.entries);
    expect(w.programming.rib.generation('a')).toBe(before.generation);
    expect([...w.programming.rib.entries('a')].map((e) => e.prefix)).toEqual(['/t/keep']);
    expect(w.directory.endpointOf('svc-0')).toBeUndefined();
  });

  it('checks what depends on the table again for a shared list found good before', async () => {
    // Lists the decoder shares (frozen, declared immutable) are checked whole once; their
    // tags and endpoints still depend on the table and on who holds them.
    const shared = (hops: object[]) => {
      const list = Object.freeze(hops.map((h) => Object.freeze(h))) as never;
      immutableList(list);
      return list;
    };
    const w = await world();
    const svc = shared([{ id: 'svc-s', endpoint: 'http://127.0.0.1:9/s' }]);
    expect((await apply(w, 'a', [upsert('/sh/a', svc)])).status).toBe('VISIBLE');
    expect(w.programming.rib.apply(as('b'), [upsert('/sh/b', svc)])).toMatchObject({ status: 'REJECTED', errors: [{ code: 'ERR_DMSC_CONFLICT' }] });

    // A list with a tag new to the table, found good in a batch refused for another op...
    const tagged = shared([{ id: 'peer:t', tags: ['late'] }]);
    expect(w.programming.rib.apply(as('a'), [upsert('/sh/t', tagged), upsert('bad', [{ id: 'peer:x' }])]).status).toBe('REJECTED');
    // ...is refused once the table has no room left for that tag.
    const room = 48 - w.fib.tagCount;
    const fill = Array.from({ length: room }, (_, i) => upsert(`/sh/f${i}`, [{ id: 'peer:f', tags: [`fill-${i}`] }]));
    expect((await apply(w, 'a', fill)).status).toBe('VISIBLE');
    expect(w.programming.rib.apply(as('a'), [upsert('/sh/t', tagged)])).toMatchObject({ status: 'REJECTED', errors: [{ opIndex: 0, code: 'ERR_DMSC_LIMIT_EXCEEDED', message: expect.stringContaining('late') }] });
  });

  it('applies nothing when expectGeneration is not the controller\'s generation', async () => {
    const w = await world();
    const first = await apply(w, 'a', [upsert('/g/1', [{ id: 'peer:a' }])], { expectGeneration: 0 });
    expect(first).toMatchObject({ status: 'VISIBLE', generation: 1 });
    const fibGeneration = w.fib.generation;
    expect(w.programming.rib.apply(as('a'), [upsert('/g/2', [{ id: 'peer:a' }])], { expectGeneration: 0 })).toEqual({ status: 'GENERATION_MISMATCH', generation: 1 });
    expect(w.fib.generation).toBe(fibGeneration);
    expect(ids(w.fib, '/g/2')).toBeNull();
    // Another controller's batches do not move a's generation.
    await apply(w, 'b', [upsert('/g/3', [{ id: 'peer:b' }])]);
    expect((await apply(w, 'a', [upsert('/g/2', [{ id: 'peer:a' }])], { expectGeneration: 1 })).status).toBe('VISIBLE');
    // A batch that changes nothing does not move it either.
    expect((await apply(w, 'a', [remove('/never')])).generation).toBe(2);
  });

  it('Replace removes what was not announced again, in one FIB change', async () => {
    const w = await world();
    await apply(w, 'a', [upsert('/r/1', [{ id: 'peer:a' }]), upsert('/r/2', [{ id: 'peer:a' }]), upsert('/r/3', [{ id: 'peer:a' }])]);
    w.directory.setStatic([{ op: 'upsert', prefix: '/r/2', nextHops: [{ id: 'static-r2' }] }]);
    const changes: number[] = [];
    w.directory.onFibChange((_ops, g) => changes.push(g));
    const r = await apply(w, 'a', [upsert('/r/1', [{ id: 'peer:b' }]), upsert('/r/4', [{ id: 'peer:a' }])], { replace: true });
    expect(r.status).toBe('VISIBLE');
    expect(changes).toHaveLength(1);
    expect([...w.programming.rib.entries('a')].map((e) => e.prefix).sort()).toEqual(['/r/1', '/r/4']);
    expect(ids(w.fib, '/r/1')).toEqual(['peer:b']);
    expect(ids(w.fib, '/r/2')).toEqual(['static-r2']);
    expect(ids(w.fib, '/r/3')).toBeNull();
    expect(ids(w.fib, '/r/4')).toEqual(['peer:a']);
  });

  it('Replace in a session stages batches and commits at its end; a bad staged batch stages nothing', async () => {
    const w = await world();
    await apply(w, 'admin', [upsert('/s/old', [{ id: 'peer:a' }])]);
    const m = open(w, admin(w));
    expect((await m.submit('begin')).status).toBe('STAGED');
    expect((await m.send([upsert('/s/new', [{ id: 'peer:n' }])])).status).toBe('STAGED');
    const bad = await m.send([upsert('/s/bad', [{ id: 'peer:b' }, { id: 'peer:b' }])]);
    expect(bad).toMatchObject({ status: 'REJECTED', errors: [expect.objectContaining({ opIndex: 0, code: 'ERR_DMSC_DUPLICATE_NEXT_HOP' })] });
    // Nothing moves until replace_end.
    expect(ids(w.fib, '/s/old')).toEqual(['peer:a']);
    expect(ids(w.fib, '/s/new')).toBeNull();
    expect((await m.submit('end')).status).toBe('VISIBLE');
    expect(ids(w.fib, '/s/old')).toBeNull();
    expect(ids(w.fib, '/s/new')).toEqual(['peer:n']);
    expect(ids(w.fib, '/s/bad')).toBeNull();
    expect((await m.submit('end')).status).toBe('REJECTED');
  });

  it('takes, inside a Replace, the health of an endpoint next hop an earlier staged batch defined', async () => {
    const w = await world();
    const m = open(w, admin(w));
    expect((await m.submit('begin')).status).toBe('STAGED');
    expect((await m.send([upsert('/s/svc', [{ id: 'svc-new', endpoint: 'http://127.0.0.1:9/new' }])])).status).toBe('STAGED');
    const health = await m.send([{ op: 'health', nextHopId: 'svc-new', state: 'degraded', load: 0.25 }]);
    expect(health.errors).toEqual([]);
    expect(health.status).toBe('STAGED');
    expect((await m.submit('end')).status).toBe('VISIBLE');
    expect(w.fib.entries().find((e) => e.prefix === '/s/svc')!.nextHops[0]).toMatchObject({ id: 'svc-new', state: 'degraded', load: 0.25 });
  });

  it('answers BUSY, in order, for the batches past the window that wait for their result', async () => {
    const w = await world();
    const m = open(w, admin(w));
    const window = 64;
    const results = await Promise.all(Array.from({ length: window + 20 }, (_, i) => m.send([upsert(`/busy/${i}`, [{ id: 'peer:b' }])])));
    expect(results.map((r) => r.status)).toEqual([...Array(window).fill('VISIBLE'), ...Array(20).fill('BUSY')]);
    expect(w.programming.rib.generation('admin')).toBe(window);
    expect(ids(w.fib, `/busy/${window}`)).toBeNull();
    // Once answered, the window is free again.
    expect((await m.send([upsert(`/busy/${window}`, [{ id: 'peer:b' }])])).status).toBe('VISIBLE');
  });

  it('refuses an open with a persistence other than PRESERVE, DELETE and LEASE', async () => {
    const w = await world();
    for (const persistence of [7, 'FOREVER']) {
      expect(() => open(w, admin(w), { controllerId: 'odd', persistence: persistence as unknown as Persistence })).toThrow(expect.objectContaining({ code: expect.stringMatching(/^ERR_DMSC_(INVALID_ARGUMENT|OUT_OF_RANGE)$/) }));
    }
    expect(w.programming.sessions).toBe(0);
  });

  it("refuses a second session of a controller that would change its persistence, so a standby cannot drop the primary's routes", async () => {
    const w = await world();
    const primary = open(w, admin(w), { controllerId: 'te', persistence: 'PRESERVE', electionId: 2n });
    expect(() => open(w, admin(w), { controllerId: 'te', persistence: 'DELETE', electionId: 1n })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_CONFLICT' }));
    expect(() => open(w, admin(w), { controllerId: 'te', persistence: 'LEASE', leaseMs: 5000, electionId: 1n })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_CONFLICT' }));
    const standby = open(w, admin(w), { controllerId: 'te', persistence: 'PRESERVE', electionId: 1n });
    expect(w.programming.sessions).toBe(2);
    standby.s.close();
    primary.s.close();
    // With none open, the next session may choose again.
    open(w, admin(w), { controllerId: 'te', persistence: 'DELETE', electionId: 1n }).s.close();
  });
});

describe('persistence', () => {
  it('reloads PRESERVE entries, endpoints and generations into a fresh directory and FIB', async () => {
    const first = await world();
    first.directory.setStatic([{ op: 'upsert', prefix: '/static/x', nextHops: [{ id: 'static-x' }] }]);
    const m = open(first, admin(first), { controllerId: 'keeper' });
    expect((await m.send([
      upsert('/keep/a', [{ id: 'peer:a', weight: 5, priority: 2, tags: ['eu'] }, { id: 'svc-k', endpoint: 'http://127.0.0.1:9/k' }]),
      upsert('/keep/b', [{ id: 'peer:b' }]),
      upsert('/keep/c', [{ id: 'peer:c' }]),
    ])).status).toBe('VISIBLE');
    expect((await m.send([remove('/keep/c'), upsert('/static/x', [{ id: 'peer:x' }])])).status).toBe('VISIBLE');
    expect((await m.send([{ op: 'health', nextHopId: 'svc-k', state: 'up' }])).status).toBe('VISIBLE');
    const generation = first.programming.rib.generation('keeper');
    expect(generation).toBe(2);
    const entries = [...first.programming.rib.entries('keeper')];
    const controllerOnly = first.fib.entries().filter((e) => e.prefix.startsWith('/keep'));
    m.s.close();
    // Still there once the PRESERVE session ended.
    expect(ids(first.fib, '/keep/a')).toEqual(['peer:a', 'svc-k']);
    await close(first);

    const again = await world(first.dir);
    expect(again.programming.rib.generation('keeper')).toBe(generation);
    expect(table(again.programming.rib.entries('keeper'))).toEqual(table(entries));
    expect(again.fib.entries().filter((e) => e.prefix.startsWith('/keep'))).toEqual(controllerOnly);
    expect(ids(again.fib, '/keep/c')).toBeNull();
    // Only the controller's next hop: the static route was the first node's, not stored.
    expect(ids(again.fib, '/static/x')).toEqual(['peer:x']);
    expect(again.directory.endpointOf('svc-k')).toBe('http://127.0.0.1:9/k');
    // The generation carries on from where it was.
    const next = await apply(again, 'keeper', [upsert('/keep/d', [{ id: 'peer:d' }])], { expectGeneration: generation });
    expect(next).toMatchObject({ status: 'VISIBLE', generation: generation + 1 });
  });

  it('reloads the JSON journal records of earlier versions, and keeps journaling after them', async () => {
    const dir = await newDir();
    const store = Store.open(dir);
    // What a node of the earlier format left: meta, and [prefix, [id, weight, priority, tags, endpoint?][] | null] records.
    await store.durable(() => {
      void store.db('fib-controllers').put('old', { generation: 2, persistence: 'PRESERVE', leaseMs: 0, next: 2, changes: 3 });
      void store.db('fib-controller-journal').put(['old', 0] as never, JSON.stringify([['/old/a', [['peer:a', 5, 1, ['eu']]]], ['/old/b', [['svc-o', null, 0, [], 'http://127.0.0.1:9/o']]]]));
      void store.db('fib-controller-journal').put(['old', 1] as never, JSON.stringify([['/old/a', null]]));
    });
    await store.close();
    const w = await world(dir);
    expect(w.programming.rib.generation('old')).toBe(2);
    expect(table(w.programming.rib.entries('old'))).toEqual(table([{ prefix: '/old/b', nextHops: [{ id: 'svc-o', priority: 0, tags: [], endpoint: 'http://127.0.0.1:9/o' }] }]));
    expect(ids(w.fib, '/old/a')).toBeNull();
    expect(w.directory.endpointOf('svc-o')).toBe('http://127.0.0.1:9/o');
    expect(await apply(w, 'old', [upsert('/old/c', [{ id: 'peer:c' }])])).toMatchObject({ status: 'VISIBLE', generation: 3 });
    await close(w);
    const again = await world(dir);
    expect([...table(again.programming.rib.entries('old')).keys()].sort()).toEqual(['/old/b', '/old/c']);
  });

  it('drops, for good, a stored route the table cannot hold at start, and nothing else brings it back', async () => {
    const first = await world();
    const many = [...Array.from({ length: 39 }, (_, k) => ({ id: `peer:m${k}` })), { id: 'svc-big', endpoint: 'http://127.0.0.1:9/big' }];
    expect(await apply(first, 'c', [upsert('/big/x', many), upsert('/ok/x', [{ id: 'peer:ok' }])])).toMatchObject({ status: 'VISIBLE' });
    await close(first);
    // The node comes back with static routes that leave no room for the controller's 40.
    const store = Store.open(first.dir);
    const fib = new ForwardingTable();
    const directory = new Directory(fib, () => []);
    directory.setStatic([{ op: 'upsert', prefix: '/big/x', nextHops: Array.from({ length: 30 }, (_, k) => ({ id: `static-${k}` })) }]);
    const logs: Record<string, unknown>[] = [];
    const programming = new Programming({ directory, fib, store, adminToken: ADMIN, log: (e) => logs.push(e) });
    const w: World = { dir: first.dir, store, fib, directory, programming, logs };
    worlds.push(w);
    programming.rib.load();
    expect(logs).toContainEqual(expect.objectContaining({ msg: 'controller route dropped: the table cannot hold it', prefix: '/big/x', code: 'ERR_DMSC_LIMIT_EXCEEDED' }));
    expect(ids(fib, '/ok/x')).toEqual(['peer:ok']);
    expect(ids(fib, '/big/x')).toHaveLength(30);
    expect([...programming.rib.entries('c')].map((e) => e.prefix)).toEqual(['/ok/x']);
    expect(directory.endpointOf('svc-big')).toBeUndefined();
    expect(programming.rib.generation('c')).toBe(2);
    // Programming the prefix again for another reason leaves the controller's route out.
    directory.setStatic([{ op: 'upsert', prefix: '/big/x', nextHops: [{ id: 'static-0' }] }]);
    expect(ids(fib, '/big/x')).toEqual(['static-0']);
    // Dropped for good: a start with room again does not bring it back.
    await close(w);
    const again = await world(first.dir);
    expect([...again.programming.rib.entries('c')].map((e) => e.prefix)).toEqual(['/ok/x']);
    expect(ids(again.fib, '/big/x')).toBeNull();
    expect(again.programming.rib.generation('c')).toBe(2);
  });

  it('removes DELETE entries when the session ends, and never stores them', async () => {
    const w = await world();
    w.directory.setStatic([{ op: 'upsert', prefix: '/del/a', nextHops: [{ id: 'static-a' }] }]);
    const m = open(w, admin(w), { controllerId: 'temp', persistence: 'DELETE' });
    expect((await m.send([upsert('/del/a', [{ id: 'peer:t' }]), upsert('/del/b', [{ id: 'peer:t' }])])).status).toBe('VISIBLE');
    expect(ids(w.fib, '/del/a')).toEqual(['peer:t', 'static-a']);
    m.s.close();
    expect(ids(w.fib, '/del/a')).toEqual(['static-a']);
    expect(ids(w.fib, '/del/b')).toBeNull();
    expect([...w.programming.rib.entries('temp')]).toEqual([]);
  });

  it('leaves nothing of a DELETE session in the store, even when the node dies with it open', async () => {
    const w = await world();
    const m = open(w, admin(w), { controllerId: 'temp', persistence: 'DELETE' });
    expect((await m.send([upsert('/del/a', [{ id: 'peer:t' }])])).status).toBe('VISIBLE');
    await close(w, true);
    const again = await world(w.dir);
    expect(again.fib.entries()).toEqual([]);
    expect([...again.programming.rib.entries('temp')]).toEqual([]);
  });

  it('drops what a PRESERVE controller stored once it opens a DELETE session', async () => {
    const w = await world();
    const keep = open(w, admin(w), { controllerId: 'flip' });
    expect((await keep.send([upsert('/flip/a', [{ id: 'peer:a' }])])).status).toBe('VISIBLE');
    keep.s.close();
    const temp = open(w, admin(w), { controllerId: 'flip', persistence: 'DELETE' });
    expect((await temp.send([upsert('/flip/b', [{ id: 'peer:b' }])])).status).toBe('VISIBLE');
    await close(w, true);
    const again = await world(w.dir);
    expect(again.fib.entries()).toEqual([]);
  });

  it('keeps LEASE entries for the lease after the session ends, and for good while a session is open again', async () => {
    const w = await world();
    w.directory.setStatic([{ op: 'upsert', prefix: '/lease/a', nextHops: [{ id: 'static-a' }] }]);
    const caller = admin(w);
    expect(() => open(w, caller, { controllerId: 'leased', persistence: 'LEASE', leaseMs: 999 })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_OUT_OF_RANGE' }));
    const first = open(w, caller, { controllerId: 'leased', persistence: 'LEASE', leaseMs: 1000 });
    expect((await first.send([upsert('/lease/a', [{ id: 'peer:l' }]), upsert('/lease/b', [{ id: 'peer:l' }])])).status).toBe('VISIBLE');

    // Reopened within the lease: the entries stay past it.
    first.s.close();
    await sleep(400);
    expect(ids(w.fib, '/lease/b')).toEqual(['peer:l']);
    const second = open(w, caller, { controllerId: 'leased', persistence: 'LEASE', leaseMs: 1000 });
    await sleep(1000);
    expect(ids(w.fib, '/lease/b')).toEqual(['peer:l']);

    // Ended with no session after it: gone one lease later, and only the controller's.
    second.s.close();
    const ended = Date.now();
    await sleep(600);
    expect(ids(w.fib, '/lease/b')).toEqual(['peer:l']);
    while (ids(w.fib, '/lease/b') !== null && Date.now() - ended < 3000) await sleep(25);
    expect(Date.now() - ended).toBeGreaterThanOrEqual(950);
    expect(ids(w.fib, '/lease/b')).toBeNull();
    expect(ids(w.fib, '/lease/a')).toEqual(['static-a']);
  });

  it('starts the lease again for LEASE entries reloaded from the store', async () => {
    const w = await world();
    const m = open(w, admin(w), { controllerId: 'leased', persistence: 'LEASE', leaseMs: 1000 });
    expect((await m.send([upsert('/lease/r', [{ id: 'peer:l' }])])).status).toBe('VISIBLE');
    await close(w, true);
    const again = await world(w.dir);
    expect(ids(again.fib, '/lease/r')).toEqual(['peer:l']);
    const t0 = Date.now();
    while (ids(again.fib, '/lease/r') !== null && Date.now() - t0 < 3000) await sleep(25);
    expect(ids(again.fib, '/lease/r')).toBeNull();
  });

  it('does nothing (and throws nothing) when a lease runs out after the node stopped', async () => {
    const thrown: unknown[] = [];
    const caught = (e: unknown) => thrown.push(e);
    process.on('uncaughtException', caught);
    process.on('unhandledRejection', caught);
    try {
      const w = await world();
      const m = open(w, admin(w), { controllerId: 'late', persistence: 'LEASE', leaseMs: 1000 });
      expect((await m.send([upsert('/late/a', [{ id: 'peer:l' }])])).status).toBe('VISIBLE');
      // Stopping ends the session, which starts the lease; the table and store close after.
      await close(w);
      await sleep(1400);
      expect(thrown).toEqual([]);
    } finally {
      process.off('uncaughtException', caught);
      process.off('unhandledRejection', caught);
    }
  });
});

describe('election', () => {
  it('makes the highest election id primary, the newest on a tie, and tells every other open session of each change', async () => {
    const w = await world();
    const caller = admin(w);
    const a = open(w, caller, { controllerId: 'a', electionId: 5n });
    expect(w.programming.opened(a.s).primary).toBe(true);
    const b = open(w, caller, { controllerId: 'b', electionId: 10n });
    expect(w.programming.opened(b.s)).toMatchObject({ primary: true, primaryElectionId: 10n });
    expect(a.news).toEqual([{ primary: false, electionId: 10n, controller: 'b' }]);
    expect(b.news).toEqual([]);

    // Lower: no change, nobody hears anything.
    const low = open(w, caller, { controllerId: 'low', electionId: 1n });
    expect(w.programming.opened(low.s)).toMatchObject({ primary: false, primaryElectionId: 10n });
    expect(a.news).toHaveLength(1);
    expect(b.news).toEqual([]);

    // Equal: the newest session wins.
    const c = open(w, caller, { controllerId: 'c', electionId: 10n });
    expect(w.programming.primary).toEqual({ controller: 'c', electionId: 10n });
    for (const s of [a, b, low]) expect(s.news.at(-1)).toEqual({ primary: false, electionId: 10n, controller: 'c' });
    expect(c.news).toEqual([]);

    // Only the primary's batches apply; a batch with another election id is refused too.
    expect((await b.send([upsert('/e/b', [{ id: 'peer:b' }])])).status).toBe('NOT_PRIMARY');
    expect((await c.send([upsert('/e/c', [{ id: 'peer:c' }])], { electionId: 9n })).status).toBe('NOT_PRIMARY');
    expect((await c.send([upsert('/e/c', [{ id: 'peer:c' }])])).status).toBe('VISIBLE');
    expect(ids(w.fib, '/e/b')).toBeNull();
    // A batch outside any session is refused for another controller, taken for the primary's.
    expect((await w.programming.batch(caller, 'b', [upsert('/e/b', [{ id: 'peer:b' }])])).status).toBe('NOT_PRIMARY');
    expect((await w.programming.batch(caller, 'c', [upsert('/e/c2', [{ id: 'peer:c' }])])).status).toBe('VISIBLE');

    // The primary goes: the best left (b, 10, older than nothing else at 10) takes over; all hear it.
    c.s.close();
    expect(w.programming.primary).toEqual({ controller: 'b', electionId: 10n });
    expect(b.news.at(-1)).toEqual({ primary: true, electionId: 10n, controller: 'b' });
    for (const s of [a, low]) expect(s.news.at(-1)).toEqual({ primary: false, electionId: 10n, controller: 'b' });
    expect(c.news).toEqual([]);
    expect((await b.send([upsert('/e/b', [{ id: 'peer:b' }])])).status).toBe('VISIBLE');

    b.s.close();
    expect(a.news.at(-1)).toEqual({ primary: true, electionId: 5n, controller: 'a' });
    expect(low.news.at(-1)).toEqual({ primary: false, electionId: 5n, controller: 'a' });
    a.s.close();
    low.s.close();
    expect(w.programming.primary).toBeUndefined();
    expect(w.programming.sessions).toBe(0);
  });

  it('ends the open sessions of a revoked key, and only those', async () => {
    const w = await world();
    const { key } = await w.programming.keys.add('gone', ['/**']);
    const { key: other } = await w.programming.keys.add('stays', ['/**']);
    const g = open(w, w.programming.authenticate(key)!, { electionId: 1n });
    const s = open(w, w.programming.authenticate(other)!, { electionId: 2n });
    await w.programming.keys.revoke('gone');
    expect(g.ended).toEqual([expect.objectContaining({ code: 'ERR_DMSC_UNAUTHORIZED' })]);
    expect(s.ended).toEqual([]);
    expect(w.programming.authenticate(key)).toBeUndefined();
    expect(w.programming.sessions).toBe(1);
    expect((await s.send([upsert('/k/s', [{ id: 'peer:s' }])])).status).toBe('VISIBLE');
  });
});

describe('watch history', () => {
  /** A watcher that takes every event at once, into `into`; returns what stops it. */
  const watch = (p: Programming, since: number, into: WatchEvent[]) => p.history.stream(since, (e) => (into.push(e), true), () => {}, () => {});
  const entryEvents = (events: WatchEvent[]) => events.filter((e): e is Extract<WatchEvent, { type: 'entry' }> => e.type === 'entry');

  it('replays the changes after a generation, then goes on live', async () => {
    const w = await world();
    const g1 = (await apply(w, 'a', [upsert('/w/1', [{ id: 'peer:a' }])]) as { fibGeneration: number }).fibGeneration;
    const g2 = (await apply(w, 'a', [upsert('/w/2', [{ id: 'peer:a' }]), upsert('/w/3', [{ id: 'peer:a', tags: ['z', 'b'] }])]) as { fibGeneration: number }).fibGeneration;
    const g3 = (await apply(w, 'a', [remove('/w/1')]) as { fibGeneration: number }).fibGeneration;
    const events: WatchEvent[] = [];
    const sub = watch(w.programming, g1, events);
    expect(events).toEqual([
      // `last` marks where a generation is whole: where a cut-off watcher may resume.
      { type: 'entry', generation: g2, prefix: '/w/2', removed: false, last: false, nextHops: [{ id: 'peer:a', weight: 100, priority: 0, tags: [], state: 'up', load: 0 }] },
      { type: 'entry', generation: g2, prefix: '/w/3', removed: false, last: true, nextHops: [{ id: 'peer:a', weight: 100, priority: 0, tags: ['b', 'z'], state: 'up', load: 0 }] },
      { type: 'entry', generation: g3, prefix: '/w/1', removed: true, last: true, nextHops: [] },
    ]);
    // From the newest generation: nothing old, and whatever comes next, whatever its source.
    const live: WatchEvent[] = [];
    const sub2 = watch(w.programming, g3, live);
    w.directory.setStatic([{ op: 'upsert', prefix: '/w/static', nextHops: [{ id: 'static-w' }] }]);
    await apply(w, 'a', [upsert('/w/4', [{ id: 'svc-w', endpoint: 'http://127.0.0.1:9/w' }])]);
    await apply(w, 'a', [{ op: 'health', nextHopId: 'svc-w', state: 'down' }]);
    expect(live.map((e) => (e.type === 'entry' ? e.prefix : e.type === 'health' ? `${e.nextHopId} ${e.state}` : e.type))).toEqual(['/w/static', '/w/4', 'svc-w down']);
    expect(entryEvents(events).map((e) => e.prefix)).toEqual(['/w/2', '/w/3', '/w/1', '/w/static', '/w/4']);
    sub();
    sub2();
    expect(w.programming.history.watchers).toBe(0);
  });

  it('sends the backlog at the watcher\'s pace, with the changes made meanwhile queued behind it', async () => {
    const w = await world();
    await apply(w, 'a', [upsert('/pace/1', [{ id: 'peer:a' }]), upsert('/pace/2', [{ id: 'peer:a' }]), upsert('/pace/3', [{ id: 'peer:a' }])]);
    const got: string[] = [];
    let room = 1;
    let resume: (() => void) | undefined;
    const stop = w.programming.history.stream(0, (e) => {
      got.push(e.type === 'entry' ? e.prefix : e.type);
      return --room > 0;
    }, (r) => (resume = r), () => got.push('overflow'));
    expect(got).toEqual(['/pace/1']);
    await apply(w, 'a', [upsert('/pace/4', [{ id: 'peer:a' }])]);
    expect(got).toEqual(['/pace/1']);
    room = 100;
    resume!();
    // The snapshot is read from the live table as the watcher takes it, so /pace/4, made
    // meanwhile, is in it as well as after it.
    expect(got).toEqual(['/pace/1', '/pace/2', '/pace/3', '/pace/4', 'end_of_snapshot', '/pace/4']);
    await apply(w, 'a', [remove('/pace/1')]);
    expect(got.at(-1)).toBe('/pace/1');
    stop();
    expect(w.programming.history.watchers).toBe(0);
  });

  it('replays the health changes made since a generation to a watcher resuming from it', async () => {
    const w = await world();
    const g1 = (await apply(w, 'a', [upsert('/hh/a', [{ id: 'svc-h', endpoint: 'http://127.0.0.1:9/h' }])]) as { fibGeneration: number }).fibGeneration;
    // Health moves no generation: this change is made "at" g1.
    await apply(w, 'a', [{ op: 'health', nextHopId: 'svc-h', state: 'down' }]);
    const g2 = (await apply(w, 'a', [upsert('/hh/b', [{ id: 'peer:h' }])]) as { fibGeneration: number }).fibGeneration;
    await apply(w, 'a', [{ op: 'health', nextHopId: 'svc-h', state: 'degraded', load: 0.5 }]);
    const from = (since: number) => {
      const events: WatchEvent[] = [];
      watch(w.programming, since, events)();
      return events.map((e) => (e.type === 'health' ? `${e.nextHopId} ${e.state}` : e.type === 'entry' ? e.prefix : e.type));
    };
    expect(from(g1)).toEqual(['svc-h down', '/hh/b', 'svc-h degraded']);
    expect(from(g2)).toEqual(['svc-h degraded']);
  });

  it('sends as its snapshot exactly what the table holds, from every source', async () => {
    const w = await world();
    w.directory.setStatic([{ op: 'upsert', prefix: '/s/both', nextHops: [{ id: 'static-1', tags: ['x'] }] }, { op: 'upsert', prefix: '/s/static', nextHops: [{ id: 'static-2' }] }]);
    await apply(w, 'a', [upsert('/s/both', [{ id: 'peer:c', priority: 3 }]), upsert('/s/ctl', [{ id: 'svc-s', endpoint: 'http://127.0.0.1:9/s' }])]);
    await apply(w, 'a', [{ op: 'health', nextHopId: 'svc-s', state: 'degraded', load: 0.25 }]);
    w.directory.setLearned('/s/learned', [{ id: 'peer:l', priority: 7 }]);
    w.directory.setLearned('/s/both', [{ id: 'peer:m' }]);
    const events: WatchEvent[] = [];
    watch(w.programming, 0, events)();
    const snapshot = events.filter((e) => e.type === 'entry').map((e) => e.type === 'entry' && { prefix: e.prefix, nextHops: e.nextHops });
    expect(snapshot.sort((p, q) => ((p as { prefix: string }).prefix < (q as { prefix: string }).prefix ? -1 : 1))).toEqual(w.fib.entries());
  });

  it('sends a snapshot ended by end_of_snapshot from 0, or when the history does not reach back', async () => {
    const dir = await newDir();
    // A FIB with changes made before the history began: generations up to it are not kept.
    const store = Store.open(dir);
    const fib = new ForwardingTable();
    const directory = new Directory(fib, () => []);
    directory.setStatic([{ op: 'upsert', prefix: '/h/old', nextHops: [{ id: 'static-old' }] }]);
    directory.setStatic([{ op: 'upsert', prefix: '/h/old2', nextHops: [{ id: 'static-old' }] }]);
    const floor = fib.generation;
    const programming = new Programming({ directory, fib, store, adminToken: ADMIN, log: () => {} });
    const w: World = { dir, store, fib, directory, programming, logs: [] };
    worlds.push(w);
    const r = await apply(w, 'a', [upsert('/h/new', [{ id: 'peer:a' }])]);
    const current = (r as { fibGeneration: number }).fibGeneration;
    expect(current).toBeGreaterThan(floor);

    for (const since of [0, floor - 1, current + 5]) {
      const events: WatchEvent[] = [];
      watch(programming, since, events)();
      // In no particular order, then the end.
      const entries = events.slice(0, -1).map((e) => (e.type === 'entry' ? [e.prefix, e.generation] : [e.type, e.generation]));
      expect(entries.sort()).toEqual([['/h/new', current], ['/h/old', current], ['/h/old2', current]]);
      expect(events.at(-1)).toEqual({ type: 'end_of_snapshot', generation: current });
    }
    // The floor itself is still covered by the history: only what came after it.
    const events: WatchEvent[] = [];
    watch(programming, floor, events)();
    expect(events.map((e) => e.type === 'entry' && e.prefix)).toEqual(['/h/new']);
  });
});
