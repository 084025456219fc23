// One peering session between two gateways over a TCP (or TLS) stream: an OPEN in each
// direction carrying the gateway's identity and a credential from its AMC, checked by the
// other side before anything else is accepted; keepalives every third of the hold time;
// the session ends when the hold time passes without a frame, on a bad frame, or on
// close. A session that ends for an error tells the peer why (NOTIFY) first.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { DmscError, type DmscErrorCode } from '../errors.js';
import { DEFAULT_MAX_FRAME, encodeFrame, FrameDecoder, text, type Message } from './frames.js';

export const PROTOCOL_VERSION = 1;
/** Bytes we queue for a peer before deciding it is not reading. */
const MAX_UNSENT = 64 * 1024 * 1024;

export interface Identity {
  readonly gateway: string;
  readonly domain: string;
  /** Where the gateway's data plane listens (HOST:PORT), for requests sent on to it. */
  readonly dataplane?: string;
  /** That listener speaks TLS (the peering TLS: its certificate, its CA). */
  readonly dataplaneTls?: boolean;
}

export interface SessionOptions {
  readonly local: Identity;
  /** This gateway's credential, presented in its OPEN. */
  readonly credential: () => string | Promise<string>;
  /** Checks the peer's OPEN; throws (any error) to refuse the session. */
  readonly verify: (credential: string, claimed: Identity) => Promise<void>;
  /** The peer this side expects, when it dialled a configured peer. */
  readonly expect?: string;
  /** Hold time proposed; the session uses the smaller of both sides' (default 9 s). */
  readonly holdMs?: number;
  readonly maxFrame?: number;
  /** How long the OPEN exchange may take (default 5 s). */
  readonly openTimeoutMs?: number;
}

export interface PeerSessionEvents {
  message: [Message];
  close: [DmscError | undefined];
}

