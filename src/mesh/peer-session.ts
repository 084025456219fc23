// One peering session between two gateways over a TCP (or TLS) stream. The handshake
// (handshake.ts) authenticates both gateways, bound to this connection, before anything
// else is taken; until then frames are held to a few KiB. Then: keepalives every third
// of the hold time; the session ends when the hold time passes without a frame, on a bad
// frame, or on close. A session that ends for an error tells the peer why (NOTIFY) first.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { JWK } from 'jose';
import { DmscError, type DmscErrorCode } from '../errors.js';
import { DEFAULT_MAX_FRAME, encodeFrame, FrameDecoder, text, type Message } from './frames.js';
import { Handshake, HANDSHAKE_MAX_FRAME, TLS_EXPORTER_BYTES, TLS_EXPORTER_LABEL, type Credentials, type Identity, type Role, type Step } from './handshake.js';

export type { Credentials, Identity, Role } from './handshake.js';

/** Bytes we queue for a peer before deciding it is not reading. */
const MAX_UNSENT = 64 * 1024 * 1024;
/**
 * Bytes a peer may have waiting before the handshake ends: a handshake message, and the
 * start of the next. A genuine peer sends nothing while it waits for the other side.
 */
const MAX_WAITING = 2 * HANDSHAKE_MAX_FRAME;

export interface SessionOptions {
  /** Who opened the connection: the dialler proves itself first. */
  readonly role: Role;
  readonly local: Identity;
  /** This gateway's key and the AMC's certificate of it; throws when it has none valid. */
  readonly credentials: () => Credentials;
  /**
   * Checks the certificate a peer presents for the identity it claims, and resolves
   * with the key it certifies; throws (any error) to refuse the peer.
   */
  readonly certified: (certificate: string, claimed: Identity) => Promise<JWK>;
  /** The peer this side expects, when it dialled a configured peer. */
  readonly expect?: string;
  /** Hold time proposed; the session uses the smaller of both sides' (default 9 s). */
  readonly holdMs?: number;
  readonly maxFrame?: number;
  /** How long the handshake may take (default 5 s). */
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
   * Runs the handshake on a connected socket and resolves with the open session;
   * rejects (after telling the peer and closing the socket) if the peer is refused.
   */
  static establish(socket: Socket, options: SessionOptions): Promise<PeerSession> {
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    const openTimeoutMs = options.openTimeoutMs ?? 5000;
    // Until the peer has proved itself, a frame may be no larger than a handshake's.
    const decoder = new FrameDecoder(Math.min(HANDSHAKE_MAX_FRAME, maxFrame));
    socket.setNoDelay(true);
    return new Promise<PeerSession>((resolve, reject) => {
      let settled = false;
      let checking = false;
      const fail = (e: DmscError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        notifyAndClose(socket, e, maxFrame);
        reject(e);
      };
      const timer = setTimeout(() => fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `no handshake within ${openTimeoutMs} ms`)), openTimeoutMs);
      const write = (messages: readonly Message[]) => {
        for (const m of messages) socket.write(encodeFrame(m, maxFrame));
      };
      let handshake: Handshake;
      const advance = (step: Step): void => {
        if (step.kind === 'send') return write(step.messages);
        if (step.kind === 'check') {
          checking = true;
          const claimed = step.peer;
          options.certified(step.certificate, claimed).then((key) => {
            checking = false;
            if (settled) return;
            try {
              advance(handshake.proofChecked(key, options.credentials));
              if (!settled) pump();
            } catch (e) {
              fail(asDmsc(e, 'ERR_DMSC_BAD_HANDSHAKE'));
            }
          }, (e: unknown) => fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `peer ${claimed.gateway} refused: ${(e as Error).message}`)));
          return;
        }
        write(step.messages);
        settled = true;
        clearTimeout(timer);
        socket.off('data', onData);
        // Authenticated: frames may now be as large as the session allows.
        decoder.limit = maxFrame;
        const session = new PeerSession(socket, step.peer, step.holdMs, maxFrame);
        session.#run(decoder);
        resolve(session);
      };
      // Frames are taken one at a time, none while a certificate is being checked: what
      // follows the last handshake message is the session's, under the session's limit.
      const pump = () => {
        while (!settled && !checking) {
          const m = decoder.next();
          if (!m) break;
          advance(handshake.receive(m, options.credentials));
        }
        if (!settled && decoder.buffered > MAX_WAITING) throw new DmscError('ERR_DMSC_BAD_HANDSHAKE', `more than ${MAX_WAITING} bytes sent before the handshake ended`);
      };
      const onData = (chunk: Buffer) => {
        try {
          decoder.feed(chunk);
          pump();
        } catch (e) {
          fail(asDmsc(e, 'ERR_DMSC_MALFORMED_FRAME'));
        }
      };
      try {
        const exporter = socket instanceof TLSSocket ? socket.exportKeyingMaterial(TLS_EXPORTER_BYTES, TLS_EXPORTER_LABEL, Buffer.alloc(0)) : undefined;
        handshake = new Handshake({
          role: options.role, local: options.local, holdMs: options.holdMs ?? 9000,
          ...(options.expect !== undefined ? { expect: options.expect } : {}), ...(exporter ? { exporter } : {}),
        });
      } catch (e) {
        return fail(asDmsc(e, 'ERR_DMSC_BAD_HANDSHAKE'));
      }
      socket.on('data', onData);
      socket.once('close', () => fail(new DmscError('ERR_DMSC_BAD_HANDSHAKE', 'connection closed during the handshake')));
      socket.on('error', () => {});
      write([handshake.hello()]);
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

  #run(decoder: FrameDecoder): void {
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
    const take = (chunk: Buffer) => {
      this.stats.bytesReceived += chunk.length;
      try {
        const messages = decoder.push(chunk);
        this.stats.framesReceived += messages.length;
        deliver(messages);
      } catch (e) {
        this.close(asDmsc(e, 'ERR_DMSC_MALFORMED_FRAME'));
      }
    };
    socket.on('data', (chunk: Buffer) => {
      rearm();
      take(chunk);
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
    // What came with the last handshake message, now under the session's frame limit.
    take(Buffer.alloc(0));
  }

  /** Hands queued messages to the listeners, in order, once there are any. */
  #drain(): void {
    // Checked each time: a `once` listener is gone after one message.
    while (this.#backlog.length && !this.#closed && this.listenerCount('message') > 0) this.emit('message', this.#backlog.shift()!);
  }
}

function asDmsc(e: unknown, fallback: DmscErrorCode): DmscError {
  return e instanceof DmscError ? e : new DmscError(fallback, (e as Error).message);
}

function notifyAndClose(socket: Socket, e: DmscError, maxFrame: number): void {
  // Nothing more is read from a peer shown the door: a stranger streaming bytes at us
  // costs nothing while its NOTIFY drains.
  socket.pause();
  if (!socket.destroyed && socket.writable) {
    socket.end(encodeFrame({ type: 'NOTIFY', code: e.code, message: e.message.slice(0, 512) }, maxFrame));
  }
  setTimeout(() => socket.destroy(), 1000).unref();
}
