// The agent SDK: what an agent needs to take part in a DMSC deployment, in one object.
//
//   const agent = new Agent({ node: 'http://127.0.0.1:7070', providerKey, capabilities: [...] });
//   agent.serve('/capability/ocr', { request: async (call) => ({ text: '…' }), session: (s) => … });
//   await agent.start();                       // listen, register, heartbeat, renew
//   const r = await agent.resolve('/capability/translate');
//   const s = await agent.openSession(r);      // A2ASP, straight to the target agent
//   await agent.close();                       // sessions ended, deregistered, all released
//
// The agent listens on one HTTP server: data-plane requests (the gateway forwards
// `POST /capability/...` to it) and A2ASP sessions over WebSocket at `/.dmsc/a2asp`; with
// `sessions: { transport: 'tcp' }` sessions take a TCP listener of their own instead.
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import type { JSONWebKeySet } from 'jose';
import { Pool } from 'undici';
import { WebSocketServer } from 'ws';
import { DmscError, DmscTypeError, dmscError } from '../errors.js';
import { callJson } from '../http/client.js';
import { nameFromPath, nameProblem, prefixesOf } from '../names.js';
import { peekClaim } from '../identity/jwt.js';
import { readLimit, tcpChannel, wsChannel } from '../session/channel.js';
import { GrantVerifier } from '../session/grants.js';
import { openSession, SessionAcceptor, type Session, type SessionParams, type SessionRequest } from '../session/session.js';
import type { ResolveAnswer } from '../directory/gateway.js';
import type { HealthState } from '../fastpath/types.js';

export const SESSION_PATH = '/.dmsc/a2asp';

export interface CapabilityDeclaration {
  readonly name: string;
  readonly attributes?: Record<string, string | number | boolean | string[]>;
  readonly weight?: number;
  readonly priority?: number;
}

export interface AgentOptions {
  /** The node's API URL. */
  readonly node: string;
  /** The provider key the AMC gave the agent's provider. */
  readonly providerKey: string;
  readonly name?: string;
  /** What to register; by default, the capabilities given to `serve`. */
  readonly capabilities?: readonly CapabilityDeclaration[];
  /** The node's data-plane URL, for `invoke` (requests addressed by capability). */
  readonly dataplane?: string;
  /** Where the agent's own server listens (default 127.0.0.1, any free port). */
  readonly listen?: { readonly host?: string; readonly port?: number };
  /** The URL registered as the endpoint, when the listen address is not how others reach it. */
  readonly advertise?: string;
  readonly sessions?: {
    /** `ws` (default: on the agent's HTTP server) or `tcp` (a listener of its own). */
    readonly transport?: 'ws' | 'tcp';
    /** The TCP listener (default: the HTTP server's host, any free port). */
    readonly listen?: { readonly host?: string; readonly port?: number };
    /** The most this agent agrees to; proposals above are lowered. */
    readonly limits?: Partial<Omit<SessionParams, 'app'>>;
  };
  /** The load reported with each heartbeat, 0..1 (default 0). */
  readonly load?: () => number;
  /** Overrides the heartbeat interval the node asks for. */
  readonly heartbeatMs?: number;
  /** Largest data-plane request body taken (default 16 MiB). */
  readonly maxBodyBytes?: number;
  /** Time limit of each call to the node (default 5 s). */
  readonly timeoutMs?: number;
}

/** A data-plane request for one of the agent's capabilities. */
export interface IncomingCall {
  readonly method: string;
  /** Path and query as the gateway sent them: what follows the capability's name. */
  readonly url: string;
  /** The served capability the path falls under. */
  readonly capability: string;
  readonly headers: IncomingMessage['headers'];
  /** The requesting agent's AIC, as the gateway vouches for it (`x-dmsc-requester`). */
  readonly requester: string | undefined;
  readonly body: Buffer;
  /** The body parsed as JSON. @throws ERR_DMSC_INVALID_BODY */
  json<T = unknown>(): T;
  /** Aborted when the caller goes away. */
  readonly signal: AbortSignal;
}

