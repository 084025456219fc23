// Digest sync between in-memory gateways: routes propagate along paths with the right
// cost, never loop back, withdraw everywhere, survive a lost delta (the gap asks for a
// snapshot), and a one-name change costs one entry on the wire however big the table.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { DmscError } from '../../src/errors.js';
import { DigestSync, type DigestSyncOptions } from '../../src/mesh/csp.js';
import { ForeignDomain } from '../../src/mesh/domains.js';
import type { Message } from '../../src/mesh/frames.js';
import { Rib } from '../../src/mesh/rib.js';

class Net {
  readonly ribs = new Map<string, Rib>();
  readonly syncs = new Map<string, DigestSync>();
  inFlight = 0;
  /** Return true to drop a message from `from` to `to`. */
  drop: (from: string, to: string, m: Message) => boolean = () => false;

  rib(id: string): Rib {
    let r = this.ribs.get(id);
    if (!r) this.ribs.set(id, (r = new Rib(id)));
    return r;
  }

  /** Sessions a side closed, and why. */
  readonly closed = new Map<string, DmscError>();

  connect(a: string, b: string, options: Record<string, DigestSyncOptions> = {}): void {
    const make = (from: string, to: string) => {
      const sync = new DigestSync(this.rib(from), {
        peer: { gateway: to },
        close: (error) => {
          // As a real session does: both sides stop, the routes go stale.
          this.closed.set(`${from}>${to}`, error);
          this.syncs.get(`${from}>${to}`)?.stop();
          this.syncs.get(`${to}>${from}`)?.stop();
        },
        send: (m) => {
          if (this.closed.has(`${from}>${to}`) || this.drop(from, to, m)) return true;
          this.inFlight++;
          setImmediate(() => {
            this.inFlight--;
            this.syncs.get(`${to}>${from}`)!.receive(structuredClone(m));
          });
          return true;
        },
      }, options[`${from}>${to}`]);
      this.syncs.set(`${from}>${to}`, sync);
      return sync;
    };
    const ab = make(a, b);
    const ba = make(b, a);
    ab.start();
    ba.start();
  }

  disconnect(a: string, b: string): void {
    this.syncs.get(`${a}>${b}`)!.stop();
    this.syncs.get(`${b}>${a}`)!.stop();
    this.syncs.delete(`${a}>${b}`);
    this.syncs.delete(`${b}>${a}`);
  }

  async settle(): Promise<void> {
    for (let quiet = 0; quiet < 3; ) {
      await new Promise((r) => setImmediate(r));
      quiet = this.inFlight === 0 ? quiet + 1 : 0;
    }
  }
}

const best = (rib: Rib, name: string) => rib.nextHops(name)[0];

