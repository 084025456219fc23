// The data plane: requests addressed by capability (`POST /capability/ocr/...`) are
// forwarded to an instance the fast path picks, and fail over to the next one.
//
// Per request: the requester's agent credential (Bearer) is verified (cached), policy
// decides (cached, with its required tags compiled to a fast-path TagSet), and one FIB
// lookup picks the target, sticky when the request carries `x-dmsc-flow`. Bodies stream
// both ways through undici's per-origin connection pools; nothing large is buffered.
// A connect error, a reset or timeout before the response, or a 502/503 from the
// instance marks that instance down in the fast path at once (its next heartbeat brings
// it back) and the request goes to the next choice, when it can be sent again: a method
// without side effects whose body (if any) was small enough to keep, or any request
// whose body was not read yet. A route toward a peer gateway sends the request on to
// that gateway's data plane, with a hop limit.
//
// The listener is node:http, not fastify: a proxy streams bodies it never parses, and
// per-request routing and validation here are one string check and one table lookup.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { DmscError } from '../errors.js';
import { peerOf, type Directory } from '../directory/directory.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { TagSet } from '../fastpath/tags.js';
import { nameProblem } from '../fastpath/validate.js';
import type { AgentClaims, CredentialGuard } from '../identity/credentials.js';
import { listenOn, type Listen } from '../node/config.js';
import { bearer } from '../http/server.js';
import { policyDenial, type Decision, type PolicyEngine } from '../policy/policy.js';

export interface DataPlaneOptions {
  readonly listen: Listen;
  /** Instances tried per request, the first included (default 3). */
  readonly attempts?: number;
  readonly connectTimeoutMs?: number;
  /** Time for an instance to start answering (default 30 s). */
  readonly headersTimeoutMs?: number;
  /** Largest gap between body chunks either way (default 30 s). */
  readonly bodyTimeoutMs?: number;
  /** Gateways a request may pass (default 8). */
  readonly maxHops?: number;
  /** Bodies of retryable methods up to this size are kept to send again (default 64 KiB). */
  readonly replayBytes?: number;
}

export interface DataPlaneDeps {
  readonly self: string;
  readonly fib: ForwardingTable;
  readonly directory: Directory;
  readonly policy: PolicyEngine<TagSet>;
  readonly guard: CredentialGuard;
  /** The data-plane address of a peer gateway of our domain, if it has told us one. */
  readonly peerDataPlane: (peer: string) => string | undefined;
  /** A request to (or toward) a peer gateway failed: keep it out of choices for a moment. */
  readonly peerFailed: (peer: string) => void;
}

/** Counters since start. */
export interface DataPlaneStats {
  requests: number;
  forwarded: number;
  retries: number;
  markedDown: number;
  refused: number;
  failed: number;
}

const RETRYABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
// Hop-by-hop headers (RFC 9110 §7.6.1), `expect` (answered here already), and the
// credential: never passed on. Headers named in `connection` are dropped too, and so
// are x-dmsc-* headers but for the flow key.
const DROP_REQUEST = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'authorization', 'expect']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
export const HOPS_HEADER = 'x-dmsc-hops';
export const VIA_HEADER = 'x-dmsc-via';
export const FLOW_HEADER = 'x-dmsc-flow';

