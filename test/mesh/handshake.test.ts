// The handshake state machine alone (no sockets): what each proof is bound to. A proof
// holds only for the connection it was made on: its nonces, its TLS channel (exporter),
// both gateways, the signer's role and every field of the signer's OPEN.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Message } from '../../src/mesh/frames.js';
import { Handshake, type HandshakeOptions } from '../../src/mesh/handshake.js';
import { certified, gateway, type TestGateway } from './gateways.js';

/** Runs a whole handshake in memory; `tamper` may change what the dialler's OPEN says on the way. */
async function run(d: TestGateway, l: TestGateway, opts: { dialler?: Partial<HandshakeOptions>; listener?: Partial<HandshakeOptions>; tamper?: (m: Message) => Message } = {}) {
  const dialler = new Handshake({ role: 'dialler', local: { gateway: d.id, domain: 'd1' }, holdMs: 9000, ...opts.dialler });
  const listener = new Handshake({ role: 'listener', local: { gateway: l.id, domain: 'd1' }, holdMs: 9000, ...opts.listener });
  listener.receive(dialler.hello(), l.credentials);
  const dOpen = (dialler.receive(listener.hello(), d.credentials) as { messages: readonly Message[] }).messages[0]!;
  const check = listener.receive(opts.tamper ? opts.tamper(dOpen) : dOpen, l.credentials);
  if (check.kind !== 'check') throw new Error(`expected a check, got ${check.kind}`);
  const lOpen = (listener.proofChecked(await certified(check.certificate, check.peer), l.credentials) as { messages: readonly Message[] }).messages[0]!;
  const back = dialler.receive(lOpen, d.credentials);
  if (back.kind !== 'check') throw new Error(`expected a check, got ${back.kind}`);
  const done = dialler.proofChecked(await certified(back.certificate, back.peer), d.credentials);
  listener.receive({ type: 'OPEN_OK' }, l.credentials);
  return done;
}

describe('handshake', () => {
  it('opens when both sides see the same TLS channel, and not when they see different ones', async () => {
    const [d, l] = [await gateway('gw-d'), await gateway('gw-l')];
    const exporter = randomBytes(32);
    await expect(run(d, l, { dialler: { exporter }, listener: { exporter } })).resolves.toMatchObject({ kind: 'open', peer: { gateway: 'gw-l' } });
    // A relay that terminates TLS on each side: the two channels export different keys.
    await expect(run(d, l, { dialler: { exporter }, listener: { exporter: randomBytes(32) } })).rejects.toMatchObject({ code: 'ERR_DMSC_BAD_HANDSHAKE', message: /proof does not verify/ });
    await expect(run(d, l, { dialler: { exporter } })).rejects.toMatchObject({ message: /proof does not verify/ });
  });

  it('refuses an OPEN whose fields were changed on the way: hold time, data-plane address, its TLS flag', async () => {
    const [d, l] = [await gateway('gw-d'), await gateway('gw-l')];
    const withDataplane = { dialler: { local: { gateway: 'gw-d', domain: 'd1', dataplane: '10.0.0.1:7080' } } };
    await expect(run(d, l, withDataplane)).resolves.toMatchObject({ kind: 'open' });
    for (const change of [{ holdMs: 300 }, { dataplane: '10.6.6.6:7080' }, { dataplaneTls: true }]) {
      await expect(run(d, l, { ...withDataplane, tamper: (m) => ({ ...m, ...change }) }), JSON.stringify(change)).rejects.toMatchObject({ message: /proof does not verify/ });
    }
  });

  it('refuses a certificate and proof presented under another gateway\'s HELLO', async () => {
    const [l, mallory] = [await gateway('gw-l'), await gateway('gw-m')];
    // Mallory's own certificate and a proof by Mallory's key, in a session where it claims gw-d.
    const listener = new Handshake({ role: 'listener', local: { gateway: 'gw-l', domain: 'd1' }, holdMs: 9000 });
    const posing = new Handshake({ role: 'dialler', local: { gateway: 'gw-d', domain: 'd1' }, holdMs: 9000 });
    listener.receive(posing.hello(), l.credentials);
    const open = (posing.receive(listener.hello(), mallory.credentials) as { messages: readonly Message[] }).messages[0]!;
    const check = listener.receive(open, l.credentials);
    if (check.kind !== 'check') throw new Error('expected a check');
    expect(check.peer.gateway).toBe('gw-d');
    // The node's certificate check is what refuses it: the certificate names gw-m.
    await expect(certified(check.certificate, check.peer)).rejects.toThrow(/certificate is for gw-m/);
  });

  it('takes messages only in their order', async () => {
    const l = await gateway('gw-l');
    const listener = new Handshake({ role: 'listener', local: { gateway: 'gw-l', domain: 'd1' }, holdMs: 9000 });
    expect(() => listener.receive({ type: 'OPEN_OK' }, l.credentials)).toThrow(/expected HELLO, got OPEN_OK/);
    expect(() => listener.proofChecked({ kty: 'OKP' }, l.credentials)).toThrow(/no proof is waiting/);
  });
});