describe('digest sync (CSP)', () => {
  it('propagates along a chain with one more hop each time, and withdraws everywhere', async () => {
    const net = new Net();
    net.connect('A', 'B');
    net.connect('B', 'C');
    net.rib('A').setLocal('/capability/ocr', ['gdpr', 'eu']);
    await net.settle();
    expect(best(net.rib('B'), '/capability/ocr')).toEqual({ peer: 'A', stale: false, entry: { name: '/capability/ocr', tags: ['eu', 'gdpr'], cost: 0, path: ['A'] } });
    expect(best(net.rib('C'), '/capability/ocr')).toEqual({ peer: 'B', stale: false, entry: { name: '/capability/ocr', tags: ['eu', 'gdpr'], cost: 1, path: ['B', 'A'] } });
    // Never advertised back to where it came from.
    expect(net.rib('A').nextHops('/capability/ocr')).toEqual([]);
    net.rib('A').setLocal('/capability/ocr', null);
    await net.settle();
    for (const id of ['A', 'B', 'C']) expect(net.rib(id).nextHops('/capability/ocr'), id).toEqual([]);
  });

  it('a new session gets a snapshot; routes not re-announced are dropped at its end', async () => {
    const net = new Net();
    net.connect('A', 'B');
    net.rib('A').setLocal('/capability/a', []);
    net.rib('A').setLocal('/capability/b', []);
    await net.settle();
    net.disconnect('A', 'B');
    expect(net.rib('B').nextHops('/capability/a')[0]!.stale).toBe(true);
    net.rib('A').setLocal('/capability/b', null);
    net.connect('A', 'B');
    await net.settle();
    expect(net.rib('B').nextHops('/capability/a')[0]!.stale).toBe(false);
    expect(net.rib('B').nextHops('/capability/b')).toEqual([]);
  });

  it('a lost delta is a gap: the next one asks for a snapshot and the peers converge', async () => {
    const net = new Net();
    net.connect('A', 'B');
    await net.settle();
    let dropped = 0;
    net.drop = (from, _to, m) => from === 'A' && m.type === 'CSP_DELTA' && dropped++ === 0;
    net.rib('A').setLocal('/capability/lost', []);
    await net.settle();
    expect(net.rib('B').nextHops('/capability/lost')).toEqual([]);
    net.rib('A').setLocal('/capability/next', []);
    await net.settle();
    expect(net.syncs.get('B>A')!.stats.resyncsAsked).toBe(1);
    expect(net.rib('B').nextHops('/capability/lost')).toHaveLength(1);
    expect(net.rib('B').nextHops('/capability/next')).toHaveLength(1);
  });

  it('sends one entry for a one-name change, however many names the table holds', async () => {
    for (const size of [1_000, 20_000]) {
      const net = new Net();
      for (let i = 0; i < size; i++) net.rib('A').setLocal(`/capability/n${i}`, []);
      net.connect('A', 'B');
      await net.settle();
      const stats = net.syncs.get('A>B')!.stats;
      const before = stats.entriesSent;
      net.rib('A').setLocal('/capability/n7', ['gdpr']);
      await net.settle();
      expect(stats.entriesSent - before).toBe(1);
      expect(best(net.rib('B'), '/capability/n7')!.entry.tags).toEqual(['gdpr']);
    }
  });

  it('refuses entries that lie about their path or cost, asking for a snapshot instead', async () => {
    const net = new Net();
    net.connect('A', 'B');
    await net.settle();
    const b = net.syncs.get('B>A')!;
    const theirs = 1;
    b.receive({ type: 'CSP_DELTA', base: theirs, version: theirs + 1, added: [{ name: '/capability/x', tags: [], cost: 0, path: ['Z'] }], updated: [], withdrawn: [] });
    expect(b.stats.resyncsAsked).toBe(1);
    expect(net.rib('B').nextHops('/capability/x')).toEqual([]);
  });

  it('on any mesh, every gateway reaches every name by a shortest loop-free path', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 2, max: 7 }).chain((n) => fc.tuple(fc.constant(n), fc.uniqueArray(fc.tuple(fc.nat(n - 1), fc.nat(n - 1)), { maxLength: 12 }), fc.array(fc.nat(n - 1), { minLength: 1, maxLength: 4 }))),
      async ([n, extra, origins]) => {
        const ids = Array.from({ length: n }, (_, i) => `G${i}`);
        const edges = new Set<string>();
        for (let i = 1; i < n; i++) edges.add(`${i - 1}-${i}`); // connected: a chain, plus extra links
        for (const [a, b] of extra) if (a !== b) edges.add(`${Math.min(a, b)}-${Math.max(a, b)}`);
        const net = new Net();
        for (const e of edges) {
          const [a, b] = e.split('-').map(Number) as [number, number];
          net.connect(ids[a]!, ids[b]!);
        }
        origins.forEach((o, k) => net.rib(ids[o]!).setLocal(`/capability/c${k}`, []));
        await net.settle();
        // Hop distances by breadth-first search.
        const adj = ids.map((_, i) => [...edges].flatMap((e) => { const [a, b] = e.split('-').map(Number); return a === i ? [b!] : b === i ? [a!] : []; }));
        const dist = (from: number) => {
          const d = ids.map(() => Infinity);
          d[from] = 0;
          const q = [from];
          while (q.length) { const x = q.shift()!; for (const y of adj[x]!) if (d[y] === Infinity) { d[y] = d[x]! + 1; q.push(y); } }
          return d;
        };
        origins.forEach((o, k) => {
          const d = dist(o);
          const name = `/capability/c${k}`;
          ids.forEach((id, i) => {
            if (net.rib(id).localTags(name)) return;
            const hop = best(net.rib(id), name);
            expect(hop, `${id} ${name}`).toBeDefined();
            expect(hop!.entry.cost + 1, `${id} ${name}`).toBe(d[i]);
            expect(new Set([id, ...hop!.entry.path]).size).toBe(hop!.entry.path.length + 1);
          });
        });
      },
    ), { numRuns: 60 });
  });
});

