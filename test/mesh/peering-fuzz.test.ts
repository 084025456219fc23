// The peering fuzz target: what a peer may send before it has authenticated, through the
// frame decoder (held to the handshake's frame size) and the handshake state machine, in
// either role. It replays the committed corpus (test/mesh/corpus/*.bin, written by
// generate.mjs there), then fast-check mutations of it and arbitrary bytes, cut at
// arbitrary points. The certificate check accepts any certificate that names a key, so
// the attacker is the strongest there is short of the key itself: a gateway with a
// genuine certificate, replaying or forging proofs. The properties:
// - nothing but a typed peering error (handshake, frame size, malformed frame) is thrown;
// - no session ever opens, whatever was recorded or made up;
// - a listener sends nothing but its HELLO before a proof has been checked;
// - and, so the target is not vacuous, two genuine sides cut the same way do open.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import type { JWK } from 'jose';
import { describe, expect, it } from 'vitest';
import { DmscError } from '../../src/errors.js';
import { peekClaim } from '../../src/identity/jwt.js';
import { encodeFrame, FrameDecoder, type Message } from '../../src/mesh/frames.js';
import { Handshake, HANDSHAKE_MAX_FRAME, type Role, type Step } from '../../src/mesh/handshake.js';
import { gateway, type TestGateway } from './gateways.js';

const here = dirname(fileURLToPath(import.meta.url));
const corpusDir = join(here, 'corpus');
const corpus = readdirSync(corpusDir).filter((f) => f.endsWith('.bin')).sort().map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(join(corpusDir, f))) }));
const PEERING_ERRORS = new Set(['ERR_DMSC_BAD_HANDSHAKE', 'ERR_DMSC_FRAME_TOO_LARGE', 'ERR_DMSC_MALFORMED_FRAME']);

/** Any certificate that names a key passes: only the proof stands between it and a session. */
async function anyCertificate(certificate: string): Promise<JWK> {
  const cnf = peekClaim(certificate, 'cnf') as { jwk?: JWK } | undefined;
  if (!cnf?.jwk || typeof cnf.jwk !== 'object') throw new DmscError('ERR_DMSC_BAD_HANDSHAKE', 'no key in the certificate');
  return cnf.jwk;
}

interface Outcome {
  opened: boolean;
  error?: unknown;
  /** What this side sent, in order. */
  sent: Message[];
}

/** Feeds `bytes`, cut at `cuts`, to one side of a handshake, as PeerSession does. */
async function drive(role: Role, me: TestGateway, bytes: Uint8Array, cuts: readonly number[]): Promise<Outcome> {
  const hs = new Handshake({ role, local: { gateway: me.id, domain: 'd1' }, holdMs: 9000 });
  const decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME);
  const out: Outcome = { opened: false, sent: [hs.hello()] };
  const take = async (step: Step): Promise<void> => {
    if (step.kind === 'check') {
      const key = await anyCertificate(step.certificate);
      return take(hs.proofChecked(key, me.credentials));
    }
    out.sent.push(...step.messages);
    if (step.kind === 'open') out.opened = true;
  };
  try {
    let at = 0;
    for (let i = 0; at < bytes.length && !out.opened; i++) {
      const n = Math.max(1, cuts.length ? cuts[i % cuts.length]! : bytes.length);
      for (const m of decoder.push(Buffer.from(bytes.subarray(at, at + n)))) {
        await take(hs.receive(m, me.credentials));
        if (out.opened) break;
      }
      at += n;
    }
  } catch (e) {
    out.error = e;
  }
  return out;
}

function checkOutcome(role: Role, o: Outcome): void {
  if (o.error !== undefined) {
    expect(o.error, String(o.error)).toBeInstanceOf(DmscError);
    expect(PEERING_ERRORS.has((o.error as DmscError).code), (o.error as DmscError).code).toBe(true);
  }
  expect(o.opened).toBe(false);
  // A listener proves nothing before it has checked a proof, and no proof passes here.
  if (role === 'listener') expect(o.sent.map((m) => m.type)).toEqual(['HELLO']);
  for (const m of o.sent) expect(['HELLO', 'OPEN']).toContain(m.type);
}

/** A corpus entry, changed: bytes flipped, cut short, or spliced with another. */
const mutated = fc.tuple(
  fc.constantFrom(...corpus.map((c) => c.bytes)),
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
  fc.option(fc.nat(), { nil: undefined }),
  fc.option(fc.constantFrom(...corpus.map((c) => c.bytes)), { nil: undefined }),
).map(([base, flips, cut, splice]) => {
  const bytes = Uint8Array.from(base);
  for (const [at, value] of flips) if (bytes.length) bytes[at % bytes.length] = value;
  const short = cut === undefined || bytes.length === 0 ? bytes : bytes.subarray(0, cut % (bytes.length + 1));
  return splice ? Uint8Array.from([...short, ...splice]) : short;
});
const cuts = fc.array(fc.integer({ min: 1, max: 300 }), { maxLength: 12 });

