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
// The listener is the native relay (native/core/relay.hpp) when the addon is there: an
// HTTP/1.1 proxy on its own thread, next to the table it looks up. It serves requests
// whose credential, policy decision and instance address this data plane has already
// established (taught to it below, held `nativeCacheMs`), and hands every other request
// to the listener here, on an internal loopback port. Without the relay, that listener
// is the data plane's own.
//
// The listener here is node:http, not fastify: a proxy streams bodies it never parses,
// and per-request routing and validation here are one string check and one table lookup.
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { randomBytes } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import { Agent } from 'undici';
import { DmscError } from '../errors.js';
import { peerOf, type Directory } from '../directory/directory.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import { loadNative, type NativeRelay, type NativeRelayCounters } from '../fastpath/native.js';
import type { TagSet } from '../fastpath/tags.js';
import { nameFromPath, quoteName } from '../names.js';
import { endpointPath, parseEndpoint, type Endpoint } from './endpoint.js';
import type { AgentClaims, CredentialGuard } from '../identity/credentials.js';
import type { PeeringTls } from '../mesh/mesh.js';
import { listenError, listenOn, type Listen, type Listener } from '../net/listen.js';
import { guard, SERVER_OPTIONS } from './edges.js';
import { AuthThrottle, type Throttled } from '../http/auth-throttle.js';
import { bearer } from '../http/server.js';
import { policyDenial, type Decision, type PolicyEngine } from '../policy/policy.js';
import { Exchange, FLOW_HEADER, HOPS_HEADER, VIA_HEADER, type Ask, type DataPlaneStats, type ExchangeHost, type Outcome, type Target } from './exchange.js';

export { FLOW_HEADER, HOPS_HEADER, VIA_HEADER, type DataPlaneStats, type Outcome } from './exchange.js';

export interface DataPlaneOptions {
  readonly listen: Listen;
  /**
   * A second listener, for requests from peer gateways, over the peering TLS (`tls`,
   * mutual when it requires client certificates).
   */
  readonly peerListen?: Listen;
  /** The peering TLS: served on `peerListen`, and used to reach peers' data planes. */
  readonly tls?: PeeringTls;
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
  /** The native relay as the listener, when the addon has it (default true). */
  readonly native?: boolean;
  /**
   * How long the relay holds what it was taught (credential, decision, address; default
   * 60 s); for as long again it is still used while one request every 100 ms goes to
   * this data plane to renew it. A new policy, a revocation, new credential keys and a
   * changed agent void it at once; twice this is the bound for anything else.
   */
  readonly nativeCacheMs?: number;
}

export interface DataPlaneDeps {
  readonly self: string;
  readonly fib: ForwardingTable;
  readonly directory: Directory;
  readonly policy: PolicyEngine<TagSet>;
  readonly guard: CredentialGuard;
  /** The data-plane origin (`https://HOST:PORT` or `http://…`) of a peer gateway of our domain, if it has told us one. */
  readonly peerDataPlane: (peer: string) => string | undefined;
  /** A request to (or toward) a peer gateway failed: keep it out of choices for a moment. */
  readonly peerFailed: (peer: string) => void;
  /**
   * Calls back with AICs as they are revoked, and when the credential keys change: what
   * the native relay was taught of them goes.
   */
  readonly onCredentialChange?: (listener: (change: { revoked: string[]; keys: boolean }) => void) => void;
  /**
   * How each request this process forwarded ended. Requests the native relay serves by
   * itself are counted in its counters only.
   */
  readonly outcome?: (o: Outcome) => void;
  /** Failed authentication by source; a throttled source's unknown credentials get 429. */
  readonly throttle?: AuthThrottle;
}

const DATA_PLANE: Listener = { name: 'data-plane', flag: '--dataplane' };
/** Instance endpoints parsed, by endpoint (a bounded memo: endpoints change rarely). */
const ENDPOINTS_KEPT = 10_000;

/** How often what the relay marked down reaches the directory. */
const RELAY_POLL_MS = 50;