describe('digest sync limits', () => {
  it('splits a change of 60,000 names into frames that fit, and the peer applies them all', async () => {
    const { encodeFrame } = await import('../../src/mesh/frames.js');
    const net = new Net();
    const sizes: number[] = [];
    const inner = net.drop;
    net.drop = (from, to, m) => {
      sizes.push(encodeFrame(m, 64 << 20).length);
      return inner(from, to, m);
    };
    net.connect('A', 'B');
    for (let i = 0; i < 60_000; i++) net.rib('A').setLocal(`/capability/bulk/with-a-fairly-long-name-${i}`, ['gdpr']);
    await net.settle();
    expect(net.rib('B').names().size).toBe(60_000);
    for (let i = 0; i < 60_000; i++) net.rib('A').setLocal(`/capability/bulk/with-a-fairly-long-name-${i}`, null);
    await net.settle();
    expect(net.rib('B').names().size).toBe(0);
    expect(Math.max(...sizes)).toBeLessThan(1 << 20);
  });

  it('asks once for a snapshot after a bad chunk, not once per chunk', async () => {
    const net = new Net();
    net.connect('A', 'B');
    await net.settle();
    const b = net.syncs.get('B>A')!;
    b.receive({ type: 'CSP_SNAPSHOT' });
    for (let i = 0; i < 10; i++) b.receive({ type: 'CSP_ROUTES', entries: [{ name: '/bad//name', tags: [], cost: 0, path: ['A'] }] });
    b.receive({ type: 'CSP_EOS', version: 9 });
    expect(b.stats.resyncsAsked).toBe(1);
    await net.settle();
    // The snapshot it asked for arrives and is taken.
    net.rib('A').setLocal('/capability/after', []);
    await net.settle();
    expect(net.rib('B').nextHops('/capability/after')).toHaveLength(1);
  });
});

describe('digest sync refinements', () => {
  it('advertises the tags of every route it can reach, with the best route\'s cost', async () => {
    const net = new Net();
    net.connect('A', 'B');
    net.connect('B', 'C');
    net.connect('B', 'D');
    net.connect('D', 'E');
    net.rib('C').setLocal('/capability/x', []);
    net.rib('E').setLocal('/capability/x', ['gdpr']);
    await net.settle();
    const atA = best(net.rib('A'), '/capability/x')!;
    expect(atA.entry.cost).toBe(1);
    expect(atA.entry.path).toEqual(['B', 'C']);
    expect(atA.entry.tags).toEqual(['gdpr']);
  });

  it('a peer refreshing its routes with a snapshot does not make them flap further on', async () => {
    const net = new Net();
    net.connect('A', 'B');
    net.connect('B', 'C');
    for (let i = 0; i < 50; i++) net.rib('C').setLocal(`/capability/r${i}`, []);
    await net.settle();
    const toA = net.syncs.get('B>A')!.stats;
    const before = toA.entriesSent;
    // B asks C for a snapshot (as after a gap); C sends all 50 names again.
    net.syncs.get('C>B')!.receive({ type: 'CSP_RESYNC', reason: 'test' });
    await net.settle();
    expect(toA.entriesSent).toBe(before);
    expect(net.rib('A').names().size).toBe(50);
  });
});

