// The FIB programming interface of a real node at its edges, driven with @grpc/grpc-js and
// raw HTTP/2: every kind of bad input (bytes that are not protobuf, an unknown op, a batch
// over the advertised limits, a first message that is not open, a controller that stops
// reading, a stream cut mid-batch, a flood of sessions, a missing, bad or revoked key)
// gets a typed error and neither crashes the node nor touches another session. Then the
// HTTP side: one batch at a time, its refusals, and the change stream as server-sent
// events, resumed with Last-Event-ID.
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toWire128 } from '../../src/programming/proto.js';
import { api, cleanup, start, waitFor, type Proc } from '../e2e/harness.js';
import { client, encode, field, frame, metadata, Modify, rawCall, removeOp, rss, sse, upsertOp, varField } from './edges-wire.js';

describe('FIB programming at its edges', () => {
  let node: Proc;
  let keys: Record<string, string>;

  /** Open Modify sessions on the node, as it counts them. */
  const sessions = async () => (await api(node.url, 'GET', '/v1/controllers', { auth: node.token })).body.sessions as number;
  const noSessions = () => waitFor(async () => (await sessions()) === 0, 5000);
  const fib = async (prefix: string) => (await api(node.url, 'GET', `/v1/fib?prefix=${encodeURIComponent(prefix)}`, { auth: node.token })).body.entries as { prefix: string; nextHops: { id: string }[] }[];
  const generationOf = async (name: string) => ((await api(node.url, 'GET', '/v1/controllers', { auth: node.token })).body.controllers as { name: string; generation: number }[]).find((c) => c.name === name)!.generation;
  /** The node is up and takes a batch through a fresh session. */
  const stillServes = async () => {
    expect((await api(node.url, 'GET', '/healthz')).status).toBe(200);
    const c = client(node);
    const m = new Modify(c, keys['probe']);
    expect((await m.open({ electionId: 1n << 100n })).primary).toBe(true);
    expect((await m.batch([upsertOp('/probe/x', ['peer:probe'])])).status).toBe('VISIBLE');
    await m.close();
    c.close();
    await noSessions();
  };

  beforeAll(async () => {
    node = await start('node', ['--heartbeat-ms', '600000']);
    keys = {};
    for (const name of ['probe', 'alpha', 'beta', 'slow', 'fast', 'cut', 'flood', 'victim', 'bystander', 'owner', 'other', 'web']) {
      const r = await api(node.url, 'POST', '/v1/controllers', { auth: node.token, body: { name, scopes: ['/**'] } });
      expect(r.status).toBe(201);
      keys[name] = r.body.key;
    }
  });
  afterAll(async () => {
    await cleanup();
  });

  describe('gRPC', () => {
    it('answers a missing or unknown key with UNAUTHENTICATED on every method', async () => {
      const c = client(node) as any;
      for (const key of [undefined, 'dmsc_ck_not-a-key', `${node.token}x`]) {
        const m = new Modify(c, key);
        m.call.write({ open: { controllerId: '', electionId: toWire128(1n), persistence: 'PRESERVE', leaseMs: '0' } });
        expect(await m.status).toMatchObject({ code: grpc.status.UNAUTHENTICATED, errorCode: 'ERR_DMSC_UNAUTHORIZED' });
        expect(m.responses).toEqual([]);

        const get = c.Get({}, metadata(key));
        get.on('data', () => {});
        get.on('error', () => {});
        expect(await new Promise((r) => get.on('status', (s: grpc.StatusObject) => r(s.code)))).toBe(grpc.status.UNAUTHENTICATED);
        const watch = c.Watch({ sinceGeneration: '0' }, metadata(key));
        watch.on('data', () => {});
        watch.on('error', () => {});
        expect(await new Promise((r) => watch.on('status', (s: grpc.StatusObject) => r(s.code)))).toBe(grpc.status.UNAUTHENTICATED);
        const flush = await new Promise<grpc.ServiceError | null>((r) => c.Flush({ controllerId: '', override: true }, metadata(key), (e: grpc.ServiceError | null) => r(e)));
        expect(flush?.code).toBe(grpc.status.UNAUTHENTICATED);
      }
      c.close();
      expect((await api(node.url, 'POST', '/v1/fib/batches', { auth: 'nope', body: { ops: [] } })).body.error.code).toBe('ERR_DMSC_UNAUTHORIZED');
      await noSessions();
    });

    it('ends a Modify whose first message is not open with INVALID_ARGUMENT', async () => {
      const c = client(node);
      const m = new Modify(c, keys['alpha']);
      m.call.write({ batch: { seq: '1', electionId: toWire128(1n), ops: [upsertOp('/early/x', ['peer:a'])] } });
      expect(await m.status).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, errorCode: 'ERR_DMSC_INVALID_ARGUMENT' });
      expect(await fib('/early')).toEqual([]);
      // An open with a key that is not the named controller's is refused too.
      const wrong = new Modify(c, keys['alpha']);
      wrong.call.write({ open: { controllerId: 'beta', electionId: toWire128(1n), persistence: 'PRESERVE', leaseMs: '0' } });
      expect(await wrong.status).toMatchObject({ code: grpc.status.PERMISSION_DENIED, errorCode: 'ERR_DMSC_FORBIDDEN' });
      c.close();
      await noSessions();
    });

    it('refuses an open with a persistence the contract does not define', async () => {
      const c = client(node);
      const m = new Modify(c, keys['alpha']);
      m.call.write({ open: { controllerId: '', electionId: toWire128(1n), persistence: 7, leaseMs: '0' } });
      const answer = await m.answer();
      await m.close();
      c.close();
      await noSessions();
      expect(answer).toMatchObject({ status: { code: grpc.status.INVALID_ARGUMENT } });
    });

    it('names an empty or unknown op by its index: REJECTED with ERR_DMSC_MALFORMED_BATCH, nothing applied, session still open', async () => {
      const c = client(node);
      const m = new Modify(c, keys['alpha']);
      const opened = await m.open({ electionId: 5n });
      expect(opened).toMatchObject({ primary: true, controllerId: 'alpha' });
      const r = await m.batch([upsertOp('/malformed/a', ['peer:a']), {}, upsertOp('/malformed/b', ['peer:a'])]);
      expect(r).toMatchObject({ status: 'REJECTED', errors: [{ opIndex: 1, code: 'ERR_DMSC_MALFORMED_BATCH' }] });
      // An op of a kind this node does not know (field 9 of Op), between two good ones.
      const good = field(1, Buffer.concat([field(1, Buffer.from('/malformed/c')), field(2, field(1, Buffer.from('peer:a')))]));
      const batch = Buffer.concat([
        varField(1, 77),
        field(2, varField(2, 5)),
        field(4, good),
        field(4, varField(9, 1)),
        field(4, good),
      ]);
      expect(await m.raw(field(2, batch), '77')).toMatchObject({ status: 'REJECTED', errors: [{ opIndex: 1, code: 'ERR_DMSC_MALFORMED_BATCH' }] });
      expect(await fib('/malformed')).toEqual([]);
      // The same session goes on, and its generation did not move.
      expect(await m.batch([upsertOp('/malformed/ok', ['peer:a'])])).toMatchObject({ status: 'VISIBLE', generation: String(Number(opened.generation) + 1) });
      expect((await fib('/malformed')).map((e) => e.prefix)).toEqual(['/malformed/ok']);
      await m.close();
      c.close();
      await noSessions();
    });

    it('refuses more ops than max_ops_per_batch (REJECTED, ERR_DMSC_LIMIT_EXCEEDED) and a message over max_bytes_per_batch (RESOURCE_EXHAUSTED)', async () => {
      const c = client(node);
      const m = new Modify(c, keys['alpha']);
      const { limits } = await m.open({ electionId: 5n });
      expect(limits).toMatchObject({ maxOpsPerBatch: expect.any(Number), maxBytesPerBatch: expect.any(Number), window: expect.any(Number) });
      const generation = await generationOf('alpha');
      const tooMany = [upsertOp('/limits/first', ['peer:a']), ...Array.from({ length: limits.maxOpsPerBatch }, (_, i) => removeOp(`/limits/${i}`))];
      const r = await m.batch(tooMany);
      expect(r.status).toBe('REJECTED');
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ code: 'ERR_DMSC_LIMIT_EXCEEDED' });
      expect(await fib('/limits')).toEqual([]);
      expect(await generationOf('alpha')).toBe(generation);
      // Exactly the limit is taken.
      expect((await m.batch(tooMany.slice(0, limits.maxOpsPerBatch))).status).toBe('VISIBLE');
      expect((await fib('/limits')).map((e) => e.prefix)).toEqual(['/limits/first']);
      expect((await m.batch([removeOp('/limits/first')])).status).toBe('VISIBLE');

      // Fewer ops than the limit, more bytes: 200 upserts of 64 next hops with ids of 250 bytes and more.
      const big = Array.from({ length: Math.ceil(limits.maxBytesPerBatch / (64 * 258)) + 10 }, (_, i) => ({
        upsert: { prefix: `/limits/big/${i}`, nextHops: Array.from({ length: 64 }, (_, j) => ({ id: `peer:${String(j).padStart(250, 'x')}` })) },
      }));
      expect(big.length).toBeLessThan(limits.maxOpsPerBatch);
      m.call.write({ batch: { seq: '99', electionId: m.electionId, ops: big } });
      expect(await m.status).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      c.close();
      await noSessions();
      expect(await fib('/limits')).toEqual([]);

      // A frame that only announces 2 GiB is refused the same way, before any of it comes.
      const raw = rawCall(node, keys['alpha']!);
      const head = Buffer.alloc(5);
      head.writeUInt32BE(0x7fffffff, 1);
      raw.stream.write(frame(encode({ open: { controllerId: '', electionId: toWire128(5n), persistence: 'PRESERVE', leaseMs: '0' } })));
      raw.stream.write(head);
      expect(await raw.ended()).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      raw.close();
      await noSessions();
      await stillServes();
    });

    it('answers bytes that are not protobuf with a gRPC error status, before or after open, and keeps serving', async () => {
      const junk = [
        Buffer.from([0x0a, 0x64, 1, 2, 3]), // field 1, 100 bytes long, 3 there
        Buffer.from([0x0f, 0xff, 0xff]), // wire type 7
        Buffer.from([0x12, 0x05, 0x22, 0x03, 0xff, 0xff, 0xff]), // a batch whose op is a truncated varint
        Buffer.alloc(64, 0xff), // a varint that never ends
      ];
      for (const bytes of junk) {
        const first = rawCall(node, keys['alpha']!);
        first.stream.write(frame(bytes));
        const s1 = await first.ended();
        expect(s1?.code, `as the first message: ${bytes.toString('hex')}`).toBeGreaterThan(0);
        first.close();

        const after = rawCall(node, keys['alpha']!);
        after.stream.write(frame(encode({ open: { controllerId: '', electionId: toWire128(5n), persistence: 'PRESERVE', leaseMs: '0' } })));
        await after.until(() => after.messages.some((r) => r.response === 'opened'));
        after.stream.write(frame(bytes));
        const s2 = await after.ended();
        expect(s2?.code, `after open: ${bytes.toString('hex')}`).toBeGreaterThan(0);
        after.close();
      }
      await noSessions();
      await stillServes();
    });

    it('applies nothing of a batch whose stream is cut halfway through its frame', async () => {
      const raw = rawCall(node, keys['cut']!);
      raw.stream.write(frame(encode({ open: { controllerId: '', electionId: toWire128(5n), persistence: 'PRESERVE', leaseMs: '0' } })));
      await raw.until(() => raw.messages.some((r) => r.response === 'opened'));
      const whole = encode({ batch: { seq: '1', electionId: toWire128(5n), ops: [upsertOp('/cut/whole', ['peer:c'])] } });
      raw.stream.write(frame(whole));
      await raw.until(() => raw.messages.some((r) => r.response === 'result'));
      expect(raw.messages.find((r) => r.response === 'result').result.status).toBe('VISIBLE');
      // 2,000 ops (about 150 kB): several HTTP/2 DATA frames reach the node before the cut.
      const ops = Array.from({ length: 2000 }, (_, i) => upsertOp(`/cut/half/${i}`, [`peer:${'h'.repeat(50)}`]));
      const half = frame(encode({ batch: { seq: '2', electionId: toWire128(5n), ops } }));
      await new Promise<void>((r) => raw.stream.write(half.subarray(0, half.length >> 1), () => r()));
      await new Promise((r) => setTimeout(r, 300));
      raw.stream.close(http2.constants.NGHTTP2_CANCEL);
      raw.session.close();
      await noSessions();
      expect((await fib('/cut')).map((e) => e.prefix)).toEqual(['/cut/whole']);
      expect(await generationOf('cut')).toBe(1);
      await stillServes();
    });

    it('keeps its memory and its other sessions when a controller stops reading results', async () => {
      const c = client(node);
      const other = new Modify(c, keys['fast']);
      expect((await other.open({ electionId: 1n })).primary).toBe(true);
      const before = await rss(node);

      // The slow controller is primary (each batch moves its generation: the node's count
      // of the batches it took) and sends far more than it reads.
      const raw = rawCall(node, keys['slow']!);
      raw.stream.write(frame(encode({ open: { controllerId: '', electionId: toWire128(100n), persistence: 'DELETE', leaseMs: '0' } })));
      await raw.until(() => raw.messages.some((r) => r.response === 'opened'));
      await other.next((r) => r.response === 'primary' && r.primary.primaryControllerId === 'slow');
      raw.stream.pause();
      const one = frame(encode({ batch: { seq: '1', electionId: toWire128(100n), ops: [upsertOp('/slow/x', ['peer:s'])] } }));
      const chunk = Buffer.concat(Array.from({ length: 2000 }, () => one));
      const sent = 250 * 2000; // about 19 MB
      for (let i = 0; i < sent / 2000; i++) raw.stream.write(chunk);

      // The node stops taking the slow controller's batches once its results back up.
      let peak = before;
      let taken = -1;
      for (let stable = 0, t0 = Date.now(); stable < 4 && Date.now() - t0 < 15_000;) {
        await new Promise((r) => setTimeout(r, 250));
        peak = Math.max(peak, await rss(node));
        const now = await generationOf('slow');
        stable = now === taken ? stable + 1 : 0;
        taken = now;
      }
      expect(taken).toBeGreaterThan(0);
      expect(taken).toBeLessThan(sent / 10);
      await new Promise((r) => setTimeout(r, 500));
      expect(await generationOf('slow')).toBe(taken);

      // Meanwhile the node answers its other session, Get, and batches over HTTP.
      const t = Date.now();
      expect((await other.batch([upsertOp('/fast/x', ['peer:f'])])).status).toBe('NOT_PRIMARY');
      expect(Date.now() - t).toBeLessThan(3000);
      const entries = await new Promise<any[]>((resolve, reject) => {
        const got: any[] = [];
        const g = (c as any).Get({}, metadata(keys['slow']));
        g.on('data', (d: any) => got.push(...d.entries));
        g.on('error', reject);
        g.on('end', () => resolve(got));
      });
      expect(entries.map((e) => e.prefix)).toEqual(['/slow/x']);
      expect((await api(node.url, 'POST', '/v1/fib/batches', { auth: keys['slow'], body: { ops: [{ op: 'upsert', prefix: '/slow/http', nextHops: [{ id: 'peer:h' }] }] } })).body.status).toBe('VISIBLE');
      peak = Math.max(peak, await rss(node));
      expect(peak - before).toBeLessThan(64 << 20);

      // The slow controller goes (its DELETE entries with it); the other session takes over.
      raw.close();
      await other.next((r) => r.response === 'primary' && r.primary.primary === true);
      expect((await other.batch([upsertOp('/fast/x', ['peer:f'])])).status).toBe('VISIBLE');
      expect((await fib('/slow')).map((e) => e.prefix)).toEqual([]);
      expect((await fib('/fast')).map((e) => e.prefix)).toEqual(['/fast/x']);
      await other.close();
      c.close();
      await noSessions();
      await stillServes();
    });

    it('refuses Modify sessions past the node\'s maximum with RESOURCE_EXHAUSTED, and takes them again once some close', async () => {
      const clients = Array.from({ length: 3 }, () => client(node));
      const all = Array.from({ length: 300 }, (_, i) => new Modify(clients[i % 3]!, keys['flood']));
      try {
        // Distinct election ids: whichever sessions get in, one of them is primary.
        const outcomes = await Promise.all(all.map((m, i) => {
          m.electionId = toWire128(BigInt(1000 - i));
          m.call.write({ open: { controllerId: '', electionId: m.electionId, persistence: 'PRESERVE', leaseMs: '0' } });
          return m.answer(20_000).then((a) => ('opened' in a ? 'opened' : `${a.status.code} ${a.status.errorCode}`));
        }));
        const count = (v: string) => outcomes.filter((o) => o === v).length;
        expect(count('opened')).toBe(256);
        expect(count(`${grpc.status.RESOURCE_EXHAUSTED} ERR_DMSC_BUSY`)).toBe(44);
        expect(await sessions()).toBe(256);
        // The open ones still work: the primary applies, the others are told they are not.
        const open = all.filter((_, i) => outcomes[i] === 'opened');
        const primary = open.reduce((a, b) => (BigInt(b.electionId.low) > BigInt(a.electionId.low) ? b : a));
        expect((await primary.batch([upsertOp('/flood/x', ['peer:f'])])).status).toBe('VISIBLE');
        expect((await open.find((m) => m !== primary)!.batch([upsertOp('/flood/y', ['peer:f'])])).status).toBe('NOT_PRIMARY');
        expect((await fib('/flood')).map((e) => e.prefix)).toEqual(['/flood/x']);

        await Promise.all(open.filter((m) => m !== primary).slice(0, 10).map((m) => m.close()));
        await waitFor(async () => (await sessions()) === 246);
        const late = new Modify(clients[0]!, keys['flood']);
        expect((await late.open({ electionId: 1n })).primary).toBe(false);
        await late.close();
      } finally {
        await Promise.all(all.map((m) => m.close()));
        for (const c of clients) c.close();
      }
      await noSessions();
      await stillServes();
    });

    it('ends the open session of a controller whose key is revoked, and only that one', async () => {
      const c = client(node);
      const victim = new Modify(c, keys['victim']);
      await victim.open({ electionId: 10n });
      const bystander = new Modify(c, keys['bystander']);
      await bystander.open({ electionId: 20n });
      expect(victim.responses.at(-1)).toMatchObject({ response: 'primary', primary: { primary: false, primaryControllerId: 'bystander' } });
      expect((await api(node.url, 'DELETE', '/v1/controllers/victim', { auth: node.token })).status).toBe(204);
      expect(await victim.status).toMatchObject({ code: grpc.status.UNAUTHENTICATED, errorCode: 'ERR_DMSC_UNAUTHORIZED' });
      expect(bystander.ended).toBe(false);
      expect((await bystander.batch([upsertOp('/bystander/x', ['peer:b'])])).status).toBe('VISIBLE');
      expect(await sessions()).toBe(1);
      // The key opens nothing any more.
      const again = new Modify(c, keys['victim']);
      again.call.write({ open: { controllerId: '', electionId: toWire128(30n), persistence: 'PRESERVE', leaseMs: '0' } });
      expect(await again.status).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      expect((await api(node.url, 'POST', '/v1/fib/batches', { auth: keys['victim'], body: { ops: [] } })).status).toBe(401);
      await bystander.close();
      c.close();
      await noSessions();
    });

    it('ends the Watch streams of a revoked key too: a revoked controller hears no more changes', async () => {
      const made = await api(node.url, 'POST', '/v1/controllers', { auth: node.token, body: { name: 'spy', scopes: ['/**'] } });
      const key = made.body.key as string;
      const c = client(node) as any;
      const watch = c.Watch({ sinceGeneration: '0' }, metadata(key));
      const heard: any[] = [];
      watch.on('data', (d: any) => heard.push(d));
      watch.on('error', () => {});
      const status = new Promise<grpc.StatusObject>((r) => watch.on('status', r));
      const events = sse(node, key);
      await waitFor(() => heard.some((d) => d.change === 'endOfSnapshot') && events.events.some((e) => e.event === 'end_of_snapshot'));
      expect((await api(node.url, 'DELETE', '/v1/controllers/spy', { auth: node.token })).status).toBe(204);
      await api(node.url, 'POST', '/v1/fib/batches', { auth: node.token, body: { ops: [{ op: 'upsert', prefix: '/after-revoke', nextHops: [{ id: 'peer:r' }] }] } });
      const ended = await Promise.race([status.then((s) => s.code), new Promise((r) => setTimeout(() => r('still open'), 2000))]);
      events.stop();
      watch.cancel();
      c.close();
      expect(heard.filter((d) => d.change === 'entry' && d.entry.prefix === '/after-revoke')).toEqual([]);
      expect(events.events.filter((e) => e.data?.prefix === '/after-revoke')).toEqual([]);
      expect(ended).toBe(grpc.status.UNAUTHENTICATED);
    });
  });

  describe('HTTP', () => {
    const batch = (auth: string, body: unknown) => api(node.url, 'POST', '/v1/fib/batches', { auth, body });

    it('applies a batch with the admin token or a controller key, answering VISIBLE with both generations', async () => {
      const a = await batch(node.token, { ops: [{ op: 'upsert', prefix: '/web/admin', nextHops: [{ id: 'peer:a' }] }] });
      expect(a).toMatchObject({ status: 200, body: { status: 'VISIBLE', generation: expect.any(Number), fibGeneration: expect.any(Number) } });
      const k = await batch(keys['web']!, { ops: [{ op: 'upsert', prefix: '/web/key', nextHops: [{ id: 'peer:w', weight: 5 }, { id: 'svc-web', endpoint: 'http://127.0.0.1:9/' }] }] });
      expect(k).toMatchObject({ status: 200, body: { status: 'VISIBLE', generation: 1 } });
      expect(k.body.fibGeneration).toBeGreaterThan(a.body.fibGeneration);
      expect((await fib('/web')).map((e) => [e.prefix, e.nextHops.map((h) => h.id).sort()])).toEqual([['/web/admin', ['peer:a']], ['/web/key', ['peer:w', 'svc-web']]]);
      // A key speaks for its own controller only.
      expect((await batch(keys['web']!, { controller: 'alpha', ops: [] })).body.error.code).toBe('ERR_DMSC_FORBIDDEN');
    });

    it('refuses a bad op with 422 ERR_DMSC_BATCH_REJECTED naming each, and a stale ifGeneration with 409 ERR_DMSC_GENERATION_MISMATCH', async () => {
      const generation = await generationOf('web');
      const bad = await batch(keys['web']!, { ops: [
        { op: 'upsert', prefix: '/web/fine', nextHops: [{ id: 'peer:a' }] },
        { op: 'upsert', prefix: 'web/no-slash', nextHops: [{ id: 'peer:a' }] },
        { op: 'upsert', prefix: '/web/dup', nextHops: [{ id: 'peer:a' }, { id: 'peer:a' }] },
      ] });
      expect(bad.status).toBe(422);
      expect(bad.body.error).toMatchObject({ code: 'ERR_DMSC_BATCH_REJECTED', details: { errors: [{ opIndex: 1, code: 'ERR_DMSC_INVALID_NAME' }, { opIndex: 2, code: 'ERR_DMSC_DUPLICATE_NEXT_HOP' }], generation } });
      expect(await fib('/web/fine')).toEqual([]);

      const stale = await batch(keys['web']!, { ifGeneration: generation + 5, ops: [{ op: 'remove', prefix: '/web/key' }] });
      expect(stale).toMatchObject({ status: 409, body: { error: { code: 'ERR_DMSC_GENERATION_MISMATCH', details: { generation } } } });
      expect(await fib('/web/key')).toHaveLength(1);
      expect((await batch(keys['web']!, { ifGeneration: generation, ops: [{ op: 'remove', prefix: '/web/key' }] })).body).toMatchObject({ status: 'VISIBLE', generation: generation + 1 });
      expect(await fib('/web/key')).toEqual([]);
      // An op the schema does not know is a 400 before it reaches the rib.
      expect((await batch(keys['web']!, { ops: [{ op: 'explode', prefix: '/web/x' }] })).status).toBe(400);
    });

    it('takes next-hop groups sent once a batch, and names an upsert of a group the batch lacks', async () => {
      const groups = [[{ id: 'peer:g1' }, { id: 'peer:g2', weight: 7 }], [{ id: 'peer:g3' }]];
      const ok = await batch(keys['web']!, { groups, ops: [{ op: 'upsert', prefix: '/grp/a', group: 0 }, { op: 'upsert', prefix: '/grp/b', group: 1 }, { op: 'upsert', prefix: '/grp/c', group: 0 }] });
      expect(ok).toMatchObject({ status: 200, body: { status: 'VISIBLE' } });
      expect((await fib('/grp')).map((e) => [e.prefix, e.nextHops.map((h) => [h.id, h.weight])])).toEqual([
        ['/grp/a', [['peer:g1', 100], ['peer:g2', 7]]], ['/grp/b', [['peer:g3', 100]]], ['/grp/c', [['peer:g1', 100], ['peer:g2', 7]]],
      ]);
      const bad = await batch(keys['web']!, { groups, ops: [
        { op: 'upsert', prefix: '/grp/d', group: 1 }, { op: 'upsert', prefix: '/grp/e', group: 2 }, { op: 'upsert', prefix: '/grp/f', group: 0, nextHops: [{ id: 'peer:x' }] },
        { op: 'upsert', prefix: 'grp/no-slash', group: 1 },
      ] });
      expect(bad.status).toBe(422);
      // A bad group hides no other bad op.
      expect(bad.body.error).toMatchObject({ code: 'ERR_DMSC_BATCH_REJECTED', details: { errors: [
        { opIndex: 1, code: 'ERR_DMSC_NOT_FOUND' }, { opIndex: 2, code: 'ERR_DMSC_INVALID_ARGUMENT' }, { opIndex: 3, code: 'ERR_DMSC_INVALID_NAME' },
      ] } });
      expect(await fib('/grp/d')).toEqual([]);
      // Who may program comes first: another controller's batch is refused whole, its group errors unread.
      expect((await batch(keys['web']!, { controller: 'alpha', groups, ops: [{ op: 'upsert', prefix: '/grp/e', group: 2 }] })).body.error.code).toBe('ERR_DMSC_FORBIDDEN');
      // A group's next hops are checked as an upsert's own: a bad one names each upsert of it.
      const dup = await batch(keys['web']!, { groups: [[{ id: 'peer:d' }, { id: 'peer:d' }]], ops: [{ op: 'upsert', prefix: '/grp/g', group: 0 }, { op: 'upsert', prefix: '/grp/h', group: 0 }] });
      expect(dup.body.error.details.errors.map((e: { opIndex: number; code: string }) => [e.opIndex, e.code])).toEqual([[0, 'ERR_DMSC_DUPLICATE_NEXT_HOP'], [1, 'ERR_DMSC_DUPLICATE_NEXT_HOP']]);
    });

    it('refuses batches with 409 ERR_DMSC_NOT_PRIMARY while another controller\'s Modify session is primary', async () => {
      const c = client(node);
      const owner = new Modify(c, keys['owner']);
      expect((await owner.open({ electionId: 3n })).primary).toBe(true);
      const refused = await batch(keys['other']!, { ops: [{ op: 'upsert', prefix: '/np/other', nextHops: [{ id: 'peer:o' }] }] });
      expect(refused).toMatchObject({ status: 409, body: { error: { code: 'ERR_DMSC_NOT_PRIMARY', message: expect.stringContaining('owner') } } });
      expect((await batch(node.token, { controller: 'other', ops: [] })).status).toBe(409);
      // The primary's own controller may still use HTTP.
      expect((await batch(keys['owner']!, { ops: [{ op: 'upsert', prefix: '/np/owner', nextHops: [{ id: 'peer:o' }] }] })).status).toBe(200);
      await owner.close();
      c.close();
      await noSessions();
      expect((await batch(keys['other']!, { ops: [{ op: 'upsert', prefix: '/np/other', nextHops: [{ id: 'peer:o' }] }] })).status).toBe(200);
      expect((await fib('/np')).map((e) => e.prefix)).toEqual(['/np/other', '/np/owner']);
    });

    it('streams FIB changes as server-sent events, and resumes after Last-Event-ID without a snapshot', async () => {
      const first = sse(node, keys['web']!);
      await first.until((events) => events.some((e) => e.event === 'end_of_snapshot'));
      const snapshot = first.events.slice();
      const end = snapshot.find((e) => e.event === 'end_of_snapshot')!;
      expect(snapshot.filter((e) => e.event === 'entry').map((e) => e.data.prefix)).toContain('/web/admin');
      // Only the end of the snapshot is a place to resume from; ids are EPOCH.GENERATION.
      const epoch = end.id!.split('.')[0]!;
      expect(Number(epoch)).toBeGreaterThan(0);
      const id = (generation: number) => `${epoch}.${generation}`;
      for (const e of snapshot) expect(e.id).toBe(e === end ? id(end.data.generation) : undefined);

      const one = await batch(keys['web']!, { ops: [{ op: 'upsert', prefix: '/sse/one', nextHops: [{ id: 'peer:s' }] }] });
      await first.until((events) => events.some((e) => e.data?.prefix === '/sse/one'));
      const seen = first.events.find((e) => e.data?.prefix === '/sse/one')!;
      expect(seen).toMatchObject({ event: 'entry', id: id(one.body.fibGeneration), data: { prefix: '/sse/one', removed: false, nextHops: [{ id: 'peer:s', state: 'up' }] } });
      first.stop();

      // Missed while away: an upsert and a removal.
      const two = await batch(keys['web']!, { ops: [{ op: 'upsert', prefix: '/sse/two', nextHops: [{ id: 'peer:s' }] }] });
      const three = await batch(keys['web']!, { ops: [{ op: 'remove', prefix: '/sse/one' }] });
      const resumed = sse(node, keys['web']!, seen.id);
      await resumed.until((events) => events.some((e) => e.id === id(three.body.fibGeneration)));
      await new Promise((r) => setTimeout(r, 200));
      resumed.stop();
      expect(resumed.events.map((e) => [e.event, e.id, e.data.prefix, e.data.removed])).toEqual([
        ['entry', id(two.body.fibGeneration), '/sse/two', false],
        ['entry', id(three.body.fibGeneration), '/sse/one', true],
      ]);
      // The same generation of another epoch (an earlier start of the node) is a snapshot.
      const stale = sse(node, keys['web']!, `${Number(epoch) + 1}.${two.body.fibGeneration}`);
      await stale.until((events) => events.some((e) => e.event === 'end_of_snapshot'));
      stale.stop();
      expect(stale.events.filter((e) => e.event === 'entry').map((e) => e.data.prefix)).toContain('/web/admin');
      // Without a key, nothing.
      const denied = sse(node, 'nope');
      await denied.exited;
      expect(denied.raw()).toContain('ERR_DMSC_UNAUTHORIZED');
    });

    it('gives a client cut off inside the snapshot the rest of it when it resumes from the last id it saw', async () => {
      await batch(keys['web']!, { ops: Array.from({ length: 50 }, (_, i) => ({ op: 'upsert', prefix: `/snap/${i}`, nextHops: [{ id: 'peer:s' }] })) });
      const full = sse(node, keys['web']!);
      await full.until((events) => events.some((e) => e.event === 'end_of_snapshot'));
      full.stop();
      const entries = full.events.filter((e) => e.event === 'entry');
      // A client that saw only the first entry of the snapshot resumes with that entry's id
      // (what an EventSource sends by itself).
      const resumed = sse(node, keys['web']!, entries[0]!.id);
      await new Promise((r) => setTimeout(r, 500));
      resumed.stop();
      const got = new Set(resumed.events.filter((e) => e.event === 'entry').map((e) => e.data.prefix));
      const missing = entries.slice(1).map((e) => e.data.prefix).filter((p) => !got.has(p));
      expect(missing).toEqual([]);
    });
  });
});
