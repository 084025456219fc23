// The peering listener against an outside attacker, with real gateway processes of one
// domain (a standalone AMC): a relay between two gateways' listeners, a genuine handshake
// recorded on the wire and replayed, a configured peer that dies and comes back, and a
// flood of connections that never authenticate. Each attack must leave the gateways'
// own session exactly as it was: no session down, none up again.
import { readFile, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame } from '../../src/mesh/frames.js';
import { api, cleanup, dmsc, freePort, logged, start, tempDir, waitFor, type Proc } from './harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HOLD_MS = 1500;

describe('peering under attack', () => {
  let amc: Proc;
  let dir: string;
  const sockets: Socket[] = [];
  const servers: Server[] = [];

  /** Node args for gateway `id` of the domain, with a short hold time. */
  const gatewayArgs = async (id: string, extra: string[] = []) => {
    const file = join(dir, `${id}.key`);
    const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
    if (r.status === 0) await writeFile(file, r.stdout);
    const mesh = join(dir, `${id}-mesh.json`);
    await writeFile(mesh, JSON.stringify({ holdMs: HOLD_MS }));
    return ['--id', id, '--amc', amc.url, '--amc-key-file', file, '--heartbeat-ms', '60000', '--mesh-config', mesh, ...extra];
  };
  const peers = async (p: Proc): Promise<{ gateway: string; frames: { framesReceived: number } }[]> => (await api(p.url, 'GET', '/v1/peers', { auth: p.token })).body.peers;
  const peerUp = async (p: Proc, id: string) => (await peers(p)).some((s) => s.gateway === id);
  const ups = (p: Proc, peer: string) => p.stderr().split('\n').filter((l) => l.includes('"peer up"') && l.includes(`"peer":"${peer}"`)).length;
  const downs = (p: Proc, peer: string) => p.stderr().split('\n').filter((l) => l.includes('"peer down"') && l.includes(`"peer":"${peer}"`)).length;
  const hostPort = (p: Proc) => {
    const [host, port] = p.peering!.split(':');
    return { host: host!, port: Number(port) };
  };
  const raw = async (p: Proc, localAddress?: string) => {
    const { host, port } = hostPort(p);
    const s = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    sockets.push(s);
    s.on('error', () => {});
    await new Promise((r, j) => {
      s.once('connect', r);
      s.once('error', j);
    });
    return s;
  };
  /** A's and B's counts of sessions with each other going up and down. */
  const flaps = (a: Proc, aId: string, b: Proc, bId: string) => [ups(a, bId), downs(a, bId), ups(b, aId), downs(b, aId)];

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro']);
    dir = await tempDir();
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await cleanup();
  });

  it('refuses a relay between two gateways\' listeners, and their own session is untouched', async () => {
    const a = await start('node', await gatewayArgs('r-a'));
    const b = await start('node', await gatewayArgs('r-b', ['--peer', `r-a@${a.peering}`]));
    await waitFor(async () => (await peerUp(a, 'r-b')) && (await peerUp(b, 'r-a')), 10_000);
    const before = flaps(a, 'r-a', b, 'r-b');
    // Each listener is shown the other as its dialler: whatever one says goes to the other.
    const toA = await raw(a);
    const toB = await raw(b);
    // Both kept reading whatever becomes of the other, so each gateway's refusal is seen.
    for (const [from, to] of [[toA, toB], [toB, toA]] as const) {
      from.on('data', (d) => {
        if (!to.destroyed) to.write(d);
      });
      from.on('end', () => to.end());
    }
    // Neither gateway takes the relayed connection for a session: each waits for the
    // other's proof, and both give up after the handshake time (5 s).
    await waitFor(() => toA.destroyed && toB.destroyed, 10_000);
    await sleep(HOLD_MS);
    expect(flaps(a, 'r-a', b, 'r-b')).toEqual(before);
    expect(await peerUp(a, 'r-b')).toBe(true);
    expect(await peerUp(b, 'r-a')).toBe(true);
    expect(logged(a, { msg: 'peer refused', code: 'ERR_DMSC_BAD_HANDSHAKE', reason: /no handshake within/ })).toBe(true);
    await a.stop();
    await b.stop();
  }, 60_000);

  it('refuses a genuine handshake recorded on the wire and replayed, and the recorded session is untouched', async () => {
    // B dials A through a proxy that records everything B sends.
    const a = await start('node', await gatewayArgs('p-a'));
    const { host, port } = hostPort(a);
    const recorded: Buffer[] = [];
    const proxy = createServer((inbound) => {
      const outbound = connect(port, host);
      sockets.push(inbound, outbound);
      inbound.on('data', (d) => recorded.push(d));
      inbound.pipe(outbound);
      outbound.pipe(inbound);
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
    });
    servers.push(proxy);
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const b = await start('node', await gatewayArgs('p-b', ['--peer', `p-a@127.0.0.1:${(proxy.address() as { port: number }).port}`]));
    await waitFor(async () => (await peerUp(a, 'p-b')) && (await peerUp(b, 'p-a')), 10_000);
    await sleep(200);
    const before = flaps(a, 'p-a', b, 'p-b');
    const framesBefore = (await peers(a)).find((s) => s.gateway === 'p-b')!.frames.framesReceived;
    // The attacker replays B's side of the conversation to A, with an OPEN_OK after it
    // in case A waits for one, and answers nothing else.
    const attacker = await raw(a);
    const heard: Buffer[] = [];
    attacker.on('data', (d) => heard.push(d));
    attacker.write(Buffer.concat([...recorded, encodeFrame({ type: 'OPEN_OK' })]));
    await sleep(HOLD_MS * 4);
    expect(flaps(a, 'p-a', b, 'p-b')).toEqual(before);
    // The recorded session still carries keepalives: the same session, never replaced.
    const after = (await peers(a)).find((s) => s.gateway === 'p-b');
    expect(after?.frames.framesReceived).toBeGreaterThan(framesBefore);
    expect(logged(a, { msg: 'peer refused', code: 'ERR_DMSC_BAD_HANDSHAKE', reason: /proof does not verify/ })).toBe(true);
    expect(attacker.destroyed || attacker.readableEnded).toBe(true);
    await a.stop();
    await b.stop();
  }, 60_000);

  it('dials a configured peer again whatever ended its last session: killed with -9 and away past the hold time', async () => {
    // D dials C before C is up; C then dials D, so the session D holds is the one C
    // dialled, and C comes back not dialling anyone: only D's redial can restore it.
    const [cPort, dPort] = [await freePort(), await freePort()];
    const d = await start('node', await gatewayArgs('k-d', ['--peering', `127.0.0.1:${dPort}`, '--peer', `k-c@127.0.0.1:${cPort}`]));
    let c = await start('node', await gatewayArgs('k-c', ['--peering', `127.0.0.1:${cPort}`, '--peer', `k-d@127.0.0.1:${dPort}`]));
    await waitFor(async () => (await peerUp(d, 'k-c')) && (await peerUp(c, 'k-d')), 10_000);
    // D's own retry, due within 5 s, finds the session there and stops.
    await sleep(6000);
    const cData = c.dataDir;
    await c.kill9();
    await waitFor(async () => !(await peerUp(d, 'k-c')), 5000);
    await sleep(HOLD_MS * 3);
    c = await start('node', await gatewayArgs('k-c', ['--peering', `127.0.0.1:${cPort}`]), cData);
    // The backoff tops out at 5 s; the handshake and a loaded machine get 3 s more.
    await waitFor(async () => (await peerUp(d, 'k-c')) && (await peerUp(c, 'k-d')), 8000);
    await c.stop();
    await d.stop();
  }, 60_000);

  it('resolves two real simultaneous dials of the same pair to one session, round after round', async () => {
    // Each node dials the other through a gate that holds both dials until both are in,
    // then lets them through together: the two handshakes always overlap.
    const [ePort, fPort] = [await freePort(), await freePort()];
    let held: { inbound: Socket; port: number }[] = [];
    const gate = async (port: number) => {
      const server = createServer((inbound) => {
        sockets.push(inbound);
        inbound.pause();
        held.push({ inbound, port });
        if (held.length < 2) return;
        for (const h of held.splice(0)) {
          const outbound = connect(h.port, '127.0.0.1');
          sockets.push(outbound);
          for (const [x, y] of [[h.inbound, outbound], [outbound, h.inbound]] as const) {
            x.on('error', () => y.destroy());
            x.on('close', () => y.destroy());
          }
          h.inbound.pipe(outbound);
          outbound.pipe(h.inbound);
          h.inbound.resume();
        }
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return (server.address() as { port: number }).port;
    };
    const [toE, toF] = [await gate(ePort), await gate(fPort)];
    const eArgs = await gatewayArgs('s-e', ['--peering', `127.0.0.1:${ePort}`, '--peer', `s-f@127.0.0.1:${toF}`]);
    const fArgs = await gatewayArgs('s-f', ['--peering', `127.0.0.1:${fPort}`, '--peer', `s-e@127.0.0.1:${toE}`]);
    const collisions = (p: Proc) => p.stderr().split('\n').filter((l) => l.includes('"peering collision"')).length;
    let [e, f] = await Promise.all([start('node', eArgs), start('node', fArgs)]);
    for (let round = 0; round < 3; round++) {
      if (round > 0) {
        // Both die and come back: each dials the other as it starts.
        const [eData, fData] = [e.dataDir, f.dataDir];
        await Promise.all([e.kill9(), f.kill9()]);
        held = [];
        [e, f] = await Promise.all([start('node', eArgs, eData), start('node', fArgs, fData)]);
      }
      await waitFor(async () => (await peerUp(e, 's-f')) && (await peerUp(f, 's-e')), 10_000);
      await waitFor(() => collisions(e) + collisions(f) > 0, 5000);
      // The session s-e dialled is kept on both sides, and stays: nobody keeps replacing it.
      expect(logged(e, { msg: 'peering collision', kept: 'the session s-e dialled' }) || logged(f, { msg: 'peering collision', kept: 'the session s-e dialled' })).toBe(true);
      await sleep(HOLD_MS * 2);
      const settled = flaps(e, 's-e', f, 's-f');
      await sleep(HOLD_MS * 3);
      expect(flaps(e, 's-e', f, 's-f')).toEqual(settled);
      expect((await peers(e)).filter((p) => p.gateway === 's-f')).toHaveLength(1);
      expect((await peers(f)).filter((p) => p.gateway === 's-e')).toHaveLength(1);
    }
    await e.stop();
    await f.stop();
  }, 90_000);

  it('keeps memory bounded and returned under 2,000 connections that each send part of a large frame and never authenticate', async () => {
    const a = await start('node', await gatewayArgs('m-a'));
    const b = await start('node', await gatewayArgs('m-b', ['--peer', `m-a@${a.peering}`]));
    await waitFor(async () => (await peerUp(a, 'm-b')) && (await peerUp(b, 'm-a')), 10_000);
    const rss = async () => Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${a.child.pid}/status`, 'utf8'))![1]) * 1024;
    const handshakes = async () => (await api(a.url, 'GET', '/v1/peers', { auth: a.token })).body.handshakes as { pending: number; refused: number };
    const idle = await rss();
    const before = flaps(a, 'm-a', b, 'm-b');
    const framesBefore = (await peers(a)).find((s) => s.gateway === 'm-b')!.frames.framesReceived;
    // Half announce a frame of 1 MiB less a byte and send 200 KiB of it; half announce
    // one a handshake could hold (8,000 bytes) and send 7,000 bytes, then wait.
    const partial = (announced: number, sent: number) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(announced, 0);
      return Buffer.concat([head, Buffer.alloc(sent, 0x41)]);
    };
    const large = partial((1 << 20) - 1, 200 * 1024);
    const small = partial(8000, 7000);
    const flood = async () => {
      const opened: Socket[] = [];
      let peak = 0;
      let pendingSeen = 0;
      for (let i = 0; i < 2000; i++) {
        // From 200 source addresses, so the limit in all is reached, not only the one per address.
        const s = connect({ ...hostPort(a), localAddress: `127.0.1.${2 + (i % 200)}` });
        s.on('error', () => {});
        s.on('connect', () => s.write(i % 2 ? large : small));
        opened.push(s);
        sockets.push(s);
        if (i % 250 === 249) {
          await sleep(100);
          peak = Math.max(peak, await rss());
          pendingSeen = Math.max(pendingSeen, (await handshakes()).pending);
        }
      }
      for (let i = 0; i < 10; i++) {
        await sleep(100);
        peak = Math.max(peak, await rss());
      }
      for (const s of opened) s.destroy();
      return { peak, pendingSeen };
    };
    // Stated bound: 96 MiB above the idle node, whatever the flood holds open (at most
    // 256 handshakes, each held to an 8 KiB frame; what is measured is 30 to 75 MB, the
    // rest being garbage not collected yet on a loaded machine). Before the fix: 420 MB,
    // and growing with every connection.
    const bound = 96 * 1024 * 1024;
    const first = await flood();
    expect(first.peak - idle).toBeLessThan(bound);
    expect(first.pendingSeen).toBeLessThanOrEqual(256);
    expect((await handshakes()).refused).toBeGreaterThan(0);
    await waitFor(async () => (await handshakes()).pending === 0, 10_000);
    // What the first flood took was given back: a second one does not add to it.
    const second = await flood();
    expect(second.peak - idle).toBeLessThan(bound);
    // The gateways' own session went on through both.
    expect(flaps(a, 'm-a', b, 'm-b')).toEqual(before);
    expect((await peers(a)).find((s) => s.gateway === 'm-b')!.frames.framesReceived).toBeGreaterThan(framesBefore);
    await a.stop();
    await b.stop();
  }, 90_000);
});