describe('digest sync at a domain boundary, and its limits', () => {
  const domain = (exports: string[], tags: Record<string, string>, more: { import?: string[]; exportTags?: string[] } = {}) =>
    new ForeignDomain({ domain: 'beta', jwks: '/nonexistent', export: exports, tags, import: more.import ?? [], exportTags: more.exportTags ?? [] });

  it('advertises only what the export policy allows, and maps the other side\'s tags to ours', async () => {
    const net = new Net();
    // A is in one domain and B in another: A exports only ocr to B, and shows it two of
    // its tags; B takes only ocr routes from A, and reads A's tags through its table.
    const atA = domain(['/capability/ocr/**', '/capability/payroll/**'], {}, { exportTags: ['eu-privacy', 'fast'] });
    const atB = domain(['/**'], { 'eu-privacy': 'gdpr', fast: 'fast', internal: 'internal' }, { import: ['/capability/ocr/**'] });
    net.connect('A', 'B', {
      'A>B': { exports: (n) => atA.exports(n), shownTags: (t) => atA.shownTags(t) },
      'B>A': { imports: (n) => atB.imports(n), importTags: (t) => atB.importTags(t) },
    });
    const wire: Message[] = [];
    const drop = net.drop;
    net.drop = (from, to, m) => (from === 'A' && wire.push(m), drop(from, to, m));
    net.rib('A').setLocal('/capability/ocr/invoice', ['eu-privacy', 'internal']);
    net.rib('A').setLocal('/capability/hr', ['eu-privacy']);
    await net.settle();
    // Not exported: never on the wire, in the snapshot or later deltas; nor the tag A does not show.
    expect(JSON.stringify(wire)).not.toMatch(/capability\/hr|internal/);
    expect(net.rib('B').nextHops('/capability/hr')).toEqual([]);
    expect(best(net.rib('B'), '/capability/ocr/invoice')!.entry.tags).toEqual(['gdpr']);
    // Exported by A, but B does not import it.
    net.rib('A').setLocal('/capability/payroll/eu', []);
    net.rib('A').setLocal('/capability/ocr/fast', ['fast']);
    await net.settle();
    expect(JSON.stringify(wire)).toMatch(/capability\/payroll\/eu/);
    expect(net.rib('B').names()).toEqual(new Set(['/capability/ocr/invoice', '/capability/ocr/fast']));
    expect(best(net.rib('B'), '/capability/ocr/fast')!.entry.tags).toEqual(['fast']);
  });

  it('reads their tags as ours, and refuses a requirement it cannot map', () => {
    const d = domain([], { 'eu-privacy': 'gdpr', 'eu-only': 'gdpr', hq: 'premium' }, { exportTags: ['gdpr'] });
    expect(d.shownTags(['gdpr', 'internal'])).toEqual(['gdpr']);
    expect(d.importTags(['eu-privacy', 'unknown', 'hq'])).toEqual(['gdpr', 'premium']);
    expect(d.importTags(['eu-only'])).toEqual(['gdpr']);
    expect(d.importRequired(['eu-privacy', 'hq'])).toEqual(['gdpr', 'premium']);
    expect(d.importRequired(['eu-privacy', 'gdpr'])).toBeUndefined();
  });

  it('ends the session of a peer past its route limit, having learned nothing past it', async () => {
    const net = new Net();
    for (let i = 0; i < 5; i++) net.rib('A').setLocal(`/capability/n${i}`, []);
    net.connect('A', 'B', { 'B>A': { maxRoutes: 8 } });
    await net.settle();
    expect(net.rib('B').countFrom('A')).toBe(5);
    for (let i = 5; i < 9; i++) net.rib('A').setLocal(`/capability/n${i}`, []);
    await net.settle();
    expect(net.closed.get('B>A')?.code).toBe('ERR_DMSC_LIMIT_EXCEEDED');
    // Nothing past the limit was learned, and the peer's routes went at once.
    expect(net.rib('B').countFrom('A')).toBe(0);
    expect(net.rib('B').names()).toEqual(new Set());
  });

  it('counts a returning peer by what its new snapshot announces, not what it held before', async () => {
    const net = new Net();
    for (let i = 0; i < 6; i++) net.rib('A').setLocal(`/capability/old${i}`, []);
    net.connect('A', 'B', { 'B>A': { maxRoutes: 8 } });
    await net.settle();
    net.disconnect('A', 'B');
    // A comes back having renamed everything: 6 stale routes here, 6 new ones announced.
    for (let i = 0; i < 6; i++) {
      net.rib('A').setLocal(`/capability/old${i}`, null);
      net.rib('A').setLocal(`/capability/new${i}`, []);
    }
    net.closed.clear();
    net.connect('A', 'B', { 'B>A': { maxRoutes: 8 } });
    await net.settle();
    expect(net.closed.size).toBe(0);
    expect(net.rib('B').names()).toEqual(new Set(Array.from({ length: 6 }, (_, i) => `/capability/new${i}`)));
    // Renaming at the limit goes through too: withdrawals travel first.
    for (let i = 6; i < 8; i++) net.rib('A').setLocal(`/capability/new${i}`, []);
    await net.settle();
    for (let i = 0; i < 8; i++) {
      net.rib('A').setLocal(`/capability/new${i}`, null);
      net.rib('A').setLocal(`/capability/re${i}`, []);
    }
    await net.settle();
    expect(net.closed.size).toBe(0);
    expect(net.rib('B').countFrom('A')).toBe(8);
  });

  it('ends the session when a snapshot never reaches its end, never comes, or keeps starting over', async () => {
    const net = new Net();
    net.connect('A', 'B', { 'B>A': { snapshotTimeoutMs: 50 } });
    await net.settle();
    const b = net.syncs.get('B>A')!;
    b.receive({ type: 'CSP_SNAPSHOT' });
    b.receive({ type: 'CSP_ROUTES', entries: [{ name: '/capability/x', tags: [], cost: 0, path: ['A'] }] });
    await new Promise((r) => setTimeout(r, 120));
    expect(net.closed.get('B>A')?.code).toBe('ERR_DMSC_PEER_TIMEOUT');

    // A peer that never sends its first snapshot.
    const silent = new Net();
    silent.drop = (from) => from === 'A';
    silent.connect('A', 'B', { 'B>A': { snapshotTimeoutMs: 50 } });
    await new Promise((r) => setTimeout(r, 120));
    expect(silent.closed.get('B>A')?.code).toBe('ERR_DMSC_PEER_TIMEOUT');

    // A peer that begins a new snapshot every 20 ms does not push the deadline back.
    const restarting = new Net();
    restarting.connect('A', 'B', { 'B>A': { snapshotTimeoutMs: 100 } });
    await restarting.settle();
    const r = restarting.syncs.get('B>A')!;
    const started = Date.now();
    while (!restarting.closed.has('B>A') && Date.now() - started < 1000) {
      r.receive({ type: 'CSP_SNAPSHOT' });
      await new Promise((res) => setTimeout(res, 20));
    }
    // Pushed back, it would still be open when the loop gives up at 1 s.
    expect(restarting.closed.get('B>A')?.code).toBe('ERR_DMSC_PEER_TIMEOUT');

    const again = new Net();
    // A ignores every request for a snapshot.
    again.drop = (from, _to, m) => from === 'A' && m.type === 'CSP_SNAPSHOT';
    again.connect('A', 'B', { 'B>A': { snapshotTimeoutMs: 50 } });
    await again.settle();
    again.syncs.get('B>A')!.receive({ type: 'CSP_DELTA', base: 99, version: 100, added: [], updated: [], withdrawn: [] });
    await new Promise((r) => setTimeout(r, 120));
    expect(again.closed.get('B>A')?.code).toBe('ERR_DMSC_PEER_TIMEOUT');
  });
});

