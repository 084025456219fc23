// Where an agent is reached: its endpoint URL taken apart, and the path a request for a
// capability name is sent to there (the data plane's and the task invoker's).
import { isIP } from 'node:net';

/** An agent's endpoint URL taken apart; null when it is not a URL. */
export function parseEndpoint(endpoint: string): Endpoint | null {
  try {
    const u = new URL(endpoint);
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    return { origin: u.origin, ip: isIP(host) ? host : undefined, port, base: u.pathname.replace(/\/+$/, ''), search: u.search };
  } catch {
    return null;
  }
}

/**
 * The path to ask an agent's endpoint for: its base, then `rest` (the request path below
 * the prefix matched, percent-encoded as it came), then its own query with the request's
 * (`query`, with its '?') after.
 */
export function endpointPath(e: Endpoint, rest: string, query: string): string {
  const q = e.search && query ? `${e.search}&${query.slice(1)}` : e.search || query;
  return `${e.base}${rest || (e.base ? '' : '/')}${q}`;
}

export interface Endpoint {
  readonly origin: string;
  /** A numeric address and port the native relay can reach it at, if it has one. */
  readonly ip: string | undefined;
  readonly port: number;
  /** The endpoint's path without trailing slashes. */
  readonly base: string;
  /** The endpoint's own query, with its '?', or ''. */
  readonly search: string;
}