export class DataPlane {
  readonly #stats: DataPlaneStats = { requests: 0, forwarded: 0, retries: 0, markedDown: 0, refused: 0, failed: 0 };
  readonly #deps: DataPlaneDeps;
  readonly #maxHops: number;
  readonly #replayBytes: number;
  readonly #listen: Listen;
  readonly #peerListen: Listen | undefined;
  readonly #tls: PeeringTls | undefined;
  readonly #agent: Agent;
  readonly #peerAgent: Agent;
  readonly #host: ExchangeHost;
  readonly #endpoints = new Map<string, Endpoint | null>();
  readonly #options: DataPlaneOptions;
  #servers: Server[] = [];
  /** Connections from the native relay, with the requester address it last told on each. */
  readonly #innerSockets = new WeakMap<Socket, string | undefined>();
  /** What the relay puts before a requester's address in `x-dmsc-from`; no requester knows it. */
  readonly #fromToken = randomBytes(16).toString('hex');
  #relay: NativeRelay | undefined;
  #relayPoll: NodeJS.Timeout | undefined;
  /** Moves on with each new policy and revocation: a decision made before is not taught. */
  #generation = 0;
  #address: Listen | undefined;
  #peerAddress: Listen | undefined;

  constructor(deps: DataPlaneDeps, options: DataPlaneOptions) {
    this.#deps = deps;
    this.#options = options;
    this.#listen = options.listen;
    this.#peerListen = options.peerListen;
    this.#tls = options.tls;
    if (this.#peerListen && !this.#tls) throw new DmscError('ERR_DMSC_INVALID_CONFIG', 'a data-plane listener for peers needs the peering TLS');
    this.#maxHops = options.maxHops ?? 8;
    this.#replayBytes = options.replayBytes ?? 64 * 1024;
    // Keep-alive connection pools, one per origin: the instances', and the peers' (with
    // the peering TLS: its certificate, and its CA rather than the system's).
    const pools = (tls: Record<string, string> = {}) => new Agent({
      connections: 256,
      connect: { timeout: options.connectTimeoutMs ?? 2000, ...tls },
      headersTimeout: options.headersTimeoutMs ?? 30_000,
      bodyTimeout: options.bodyTimeoutMs ?? 30_000,
      keepAliveTimeout: 30_000,
    });
    const t = options.tls;
    this.#agent = pools();
    this.#peerAgent = pools(t ? { cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}) } : {});
    this.#host = {
      dispatcher: this.#agent,
      self: deps.self,
      attempts: options.attempts ?? 3,
      stats: this.#stats,
      lookup: (capability, require, flow) => deps.fib.lookup(capability, flow === undefined ? { require } : { require, flow }),
      decide: (claims, capability, before) => this.#decide(claims, capability, before),
      agentTarget: (aic, rest, query) => this.#agentTarget(aic, rest, query),
      peerTarget: (peer, pathAndQuery) => {
        const origin = deps.peerDataPlane(peer);
        return origin ? { origin, path: pathAndQuery, dispatcher: this.#peerAgent } : undefined;
      },
      down: (nextHop) => {
        const peer = peerOf(nextHop);
        if (peer) deps.peerFailed(peer);
        else if (deps.directory.markDown(nextHop)) this.#stats.markedDown++;
      },
      teach: (ask, claims, prefix, aic) => this.#teach(ask, claims, prefix, aic),
      fail: (res, e) => this.#fail(res, e),
      ...(deps.outcome ? { outcome: deps.outcome } : {}),
    };
  }

  get address(): Listen | undefined {
    return this.#address;
  }

  /** Counters since start, the relay's included. */
  get stats(): DataPlaneStats {
    const s = { ...this.#stats };
    const r = this.relayCounters;
    if (r) {
      // Requests the relay answered itself; those it handed on are counted here already.
      s.requests += r.served;
      s.forwarded += r.forwarded;
      s.retries += r.retries;
      s.failed += r.failed;
    }
    return s;
  }

  /** The native relay's own counters, when it is the listener. */
  get relayCounters(): NativeRelayCounters | undefined {
    return this.#relay?.counters();
  }

  /** Where requests from peer gateways are taken over TLS, when configured. */
  get peerAddress(): Listen | undefined {
    return this.#peerAddress;
  }

  async start(): Promise<void> {
    const handle: RequestListener = (req, res) => this.#onRequest(req, res);
    const table = this.#options.native !== false && isIP(this.#listen.host) !== 0 ? this.#relayTable() : undefined;
    if (table !== undefined) {
      const behindRelay = createServer(SERVER_OPTIONS, handle);
      behindRelay.on('connection', (socket: Socket) => this.#innerSockets.set(socket, undefined));
      const inner = await this.#serve(behindRelay, { host: '127.0.0.1', port: 0 }, { name: 'internal data-plane', flag: '--dataplane' });
      this.#startRelay(table, inner.port);
    } else {
      this.#address = await this.#serve(createServer(SERVER_OPTIONS, handle), this.#listen, DATA_PLANE);
    }
    const t = this.#tls;
    if (this.#peerListen && t) {
      const secure = createTlsServer({
        ...SERVER_OPTIONS, cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}),
        requestCert: !!t.requireClientCert, rejectUnauthorized: !!t.requireClientCert, handshakeTimeout: 10_000,
      }, handle);
      this.#peerAddress = await this.#serve(secure, this.#peerListen, { name: 'peer data-plane', flag: "'peerDataplane' in the mesh config" });
    }
  }

  async #serve(server: Server, at: Listen, listener: Listener): Promise<Listen> {
    guard(server);
    const bound = await listenOn(server, at, listener);
    this.#servers.push(server);
    return bound;
  }