describe('routes from another domain', () => {
  it('rank after routes that stay in our domain, at the border and beyond it', async () => {
    // Our domain: A — P (border) and A — Q — S; P peers with B of another domain.
    // Both S (ours) and B (theirs) offer /capability/x; B's is fewer hops from A and P.
    const net = new Net();
    net.connect('A', 'P');
    net.connect('A', 'Q');
    net.connect('Q', 'S');
    net.connect('P', 'B', { 'P>B': { external: true, imports: () => true } });
    net.rib('S').setLocal('/capability/x', []);
    net.rib('B').setLocal('/capability/x', []);
    await net.settle();
    expect(net.rib('P').nextHops('/capability/x').map((h) => [h.peer, h.entry.cost, !!h.entry.ext])).toEqual([['A', 2, false], ['B', 0, true]]);
    expect(net.rib('A').nextHops('/capability/x').map((h) => [h.peer, h.entry.cost, !!h.entry.ext])).toEqual([['Q', 1, false], ['P', 1, true]]);
    // Ours gone: the route across the border is the one left, everywhere.
    net.rib('S').setLocal('/capability/x', null);
    await net.settle();
    expect(net.rib('A').nextHops('/capability/x').map((h) => [h.peer, !!h.entry.ext])).toEqual([['P', true]]);
  });

  it('cannot grow past twice the route limit by starting its snapshot over', async () => {
    const net = new Net();
    net.connect('A', 'B', { 'B>A': { maxRoutes: 100 } });
    await net.settle();
    const b = net.syncs.get('B>A')!;
    for (let round = 0; round < 5 && !net.closed.has('B>A'); round++) {
      b.receive({ type: 'CSP_SNAPSHOT' });
      b.receive({ type: 'CSP_ROUTES', entries: Array.from({ length: 100 }, (_, i) => ({ name: `/capability/r${round}/n${i}`, tags: [], cost: 0, path: ['A'] })) });
    }
    expect(net.closed.get('B>A')?.code).toBe('ERR_DMSC_LIMIT_EXCEEDED');
    expect(net.rib('B').countFrom('A')).toBe(0);
  });
});