describe('peering fuzz target', () => {
  it('has a corpus to replay', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(10);
  });

  it('replays every corpus entry, whole and byte by byte, to both roles without a session or an untyped error', async () => {
    const me = await gateway('gw-me');
    for (const { name, bytes } of corpus) {
      for (const role of ['listener', 'dialler'] as const) {
        for (const c of [[], [1]]) {
          const o = await drive(role, me, bytes, c);
          expect(() => checkOutcome(role, o), `${name} as ${role}`).not.toThrow();
        }
      }
    }
  });

  it('never opens a session on mutations of the corpus or on arbitrary bytes, however cut', async () => {
    const me = await gateway('gw-me');
    await fc.assert(fc.asyncProperty(fc.oneof(mutated, fc.uint8Array({ maxLength: 2048 })), cuts, fc.constantFrom<Role>('listener', 'dialler'), async (bytes, c, role) => {
      checkOutcome(role, await drive(role, me, bytes, c));
    }), { numRuns: 400 });
  });

  it('never opens a session on message sequences made of well-formed handshake messages with fields shuffled in', async () => {
    const [me, other] = [await gateway('gw-me'), await gateway('gw-other')];
    const genuine = new Handshake({ role: 'dialler', local: { gateway: 'gw-other', domain: 'd1' }, holdMs: 9000 });
    const elsewhere = new Handshake({ role: 'listener', local: { gateway: 'gw-me', domain: 'd1' }, holdMs: 9000 });
    const open = (genuine.receive(elsewhere.hello(), other.credentials) as { messages: readonly Message[] }).messages[0]!;
    const value = fc.oneof(fc.string({ maxLength: 90 }), fc.integer(), fc.boolean(), fc.constant(null), fc.constantFrom(open['proof'], open['certificate'], genuine.hello()['nonce'], 2, 9000, 'gw-other', 'd1'));
    const message = fc.record({
      type: fc.constantFrom('HELLO', 'OPEN', 'OPEN_OK', 'NOTIFY', 'KEEPALIVE', 'CSP_SNAPSHOT'),
      version: fc.option(value, { nil: undefined }), gateway: fc.option(value, { nil: undefined }), domain: fc.option(value, { nil: undefined }),
      nonce: fc.option(value, { nil: undefined }), certificate: fc.option(value, { nil: undefined }), proof: fc.option(value, { nil: undefined }),
      holdMs: fc.option(value, { nil: undefined }), dataplane: fc.option(value, { nil: undefined }),
    }, { requiredKeys: ['type'] });
    const sequence = fc.array(fc.oneof(message, fc.constantFrom<Message>(genuine.hello(), open, { type: 'OPEN_OK' })), { minLength: 1, maxLength: 6 });
    await fc.assert(fc.asyncProperty(sequence, cuts, fc.constantFrom<Role>('listener', 'dialler'), async (messages, c, role) => {
      const bytes = Buffer.concat(messages.map((m) => encodeFrame(Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)) as Message)));
      checkOutcome(role, await drive(role, me, bytes, c));
    }), { numRuns: 300 });
  });

  it('opens between two genuine sides cut the same arbitrary ways (the target can tell a session when it sees one)', async () => {
    const [d, l] = [await gateway('gw-d'), await gateway('gw-l')];
    await fc.assert(fc.asyncProperty(cuts, async (c) => {
      const dialler = new Handshake({ role: 'dialler', local: { gateway: d.id, domain: 'd1' }, holdMs: 9000 });
      const listener = new Handshake({ role: 'listener', local: { gateway: l.id, domain: 'd1' }, holdMs: 1200 });
      const wire = { toListener: [dialler.hello()], toDialler: [listener.hello()] };
      const opened: Record<Role, number> = { dialler: 0, listener: 0 };
      const sides = [[dialler, d, 'toDialler', 'toListener', 'dialler'], [listener, l, 'toListener', 'toDialler', 'listener']] as const;
      for (let round = 0; round < 4; round++) {
        for (const [hs, gw, inbox, outbox, role] of sides) {
          const bytes = Buffer.concat(wire[inbox].splice(0).map((m) => encodeFrame(m)));
          const decoder = new FrameDecoder(HANDSHAKE_MAX_FRAME);
          for (let at = 0, i = 0; at < bytes.length; i++) {
            const n = Math.max(1, c.length ? c[i % c.length]! : bytes.length);
            for (const m of decoder.push(bytes.subarray(at, at + n))) {
              let step = hs.receive(m, gw.credentials);
              if (step.kind === 'check') step = hs.proofChecked(await anyCertificate(step.certificate), gw.credentials);
              wire[outbox].push(...step.messages);
              if (step.kind === 'open') {
                opened[role]++;
                expect(step.holdMs).toBe(1200);
              }
            }
            at += n;
          }
        }
      }
      expect(opened).toEqual({ dialler: 1, listener: 1 });
    }), { numRuns: 50 });
  });
});
