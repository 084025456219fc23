// Listening sockets. A node has several listeners (API, data plane, peering, ...), each
// set by its own flag; when one cannot listen, the error says which one, where, why in
// words an operator acts on, and which flag moves it (ERR_DMSC_LISTEN).
import type { Server } from 'node:net';
import { DmscError } from '../errors.js';

export interface Listen {
  readonly host: string;
  readonly port: number;
}

/** Which listener, for messages: its name and the flag (or file field) that sets it. */
export interface Listener {
  readonly name: string;
  readonly flag: string;
}

/** HOST:PORT, with an IPv6 host in brackets. */
export function formatListen({ host, port }: Listen): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

const REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is in use (another process listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'no interface of this host has that address',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name does not resolve',
};
const BY_TEXT: [RegExp, string][] = [[/address already in use/i, 'EADDRINUSE'], [/permission denied/i, 'EACCES'], [/cannot assign requested address/i, 'EADDRNOTAVAIL']];

/** ERR_DMSC_LISTEN for `listener` at `at`, from the error the socket layer gave. */
export function listenError(listener: Listener, at: Listen, cause: unknown): DmscError {
  const e = cause as { code?: unknown; message?: unknown };
  const text = typeof e?.message === 'string' ? e.message : String(cause);
  const code = typeof e?.code === 'string' && REASONS[e.code] ? e.code : BY_TEXT.find(([re]) => re.test(text))?.[1];
  const why = code ? REASONS[code] : text;
  return new DmscError('ERR_DMSC_LISTEN', `the ${listener.name} listener cannot listen on ${formatListen(at)}: ${why}; choose another address with ${listener.flag}`);
}

/**
 * Starts `server` listening at `at`; resolves with the address it is bound to (the real
 * port when 0 was asked for), or rejects with ERR_DMSC_LISTEN naming the listener. A
 * later 'error' on the listener is not fatal.
 */
export function listenOn(server: Server, at: Listen, listener: Listener): Promise<Listen> {
  return new Promise((resolve, reject) => {
    const failed = (e: Error) => reject(listenError(listener, at, e));
    server.once('error', failed);
    server.listen(at.port, at.host, () => {
      server.off('error', failed);
      server.on('error', () => {});
      const a = server.address();
      resolve(typeof a === 'object' && a ? { host: a.address, port: a.port } : at);
    });
  });
}