/** An explicit answer to a data-plane request; anything else a handler returns is sent as JSON with 200. */
export class AgentReply {
  constructor(readonly status: number, readonly body?: unknown, readonly headers: Record<string, string> = {}) {}
}

export interface ServeHandlers {
  /** Data-plane requests (`POST /capability/...` through the gateway). */
  readonly request?: (call: IncomingCall) => unknown;
  /**
   * Decides on a session before it is accepted: the agreed application parameters (by
   * default those proposed), or a throw to reject it with the error's message.
   */
  readonly accept?: (request: SessionRequest) => Promise<Record<string, unknown>> | Record<string, unknown>;
  /** An accepted session. */
  readonly session?: (session: Session, request: SessionRequest) => void;
}

export interface ResolveRequest {
  readonly capability?: string;
  readonly intent?: string;
  readonly require?: readonly string[];
  readonly flow?: string;
  /** AICs to pass over (the ones already tried). */
  readonly exclude?: readonly string[];
}

export type AgentState = 'new' | 'starting' | 'registered' | 'unreachable' | 'revoked' | 'closed';

/**
 * An agent: registers with a node, keeps its heartbeat and credential, serves its
 * capabilities, resolves others, and opens sessions to them. Events: `registered`
 * `{ aic }`, `reregistered` `{ aic, previous }`, `renewed` `{ expiresAt }`, `unreachable`
 * (the node did not answer a heartbeat), `reachable`, `revoked`, and `error` (only when
 * listened to).
 */
export class Agent extends EventEmitter {
  readonly options: AgentOptions;
  #state: AgentState = 'new';
  #aic: string | undefined;
  #credential: string | undefined;
  #expiresAt = 0;
  #heartbeatMs = 1000;
  #health: HealthState = 'up';
  readonly #served = new Map<string, ServeHandlers>();
  readonly #origin: string;
  readonly #pool: Pool;
  #dataplane: Pool | undefined;
  #http: Server | undefined;
  #wss: WebSocketServer | undefined;
  #tcp: TcpServer | undefined;
  readonly #tcpSockets = new Set<Socket>();
  #acceptor: SessionAcceptor | undefined;
  readonly #outgoing = new Set<Session>();
  #heartbeat: NodeJS.Timeout | undefined;
  #renewal: NodeJS.Timeout | undefined;
  #keys: JSONWebKeySet = { keys: [] };
  #issuer = '';
  #endpoint = '';
  #sessionEndpoint: string | undefined;
  #registering: Promise<void> | undefined;
  readonly #inflight = new Set<AbortController>();

  constructor(options: AgentOptions) {
    super();
    this.options = checkOptions(options);
    this.#origin = this.options.node.replace(/\/+$/, '');
    this.#pool = new Pool(this.#origin, { connections: 4 });
    if (this.options.dataplane) this.#dataplane = new Pool(this.options.dataplane.replace(/\/+$/, ''), { connections: 16 });
  }

  get state(): AgentState {
    return this.#state;
  }

  /** The AIC the node allocated (after `start`). */
  get aic(): string | undefined {
    return this.#aic;
  }

  /** The current credential (renewed before it expires). */
  get credential(): string | undefined {
    return this.#credential;
  }