export class PeerSession extends EventEmitter<PeerSessionEvents> {
  readonly peer: Identity;
  readonly holdMs: number;
  /** Frames and bytes on the wire, keepalives included. */
  readonly stats = { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  readonly #socket: Socket;
  readonly #maxFrame: number;
  #hold: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;
  #closed = false;
  #backlog: Message[] = [];

  private constructor(socket: Socket, peer: Identity, holdMs: number, maxFrame: number) {
    super();
    this.#socket = socket;
    this.peer = peer;
    this.holdMs = holdMs;
    this.#maxFrame = maxFrame;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The peer's address as this side's socket sees it. */
  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  /**
   * Runs the OPEN exchange on a connected socket and resolves with the open session;
   * rejects (after telling the peer and closing the socket) if the peer is refused.
   */
  static establish(socket: Socket, options: SessionOptions): Promise<PeerSession> {
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    const proposed = options.holdMs ?? 9000;
    const decoder = new FrameDecoder(maxFrame);
    socket.setNoDelay(true);
    return new Promise<PeerSession>((resolve, reject) => {
      let settled = false;
      const fail = (e: DmscError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        notifyAndClose(socket, e, maxFrame);
        reject(e);
      };
      const timer = setTimeout(() => fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `no OPEN within ${options.openTimeoutMs ?? 5000} ms`)), options.openTimeoutMs ?? 5000);
      const openSent = Promise.resolve().then(() => options.credential()).then((credential) => {
        if (!settled) socket.write(encodeFrame({ type: 'OPEN', version: PROTOCOL_VERSION, gateway: options.local.gateway, domain: options.local.domain, credential, holdMs: proposed, ...(options.local.dataplane ? { dataplane: options.local.dataplane, ...(options.local.dataplaneTls ? { dataplaneTls: true } : {}) } : {}) }, maxFrame));
      });
      // Wire order from the peer: OPEN, then OPEN_OK once it accepted ours (or NOTIFY if
      // it did not), then session messages. Both checks must pass before we resolve.
      const early: Message[] = [];
      let peer: Identity | undefined;
      let peerHold = 0;
      let verified = false;
      let confirmed = false;
      const done = () => {
        if (settled || !verified || !confirmed) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        const session = new PeerSession(socket, peer!, Math.min(proposed, peerHold), maxFrame);
        session.#run(decoder, early);
        resolve(session);
      };
      const onData = (chunk: Buffer) => {
        try {
          handle(decoder.push(chunk));
        } catch (e) {
          fail(asDmsc(e, 'ERR_DMSC_MALFORMED_FRAME'));
        }
      };
      const handle = (messages: Message[]) => {
        for (const m of messages) {
          if (m.type === 'NOTIFY') return fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `peer refused the session: ${text(m['message'], 300)}`));
          if (!peer) {
            if (m.type !== 'OPEN') return fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `expected OPEN, got ${text(m.type, 32)}`));
            const problem = openProblem(m, options.expect);
            if (problem) return fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', problem));
            peer = { gateway: m['gateway'] as string, domain: m['domain'] as string, ...(typeof m['dataplane'] === 'string' ? { dataplane: m['dataplane'], ...(m['dataplaneTls'] === true ? { dataplaneTls: true } : {}) } : {}) };
            peerHold = m['holdMs'] as number;
            const claimed = peer;
            // OPEN_OK goes after our own OPEN, whose credential may still be on its way.
            Promise.all([options.verify(m['credential'] as string, claimed), openSent]).then(() => {
              if (settled) return;
              verified = true;
              socket.write(encodeFrame({ type: 'OPEN_OK' }, maxFrame));
              done();
            }, (e: unknown) => fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `peer ${claimed.gateway} refused: ${(e as Error).message}`)));
          } else if (!confirmed) {
            if (m.type !== 'OPEN_OK') return fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `expected OPEN_OK, got ${text(m.type, 32)}`));
            confirmed = true;
          } else {
            early.push(m);
          }
        }
        done();
      };
      socket.on('data', onData);
      socket.once('close', () => fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', 'connection closed during OPEN')));
      socket.on('error', () => {});
      openSent.catch((e: unknown) => fail(asDmsc(e, 'ERR_DMSC_BAD_HANDSHAKE')));
    });
  }

  /** Sends one message; false once the session is closed. */
  send(message: Message): boolean {
    if (this.#closed) return false;
    let frame: Buffer;
    try {
      frame = encodeFrame(message, this.#maxFrame);
    } catch (e) {
      // A message we cannot send breaks the protocol's state: end the session rather
      // than go on with a hole in it.
      this.close(asDmsc(e, 'ERR_DMSC_FRAME_TOO_LARGE'));
      return false;
    }
    this.stats.framesSent++;
    this.stats.bytesSent += frame.length;
    this.#socket.write(frame);
    // A peer that does not read what we send would make us hold it all: cut it off.
    if (this.#socket.writableLength > MAX_UNSENT) {
      this.close(new DmscError('ERR_DMSC_LIMIT_EXCEEDED', `${this.peer.gateway} is not reading: ${this.#socket.writableLength} bytes waiting`));
      return false;
    }
    return true;
  }

  /** Ends the session; with an error, the peer is told why first. */
  close(error?: DmscError): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#hold);
    clearInterval(this.#keepalive);
    if (error) notifyAndClose(this.#socket, error, this.#maxFrame);
    else {
      this.#socket.end();
      setTimeout(() => this.#socket.destroy(), 1000).unref();
    }
    this.emit('close', error);
  }

  #run(decoder: FrameDecoder, early: Message[]): void {
    const socket = this.#socket;
    const rearm = () => {
      clearTimeout(this.#hold);
      this.#hold = setTimeout(() => this.close(new DmscError('ERR_DMSC_HOLD_EXPIRED', `nothing from ${this.peer.gateway} for ${this.holdMs} ms`)), this.holdMs);
    };
    const deliver = (messages: Message[]) => {
      for (const m of messages) {
        if (this.#closed) return;
        if (m.type === 'KEEPALIVE') continue;
        if (m.type === 'NOTIFY') {
          this.close(new DmscError('ERR_DMSC_PEER_CLOSED', `${this.peer.gateway} closed the session: ${text(m['code'], 64)}: ${text(m['message'])}`));
          return;
        }
        this.#backlog.push(m);
      }
      this.#drain();
    };
    rearm();
    this.#keepalive = setInterval(() => this.send({ type: 'KEEPALIVE' }), Math.max(50, Math.floor(this.holdMs / 3)));
    socket.on('close', () => this.close());
    socket.on('data', (chunk: Buffer) => {
      rearm();
      this.stats.bytesReceived += chunk.length;
      try {
        const messages = decoder.push(chunk);
        this.stats.framesReceived += messages.length;
        deliver(messages);
      } catch (e) {
        this.close(asDmsc(e, 'ERR_DMSC_MALFORMED_FRAME'));
      }
    });
    // The peer may have sent its first messages in the same packets as its OPEN_OK, before
    // anyone here could listen: they wait in the backlog for the first listener.
    const emitter = this as unknown as EventEmitter;
    const onListener = (event: string | symbol) => {
      if (event !== 'message') return;
      emitter.off('newListener', onListener);
      queueMicrotask(() => this.#drain());
    };
    emitter.on('newListener', onListener);
    deliver(early);
  }

  /** Hands queued messages to the listeners, in order, once there are any. */
  #drain(): void {
    // Checked each time: a `once` listener is gone after one message.
    while (this.#backlog.length && !this.#closed && this.listenerCount('message') > 0) this.emit('message', this.#backlog.shift()!);
  }
}

function openProblem(open: Message, expect: string | undefined): string | null {
  const { version, gateway, domain, credential, holdMs } = open as Record<string, unknown>;
  if (version !== PROTOCOL_VERSION) return `unsupported protocol version ${text(version, 16)}`;
  if (typeof gateway !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(gateway)) return 'OPEN without a valid gateway id';
  if (typeof domain !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(domain)) return 'OPEN without a valid domain';
  if (typeof credential !== 'string' || credential.length === 0 || credential.length > 8192) return 'OPEN without a credential';
  if (typeof holdMs !== 'number' || !Number.isInteger(holdMs) || holdMs < 300 || holdMs > 3_600_000) return 'OPEN with a hold time outside 300 ms .. 1 h';
  const { dataplane, dataplaneTls } = open as Record<string, unknown>;
  if (dataplane !== undefined && (typeof dataplane !== 'string' || !/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):\d{1,5}$/.test(dataplane))) return 'OPEN with a data-plane address that is not HOST:PORT';
  if (dataplaneTls !== undefined && typeof dataplaneTls !== 'boolean') return 'OPEN with a dataplaneTls that is not true or false';
  if (expect !== undefined && gateway !== expect) return `expected gateway ${expect}, got ${gateway}`;
  return null;
}

function asDmsc(e: unknown, fallback: DmscErrorCode): DmscError {
  return e instanceof DmscError ? e : new DmscError(fallback, (e as Error).message);
}

function notifyAndClose(socket: Socket, e: DmscError, maxFrame: number): void {
  if (!socket.destroyed && socket.writable) {
    socket.end(encodeFrame({ type: 'NOTIFY', code: e.code, message: e.message.slice(0, 512) }, maxFrame));
  }
  setTimeout(() => socket.destroy(), 1000).unref();
}
