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
import { Writable } from 'node:stream';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { DmscError } from '../errors.js';
import { peerOf, type Directory } from '../directory/directory.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { TagSet } from '../fastpath/tags.js';
import { nameProblem } from '../fastpath/validate.js';
import type { CredentialGuard } from '../identity/credentials.js';
import type { Listen } from '../node/config.js';
import type { PolicyEngine } from '../policy/policy.js';

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
// Hop-by-hop headers (RFC 9110 §7.6.1) and ours, never passed through.
const DROP_REQUEST = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'authorization', 'x-dmsc-hops']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
export const HOPS_HEADER = 'x-dmsc-hops';
export const FLOW_HEADER = 'x-dmsc-flow';

/** Failures where the request never reached the instance. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

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
    const server = createServer({ keepAliveTimeout: 30_000, requestTimeout: 0 }, (req, res) => {
      this.#handle(req, res).catch((e: unknown) => this.#fail(res, e));
    });
    server.on('clientError', (_e, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#listen.port, this.#listen.host, () => resolve());
    });
    this.#server = server;
    const a = server.address();
    this.#address = typeof a === 'object' && a ? { host: a.address, port: a.port } : this.#listen;
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
    const hops = hopsLeft(req.headers[HOPS_HEADER], this.#maxHops);

    // Who asks, and may they: before any instance is contacted.
    const auth = req.headers.authorization;
    const token = auth && /^bearer /i.test(auth) ? auth.slice(7).trim() : '';
    if (!token) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'a request needs the agent credential as a Bearer token');
    const claims = await this.#deps.guard.verify(token);
    const decision = this.#deps.policy.decide(claims, capability);
    if (decision.effect === 'deny') throw new DmscError('ERR_DMSC_FORBIDDEN', `policy denies ${capability} to this requester (${decision.rule ? `rule '${decision.rule}'` : 'the policy default'})`);

    const method = req.method ?? 'GET';
    const length = Number(req.headers['content-length'] ?? 0);
    const hasBody = length > 0 || req.headers['transfer-encoding'] !== undefined;
    // A small body of a method without side effects is kept, so the request can go again.
    let body: Buffer | IncomingMessage | undefined;
    if (hasBody && RETRYABLE_METHODS.has(method) && length > 0 && length <= this.#replayBytes) body = await readAll(req, length);
    else if (hasBody) body = req;
    // Again after a failure: a method without side effects, unless its body streamed
    // (and is gone); any method when the instance never got the request and its body
    // was not read.
    const again = (nothingSent: boolean) => (RETRYABLE_METHODS.has(method) && body !== req) || (nothingSent && !(body === req && req.readableDidRead));

    const flow = req.headers[FLOW_HEADER];
    const lookup = typeof flow === 'string' && flow !== '' ? { require: decision.mask, flow } : { require: decision.mask };
    const tried = new Set<string>();
    let last = '';
    for (let attempt = 1; attempt <= this.#attempts; attempt++) {
      const hit = this.#deps.fib.lookup(capability, lookup);
      if (!hit || tried.has(hit.nextHop)) break;
      tried.add(hit.nextHop);
      const peer = peerOf(hit.nextHop);
      const target = peer ? this.#peerTarget(peer, name + query, hops) : this.#agentTarget(hit.nextHop, name.slice(hit.prefix.length), query);
      if (!target) {
        last = `${hit.nextHop}: no address`;
        continue;
      }
      if (attempt > 1) this.stats.retries++;
      const headers = forwardHeaders(req.headers, claims.aic, peer ? { authorization: `Bearer ${token}`, [HOPS_HEADER]: String(hops - 1) } : {});
      // Passive health: down in the fast path now; a heartbeat brings it back.
      const down = () => {
        if (!peer && this.#deps.directory.markDown(hit.nextHop)) this.stats.markedDown++;
      };
      let answered = false;
      let refused = 0;
      try {
        // The instance's answer streams straight into ours, unless it is a 502/503 that
        // can be tried elsewhere: that one is drained and dropped.
        await this.#agent.stream({ origin: target.origin, path: target.path, method: method as Dispatcher.HttpMethod, headers, body: body ?? null }, ({ statusCode, headers: h }) => {
          const said = h as IncomingHttpHeaders;
          if (statusCode === 502 || statusCode === 503) {
            down();
            if (again(false)) {
              refused = statusCode;
              return new Writable({ write: (_c, _e, cb) => cb() });
            }
          }
          answered = true;
          res.writeHead(statusCode, { ...responseHeaders(said), ...this.#said(hit, peer, attempt, said) });
          return res;
        });
      } catch (e) {
        // Once our answer has begun, a failure can only cut it short.
        if (answered || res.destroyed) return void res.destroy();
        down();
        last = `${hit.nextHop}: ${describeFailure(e)}`;
        if (!again(CONNECT_CODES.has((e as NodeJS.ErrnoException).code ?? ''))) break;
        continue;
      }
      if (!refused) {
        this.stats.forwarded++;
        return;
      }
      last = `${hit.nextHop}: answered ${refused}`;
    }
    if (tried.size === 0) throw new DmscError('ERR_DMSC_NO_ROUTE', `no reachable instance offers ${capability}${decision.require.length ? ' with the required tags' : ''}`);
    this.stats.failed++;
    throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `every instance tried for ${capability} failed (${tried.size} tried; last: ${last})`, { attempts: tried.size });
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
    return { origin: u.origin, path: `${base}${rest || (base ? '' : '/')}${query}` };
  }

  #peerTarget(peer: string, pathAndQuery: string, hops: number): { origin: string; path: string } | undefined {
    if (hops <= 1) throw new DmscError('ERR_DMSC_TTL_EXPIRED', `the request ran out of gateway hops at ${this.#deps.self}`);
    const address = this.#deps.peerDataPlane(peer);
    return address ? { origin: `http://${address}`, path: pathAndQuery } : undefined;
  }

  #fail(res: ServerResponse, e: unknown): void {
    const err = e instanceof DmscError ? e : new DmscError('ERR_DMSC_INTERNAL', 'internal error');
    if (err.code === 'ERR_DMSC_UNAUTHORIZED' || err.code === 'ERR_DMSC_FORBIDDEN') this.stats.refused++;
    if (res.headersSent) return void res.destroy();
    const body = JSON.stringify({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } });
    res.writeHead(err.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
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

function forwardHeaders(headers: IncomingHttpHeaders, requester: string, extra: Record<string, string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !DROP_REQUEST.has(k)) out[k] = v;
  out['x-dmsc-requester'] = requester;
  return Object.assign(out, extra);
}

function responseHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !DROP_RESPONSE.has(k)) out[k] = v;
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