describe('digest sync with names read through an alignment', () => {
  // B reads A's names through a mapping that may change while the session is up.
  const setup = () => {
    const net = new Net();
    const mapping = new Map<string, string>([['/skills/ocr', '/capability/vision/ocr'], ['/skills/legacy-ocr', '/capability/vision/ocr'], ['/d', '/c'.repeat(34)]]);
    const importName = (name: string) => {
      const to = mapping.get(name);
      if (to === undefined) return name;
      // As ForeignDomain.importName does: a mapped name that is not valid crosses not at all.
      return to.split('/').length - 1 > 32 ? undefined : to;
    };
    net.connect('A', 'B', { 'B>A': { external: true, importName } });
    return { net, mapping, names: () => [...net.rib('B').names()].sort() };
  };

  it('learns names in its own words, takes nothing for a name that maps to an invalid one, and never resyncs over it', async () => {
    const { net, names } = setup();
    net.rib('A').setLocal('/skills/ocr', []);
    net.rib('A').setLocal('/d', []);
    await net.settle();
    expect(names()).toEqual(['/capability/vision/ocr']);
    expect(net.syncs.get('B>A')!.stats.resyncsAsked).toBe(0);
  });

  it('does not merge two of their names into one route: the first keeps it, and the other\'s withdrawal leaves it', async () => {
    const { net, names } = setup();
    net.rib('A').setLocal('/skills/ocr', []);
    await net.settle();
    net.rib('A').setLocal('/skills/legacy-ocr', []);
    await net.settle();
    expect(names()).toEqual(['/capability/vision/ocr']);
    net.rib('A').setLocal('/skills/legacy-ocr', null);
    await net.settle();
    expect(names()).toEqual(['/capability/vision/ocr']);
    net.rib('A').setLocal('/skills/ocr', null);
    await net.settle();
    expect(names()).toEqual([]);
  });

  it('withdraws what it learned even when the alignment changed in between', async () => {
    const { net, mapping, names } = setup();
    net.rib('A').setLocal('/skills/ocr', []);
    await net.settle();
    mapping.set('/skills/ocr', '/capability/ocr-renamed');
    net.rib('A').setLocal('/skills/ocr', null);
    await net.settle();
    expect(names()).toEqual([]);
  });
});
