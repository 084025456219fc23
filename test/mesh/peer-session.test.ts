// Peering sessions over real loopback TCP: the frame codec under arbitrary chunking, the
// OPEN exchange with real EdDSA credentials, and every way a bad peer is shown the door
// (bad credential, wrong id, garbage, oversized frame, silence) without touching the
// other sessions.
import { connect, createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { Packr } from 'msgpackr';
import { encodeFrame, FrameDecoder, type Message } from '../../src/mesh/frames.js';
import { PeerSession, type SessionOptions } from '../../src/mesh/peer-session.js';
import { JwtVerifier, newSigningKey, signingKey, signJwt } from '../../src/identity/jwt.js';

const TYP = 'dmsc-gateway+jwt';
const amcKey = signingKey(newSigningKey('amc'));
const verifier = new JwtVerifier({ keys: [amcKey.publicJwk] });
const credentialOf = (gateway: string, key = amcKey) => signJwt(key, TYP, { sub: gateway, exp: Math.floor(Date.now() / 1000) + 600 });
const verify: SessionOptions['verify'] = async (credential, claimed) => {
  const claims = await verifier.verify(credential, TYP);
  if (claims.sub !== claimed.gateway) throw new Error(`credential is for ${claims.sub}`);
};
const options = (gateway: string, extra: Partial<SessionOptions> = {}): SessionOptions => ({
  local: { gateway, domain: 'd1' }, credential: () => credentialOf(gateway), verify, holdMs: 900, ...extra,
});

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

describe('PeerSession', () => {
  const servers: Server[] = [];
  const sockets: Socket[] = [];
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
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    lastDialled = socket;
    await new Promise((r) => socket.once('connect', r));
    return PeerSession.establish(socket, opts);
  }
  const raw = async (port: number) => {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    await new Promise((r) => socket.once('connect', r));
    return socket;
  };
  const nextMessage = (s: PeerSession) => new Promise<Message>((r) => s.once('message', r));
  const closed = (s: PeerSession) => new Promise<unknown>((r) => s.once('close', r));

  it('opens with credentials both ways, agrees on the smaller hold time, and carries messages', async () => {
    const b = await listen(options('gw-b', { holdMs: 1200 }));
    const a = await dial(b.port, options('gw-a', { expect: 'gw-b', holdMs: 900 }));
    const bSide = await b.accepted[0]!;
    expect(a.peer).toEqual({ gateway: 'gw-b', domain: 'd1' });
    expect(bSide.peer).toEqual({ gateway: 'gw-a', domain: 'd1' });
    expect([a.holdMs, bSide.holdMs]).toEqual([900, 900]);
    const got = nextMessage(bSide);
    a.send({ type: 'HELLO', n: 1 });
    expect(await got).toEqual({ type: 'HELLO', n: 1 });
    // Keepalives hold an idle session past its hold time.
    await new Promise((r) => setTimeout(r, 1500));
    expect(a.closed || bSide.closed).toBe(false);
    const gone = closed(bSide);
    a.close();
    expect(await gone).toBeUndefined();
  });

  it('opens when its own credential takes longer to get than the peer takes to answer', async () => {
    const slow = () => new Promise<string>((r) => setTimeout(() => void credentialOf('gw-b').then(r), 100));
    const b = await listen(options('gw-b', { credential: slow }));
    const a = await dial(b.port, options('gw-a'));
    const bSide = await b.accepted[0]!;
    expect([a.peer.gateway, bSide.peer.gateway]).toEqual(['gw-b', 'gw-a']);
    a.close();
  });

  it('refuses a peer whose credential does not verify, or that is not the peer expected', async () => {
    const stranger = signingKey(newSigningKey('other'));
    const b = await listen(options('gw-b'));
    await expect(dial(b.port, options('gw-a', { credential: () => credentialOf('gw-a', stranger) }))).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /peer refused the session/ });
    await expect(b.accepted[0]).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /unknown key/ });
    // A credential for another gateway than the one claimed.
    await expect(dial(b.port, options('gw-a', { credential: () => credentialOf('gw-z') }))).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE' });
    await expect(b.accepted[1]).rejects.toMatchObject({ message: /credential is for gw-z/ });
    // The dialler expected someone else.
    await expect(dial(b.port, options('gw-a', { expect: 'gw-c' }))).rejects.toMatchObject({ message: /expected gateway gw-c, got gw-b/ });
  });

  it('closes a session that sends garbage or an oversized frame, and leaves the others open', async () => {
    const b = await listen(options('gw-b', { maxFrame: 4096 }));
    const good = await dial(b.port, options('gw-good'));
    const goodB = await b.accepted[0]!;
    for (const attack of ['garbage', 'oversized'] as const) {
      const bad = await dial(b.port, options(`gw-${attack}`));
      const badB = await b.accepted.at(-1)!;
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

  it('ends a session when the hold time passes in silence, and refuses a peer that never sends OPEN', async () => {
    const b = await listen(options('gw-b', { holdMs: 400, openTimeoutMs: 300 }));
    const silent = await raw(b.port);
    await expect(b.accepted[0]).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /no OPEN within 300 ms/ });
    // A peer that opens and then goes quiet.
    const quiet = await raw(b.port);
    quiet.write(encodeFrame({ type: 'OPEN', version: 1, gateway: 'gw-q', domain: 'd1', credential: await credentialOf('gw-q'), holdMs: 400 }));
    quiet.write(encodeFrame({ type: 'OPEN_OK' }));
    const session = await b.accepted[1]!;
    expect(await closed(session)).toMatchObject({ code: 'ERR_DMSC_HOLD_EXPIRED' });
    // The refused peer is told and disconnected.
    silent.resume();
    await new Promise((r) => (silent.readableEnded ? r(null) : silent.once('end', r)));
  });
});

