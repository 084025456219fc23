// The peering handshake (version 2) as a state machine with no I/O, so the rules can be
// read in one place and fuzzed without sockets. Both sides send HELLO first: the
// protocol version, their gateway id and domain, and a fresh 32-byte random nonce. Then
// the dialler proves who it is, and only once that proof has been checked does the
// listener prove who it is:
//
//   dialler  → HELLO { version, gateway, domain, nonce }      listener → HELLO { ... }
//   dialler  → OPEN  { certificate, proof, holdMs, dataplane? }
//   listener → OPEN  { certificate, proof, holdMs, dataplane? }   (after checking the dialler's)
//   dialler  → OPEN_OK                                          (after checking the listener's)
//
// `certificate` is the AMC's certificate of the gateway's Ed25519 key; `proof` is that
// key's signature over the transcript: a context string, the signer's role, both
// gateway ids and domains, both nonces, the TLS exporter when the session runs over TLS,
// and the signer's own OPEN fields. A proof is therefore good for one connection only:
// replayed on another, it meets another nonce (and another TLS session) and fails; a
// dialler's proof cannot pass for a listener's. A listener sends nothing that proves
// anything before its dialler has proved itself, so a stranger learns nothing it could
// present elsewhere, and a bearer token never crosses the wire.
import { createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { DmscError } from '../errors.js';
import { text, type Message } from './frames.js';

export const PROTOCOL_VERSION = 2;
/** Frames are held to this size until the peer has proved itself (an OPEN is about 1 KiB). */
export const HANDSHAKE_MAX_FRAME = 8 * 1024;
const NONCE_BYTES = 32;
const CONTEXT = 'dmsc-peering-transcript/2\n';
/** RFC 5705 / RFC 8446 §7.5 exporter label for the session's TLS channel binding. */
export const TLS_EXPORTER_LABEL = 'EXPORTER-dmsc-peering';
export const TLS_EXPORTER_BYTES = 32;

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NONCE = /^[A-Za-z0-9_-]{43}$/;
const PROOF = /^[A-Za-z0-9_-]{86}$/;
const ADDRESS = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/;

export type Role = 'dialler' | 'listener';

export interface Identity {
  readonly gateway: string;
  readonly domain: string;
  /** Where the gateway's data plane listens (HOST:PORT), for requests sent on to it. */
  readonly dataplane?: string;
  /** That listener speaks TLS (the peering TLS: its certificate, its CA). */
  readonly dataplaneTls?: boolean;
}

interface Hello {
  readonly gateway: string;
  readonly domain: string;
  readonly nonce: string;
}

/** What a side signs for: its OPEN's fields, besides the proof itself. */
interface OpenFields {
  readonly holdMs: number;
  readonly dataplane?: string;
  readonly dataplaneTls?: boolean;
}

/** The gateway's key and the AMC's certificate of it. */
export interface Credentials {
  readonly certificate: string;
  readonly privateKey: KeyObject;
}

/** The bytes one side signs: everything both sides said about the session so far. */
export function transcript(signer: Role, dialler: Hello, listener: Hello, open: OpenFields, exporter: Buffer | undefined): Buffer {
  return Buffer.from(CONTEXT + JSON.stringify([
    signer, dialler.gateway, dialler.domain, dialler.nonce, listener.gateway, listener.domain, listener.nonce,
    exporter ? exporter.toString('base64url') : '', open.holdMs, open.dataplane ?? '', open.dataplaneTls === true,
  ]));
}

/** An Ed25519 signature over `data`, base64url. */
export function prove(privateKey: KeyObject, data: Buffer): string {
  return sign(null, data, privateKey).toString('base64url');
}

/** Whether `proof` is the signature of the key `jwk` (an Ed25519 public JWK) over `data`. */
export function proofHolds(jwk: JWK, data: Buffer, proof: string): boolean {
  try {
    return verify(null, data, createPublicKey({ key: jwk as never, format: 'jwk' }), Buffer.from(proof, 'base64url'));
  } catch {
    return false;
  }
}

export interface HandshakeOptions {
  readonly role: Role;
  readonly local: Identity;
  /** Hold time proposed; the session uses the smaller of both sides'. */
  readonly holdMs: number;
  /** The gateway a dialler expects to reach (a configured peer). */
  readonly expect?: string;
  /** The TLS exporter of the connection, when it is TLS. */
  readonly exporter?: Buffer;
}

/** What the caller does next. */
export type Step =
  /** Send these, then wait for more. */
  | { readonly kind: 'send'; readonly messages: readonly Message[] }
  /**
   * Check that `certificate` is the AMC's word that `peer` holds a key, and return that
   * key; then call `proofChecked` with it. Nothing else is taken meanwhile.
   */
  | { readonly kind: 'check'; readonly peer: Identity; readonly certificate: string }
  /** The session is open (after sending `messages`), with this peer and hold time. */
  | { readonly kind: 'open'; readonly peer: Identity; readonly holdMs: number; readonly messages: readonly Message[] };

type State = 'hello' | 'open' | 'checking' | 'confirm' | 'done';

export class Handshake {
  readonly #o: HandshakeOptions;
  readonly #nonce = randomBytes(NONCE_BYTES).toString('base64url');
  #state: State = 'hello';
  #peerHello: Hello | undefined;
  #peerOpen: (OpenFields & { proof: string }) | undefined;
  #peer: Identity | undefined;

  constructor(options: HandshakeOptions) {
    this.#o = options;
  }

  /** The HELLO this side sends first. */
  hello(): Message {
    return { type: 'HELLO', version: PROTOCOL_VERSION, gateway: this.#o.local.gateway, domain: this.#o.local.domain, nonce: this.#nonce };
  }

  /**
   * Takes the peer's next message. `credentials` is read only when this side has to
   * prove itself. Throws ERR_DMSC_BAD_HANDSHAKE for anything out of order or malformed.
   */
  receive(m: Message, credentials: () => Credentials): Step {
    if (m.type === 'NOTIFY') throw bad(`peer refused the session: ${text(m['message'], 300)}`);
    switch (this.#state) {
      case 'hello': {
        this.#peerHello = checkHello(m, this.#o);
        this.#state = 'open';
        if (this.#o.role === 'listener') return { kind: 'send', messages: [] };
        return { kind: 'send', messages: [this.#open(credentials())] };
      }
      case 'open': {
        if (m.type !== 'OPEN') throw bad(`expected OPEN, got ${text(m.type, 32)}`);
        const open = checkOpen(m);
        const hello = this.#peerHello!;
        this.#peerOpen = open;
        this.#peer = {
          gateway: hello.gateway, domain: hello.domain,
          ...(open.dataplane !== undefined ? { dataplane: open.dataplane, ...(open.dataplaneTls ? { dataplaneTls: true } : {}) } : {}),
        };
        this.#state = 'checking';
        return { kind: 'check', peer: this.#peer, certificate: m['certificate'] as string };
      }
      case 'confirm':
        if (m.type !== 'OPEN_OK') throw bad(`expected OPEN_OK, got ${text(m.type, 32)}`);
        this.#state = 'done';
        return { kind: 'open', peer: this.#peer!, holdMs: this.#holdMs(), messages: [] };
      default:
        throw bad(`unexpected ${text(m.type, 32)} during the handshake`);
    }
  }

  /**
   * The peer's certificate names `key` as its key: checks the peer's proof with it. The
   * listener then proves itself in turn; the dialler confirms and the session is open.
   */
  proofChecked(key: JWK, credentials: () => Credentials): Step {
    if (this.#state !== 'checking') throw bad('no proof is waiting to be checked');
    const open = this.#peerOpen!;
    const peerRole: Role = this.#o.role === 'dialler' ? 'listener' : 'dialler';
    if (!proofHolds(key, this.#transcript(peerRole, open), open.proof)) {
      throw bad(`${this.#peer!.gateway}'s proof does not verify for this connection (a replayed or forged OPEN)`);
    }
    if (this.#o.role === 'listener') {
      this.#state = 'confirm';
      return { kind: 'send', messages: [this.#open(credentials())] };
    }
    this.#state = 'done';
    return { kind: 'open', peer: this.#peer!, holdMs: this.#holdMs(), messages: [{ type: 'OPEN_OK' }] };
  }

  #open(credentials: Credentials): Message {
    const fields = this.#ownFields();
    const data = this.#transcript(this.#o.role, fields);
    return { type: 'OPEN', certificate: credentials.certificate, proof: prove(credentials.privateKey, data), ...fields };
  }

  #ownFields(): OpenFields {
    const { dataplane, dataplaneTls } = this.#o.local;
    return { holdMs: this.#o.holdMs, ...(dataplane !== undefined ? { dataplane, ...(dataplaneTls ? { dataplaneTls: true } : {}) } : {}) };
  }

  #transcript(signer: Role, open: OpenFields): Buffer {
    const own: Hello = { gateway: this.#o.local.gateway, domain: this.#o.local.domain, nonce: this.#nonce };
    const peer = this.#peerHello!;
    const [dialler, listener] = this.#o.role === 'dialler' ? [own, peer] : [peer, own];
    const fields: OpenFields = { holdMs: open.holdMs, ...(open.dataplane !== undefined ? { dataplane: open.dataplane } : {}), ...(open.dataplaneTls ? { dataplaneTls: true } : {}) };
    return transcript(signer, dialler, listener, fields, this.#o.exporter);
  }

  #holdMs(): number {
    return Math.min(this.#o.holdMs, this.#peerOpen!.holdMs);
  }
}

function bad(message: string): DmscError {
  return new DmscError('ERR_DMSC_BAD_HANDSHAKE', message);
}

function checkHello(m: Message, o: HandshakeOptions): Hello {
  if (m.type !== 'HELLO') throw bad(`expected HELLO, got ${text(m.type, 32)}`);
  const { version, gateway, domain, nonce } = m as Record<string, unknown>;
  if (version !== PROTOCOL_VERSION) throw bad(`unsupported protocol version ${text(version, 16)} (this gateway speaks ${PROTOCOL_VERSION})`);
  if (typeof gateway !== 'string' || !ID.test(gateway)) throw bad('HELLO without a valid gateway id');
  if (typeof domain !== 'string' || !ID.test(domain)) throw bad('HELLO without a valid domain');
  if (typeof nonce !== 'string' || !NONCE.test(nonce)) throw bad('HELLO without a 32-byte nonce');
  if (gateway === o.local.gateway) throw bad('a session to itself');
  if (o.expect !== undefined && gateway !== o.expect) throw bad(`expected gateway ${o.expect}, got ${gateway}`);
  return { gateway, domain, nonce };
}

function checkOpen(m: Message): OpenFields & { proof: string } {
  const { certificate, proof, holdMs, dataplane, dataplaneTls } = m as Record<string, unknown>;
  if (typeof certificate !== 'string' || certificate.length === 0 || certificate.length > 4096) throw bad('OPEN without a key certificate');
  if (typeof proof !== 'string' || !PROOF.test(proof)) throw bad('OPEN without a proof (an Ed25519 signature)');
  if (typeof holdMs !== 'number' || !Number.isInteger(holdMs) || holdMs < 300 || holdMs > 3_600_000) throw bad('OPEN with a hold time outside 300 ms .. 1 h');
  if (dataplane !== undefined && (typeof dataplane !== 'string' || !ADDRESS.test(dataplane))) throw bad('OPEN with a data-plane address that is not HOST:PORT');
  if (dataplaneTls !== undefined && typeof dataplaneTls !== 'boolean') throw bad('OPEN with a dataplaneTls that is not true or false');
  return { proof, holdMs, ...(dataplane !== undefined ? { dataplane } : {}), ...(dataplaneTls === true ? { dataplaneTls: true } : {}) };
}