  /** The share id of the FIB for the relay, when the addon (with its relay) is there. */
  #relayTable(): number | undefined {
    try {
      if (typeof loadNative().NativeRelay !== 'function') return undefined;
      const { id } = this.#deps.fib.share();
      return id > 0 ? id : undefined;
    } catch {
      return undefined;
    }
  }

  #startRelay(table: number, fallbackPort: number): void {
    const o = this.#options;
    const relay = new (loadNative().NativeRelay)(table, {
      host: this.#listen.host, port: this.#listen.port, fallbackPort, self: this.#deps.self,
      attempts: o.attempts ?? 3, connectTimeoutMs: o.connectTimeoutMs ?? 2000,
      headersTimeoutMs: o.headersTimeoutMs ?? 30_000, bodyTimeoutMs: o.bodyTimeoutMs ?? 30_000,
      replayBytes: this.#replayBytes, cacheMs: o.nativeCacheMs ?? 60_000, fromToken: this.#fromToken,
    });
    let port: number;
    try {
      port = relay.start();
    } catch (e) {
      relay.stop();
      throw /bind|listen/.test((e as Error).message) ? listenError(DATA_PLANE, this.#listen, e) : e;
    }
    this.#relay = relay;
    this.#address = { host: this.#listen.host, port };
    this.#deps.onCredentialChange?.(({ revoked, keys }) => {
      if (!revoked.length && !keys) return;
      this.#generation++;
      if (keys) this.#relay?.clear();
      else for (const aic of revoked) this.#relay?.forget(aic);
    });
    // An agent registered again, changed or gone: its address is taught again when used.
    this.#deps.directory.onAgentChange((aic) => this.#relay?.dropEndpoint(aic));
    // What the relay marked down reaches the directory (which brings it back on a
    // heartbeat).
    this.#relayPoll = setInterval(() => {
      if (!this.#relay) return;
      for (const aic of this.#relay.takeDown()) {
        try {
          if (this.#deps.directory.markDown(aic)) this.#stats.markedDown++;
        } catch {
          // The table has it down already; the directory catches up on the next change.
        }
      }
    }, RELAY_POLL_MS);
    this.#relayPoll.unref();
  }

  /** A new policy is in effect (the node calls this as it loads one): the relay's decisions are void. */
  policyChanged(): void {
    this.#generation++;
    this.#relay?.clear();
  }

  /**
   * A request this data plane admitted is going to a local instance with no tag the
   * policy requires: the relay may send the next ones like it itself.
   */
  #teach(ask: Ask, claims: AgentClaims, prefix: string, aic: string): void {
    const relay = this.#relay;
    // A request admitted before a new policy or a revocation (its body was being read,
    // or it is on a later attempt) teaches nothing: its decision may be void now.
    if (!relay || ask.generation !== this.#generation) return;
    const endpoint = this.#deps.directory.endpointOf(aic);
    const e = endpoint ? this.#endpoint(endpoint) : null;
    if (!e || e.ip === undefined || !e.origin.startsWith('http:')) return;
    relay.endpoint(aic, e.ip, e.port, e.base, e.search);
    relay.learn(ask.token, claims.aic, claims.expiresAt, ask.capability);
    if (prefix === ask.capability) return;
    relay.learn(ask.token, claims.aic, claims.expiresAt, prefix);
    // Below the prefix, when no rule tells those names apart, one decision holds for all
    // (`prefix/` stands for every name below it): `/capability/ocr/jobs/1`, `/2`, ... do
    // not each need the data plane here first.
    if (this.#deps.policy.uniformBelow(prefix)) relay.learn(ask.token, claims.aic, claims.expiresAt, `${prefix}/`);
  }

  async stop(): Promise<void> {
    if (this.#relayPoll) clearInterval(this.#relayPoll);
    this.#relay?.stop();
    this.#relay = undefined;
    await Promise.all(this.#servers.map((server) => {
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    }));
    this.#servers = [];
    await Promise.all([this.#agent.close().catch(() => {}), this.#peerAgent.close().catch(() => {})]);
  }

  // The common case (a credential seen before, no body or a streamed one) runs through
  // to the instance without a promise: the credential's claims and the policy's decision
  // come from their caches.
  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.#stats.requests++;
    try {
      const url = req.url ?? '/';
      const q = url.indexOf('?');
      const name = q < 0 ? url : url.slice(0, q);
      // The path is the name looked up, in its URI form (a trailing '/' aside, which goes
      // on to the instance); the grammar refuses dot components, encoded slashes and
      // backslashes, so nothing below climbs out of an instance's base path.
      const decoded = nameFromPath(name.length > 1 && name.endsWith('/') ? name.slice(0, -1) : name);
      if ('problem' in decoded) throw new DmscError('ERR_DMSC_INVALID_NAME', `${quoteName(name)}: ${decoded.problem}`);
      const capability = decoded.name;
      if (capability !== '/capability' && !capability.startsWith('/capability/')) throw new DmscError('ERR_DMSC_NOT_FOUND', 'the data plane serves /capability/... only');
      // Who asks, and may they: before any instance is contacted.
      const token = bearer(req);
      const claims = this.#deps.guard.verified(token);
      const query = q < 0 ? '' : url.slice(q);
      if (claims) return this.#authorized(req, res, name, query, capability, token, claims);
      // A credential not known yet, from a source that keeps failing: held, then 429.
      const throttled = this.#deps.throttle?.check(this.#sourceOf(req));
      if (throttled) return this.#throttled(res, throttled);
      this.#deps.guard.verify(token).then(
        (verified) => this.#authorized(req, res, name, query, capability, token, verified),
        (e: unknown) => this.#fail(res, e),
      );
    } catch (e) {
      this.#fail(res, e);
    }
  }

  #authorized(req: IncomingMessage, res: ServerResponse, name: string, query: string, capability: string, token: string, claims: AgentClaims): void {
    try {
      const headers = req.headers;
      const hops = hopsLeft(headers[HOPS_HEADER], this.#maxHops);
      const via = typeof headers[VIA_HEADER] === 'string' ? headers[VIA_HEADER].split(',').slice(0, 64) : [];
      if (via.includes(this.#deps.self)) throw new DmscError('ERR_DMSC_LOOP', `the request came back to ${this.#deps.self} (via ${via.join(',')})`);
      const decision = this.#decide(claims, capability);
      const flow = headers[FLOW_HEADER];
      const ask: Ask = { name, query, capability, token, hops, via, flow: typeof flow === 'string' && flow !== '' ? flow : undefined, generation: this.#generation };
      const exchange = new Exchange(this.#host, req, res, ask, claims, decision);
      const length = Number(headers['content-length'] ?? 0);
      const chunked = headers['transfer-encoding'] !== undefined;
      // A small body is kept, so the request can be sent again; a larger one streams, once.
      if (!chunked && length > 0 && length <= this.#replayBytes) {
        readAll(req, length).then((body) => exchange.start(body), (e: unknown) => this.#fail(res, e));
      } else exchange.start(chunked || length > 0 ? req : null);
    } catch (e) {
      this.#fail(res, e);
    }
  }

  /** The policy's decision for `capability`; with `before`, merged into it (deny wins, tags add up). */
  #decide(claims: AgentClaims, capability: string, before?: Decision<TagSet>): Decision<TagSet> {
    const d = this.#deps.policy.decide(claims, capability);
    if (d.effect === 'deny') throw policyDenial(capability, d.rule);
    if (!before || d.require.every((t) => before.require.includes(t))) return before ?? d;
    const require = [...new Set([...before.require, ...d.require])];
    return { ...d, require, mask: this.#deps.fib.tagSet(require) };
  }

  #agentTarget(aic: string, rest: string, query: string): Target | undefined {
    const endpoint = this.#deps.directory.endpointOf(aic);
    if (!endpoint) return undefined;
    const e = this.#endpoint(endpoint);
    if (!e) return undefined;
    return { origin: e.origin, path: endpointPath(e, rest, query) };
  }

  #endpoint(endpoint: string): Endpoint | null {
    let e = this.#endpoints.get(endpoint);
    if (e !== undefined) return e;
    e = parseEndpoint(endpoint);
    if (this.#endpoints.size >= ENDPOINTS_KEPT) this.#endpoints.clear();
    this.#endpoints.set(endpoint, e);
    return e;
  }

  /**
   * Who a request counts against: the requester's address, which the native relay tells
   * its internal listener (only there) in `x-dmsc-from`, after the token it shares with
   * this data plane, on every request it passes on and on the first of a connection it
   * hands over whole (the later ones there are the same requester's). The relay's
   * header comes first; any other is the requester's own, and is not believed.
   */
  #sourceOf(req: IncomingMessage): string {
    const inner = this.#innerSockets.has(req.socket);
    if (inner) {
      const told = req.headers['x-dmsc-from'];
      const first = typeof told === 'string' ? told.split(',')[0]!.trim() : '';
      const space = first.indexOf(' ');
      if (space > 0 && first.slice(0, space) === this.#fromToken) this.#innerSockets.set(req.socket, first.slice(space + 1));
    }
    return AuthThrottle.sourceOf(inner ? this.#innerSockets.get(req.socket) : req.socket.remoteAddress);
  }

  #throttled(res: ServerResponse, t: Throttled): void {
    const err = new DmscError('ERR_DMSC_RATE_LIMITED', `too many failed authentications from this address; try again in ${t.retryAfterS} s`);
    const headers = { 'retry-after': String(t.retryAfterS) };
    if (t.holdMs === 0) return this.#fail(res, err, { ...headers, connection: 'close' });
    const release = this.#deps.throttle!.hold(this.#sourceOf(res.req));
    const timer = setTimeout(() => {
      release();
      this.#fail(res, err, headers);
    }, t.holdMs);
    res.once('close', () => {
      clearTimeout(timer);
      release();
    });
  }

  #fail(res: ServerResponse, e: unknown, extra: Record<string, string> = {}): void {
    const err = e instanceof DmscError ? e : new DmscError('ERR_DMSC_INTERNAL', 'internal error');
    if (err.code === 'ERR_DMSC_UNAUTHORIZED' || err.code === 'ERR_DMSC_FORBIDDEN') this.#stats.refused++;
    if (err.code === 'ERR_DMSC_UNAUTHORIZED') this.#deps.throttle?.failed(this.#sourceOf(res.req));
    if (res.headersSent) return void res.destroy();
    if (res.destroyed) return;
    const body = JSON.stringify({ error: { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) } });
    // A request whose body was not read to its end (refused early, or its stream given
    // up with a failed attempt) leaves the connection in no state for another: close it.
    // One without a body has nothing left to read, though Node may not have marked it
    // complete yet when it is refused at once.
    const req = res.req;
    const unread = !req.complete && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0);
    res.writeHead(err.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...(unread ? { connection: 'close' } : {}), ...extra });
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