/** Failures where the request never reached the instance. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
/** Failures that are the instance's (or the way to it): reason to mark it down. */
const INSTANCE_CODES = new Set([...CONNECT_CODES, 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED']);
/** Path components that would climb out of an instance's base path, as written or encoded. */
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)|%2f|%5c|\\/i;

export class DataPlane {
  readonly stats: DataPlaneStats = { requests: 0, forwarded: 0, retries: 0, markedDown: 0, refused: 0, failed: 0 };
  readonly #deps: DataPlaneDeps;
  readonly #attempts: number;
  readonly #maxHops: number;
  readonly #replayBytes: number;
  readonly #listen: Listen;
  readonly #agent: Agent;
  #server: Server | undefined;
  #address: Listen | undefined;

  constructor(deps: DataPlaneDeps, options: DataPlaneOptions) {
    this.#deps = deps;
    this.#listen = options.listen;
    this.#attempts = options.attempts ?? 3;
    this.#maxHops = options.maxHops ?? 8;
    this.#replayBytes = options.replayBytes ?? 64 * 1024;
    // One pool of keep-alive connections per instance (origin).
    this.#agent = new Agent({
      connections: 256,
      connect: { timeout: options.connectTimeoutMs ?? 2000 },
      headersTimeout: options.headersTimeoutMs ?? 30_000,
      bodyTimeout: options.bodyTimeoutMs ?? 30_000,
      keepAliveTimeout: 30_000,
    });
  }

  get address(): Listen | undefined {
    return this.#address;
  }

  async start(): Promise<void> {
    // No limit on a whole request (bodies may be large), but a connection idle for 2 min
    // is closed, so a client trickling nothing cannot hold it (and an instance's) forever.
    const server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 0 }, (req, res) => {
      this.#handle(req, res).catch((e: unknown) => this.#fail(res, e));
    });
    server.setTimeout(120_000, (socket) => socket.destroy());
    server.on('clientError', (_e, socket) => socket.destroy());
    this.#address = await listenOn(server, this.#listen);
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    if (server) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    await this.#agent.close().catch(() => {});
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const name = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q);
    if (name !== '/capability' && !name.startsWith('/capability/')) throw new DmscError('ERR_DMSC_NOT_FOUND', 'the data plane serves /capability/... only');
    // The path is the name looked up (a trailing '/' aside, which goes on to the instance).
    const capability = name.length > 1 && name.endsWith('/') ? name.slice(0, -1) : name;
    const problem = nameProblem(capability);
    if (problem) throw new DmscError('ERR_DMSC_INVALID_NAME', `${name.slice(0, 200)}: ${problem}`);
    if (DOT_SEGMENT.test(name)) throw new DmscError('ERR_DMSC_INVALID_NAME', `${name.slice(0, 200)}: dot segments and encoded slashes are not allowed`);

    // Who asks, and may they: before any instance is contacted.
    const token = bearer(req);
    const claims = await this.#deps.guard.verify(token);
    const hops = hopsLeft(req.headers[HOPS_HEADER], this.#maxHops);
    const via = typeof req.headers[VIA_HEADER] === 'string' ? (req.headers[VIA_HEADER] as string).split(',').slice(0, 64) : [];
    if (via.includes(this.#deps.self)) throw new DmscError('ERR_DMSC_LOOP', `the request came back to ${this.#deps.self} (via ${via.join(',')})`);
    let decision = this.#decide(claims, capability);

    const method = req.method ?? 'GET';
    const length = Number(req.headers['content-length'] ?? 0);
    const chunked = req.headers['transfer-encoding'] !== undefined;
    // A small body is kept, so the request can be sent again; a larger one streams, once.
    let body: Buffer | IncomingMessage | undefined;
    if (!chunked && length > 0 && length <= this.#replayBytes) body = await readAll(req, length);
    else if (chunked || length > 0) body = req;
    // Again after a failure: never a streamed body (gone with the attempt); a kept or no
    // body for a method without side effects, or for any method the instance never got.
    const again = (nothingSent: boolean) => body !== req && (RETRYABLE_METHODS.has(method) || nothingSent);

    const flow = req.headers[FLOW_HEADER];
    const lookup = (require: TagSet) => this.#deps.fib.lookup(capability, typeof flow === 'string' && flow !== '' ? { require, flow } : { require });
    // The client gone before the answer began: the attempt is called off. (undici takes
    // an EventEmitter as the signal; an AbortController costs a DOMException per request.)
    const cancel = Object.assign(new EventEmitter(), { aborted: false });
    res.once('close', () => {
      if (res.writableEnded) return;
      cancel.aborted = true;
      cancel.emit('abort');
    });
    const tried = new Set<string>();
    let attempts = 0;
    let last = '';
    for (let look = 0; look < this.#attempts * 2 && attempts < this.#attempts && !res.destroyed; look++) {
      let hit = lookup(decision.mask);
      if (hit && hit.prefix !== capability) {
        // Policy is about capabilities: the prefix that matched decides too.
        const more = this.#decide(claims, hit.prefix, decision);
        if (more !== decision) {
          decision = more;
          hit = lookup(decision.mask);
        }
      }
      if (!hit || tried.has(hit.nextHop)) break;
      tried.add(hit.nextHop);
      const peer = peerOf(hit.nextHop);
      const target = peer ? (hops > 1 ? this.#peerTarget(peer, name + query) : undefined) : this.#agentTarget(hit.nextHop, name.slice(hit.prefix.length), query);
      if (!target) {
        // A peer with no data plane to send to, or none left in hops: the next choice is
        // looked up with this one out of the way for a moment.
        if (peer) this.#deps.peerFailed(peer);
        last = `${hit.nextHop}: ${peer && hops <= 1 ? 'out of gateway hops' : 'no address'}`;
        continue;
      }
      attempts++;
      if (attempts > 1) this.stats.retries++;
      const headers = forwardHeaders(req.headers, claims.aic, peer ? { authorization: `Bearer ${token}`, [HOPS_HEADER]: String(hops - 1), [VIA_HEADER]: [...via, this.#deps.self].join(',') } : {});
      // Passive health: down in the fast path now; a heartbeat (for a peer, a short
      // while with its session up) brings it back.
      const failed = hit.nextHop;
      const down = () => {
        if (peer) this.#deps.peerFailed(peer);
        else if (this.#deps.directory.markDown(failed)) this.stats.markedDown++;
      };
      const chosen = hit;
      let answered = false;
      let refused = 0;
      try {
        // The instance's answer streams straight into ours, unless it is a 502/503 that
        // can be tried elsewhere: that one is drained and dropped.
        await this.#agent.stream({ origin: target.origin, path: target.path, method: method as Dispatcher.HttpMethod, headers, body: body ?? null, signal: cancel }, ({ statusCode, headers: h }) => {
          const said = h as IncomingHttpHeaders;
          if (statusCode === 502 || statusCode === 503) {
            down();
            if (again(false)) {
              refused = statusCode;
              return new Writable({ write: (_c, _e, cb) => cb() });
            }
          }
          answered = true;
          res.writeHead(statusCode, { ...responseHeaders(said, !!peer), ...this.#said(chosen, peer, attempts, said) });
          return res;
        });
      } catch (e) {
        // Once our answer has begun, a failure can only cut it short.
        if (answered || res.destroyed || cancel.aborted) return void res.destroy();
        const code = (e as NodeJS.ErrnoException).code ?? '';
        // Only a failure of the instance (or of the way to it) counts against it; one of
        // the request itself (its body, a header undici refuses) is the request's answer.
        if (!INSTANCE_CODES.has(code)) throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `the request could not be sent to ${failed}: ${describeFailure(e)}`);
        last = `${failed}: ${describeFailure(e)}`;
        down();
        if (!again(CONNECT_CODES.has(code))) break;
        continue;
      }
      if (!refused) {
        this.stats.forwarded++;
        return;
      }
      last = `${failed}: answered ${refused}`;
    }
    if (res.destroyed) return;
    if (tried.size === 0) throw new DmscError('ERR_DMSC_NO_ROUTE', `no reachable instance offers ${capability}${decision.require.length ? ' with the required tags' : ''}`);
    this.stats.failed++;
    throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `every instance tried for ${capability} failed (${attempts} tried; last: ${last})`, { attempts });
  }

  /** The policy's decision for `capability`; with `before`, merged into it (deny wins, tags add up). */
  #decide(claims: AgentClaims, capability: string, before?: Decision<TagSet>): Decision<TagSet> {
    const d = this.#deps.policy.decide(claims, capability);
    if (d.effect === 'deny') throw policyDenial(capability, d.rule);
    if (!before || d.require.every((t) => before.require.includes(t))) return before ?? d;
    const require = [...new Set([...before.require, ...d.require])];
    return { ...d, require, mask: this.#deps.fib.tagSet(require) };
  }

  /**
   * What the requester is told: the capability matched, the instance, the gateways
   * passed, and the attempts made here. Through a peer, the far gateway's word on the
   * first three; an instance's own x-dmsc-* headers are never taken.
   */
  #said(hit: { prefix: string; nextHop: string }, peer: string | undefined, attempt: number, far: IncomingHttpHeaders): Record<string, string> {
    const from = (h: string) => (peer && typeof far[h] === 'string' ? (far[h] as string) : undefined);
    const path = from('x-dmsc-path');
    return {
      'x-dmsc-capability': from('x-dmsc-capability') ?? hit.prefix,
      'x-dmsc-instance': from('x-dmsc-instance') ?? hit.nextHop,
      'x-dmsc-path': path ? `${this.#deps.self},${path}` : this.#deps.self,
      'x-dmsc-attempts': String(attempt),
    };
  }

  #agentTarget(aic: string, rest: string, query: string): { origin: string; path: string } | undefined {
    const endpoint = this.#deps.directory.get(aic)?.endpoint;
    if (!endpoint) return undefined;
    let u: URL;
    try {
      u = new URL(endpoint);
    } catch {
      return undefined;
    }
    const base = u.pathname.replace(/\/+$/, '');
    // The endpoint's own query comes first; the request's is added to it.
    const q = u.search && query ? `${u.search}&${query.slice(1)}` : u.search || query;
    return { origin: u.origin, path: `${base}${rest || (base ? '' : '/')}${q}` };
  }

  #peerTarget(peer: string, pathAndQuery: string): { origin: string; path: string } | undefined {
    const address = this.#deps.peerDataPlane(peer);
    return address ? { origin: `http://${address}`, path: pathAndQuery } : undefined;
  }

  #fail(res: ServerResponse, e: unknown): void {
    const err = e instanceof DmscError ? e : new DmscError('ERR_DMSC_INTERNAL', 'internal error');
    if (err.code === 'ERR_DMSC_UNAUTHORIZED' || err.code === 'ERR_DMSC_FORBIDDEN') this.stats.refused++;
    if (res.headersSent) return void res.destroy();
    const body = JSON.stringify({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } });
    // A request whose body was not read to its end (refused early, or its stream given
    // up with a failed attempt) leaves the connection in no state for another: close it.
    const unread = !res.req.complete;
    res.writeHead(err.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...(unread ? { connection: 'close' } : {}) });
    res.end(body);
  }
}

