// A2ASP sessions over real loopback TCP and WebSocket connections, with a stand-in for
// the grant check (grants have their own tests): idle timeout, keepalive and a silent
// peer, ordering, size limits, messages kept for a late reader, and handshakes that go
// wrong.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, type Message } from '../../src/mesh/frames.js';
import { tcpChannel } from '../../src/session/channel.js';
import type { GrantVerifier } from '../../src/session/grants.js';
import { openSession, SessionAcceptor, type Session, type SessionClose } from '../../src/session/session.js';

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

const trusting = { verify: async (_g: unknown, _c: unknown, capability: unknown) => ({ initiator: 'a1', gateway: 'g', capability, jti: 'j', expiresAt: Date.now() + 60_000 }) } as unknown as GrantVerifier;

async function listen(onConnection: (s: Socket) => void): Promise<string> {
  const server = createServer(onConnection);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `tcp://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A target: an acceptor on a TCP listener; `sessions` collects what it accepts. */
async function target(onSession: (s: Session) => void = () => {}, options: Partial<ConstructorParameters<typeof SessionAcceptor>[0]> = {}) {
  const acceptor = new SessionAcceptor({ verifier: trusting, accept: (r) => r.proposed.app, onSession, ...options });
  const url = await listen((socket) => acceptor.take(tcpChannel(socket, 1 << 20)));
  return { url, acceptor };
}

/** A peer that speaks raw frames: answers INIT with ACCEPT, then does what `then` says. */
async function rawTarget(then: (send: (m: Message) => void, socket: Socket) => void, agreed: Record<string, unknown> = {}): Promise<string> {
  return listen((socket) => {
    const decoder = new FrameDecoder(1 << 20, true);
    socket.on('data', (chunk) => {
      for (const m of decoder.push(chunk)) {
        if (m.type === 'SESSION_INIT') {
          const send = (x: Message) => socket.write(encodeFrame(x));
          send({ type: 'SESSION_ACCEPT', session: 's1', params: { ...(m['params'] as Record<string, unknown>), ...agreed } });
          then(send, socket);
        }
      }
    });
    socket.on('error', () => {});
  });
}

const open = (url: string, params: Record<string, unknown> = {}) => openSession({ target: { aic: 'b1', session: url }, grant: 'g', credential: 'c', capability: '/capability/x', params });
const closed = (s: Session) => new Promise<SessionClose>((r) => s.once('close', r));

describe('A2ASP sessions', () => {
  it('ends a session with no data for the idle time, on both sides', async () => {
    let far: Session | undefined;
    const t = await target((s) => (far = s));
    const s = await open(t.url, { idleTimeoutMs: 200, keepaliveMs: 50 });
    const [near, other] = await Promise.all([closed(s), (async () => {
      while (!far) await new Promise((r) => setTimeout(r, 5));
      return closed(far);
    })()]);
    // Whichever side's clock ran out first terminated; the other heard it.
    expect([near.by, other.by].sort()).toEqual(expect.arrayContaining(['idle']));
    expect([near.by, other.by].every((b) => b === 'idle' || b === 'remote')).toBe(true);
  });

  it('keeps a quiet session alive with PINGs, and drops one whose peer falls silent', async () => {
    const t = await target();
    const s = await open(t.url, { idleTimeoutMs: 5000, keepaliveMs: 40 });
    await new Promise((r) => setTimeout(r, 300));
    expect(s.closed).toBe(false);
    await s.close();
    // This peer accepts, then never answers a PING.
    const silent = await rawTarget(() => {});
    const lost = await open(silent, { idleTimeoutMs: 5000, keepaliveMs: 40 });
    expect(await closed(lost)).toMatchObject({ by: 'lost', code: 'ERR_DMSC_SESSION_TIMEOUT' });
  });

  it('refuses data out of order as a protocol error', async () => {
    const url = await rawTarget((send) => {
      send({ type: 'DATA', seq: 1, data: 'one' });
      send({ type: 'DATA', seq: 3, data: 'three' });
    });
    const s = await open(url);
    const got: unknown[] = [];
    s.on('message', (m) => got.push(m));
    expect(await closed(s)).toMatchObject({ by: 'error', code: 'ERR_DMSC_SESSION_PROTOCOL' });
    expect(got).toEqual(['one']);
  });

  it('survives a peer that agrees a tiny size and then sends junk, on either side', async () => {
    const url = await rawTarget((send) => send({ type: 'DATA', seq: 'A'.repeat(200), data: 1 }), { maxMessageBytes: 64 });
    const s = await openSession({ target: { aic: 'b1', session: url }, grant: 'g', credential: 'c', capability: '/capability/x', params: {} });
    expect(await closed(s)).toMatchObject({ code: 'ERR_DMSC_SESSION_PROTOCOL' });
    // A target with a small limit answers an oversized, odd SESSION_INIT with a rejection.
    const t = await target(() => {}, { limits: { maxMessageBytes: 128 } });
    const socket = connect(Number(new URL(t.url).port), '127.0.0.1');
    const decoder = new FrameDecoder(1 << 20, true);
    const got: Message[] = [];
    socket.on('data', (c) => got.push(...decoder.push(c)));
    socket.write(encodeFrame({ type: 'SESSION_INIT', v: 'v'.repeat(200) }));
    await new Promise((r) => socket.once('close', r));
    expect(got).toMatchObject([{ type: 'SESSION_REJECT', code: 'ERR_DMSC_SESSION_PROTOCOL' }]);
  });

  it('refuses a message over the agreed size without closing the session', async () => {
    const echo: unknown[] = [];
    const t = await target((s) => s.on('message', (m) => echo.push(m)), { limits: { maxMessageBytes: 1024 } });
    const s = await open(t.url, { maxMessageBytes: 4096 });
    expect(s.params.maxMessageBytes).toBe(1024);
    await expect(s.send('x'.repeat(2000))).rejects.toMatchObject({ code: 'ERR_DMSC_PAYLOAD_TOO_LARGE' });
    await s.send(Buffer.from('small'));
    await new Promise((r) => setTimeout(r, 50));
    expect(echo).toEqual([Buffer.from('small')]);
    await s.close();
  });

  it('keeps messages for a reader that comes late, pausing the sender, and gives them in order', async () => {
    const n = 3000;
    const t = await target((s) => void (async () => {
      for (let i = 0; i < n; i++) await s.send(i);
      await s.close('all sent');
    })());
    const s = await open(t.url);
    await new Promise((r) => setTimeout(r, 200));
    const got: unknown[] = [];
    for await (const m of s) got.push(m);
    expect(got).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('rejects a connection whose first message is not SESSION_INIT, and one that says nothing in time', async () => {
    const t = await target(() => {}, { initTimeoutMs: 100 });
    const port = Number(new URL(t.url).port);
    const talk = async (first?: Message) => {
      const socket = connect(port, '127.0.0.1');
      const decoder = new FrameDecoder(1 << 20, true);
      const got: Message[] = [];
      socket.on('data', (c) => got.push(...decoder.push(c)));
      if (first) socket.write(encodeFrame(first));
      await new Promise((r) => socket.once('close', r));
      return got;
    };
    expect(await talk({ type: 'DATA', seq: 1, data: 1 })).toMatchObject([{ type: 'SESSION_REJECT', code: 'ERR_DMSC_SESSION_PROTOCOL' }]);
    expect(await talk({ type: 'SESSION_INIT', v: 99 })).toMatchObject([{ type: 'SESSION_REJECT', reason: expect.stringContaining('version 99') }]);
    expect(await talk()).toMatchObject([{ type: 'SESSION_REJECT', code: 'ERR_DMSC_SESSION_TIMEOUT' }]);
  });

  it('passes a rejection by the target on as a typed error', async () => {
    const t = await target(() => {}, { accept: () => { throw new Error('busy with someone else'); } });
    await expect(open(t.url)).rejects.toMatchObject({ code: 'ERR_DMSC_SESSION_REJECTED', message: expect.stringContaining('busy with someone else') });
    const refused = { verify: async () => { throw Object.assign(new Error('grant rejected: expired'), { code: 'ERR_DMSC_GRANT_EXPIRED' }); } } as unknown as GrantVerifier;
    const u = await target(() => {}, { verifier: refused });
    await expect(open(u.url)).rejects.toMatchObject({ code: 'ERR_DMSC_GRANT_EXPIRED' });
    await expect(open('tcp://127.0.0.1:1')).rejects.toMatchObject({ code: 'ERR_DMSC_SESSION_CLOSED' });
    await expect(open('http://127.0.0.1:1')).rejects.toMatchObject({ code: 'ERR_DMSC_INVALID_ARGUMENT' });
  });
});