  /** Where the agent's server listens: the registered endpoint, and the session endpoint. */
  get endpoints(): { endpoint: string; session: string | undefined } {
    return { endpoint: this.#endpoint, session: this.#sessionEndpoint };
  }

  /** Sessions open now, either way. */
  get sessions(): number {
    return this.#outgoing.size + (this.#acceptor?.sessions.size ?? 0);
  }

  /** Serves a capability: data-plane requests and/or sessions. Call before `start`. */
  serve(capability: string, handlers: ServeHandlers): this {
    const problem = nameProblem(capability);
    if (problem) throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `serve: ${problem}`);
    if (this.#state !== 'new') throw new DmscError('ERR_DMSC_CONFLICT', 'serve() is called before start()');
    if (typeof handlers !== 'object' || handlers === null || (!handlers.request && !handlers.session)) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'serve() needs a request or a session handler');
    }
    this.#served.set(capability, handlers);
    return this;
  }

  /** Reports a health state with the next heartbeat (`down` drains the agent). */
  setHealth(state: HealthState): void {
    if (state !== 'up' && state !== 'degraded' && state !== 'down') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `health state is up, degraded or down, got ${String(state)}`);
    this.#health = state;
  }

  /** Listens, registers, and keeps the heartbeat and credential going. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new DmscError('ERR_DMSC_CONFLICT', `start() once; the agent is ${this.#state}`);
    this.#state = 'starting';
    try {
      await this.#listen();
      await this.#register();
      this.#state = 'registered';
      this.#scheduleHeartbeat(0);
    } catch (e) {
      await this.close().catch(() => {});
      throw e;
    }
  }

  /**
   * Resolves a capability (or, where the node supports it, an intent) to a target with a
   * session grant.
   */
  async resolve(what: string | ResolveRequest): Promise<ResolveAnswer> {
    const req: ResolveRequest = typeof what === 'string' ? { capability: what } : what;
    const body = {
      ...(req.capability !== undefined ? { capability: req.capability } : {}), ...(req.intent !== undefined ? { intent: req.intent } : {}),
      ...(req.require?.length ? { require: [...req.require] } : {}), ...(req.flow !== undefined ? { flow: req.flow } : {}),
      ...(req.exclude?.length ? { exclude: [...req.exclude] } : {}),
    };
    return this.#call<ResolveAnswer>('POST', '/v1/resolve', body, this.#requireCredential());
  }

  /** Candidates for a capability the node lets this agent see. */
  async discover(capability: string, require: readonly string[] = []): Promise<{ candidates: Record<string, unknown>[]; path: string[] }> {
    const q = new URLSearchParams({ capability, ...(require.length ? { require: require.join(',') } : {}) });
    return this.#call('GET', `/v1/discover?${q}`, undefined, this.#requireCredential());
  }

  /**
   * Opens an A2ASP session to the target of a resolution, with its grant. The session
   * goes straight to the target agent; the gateways are not in its path.
   */
  async openSession(resolution: ResolveAnswer, options: { params?: Partial<Omit<SessionParams, 'app'>> & { app?: Record<string, unknown> }; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Session> {
    if (!resolution || typeof resolution !== 'object' || typeof resolution.grant !== 'string' || typeof resolution.target?.aic !== 'string') {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'openSession() takes the answer of resolve()');
    }
    // The grant is for the name resolved (its `req`), which may be below the prefix matched.
    const req = peekClaim(resolution.grant, 'req');
    const session = await openSession({
      target: resolution.target, grant: resolution.grant, credential: this.#requireCredential(),
      capability: typeof req === 'string' ? req : resolution.capability, ...options,
    });
    this.#outgoing.add(session);
    session.once('close', () => this.#outgoing.delete(session));
    return session;
  }

  /**
   * Sends a request by capability through the node's data plane (the `dataplane`
   * option); resolves with the agent's answer, whatever its status.
   * @throws the gateway's own error (no route, refused, every instance failed).
   */
  async invoke(capability: string, body?: unknown, options: { method?: string; headers?: Record<string, string>; flow?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: unknown }> {
    if (!this.#dataplane) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', 'invoke() needs the dataplane option (the node data-plane URL)');
    const problem = nameProblem(capability);
    if (problem) throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `invoke: ${problem}`);
    const raw = body instanceof Uint8Array;
    const res = await this.#dataplane.request({
      method: (options.method ?? 'POST') as 'POST', path: capability,
      headers: {
        authorization: `Bearer ${this.#requireCredential()}`, ...(body !== undefined ? { 'content-type': raw ? 'application/octet-stream' : 'application/json' } : {}),
        ...(options.flow !== undefined ? { 'x-dmsc-flow': options.flow } : {}), ...options.headers,
      },
      ...(body !== undefined ? { body: raw ? body : JSON.stringify(body) } : {}),
      headersTimeout: options.timeoutMs ?? 30_000, bodyTimeout: options.timeoutMs ?? 30_000, ...(options.signal ? { signal: options.signal } : {}),
    }).catch((e: Error) => {
      throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `cannot reach the data plane at ${this.options.dataplane}: ${e.message}`);
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    const type = String(res.headers['content-type'] ?? '');
    let parsed: unknown = bytes;
    if (type.startsWith('application/json')) {
      try {
        parsed = JSON.parse(bytes.toString());
      } catch {
        parsed = bytes;
      }
    }
    const err = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    // The gateway's own errors carry no x-dmsc-instance (answers from an agent do).
    if (res.statusCode >= 400 && res.headers['x-dmsc-instance'] === undefined && typeof err?.code === 'string') {
      throw dmscError(err.code, String(err.message));
    }
    return { status: res.statusCode, headers: res.headers, body: parsed };
  }

  /**
   * Ends every session, deregisters (best effort, within the call timeout), and releases
   * every timer, socket and listener.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasRegistered = this.#aic !== undefined && this.#state !== 'revoked';
    this.#state = 'closed';
    clearTimeout(this.#heartbeat);
    clearTimeout(this.#renewal);
    for (const c of this.#inflight) c.abort();
    await Promise.all([...this.#outgoing].map((s) => s.close('the agent is closing')));
    await this.#acceptor?.close();
    if (wasRegistered && this.#credential) {
      await this.#call('DELETE', `/v1/agents/${encodeURIComponent(this.#aic!)}`, undefined, this.#credential).catch(() => {});
    }
    await Promise.all([
      new Promise<void>((r) => (this.#wss ? this.#wss.close(() => r()) : r())),
      new Promise<void>((r) => {
        if (!this.#tcp) return r();
        for (const s of this.#tcpSockets) s.destroy();
        this.#tcp.close(() => r());
      }),
      new Promise<void>((r) => {
        if (!this.#http) return r();
        this.#http.close(() => r());
        this.#http.closeAllConnections();
      }),
    ]);
    await Promise.all([this.#pool.close(), this.#dataplane?.close()]);
  }

  // --- listening ----------------------------------------------------------------------

  async #listen(): Promise<void> {
    const host = this.options.listen?.host ?? '127.0.0.1';
    const limits = this.options.sessions?.limits ?? {};
    this.#acceptor = new SessionAcceptor({
      verifier: new GrantVerifier(() => this.#aic, {
        issuer: () => this.#issuer, keys: () => this.#keys, refresh: () => this.#fetchKeys(),
      }),
      limits,
      accept: (request) => {
        const h = this.#handlersFor(request.capability);
        if (!h?.session) throw new DmscError('ERR_DMSC_SESSION_REJECTED', `${this.#aic} takes no sessions for ${request.capability}`);
        return h.accept ? h.accept(request) : request.proposed.app;
      },
      onSession: (session, request) => {
        try {
          this.#handlersFor(request.capability)!.session!(session, request);
        } catch (e) {
          void session.close(`the session handler failed: ${(e as Error).message}`);
        }
      },
    });
    const http = createServer({ keepAliveTimeout: 65_000 }, (req, res) => void this.#onRequest(req, res));
    this.#http = http;
    const transport = this.options.sessions?.transport ?? 'ws';
    if (transport === 'ws') {
      const wss = new WebSocketServer({ noServer: true, maxPayload: readLimit(limits.maxMessageBytes ?? 1 << 20), perMessageDeflate: false });
      this.#wss = wss;
      http.on('upgrade', (req, socket, head) => {
        if (req.url !== SESSION_PATH || this.#state === 'closed') return void socket.destroy();
        wss.handleUpgrade(req, socket, head, (ws) => this.#acceptor!.take(wsChannel(ws, limits.maxMessageBytes ?? 1 << 20)));
      });
    }
    await listenOn(http, host, this.options.listen?.port ?? 0);
    const a = http.address() as AddressInfo;
    const hostPart = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    this.#endpoint = this.options.advertise ?? `http://${hostPart}:${a.port}`;
    if (transport === 'ws') {
      this.#sessionEndpoint = `${this.#endpoint.replace(/^http/, 'ws').replace(/\/+$/, '')}${SESSION_PATH}`;
    } else {
      const tcp = createTcpServer({ noDelay: true }, (socket) => {
        this.#tcpSockets.add(socket);
        socket.once('close', () => this.#tcpSockets.delete(socket));
        this.#acceptor!.take(tcpChannel(socket, limits.maxMessageBytes ?? 1 << 20));
      });
      this.#tcp = tcp;
      const th = this.options.sessions?.listen?.host ?? host;
      await listenOn(tcp, th, this.options.sessions?.listen?.port ?? 0);
      const t = tcp.address() as AddressInfo;
      this.#sessionEndpoint = `tcp://${t.family === 'IPv6' ? `[${t.address}]` : t.address}:${t.port}`;
    }
  }

  /** The served capability `name` falls under (the longest), if any. */
  #servedFor(name: string): string | undefined {
    for (const prefix of prefixesOf(name)) if (this.#served.has(prefix)) return prefix;
    return undefined;
  }

  #handlersFor(capability: string): ServeHandlers | undefined {
    const served = this.#servedFor(capability);
    return served === undefined ? undefined : this.#served.get(served);
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fail = (status: number, code: string, message: string) => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code, message } }));
    };
    const url = req.url ?? '/';
    // The data plane sends the path below the capability it matched, and names that
    // capability; a caller that comes straight here names it by the path.
    const named = req.headers['x-dmsc-capability'];
    // Both in the name's URI form (percent-encoded components).
    const decoded = nameFromPath(typeof named === 'string' ? named : url.split('?')[0]!.replace(/\/+$/, '') || '/');
    if ('problem' in decoded) return fail(400, 'ERR_DMSC_INVALID_NAME', `not a capability name: ${decoded.problem}`);
    const name = decoded.name;
    const capability = this.#servedFor(name);
    const handler = capability !== undefined ? this.#served.get(capability)!.request : undefined;
    if (capability === undefined || !handler) {
      req.resume();
      return fail(404, 'ERR_DMSC_NO_ROUTE', `this agent serves no requests for ${name.slice(0, 200)}`);
    }
    const limit = this.options.maxBodyBytes ?? 16 << 20;
    const chunks: Buffer[] = [];
    let size = 0;
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    try {
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > limit) return fail(413, 'ERR_DMSC_PAYLOAD_TOO_LARGE', `request bodies are limited to ${limit} bytes`);
        chunks.push(chunk as Buffer);
      }
    } catch {
      return void res.destroy();
    }
    const body = Buffer.concat(chunks);
    const requester = req.headers['x-dmsc-requester'];
    const call: IncomingCall = {
      method: req.method ?? 'GET', url, capability, headers: req.headers, body, signal: abort.signal,
      requester: typeof requester === 'string' ? requester : undefined,
      json<T>() {
        try {
          return JSON.parse(body.toString()) as T;
        } catch {
          throw new DmscError('ERR_DMSC_INVALID_BODY', 'the request body is not JSON');
        }
      },
    };
    let out: unknown;
    try {
      out = await handler(call);
    } catch (e) {
      const err = e as DmscError;
      const status = Number.isInteger(err.status) && err.status >= 400 && err.status <= 599 ? err.status : 500;
      return fail(status, typeof err.code === 'string' && err.code.startsWith('ERR_') ? err.code : 'ERR_DMSC_INTERNAL', String(err.message ?? err));
    }
    if (res.destroyed) return;
    if (out instanceof AgentReply) {
      const bytes = out.body === undefined ? undefined : out.body instanceof Uint8Array ? out.body : typeof out.body === 'string' ? Buffer.from(out.body) : Buffer.from(JSON.stringify(out.body));
      const type = out.body instanceof Uint8Array ? 'application/octet-stream' : typeof out.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
      res.writeHead(out.status, { ...(bytes ? { 'content-type': type } : {}), ...out.headers }).end(bytes);
      return;
    }
    if (out === undefined) return void res.writeHead(204).end();
    if (out instanceof Uint8Array) return void res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(out);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out));
  }

  // --- registration and liveness --------------------------------------------------------

  #capabilities(): CapabilityDeclaration[] {
    if (this.options.capabilities?.length) return [...this.options.capabilities];
    if (this.#served.size === 0) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'an agent registers at least one capability: pass capabilities or call serve()');
    return [...this.#served.keys()].map((name) => ({ name }));
  }

  /** Registers (again); one at a time. */
  #register(): Promise<void> {
    this.#registering ??= (async () => {
      const previous = this.#aic;
      const r = await this.#call<{ aic: string; credential: string; expiresAt: string; heartbeat: { intervalMs: number } }>('POST', '/v1/agents', {
        ...(this.options.name !== undefined ? { name: this.options.name } : {}),
        endpoint: this.#endpoint, ...(this.#sessionEndpoint ? { session: this.#sessionEndpoint } : {}),
        capabilities: this.#capabilities(),
      }, this.options.providerKey);
      if (this.#closed()) {
        // Closed while registering: take the registration back.
        await this.#call('DELETE', `/v1/agents/${encodeURIComponent(r.aic)}`, undefined, r.credential).catch(() => {});
        return;
      }
      this.#aic = r.aic;
      this.#setCredential(r.credential, Date.parse(r.expiresAt));
      this.#heartbeatMs = this.options.heartbeatMs ?? r.heartbeat.intervalMs;
      await this.#fetchKeys();
      if (previous === undefined) this.emit('registered', { aic: r.aic });
      else this.emit('reregistered', { aic: r.aic, previous });
    })().finally(() => {
      this.#registering = undefined;
    });
    return this.#registering;
  }

  // The same object while the keys stay the same: the grant check keeps what it verified.
  async #fetchKeys(): Promise<void> {
    const keys = await this.#call<JSONWebKeySet>('GET', '/v1/amc/jwks');
    if (JSON.stringify(keys) !== JSON.stringify(this.#keys)) this.#keys = keys;
  }

  #setCredential(credential: string, expiresAt: number): void {
    this.#credential = credential;
    this.#expiresAt = expiresAt;
    const iss = peekClaim(credential, 'iss');
    if (typeof iss === 'string') this.#issuer = iss;
    // Renewed when two thirds of its life are gone.
    const life = expiresAt - Date.now();
    this.#scheduleRenewal(Math.max(1000, life / 3) < life ? life - Math.max(1000, life / 3) : life / 2);
  }

  #scheduleRenewal(inMs: number): void {
    clearTimeout(this.#renewal);
    if (this.#state === 'closed') return;
    this.#renewal = setTimeout(() => void this.#renew(), Math.max(0, Math.min(inMs, 2 ** 31 - 1)));
  }

  async #renew(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'revoked') return;
    try {
      const r = await this.#call<{ credential: string; expiresAt: string }>('POST', `/v1/agents/${encodeURIComponent(this.#aic!)}/renew`, undefined, this.#credential!);
      this.#setCredential(r.credential, Date.parse(r.expiresAt));
      this.emit('renewed', { expiresAt: this.#expiresAt });
    } catch (e) {
      if (this.#closed()) return;
      this.#problem(e as Error);
      if (this.#expiresAt <= Date.now() || (e as DmscError).code === 'ERR_DMSC_NOT_FOUND' || (e as DmscError).code === 'ERR_DMSC_UNAUTHORIZED') {
        return this.#recover(e as DmscError);
      }
      // Try again soon, well before it expires.
      this.#scheduleRenewal(Math.min(5000, Math.max(100, (this.#expiresAt - Date.now()) / 4)));
    }
  }

  #scheduleHeartbeat(inMs: number): void {
    clearTimeout(this.#heartbeat);
    if (this.#state === 'closed' || this.#state === 'revoked') return;
    this.#heartbeat = setTimeout(() => void this.#beat(), inMs);
  }

  async #beat(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'revoked') return;
    const load = clampLoad(this.options.load?.());
    try {
      await this.#call('POST', `/v1/agents/${encodeURIComponent(this.#aic!)}/heartbeat`, { load, state: this.#health }, this.#credential!);
      if (this.#state === 'unreachable') {
        this.#state = 'registered';
        this.emit('reachable');
      }
    } catch (e) {
      if (this.#closed()) return;
      const err = e as DmscError;
      if (err.code === 'ERR_DMSC_NOT_FOUND' || err.code === 'ERR_DMSC_UNAUTHORIZED') await this.#recover(err);
      else if (this.#state !== 'unreachable') {
        this.#state = 'unreachable';
        this.emit('unreachable', err);
      }
    }
    this.#scheduleHeartbeat(this.#heartbeatMs);
  }

  // The node no longer knows this registration (its state was lost) or no longer takes
  // the credential (new AMC keys): register again, unless the AIC was revoked.
  async #recover(err: DmscError): Promise<void> {
    if (/revoked/.test(err.message)) {
      this.#state = 'revoked';
      clearTimeout(this.#heartbeat);
      clearTimeout(this.#renewal);
      this.emit('revoked', err);
      return;
    }
    try {
      await this.#register();
      if (!this.#closed()) this.#state = 'registered';
    } catch (e) {
      if (this.#closed()) return;
      this.#problem(e as Error);
      if (this.#state !== 'unreachable') {
        this.#state = 'unreachable';
        this.emit('unreachable', e);
      }
    }
  }

  /** Read again after an await (the agent may have been closed meanwhile). */
  #closed(): boolean {
    return this.#state === 'closed';
  }

  #problem(e: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  #requireCredential(): string {
    if (!this.#credential || this.#state === 'closed' || this.#state === 'revoked') {
      throw new DmscError('ERR_DMSC_NOT_READY', this.#state === 'new' ? 'call start() first' : `the agent is ${this.#state}`);
    }
    return this.#credential;
  }

  // One call to the node; aborted by close().
  async #call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, bearer?: string): Promise<T> {
    const abort = new AbortController();
    this.#inflight.add(abort);
    try {
      return await callJson<T>(this.#origin, {
        method, path, timeoutMs: this.options.timeoutMs ?? 5000, signal: abort.signal,
        ...(bearer !== undefined ? { bearer } : {}), ...(body !== undefined ? { body } : {}),
      }, 'server', 'ERR_DMSC_NOT_READY', this.#pool);
    } finally {
      this.#inflight.delete(abort);
    }
  }
}

function clampLoad(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 0;
}

function listenOn(server: Server | TcpServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function checkOptions(o: AgentOptions): AgentOptions {
  const bad = (m: string) => new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `Agent: ${m}`);
  if (typeof o !== 'object' || o === null) throw bad('options are required');
  for (const [k, v] of [['node', o.node], ['dataplane', o.dataplane], ['advertise', o.advertise]] as const) {
    if (v === undefined && k !== 'node') continue;
    if (typeof v !== 'string' || !/^https?:\/\/[^\s/]+/.test(v)) throw bad(`${k} must be an http(s) URL`);
  }
  if (typeof o.providerKey !== 'string' || o.providerKey.length === 0) throw bad('providerKey is required');
  if (o.capabilities !== undefined) {
    if (!Array.isArray(o.capabilities)) throw bad('capabilities must be an array');
    for (const c of o.capabilities) {
      const p = typeof c?.name === 'string' ? nameProblem(c.name) : 'not a string';
      if (p) throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `Agent: capability ${JSON.stringify(c?.name)}: ${p}`);
    }
  }
  if (o.sessions?.transport !== undefined && o.sessions.transport !== 'ws' && o.sessions.transport !== 'tcp') throw bad("sessions.transport is 'ws' or 'tcp'");
  if (o.heartbeatMs !== undefined && (!Number.isInteger(o.heartbeatMs) || o.heartbeatMs < 10)) throw bad('heartbeatMs must be an integer of at least 10');
  return o;
}