/** Hops a request has left: the peer's header, else the limit; malformed is refused. */
function hopsLeft(value: string | string[] | undefined, max: number): number {
  if (value === undefined) return max;
  const n = typeof value === 'string' && /^\d{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 0 && n <= max)) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', `${HOPS_HEADER} must be a whole number from 0 to ${max}`);
  if (n === 0) throw new DmscError('ERR_DMSC_TTL_EXPIRED', 'the request ran out of gateway hops');
  return n;
}

/** Headers named in a `connection` header (hop-by-hop too). */
function named(headers: IncomingHttpHeaders): Set<string> | undefined {
  const c = headers['connection'];
  if (typeof c !== 'string') return undefined;
  const tokens = c.toLowerCase().split(',').map((t) => t.trim()).filter((t) => t && t !== 'keep-alive' && t !== 'close');
  return tokens.length ? new Set(tokens) : undefined;
}

function forwardHeaders(headers: IncomingHttpHeaders, requester: string, extra: Record<string, string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const hop = named(headers);
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || DROP_REQUEST.has(k) || hop?.has(k) || (k.startsWith('x-dmsc-') && k !== FLOW_HEADER)) continue;
    out[k] = v;
  }
  out['x-dmsc-requester'] = requester;
  return Object.assign(out, extra);
}

/** An answer's headers to pass back; x-dmsc-* only from a peer gateway (its word, read in #said). */
function responseHeaders(headers: IncomingHttpHeaders, fromPeer: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const hop = named(headers);
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || DROP_RESPONSE.has(k) || hop?.has(k) || (!fromPeer && k.startsWith('x-dmsc-'))) continue;
    out[k] = v;
  }
  return out;
}

function describeFailure(e: unknown): string {
  if (e instanceof undiciErrors.ConnectTimeoutError) return 'connect timeout';
  if (e instanceof undiciErrors.HeadersTimeoutError) return 'no answer in time';
  if (e instanceof undiciErrors.SocketError) return `connection reset (${e.message})`;
  const code = (e as NodeJS.ErrnoException).code;
  return code ? `${code}` : (e as Error).message || 'failed';
}

async function readAll(req: IncomingMessage, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of req) {
    got += (chunk as Buffer).length;
    if (got > length) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', 'the body is longer than its content-length');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, got);
}