describe('PeerSession message order', () => {
  it('keeps messages sent with the OPEN_OK until a listener comes, then delivers them in order', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const accepted = new Promise<PeerSession>((resolve) => server.once('connection', (s) => void PeerSession.establish(s, options('gw-b')).then(resolve)));
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    // A raw peer that sends OPEN, OPEN_OK and two messages in one write.
    socket.on('data', () => {});
    socket.write(Buffer.concat([
      encodeFrame({ type: 'OPEN', version: 1, gateway: 'gw-r', domain: 'd1', credential: await credentialOf('gw-r'), holdMs: 900 }),
      encodeFrame({ type: 'OPEN_OK' }), encodeFrame({ type: 'M', n: 1 }), encodeFrame({ type: 'M', n: 2 }),
    ]));
    const session = await accepted;
    await new Promise((r) => setTimeout(r, 50));
    const got: unknown[] = [];
    session.once('message', (m) => got.push(m['n']));
    await new Promise((r) => setImmediate(r));
    session.on('message', (m) => got.push(m['n']));
    socket.write(encodeFrame({ type: 'M', n: 3 }));
    await new Promise((r) => setTimeout(r, 50));
    expect(got).toEqual([1, 2, 3]);
    session.close();
    socket.destroy();
    await new Promise((r) => server.close(r));
  });
});

describe('PeerSession against hostile input', () => {
  it('refuses OPENs and NOTIFYs whose fields are not strings, without throwing', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    for (const [bad, why] of [
      { type: 'OPEN', version: { toString: 1 }, gateway: 'x', domain: 'd1', credential: 'c', holdMs: 900 },
      { type: 'NOTIFY', code: { toString: 1 }, message: { toString: 1 } },
      { type: { toString: 1 } },
      // A good credential: only the data-plane fields are wrong.
      { type: 'OPEN', version: 1, gateway: 'gw-a', domain: 'd1', credential: await credentialOf('gw-a'), holdMs: 900, dataplane: 'not an address' },
      { type: 'OPEN', version: 1, gateway: 'gw-a', domain: 'd1', credential: await credentialOf('gw-a'), holdMs: 900, dataplane: '127.0.0.1:7443', dataplaneTls: 'yes' },
    ].map((m, i, all) => [m, i >= all.length - 2 ? /data-plane address|dataplaneTls/ : /./] as const)) {
      const refused = new Promise((resolve) => server.once('connection', (s) => PeerSession.establish(s, options('gw-b')).then(() => resolve('opened'), resolve)));
      const socket = connect(port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.on('data', () => {});
      socket.write(encodeFrame(bad as unknown as Message));
      expect(await refused).toMatchObject({ code: expect.stringMatching(/^ERR_DMSC_(BAD_HANDSHAKE|MALFORMED_FRAME)$/), message: expect.stringMatching(why) });
      socket.destroy();
    }
    await new Promise((r) => server.close(r));
  });
});
