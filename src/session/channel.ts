// The two transports an A2ASP session runs over, behind one small interface: a WebSocket
// (ws), one msgpack message per binary WebSocket message; or a TCP connection, with the
// peering layer's framing (4-byte length, then msgpack). Byte strings are allowed in
// session data; extension types are not.
import { connect as tcpConnect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { DmscError, DmscRangeError } from '../errors.js';
import { decodeMessage, encodeFrame, FrameDecoder, packMessage, type Message } from '../mesh/frames.js';

export interface Channel {
  /**
   * Queues a message; `written` runs once it is handed to the kernel.
   * @throws ERR_DMSC_PAYLOAD_TOO_LARGE for a DATA message over `maxMessage` bytes, or a
   *   control message over `CONTROL_LIMIT` (nothing is sent).
   */
  send(message: Message, written?: (err?: Error | null) => void): void;
  /** The largest DATA payload this side sends (the session lowers it to the agreed one). */
  maxMessage: number;
  /** Bytes queued and not yet written. */
  readonly buffered: number;
  /** Stops and restarts reading (backpressure toward the sender). */
  pause(): void;
  resume(): void;
  /** Ends the connection after what is queued is written. */
  end(): void;
  /** Drops the connection at once. */
  destroy(): void;
  /** Sets the one message handler (replacing the one before). */
  onMessage(fn: (m: Message) => void): void;
  /** Once, when the connection is gone; with the error that ended it, if any. */
  onClose(fn: (err?: Error) => void): void;
}

/** A session transport's URL: ws://, wss:// or tcp://HOST:PORT. */
export function transportOf(url: string): 'ws' | 'tcp' {
  if (/^wss?:\/\//.test(url)) return 'ws';
  if (/^tcp:\/\//.test(url)) return 'tcp';
  throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', `a session endpoint is ws://, wss:// or tcp://HOST:PORT, got ${JSON.stringify(url.slice(0, 100))}`);
}

/** Connects to a session endpoint; rejects with ERR_DMSC_SESSION_CLOSED when it cannot. */
export function connectChannel(url: string, maxMessage: number, timeoutMs: number, signal?: AbortSignal): Promise<Channel> {
  if (signal?.aborted) return Promise.reject(new DmscError('ERR_DMSC_CANCELLED', `connecting to ${url} was cancelled`));
  return transportOf(url) === 'ws' ? connectWs(url, maxMessage, timeoutMs, signal) : connectTcp(url, maxMessage, timeoutMs, signal);
}

function unreachable(url: string, why: string): DmscError {
  return new DmscError('ERR_DMSC_SESSION_CLOSED', `cannot reach the session endpoint ${url}: ${why}`);
}

function connectWs(url: string, maxMessage: number, timeoutMs: number, signal?: AbortSignal): Promise<Channel> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: readLimit(maxMessage), handshakeTimeout: timeoutMs, perMessageDeflate: false });
    const abort = () => ws.terminate();
    signal?.addEventListener('abort', abort, { once: true });
    ws.once('open', () => {
      signal?.removeEventListener('abort', abort);
      ws.removeAllListeners('error');
      resolve(wsChannel(ws, maxMessage));
    });
    ws.once('error', (e) => {
      signal?.removeEventListener('abort', abort);
      reject(unreachable(url, signal?.aborted ? 'cancelled' : e.message));
    });
  });
}

function connectTcp(url: string, maxMessage: number, timeoutMs: number, signal?: AbortSignal): Promise<Channel> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.reject(new DmscError('ERR_DMSC_INVALID_ARGUMENT', `bad session endpoint ${JSON.stringify(url.slice(0, 100))}`));
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port);
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host, port, noDelay: true });
    const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
    const abort = () => socket.destroy(new Error('cancelled'));
    signal?.addEventListener('abort', abort, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    };
    socket.once('connect', () => {
      done();
      socket.removeAllListeners('error');
      resolve(tcpChannel(socket, maxMessage));
    });
    socket.once('error', (e) => {
      done();
      reject(unreachable(url, e.message));
    });
  });
}

