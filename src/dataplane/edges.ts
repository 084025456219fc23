// The data plane's Node listener at its edges: what a client that does not speak the
// expected HTTP/1.1 gets back, and when an idle or stalled connection is closed. Every
// refusal is an answer with the JSON error body and `connection: close`, then the close,
// so a client (or the native relay in front, which passes the answer on) always learns
// why. The native relay keeps the same timings and answers (native/core/relay.cpp).
import { STATUS_CODES, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { DmscError } from '../errors.js';

/** A kept-alive connection with no request for this long is closed. */
export const IDLE_MS = 30_000;
/** A request head (and, on the relay, a small body) must arrive within this. */
export const HEAD_MS = 30_000;
/** A request or answer body that stops moving for this long is cut. */
export const STALL_MS = 120_000;

/**
 * Options for node:http's createServer: the timeouts above, checked every second (Node
 * checks a head's time only on its own 30 s round otherwise, so a stalled head could
 * hold a connection for a minute).
 */
export const SERVER_OPTIONS = { keepAliveTimeout: IDLE_MS, headersTimeout: HEAD_MS, requestTimeout: 0, connectionsCheckingInterval: 1000 } as const;

/** The answer for a request the HTTP parser refused, by llhttp's (or Node's) error code. */
export function parseRefusal(code: string | undefined, message: string): DmscError {
  switch (code) {
    case 'HPE_INVALID_METHOD':
      return new DmscError('ERR_DMSC_NOT_IMPLEMENTED', 'the data plane does not know this method');
    case 'HPE_HEADER_OVERFLOW':
      return new DmscError('ERR_DMSC_HEADERS_TOO_LARGE', 'the request head is larger than 16 KiB');
    case 'HPE_PAUSED_H2_UPGRADE':
    case 'HPE_INVALID_VERSION':
      return new DmscError('ERR_DMSC_HTTP_VERSION', 'the data plane speaks HTTP/1.1 (and 1.0) only');
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return new DmscError('ERR_DMSC_REQUEST_TIMEOUT', `the request did not arrive within ${HEAD_MS / 1000} s`);
    default:
      return new DmscError('ERR_DMSC_MALFORMED_REQUEST', `not a request the data plane can take: ${message.replace(/^Parse Error: /, '')}`);
  }
}

/** Writes `e` as a whole answer and closes the connection (unless an answer is under way on it). */
export function refuse(socket: Duplex, e: DmscError, busy: WeakSet<Duplex>, extra = ''): void {
  if (!socket.writable || busy.has(socket)) return void socket.destroy();
  const body = JSON.stringify({ error: { code: e.code, message: e.message } });
  socket.end(`HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`);
  // What the client still sends is read and dropped: closing with it unread would reset
  // the connection, and a reset can throw away the answer just sent. A second at most.
  socket.on('data', () => {});
  socket.resume();
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Sets a data-plane listener's answers to what it cannot serve (make it with SERVER_OPTIONS). */
export function guard(server: Server): void {
  server.setTimeout(STALL_MS, (socket) => socket.destroy());
  // Sockets with an answer being written: a late parse error there cannot answer.
  const busy = new WeakSet<Duplex>();
  server.on('request', (req, res) => {
    busy.add(req.socket);
    res.once('close', () => busy.delete(req.socket));
  });
  server.on('clientError', (e: Error & { code?: string }, socket) => {
    if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return void socket.destroy();
    refuse(socket, parseRefusal(e.code, e.message), busy);
  });
  // CONNECT (a tunnel request) is not something a data plane addressed by capability does.
  server.on('connect', (_req, socket: Duplex) => {
    refuse(socket, new DmscError('ERR_DMSC_METHOD_NOT_ALLOWED', 'the data plane does not open tunnels (CONNECT)'), busy, 'allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n');
  });
}
