// Peering sessions over real loopback TCP: the frame codec under arbitrary chunking, the
// handshake with real Ed25519 keys certified by a real (test) AMC key, and every way a bad
// peer is shown the door (a certificate that does not verify or names another gateway, a
// proof for another connection, a replayed or reflected OPEN, garbage, an oversized
// frame, silence) without touching the other sessions.
import { connect, createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Packr } from 'msgpackr';
import { encodeFrame, FrameDecoder, type Message } from '../../src/mesh/frames.js';
import { Handshake, HANDSHAKE_MAX_FRAME } from '../../src/mesh/handshake.js';
import { PeerSession, type SessionOptions } from '../../src/mesh/peer-session.js';
import { newSigningKey, signingKey } from '../../src/identity/jwt.js';
import { certified, gateway, sessionOptions, type TestGateway } from './gateways.js';

describe('frames', () => {
  it('decodes any sequence of frames however the stream is cut', () => {
    const message = fc.record({ type: fc.constantFrom('A', 'B'), n: fc.integer(), s: fc.string(), list: fc.array(fc.string(), { maxLength: 5 }) });
    fc.assert(fc.property(fc.array(message, { minLength: 1, maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (messages, cuts) => {
      const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));
      const decoder = new FrameDecoder();
      const out: Message[] = [];
      for (let at = 0, i = 0; at < stream.length; i++) {
        const n = cuts[i % cuts.length]!;
        out.push(...decoder.push(stream.subarray(at, at + n)));
        at += n;
      }
      expect(out).toEqual(messages);
      expect(decoder.buffered).toBe(0);
    }));
  });

  it('refuses oversized frames as soon as their length is known, and bodies that are not messages', () => {
    const decoder = new FrameDecoder(100);
    const big = Buffer.alloc(4);
    big.writeUInt32BE(101, 0);
    expect(() => decoder.push(big)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_FRAME_TOO_LARGE' }));
    expect(() => encodeFrame({ type: 'X', pad: 'x'.repeat(200) }, 100)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_FRAME_TOO_LARGE' }));
    for (const body of [Buffer.from([0xc1]), Buffer.from([0x93, 1, 2, 3]), Buffer.from([0x81, 0xa1, 0x74, 0x05])]) {
      const frame = Buffer.alloc(4 + body.length);
      frame.writeUInt32BE(body.length, 0);
      body.copy(frame, 4);
      expect(() => new FrameDecoder().push(frame)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_MALFORMED_FRAME' }));
    }
  });

  it('refuses frames holding anything but plain data: msgpackr extensions, deep nesting', () => {
    // A packer that writes msgpackr's extension types, as a hostile peer could.
    const rich = new Packr({ moreTypes: true, useRecords: false });
    const framed = (value: unknown) => {
      const body = rich.pack(value);
      const f = Buffer.alloc(4 + body.length);
      f.writeUInt32BE(body.length, 0);
      body.copy(f, 4);
      return f;
    };
    let deep: unknown = 'leaf';
    for (let i = 0; i < 20; i++) deep = [deep];
    for (const value of [new Date(), new Set([1]), /a+$/, new Error('e'), 2n ** 70n, Buffer.from('ab'), deep]) {
      expect(() => new FrameDecoder().push(framed({ type: 'CSP_ROUTES', entries: [{ x: value }] }))).toThrow(expect.objectContaining({ code: 'ERR_DMSC_MALFORMED_FRAME' }));
    }
    // Plain data, as deep as real messages go, still decodes.
    const plain = { type: 'CSP_ROUTES', entries: [{ name: '/a', tags: ['t'], cost: 1, path: ['g'], extra: { n: null, b: true } }] };
    expect(new FrameDecoder().push(framed(plain))).toEqual([plain]);
  });
});

/** Reads frames off a raw socket, one message at a time. */
function reader(socket: Socket) {
  const decoder = new FrameDecoder();
  const queue: Message[] = [];
  const waiters: ((m: Message | undefined) => void)[] = [];
  socket.on('data', (d) => {
    for (const m of decoder.push(d)) {
      const w = waiters.shift();
      if (w) w(m);
      else queue.push(m);
    }
  });
  socket.on('close', () => {
    for (const w of waiters.splice(0)) w(undefined);
  });
  return {
    /** The next message, or undefined once the connection closed. */
    next: (): Promise<Message | undefined> => (queue.length ? Promise.resolve(queue.shift()) : socket.destroyed ? Promise.resolve(undefined) : new Promise((r) => waiters.push(r))),
    queued: () => queue.length,
  };
}

describe('PeerSession', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  let a: TestGateway;
  let b: TestGateway;
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** A listening gateway; resolves its port and a queue of its sessions (or refusals). */
  async function listen(opts: SessionOptions) {
    const accepted: Promise<PeerSession>[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      const p = PeerSession.establish(socket, opts);
      p.catch(() => {});
      accepted.push(p);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.address() as { port: number }).port, accepted };
  }
  let lastDialled: Socket | undefined;
  async function dial(port: number, opts: SessionOptions): Promise<PeerSession> {
    const socket = await raw(port);
    lastDialled = socket;
    return PeerSession.establish(socket, opts);
  }
  async function raw(port: number): Promise<Socket> {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    return socket;
  }
  /** A dialler that speaks the handshake by hand, up to (not including) its OPEN_OK. */
  async function dialByHand(port: number, gw: TestGateway, holdMs = 900): Promise<Socket> {
    const socket = await raw(port);
    const from = reader(socket);
    const hs = new Handshake({ role: 'dialler', local: { gateway: gw.id, domain: 'd1' }, holdMs });
    socket.write(encodeFrame(hs.hello()));
    const open = hs.receive((await from.next())!, gw.credentials);
    socket.write(encodeFrame((open as { messages: readonly Message[] }).messages[0]!));
    const theirs = (await from.next())!;
    expect(hs.receive(theirs, gw.credentials).kind).toBe('check');
    expect(hs.proofChecked(await certified(theirs['certificate'] as string, { gateway: 'gw-b', domain: 'd1' }), gw.credentials).kind).toBe('open');
    return socket;
  }
  const nextMessage = (s: PeerSession) => new Promise<Message>((r) => s.once('message', r));
  const closed = (s: PeerSession) => new Promise<unknown>((r) => s.once('close', r));

  it('opens with proofs both ways, agrees on the smaller hold time, and carries messages', async () => {
    [a, b] = [await gateway('gw-a'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener', { holdMs: 1200 }));
    const aSide = await dial(l.port, sessionOptions(a, 'dialler', { expect: 'gw-b', holdMs: 900 }));
    const bSide = await l.accepted[0]!;
    expect(aSide.peer).toEqual({ gateway: 'gw-b', domain: 'd1' });
    expect(bSide.peer).toEqual({ gateway: 'gw-a', domain: 'd1' });
    expect([aSide.holdMs, bSide.holdMs]).toEqual([900, 900]);
    const got = nextMessage(bSide);
    aSide.send({ type: 'PING', n: 1 });
    expect(await got).toEqual({ type: 'PING', n: 1 });
    // Authenticated: frames may be as large as the session allows, far past the handshake's limit.
    const big = nextMessage(aSide);
    bSide.send({ type: 'BIG', pad: 'x'.repeat(100_000) });
    expect((await big)['pad']).toHaveLength(100_000);
    // Keepalives hold an idle session past its hold time.
    await new Promise((r) => setTimeout(r, 1500));
    expect(aSide.closed || bSide.closed).toBe(false);
    const gone = closed(bSide);
    aSide.close();
    expect(await gone).toBeUndefined();
  });

  it('carries the data-plane address each side gives, as signed in its OPEN', async () => {
    [a, b] = [await gateway('gw-a'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener', { local: { gateway: 'gw-b', domain: 'd1', dataplane: '127.0.0.1:7443', dataplaneTls: true } }));
    const aSide = await dial(l.port, sessionOptions(a, 'dialler', { local: { gateway: 'gw-a', domain: 'd1', dataplane: '[::1]:7080' } }));
    expect(aSide.peer).toEqual({ gateway: 'gw-b', domain: 'd1', dataplane: '127.0.0.1:7443', dataplaneTls: true });
    expect((await l.accepted[0]!).peer).toEqual({ gateway: 'gw-a', domain: 'd1', dataplane: '[::1]:7080' });
    aSide.close();
  });

  it('opens when checking a certificate takes a while, keeping what comes meanwhile in order', async () => {
    [a, b] = [await gateway('gw-a'), await gateway('gw-b')];
    const slow: SessionOptions['certified'] = (cert, claimed) => new Promise((r) => setTimeout(() => r(certified(cert, claimed)), 150));
    const l = await listen(sessionOptions(b, 'listener', { certified: slow }));
    const aSide = await dial(l.port, sessionOptions(a, 'dialler', { certified: slow }));
    const bSide = await l.accepted[0]!;
    const got: unknown[] = [];
    bSide.on('message', (m) => got.push(m['n']));
    for (let n = 1; n <= 3; n++) aSide.send({ type: 'M', n });
    await new Promise((r) => setTimeout(r, 100));
    expect(got).toEqual([1, 2, 3]);
    aSide.close();
  });

  it('refuses a peer whose certificate the AMC did not sign, or that names another gateway, or that is not the peer expected', async () => {
    b = await gateway('gw-b');
    const l = await listen(sessionOptions(b, 'listener'));
    const forged = await gateway('gw-a', 'd1', signingKey(newSigningKey('not-the-amc')));
    await expect(dial(l.port, sessionOptions(forged, 'dialler'))).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /peer refused the session/ });
    await expect(l.accepted[0]).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /unknown key/ });
    // A genuine certificate, for another gateway than the one claimed.
    const other = await gateway('gw-a', 'd1', undefined, 'gw-z');
    await expect(dial(l.port, sessionOptions(other, 'dialler'))).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE' });
    await expect(l.accepted[1]).rejects.toMatchObject({ message: /certificate is for gw-z/ });
    // The dialler expected someone else: it says so before proving anything.
    a = await gateway('gw-a');
    await expect(dial(l.port, sessionOptions(a, 'dialler', { expect: 'gw-c' }))).rejects.toMatchObject({ message: /expected gateway gw-c, got gw-b/ });
    await expect(l.accepted[2]).rejects.toMatchObject({ message: /peer refused the session: expected gateway gw-c/ });
  });

  it('sends a stranger nothing but its HELLO until the stranger has proved itself', async () => {
    b = await gateway('gw-b');
    const l = await listen(sessionOptions(b, 'listener', { openTimeoutMs: 400 }));
    const stranger = await raw(l.port);
    const from = reader(stranger);
    const hello = await from.next();
    expect(hello).toMatchObject({ type: 'HELLO', version: 2, gateway: 'gw-b', domain: 'd1', nonce: expect.stringMatching(/^[\w-]{43}$/) });
    expect(Object.keys(hello!).sort()).toEqual(['domain', 'gateway', 'nonce', 'type', 'version']);
    // A HELLO of its own, and then nothing: the listener waits for a proof, and gives up.
    stranger.write(encodeFrame(new Handshake({ role: 'dialler', local: { gateway: 'gw-x', domain: 'd1' }, holdMs: 900 }).hello()));
    expect(await from.next()).toMatchObject({ type: 'NOTIFY', code: 'ERR_DMSC_BAD_HANDSHAKE', message: /no handshake within 400 ms/ });
    expect(await from.next()).toBeUndefined();
    await expect(l.accepted[0]).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE' });
  });

  it('refuses an OPEN whose proof was made for another nonce, and an OPEN replayed from another connection', async () => {
    [a, b] = [await gateway('gw-a'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener'));
    // A genuine dialler, whose OPEN is signed for a listener nonce of its own making.
    const elsewhere = new Handshake({ role: 'dialler', local: { gateway: 'gw-a', domain: 'd1' }, holdMs: 900 });
    const fakeListener = new Handshake({ role: 'listener', local: { gateway: 'gw-b', domain: 'd1' }, holdMs: 900 });
    const step = elsewhere.receive(fakeListener.hello(), a.credentials);
    const openForAnotherNonce = (step as { messages: readonly Message[] }).messages[0]!;
    expect(openForAnotherNonce).toMatchObject({ type: 'OPEN', certificate: a.certificate });
    const attacker = await raw(l.port);
    const from = reader(attacker);
    expect(await from.next()).toMatchObject({ type: 'HELLO' });
    attacker.write(Buffer.concat([encodeFrame(elsewhere.hello()), encodeFrame(openForAnotherNonce)]));
    expect(await from.next()).toMatchObject({ type: 'NOTIFY', message: /proof does not verify for this connection/ });
    await expect(l.accepted[0]).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /gw-a's proof does not verify/ });

    // Everything a real dialler sent on one connection, replayed byte for byte on another.
    const recorded: Buffer[] = [];
    const real = await raw(l.port);
    real.on('data', () => {});
    const write = real.write.bind(real);
    real.write = ((chunk: Buffer, ...rest: never[]) => {
      recorded.push(Buffer.from(chunk));
      return write(chunk, ...rest);
    }) as typeof real.write;
    const session = await PeerSession.establish(real, sessionOptions(a, 'dialler'));
    await l.accepted[1]!;
    const replay = await raw(l.port);
    const heard = reader(replay);
    replay.write(Buffer.concat(recorded));
    expect(await heard.next()).toMatchObject({ type: 'HELLO' });
    expect(await heard.next()).toMatchObject({ type: 'NOTIFY', message: /proof does not verify/ });
    await expect(l.accepted[2]).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE' });
    // The session that was recorded is untouched.
    expect(session.closed).toBe(false);
    session.close();
  });

  it('refuses a listener that reflects the dialler\'s own OPEN back as its proof', async () => {
    a = await gateway('gw-a');
    const server = createServer((s) => {
      sockets.push(s);
      const from = reader(s);
      // Poses as gw-a's peer gw-b: a HELLO, then gw-a's own OPEN sent straight back.
      s.write(encodeFrame(new Handshake({ role: 'listener', local: { gateway: 'gw-b', domain: 'd1' }, holdMs: 900 }).hello()));
      void (async () => {
        await from.next();
        const open = await from.next();
        if (open && !s.destroyed) s.write(encodeFrame(open));
      })();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    // gw-a's certificate names gw-a, not gw-b: and even a certificate for gw-b would not
    // make a dialler's proof pass for a listener's.
    await expect(dial(port, sessionOptions(a, 'dialler', { certified: async (cert) => certified(cert, { gateway: 'gw-a', domain: 'd1' }) })))
      .rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /proof does not verify/ });
  });

  it('holds frames to the handshake\'s size until the peer has proved itself', async () => {
    b = await gateway('gw-b');
    const l = await listen(sessionOptions(b, 'listener'));
    const stranger = await raw(l.port);
    const from = reader(stranger);
    await from.next();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(HANDSHAKE_MAX_FRAME + 1, 0);
    stranger.write(head);
    expect(await from.next()).toMatchObject({ type: 'NOTIFY', code: 'ERR_DMSC_FRAME_TOO_LARGE' });
    await expect(l.accepted[0]).rejects.toMatchObject({ code: 'ERR_DMSC_FRAME_TOO_LARGE', message: new RegExp(`limit is ${HANDSHAKE_MAX_FRAME}`) });
  });

  it('closes a session that sends garbage or an oversized frame, and leaves the others open', async () => {
    b = await gateway('gw-b');
    const l = await listen(sessionOptions(b, 'listener', { maxFrame: 4096 }));
    const good = await dial(l.port, sessionOptions(await gateway('gw-good'), 'dialler'));
    const goodB = await l.accepted[0]!;
    for (const attack of ['garbage', 'oversized'] as const) {
      const bad = await dial(l.port, sessionOptions(await gateway(`gw-${attack}`), 'dialler'));
      const badB = await l.accepted.at(-1)!;
      const why = closed(badB);
      const told = closed(bad);
      // Straight onto the socket: the session's own send would never write such frames.
      lastDialled!.write(attack === 'garbage' ? Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]) : Buffer.from([0, 0, 0x10, 0x01]));
      expect(await why).toMatchObject({ code: attack === 'garbage' ? 'ERR_DMSC_MALFORMED_FRAME' : 'ERR_DMSC_FRAME_TOO_LARGE' });
      // The offender is told why.
      expect(await told).toMatchObject({ code: 'ERR_DMSC_PEER_CLOSED' });
    }
    const got = nextMessage(goodB);
    good.send({ type: 'STILL', ok: true });
    expect(await got).toEqual({ type: 'STILL', ok: true });
  });

  it('ends a session when the hold time passes in silence', async () => {
    [a, b] = [await gateway('gw-q'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener', { holdMs: 400 }));
    // A dialler that completes the handshake by hand and then says nothing, not even keepalives.
    const quiet = await dialByHand(l.port, a, 400);
    quiet.write(encodeFrame({ type: 'OPEN_OK' }));
    const session = await l.accepted[0]!;
    expect(await closed(session)).toMatchObject({ code: 'ERR_DMSC_HOLD_EXPIRED' });
  });

  it('keeps messages sent with the OPEN_OK until a listener comes, then delivers them in order', async () => {
    [a, b] = [await gateway('gw-r'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener'));
    const socket = await dialByHand(l.port, a);
    // OPEN_OK and two messages in one write.
    socket.write(Buffer.concat([encodeFrame({ type: 'OPEN_OK' }), encodeFrame({ type: 'M', n: 1 }), encodeFrame({ type: 'M', n: 2 })]));
    const session = await l.accepted[0]!;
    await new Promise((r) => setTimeout(r, 50));
    const got: unknown[] = [];
    session.once('message', (m) => got.push(m['n']));
    await new Promise((r) => setImmediate(r));
    session.on('message', (m) => got.push(m['n']));
    socket.write(encodeFrame({ type: 'M', n: 3 }));
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([1, 2, 3]);
    session.close();
  });

  it('opens when large frames come in the same packets as the OPEN_OK, and holds them to the session\'s limit from there', async () => {
    [a, b] = [await gateway('gw-r'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener'));
    const socket = await dialByHand(l.port, a);
    // A digest snapshot far past the handshake's 8 KiB, right behind the OPEN_OK.
    const routes = { type: 'CSP_ROUTES', entries: Array.from({ length: 2000 }, (_, i) => ({ name: `/capability/r${i}`, tags: [], cost: 0, path: ['gw-r'] })) };
    socket.write(Buffer.concat([encodeFrame({ type: 'OPEN_OK' }), encodeFrame(routes)]));
    const session = await l.accepted[0]!;
    const got = await new Promise<Message>((r) => session.once('message', r));
    expect((got['entries'] as unknown[]).length).toBe(2000);
    session.close();
  });

  it('refuses HELLOs and OPENs whose fields are not what they must be, without throwing', async () => {
    [a, b] = [await gateway('gw-a'), await gateway('gw-b')];
    const l = await listen(sessionOptions(b, 'listener'));
    const hello = new Handshake({ role: 'dialler', local: { gateway: 'gw-a', domain: 'd1' }, holdMs: 900 }).hello();
    const cases: [Message[], RegExp][] = [
      [[{ type: 'HELLO', version: 1, gateway: 'gw-a', domain: 'd1', nonce: hello['nonce'] as string }], /unsupported protocol version 1/],
      [[{ ...hello, version: { toString: 1 } } as unknown as Message], /unsupported protocol version/],
      [[{ ...hello, gateway: 'gw b' }], /valid gateway id/],
      [[{ ...hello, nonce: 'short' }], /32-byte nonce/],
      [[{ ...hello, gateway: 'gw-b' }], /a session to itself/],
      [[{ type: 'OPEN', certificate: a.certificate }], /expected HELLO, got OPEN/],
      [[{ type: { toString: 1 } } as unknown as Message], /string type/],
      [[{ type: 'NOTIFY', code: { toString: 1 }, message: { toString: 1 } } as unknown as Message], /peer refused the session: \(object\)/],
      [[hello, { type: 'OPEN', certificate: a.certificate, proof: 'x'.repeat(86), holdMs: 900, dataplane: 'not an address' }], /data-plane address/],
      [[hello, { type: 'OPEN', certificate: a.certificate, proof: 'x'.repeat(86), holdMs: 900, dataplaneTls: 'yes' }], /dataplaneTls/],
      [[hello, { type: 'OPEN', certificate: a.certificate, proof: 'not a signature', holdMs: 900 }], /without a proof/],
      [[hello, { type: 'OPEN', certificate: a.certificate, proof: 'x'.repeat(86), holdMs: 10 }], /hold time/],
      [[hello, { type: 'OPEN_OK' }], /expected OPEN, got OPEN_OK/],
    ];
    for (const [i, [messages, why]] of cases.entries()) {
      const socket = await raw(l.port);
      socket.on('data', () => {});
      socket.write(Buffer.concat(messages.map((m) => encodeFrame(m))));
      await expect(l.accepted[i], `case ${i}`).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_DMSC_(BAD_HANDSHAKE|MALFORMED_FRAME)$/), message: expect.stringMatching(why) });
    }
  });
});