function tooLarge(max: number): DmscRangeError {
  return new DmscRangeError('ERR_DMSC_PAYLOAD_TOO_LARGE', `a session message exceeds the ${max}-byte limit`);
}

/** Room for the envelope (type, seq) around a data message's payload. */
export const ENVELOPE = 64;
/** The largest control message (SESSION_INIT with its grant and credential, the others far less). */
export const CONTROL_LIMIT = 32_768;
/** What a side reads in one message: its data limit, but room for a control message at least. */
export const readLimit = (maxMessage: number) => Math.max(maxMessage, CONTROL_LIMIT) + ENVELOPE;
/** The most `m` may take on the wire: the data limit binds DATA only. */
const limitOf = (m: Message, maxMessage: number) => (m.type === 'DATA' ? maxMessage : CONTROL_LIMIT) + ENVELOPE;

/**
 * What both transports share. One connection-long listener delivers messages to one
 * handler at a time, which `onMessage` swaps (the handshake's, then the session's), so
 * no message is seen twice or by no one; messages before the first handler are kept.
 * The close is reported once, with the first error seen.
 */
function plumbing(closedAlready: () => boolean) {
  let handler: ((m: Message) => void) | undefined;
  let closed: ((err?: Error) => void) | undefined;
  let error: Error | undefined;
  let gone = false;
  let told = false;
  const early: Message[] = [];
  const tell = () => {
    if (!gone || !closed || told) return;
    told = true;
    closed(error);
  };
  return {
    fail(e: Error): void {
      error ??= e;
    },
    deliver(m: Message): void {
      if (handler) handler(m);
      else early.push(m);
    },
    gone(): void {
      gone = true;
      tell();
    },
    onMessage(fn: (m: Message) => void): void {
      handler = fn;
      while (early.length && handler === fn) fn(early.shift()!);
    },
    onClose(fn: (err?: Error) => void): void {
      closed = fn;
      if (closedAlready()) gone = true;
      tell();
    },
  };
}

/** A channel over an open WebSocket. */
export function wsChannel(ws: WebSocket, maxMessage: number): Channel {
  const p = plumbing(() => ws.readyState === WebSocket.CLOSED);
  ws.on('error', (e) => p.fail(e));
  ws.on('close', () => p.gone());
  ws.on('message', (data, isBinary) => {
    let m: Message;
    try {
      if (!isBinary) throw new DmscError('ERR_DMSC_SESSION_PROTOCOL', 'a text WebSocket message');
      m = decodeMessage(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer), true);
    } catch (e) {
      p.fail(e as Error);
      return void ws.terminate();
    }
    p.deliver(m);
  });
  return {
    maxMessage,
    send(m, written) {
      const bytes = packMessage(m);
      if (bytes.length > limitOf(m, this.maxMessage)) throw tooLarge(this.maxMessage);
      ws.send(bytes, { binary: true }, written);
    },
    get buffered() {
      return ws.bufferedAmount;
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    end: () => ws.close(1000),
    destroy: () => ws.terminate(),
    onMessage: p.onMessage,
    onClose: p.onClose,
  };
}

/** A channel over a connected TCP socket. */
export function tcpChannel(socket: Socket, maxMessage: number): Channel {
  const decoder = new FrameDecoder(readLimit(maxMessage), true);
  const p = plumbing(() => socket.destroyed);
  socket.setNoDelay(true);
  socket.on('error', (e) => p.fail(e));
  socket.on('close', () => p.gone());
  socket.on('data', (chunk: Buffer) => {
    let messages: Message[];
    try {
      messages = decoder.push(chunk);
    } catch (e) {
      p.fail(e as Error);
      return void socket.destroy();
    }
    for (const m of messages) {
      if (socket.destroyed) return;
      p.deliver(m);
    }
  });
  return {
    maxMessage,
    send(m, written) {
      let frame: Buffer;
      try {
        frame = encodeFrame(m, limitOf(m, this.maxMessage));
      } catch {
        throw tooLarge(this.maxMessage);
      }
      socket.write(frame, written);
    },
    get buffered() {
      return socket.writableLength;
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    end: () => socket.end(),
    destroy: () => socket.destroy(),
    onMessage: p.onMessage,
    onClose: p.onClose,
  };
}
