// A2ASP (MACP §5.5): a semantic session between two agents, with no gateway in the data
// path. The initiator opens a connection to the target's session endpoint and sends
//   SESSION_INIT { v, grant, credential, capability, params }
// The target checks the grant (grants.ts) and answers
//   SESSION_ACCEPT { session, params }   (the agreed parameters), or
//   SESSION_REJECT { code, reason }      and closes.
// Then either side sends DATA { seq, data } (seq counts from 1 each way; a gap or a
// reordering is a protocol error), PING/PONG keep the connection known to be alive, and
// SESSION_TERMINATE { reason } from either side ends it. A session with no DATA either way
// for the agreed idle time is terminated; one that hears nothing at all for three
// keepalive intervals is dropped as lost.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { DmscError, dmscError, type DmscErrorCode } from '../errors.js';
import { text, type Message } from '../mesh/frames.js';
import { connectChannel, type Channel } from './channel.js';
import type { GrantVerifier, VerifiedGrant } from './grants.js';

export const A2ASP_VERSION = 1;

/** What the two sides agree on at SESSION_ACCEPT. */
export interface SessionParams {
  /** The session ends after this long with no data either way. */
  readonly idleTimeoutMs: number;
  /** A PING goes out when nothing was sent for this long. */
  readonly keepaliveMs: number;
  /** The largest data message either side sends. */
  readonly maxMessageBytes: number;
  /** Application parameters: what the initiator proposed, as the target agreed them. */
  readonly app: Readonly<Record<string, unknown>>;
}

export const DEFAULT_PARAMS: Omit<SessionParams, 'app'> = { idleTimeoutMs: 60_000, keepaliveMs: 15_000, maxMessageBytes: 1 << 20 };
const LIMITS = { idleTimeoutMs: [50, 86_400_000], keepaliveMs: [20, 3_600_000], maxMessageBytes: [64, 64 << 20] } as const;

export interface SessionClose {
  /** Who ended it: this side, the peer (SESSION_TERMINATE), or neither (idle, lost, error). */
  readonly by: 'local' | 'remote' | 'idle' | 'lost' | 'error';
  readonly reason: string;
  readonly code?: DmscErrorCode;
}

/** Messages buffered for a reader that has not caught up; above it the peer is paused. */
const HIGH_WATER = 1024;
const LOW_WATER = 256;
/** Above this many bytes queued, `send` waits for the write. */
const SEND_HIGH_WATER = 1 << 20;

/**
 * One open session, on either side. Data arrives as `'message'` events, or through
 * `for await (const m of session)`; messages that arrive before either is used are kept.
 * `'close'` comes once, with a `SessionClose`.
 */
export class Session extends EventEmitter {
  readonly id: string;
  readonly role: 'initiator' | 'target';
  /** The AIC of the agent on the other end. */
  readonly peer: string;
  readonly capability: string;
  readonly params: SessionParams;
  readonly #channel: Channel;
  #sent = 0;
  #received = 0;
  #lastSent = Date.now();
  #lastHeard = Date.now();
  #lastData = Date.now();
  #tick: NodeJS.Timeout;
  #closed: SessionClose | undefined;
  readonly #backlog: unknown[] = [];
  #paused = false;
  #waiter: ((r: IteratorResult<unknown>) => void) | undefined;
  #iterating = false;

  /** @internal Made by `openSession` and `SessionAcceptor`. */
  constructor(channel: Channel, init: { id: string; role: 'initiator' | 'target'; peer: string; capability: string; params: SessionParams }) {
    super();
    this.#channel = channel;
    this.id = init.id;
    this.role = init.role;
    this.peer = init.peer;
    this.capability = init.capability;
    this.params = init.params;
    channel.maxMessage = init.params.maxMessageBytes;
    channel.onMessage((m) => this.#onMessage(m));
    channel.onClose((err) => this.#gone(err));
    const every = Math.max(10, Math.floor(Math.min(this.params.keepaliveMs, this.params.idleTimeoutMs) / 4));
    this.#tick = setInterval(() => this.#check(), every);
    this.#tick.unref();
    this.on('newListener', (event) => {
      if (event === 'message') queueMicrotask(() => this.#flush());
    });
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Data messages sent and received so far. */
  get counts(): { sent: number; received: number } {
    return { sent: this.#sent, received: this.#received };
  }

  /**
   * Sends one data message (plain data: maps, arrays, strings, numbers, booleans, null,
   * byte strings). Resolves at once unless much is queued, then when it is written.
   * @throws ERR_DMSC_SESSION_CLOSED, ERR_DMSC_PAYLOAD_TOO_LARGE
   */
  send(data: unknown): Promise<void> {
    if (this.#closed) return Promise.reject(new DmscError('ERR_DMSC_SESSION_CLOSED', `session ${this.id} is closed (${this.#closed.reason})`));
    const message = { type: 'DATA', seq: this.#sent + 1, data };
    const wait = this.#channel.buffered > SEND_HIGH_WATER;
    return new Promise((resolve, reject) => {
      try {
        this.#channel.send(message, wait ? (err) => (err ? reject(new DmscError('ERR_DMSC_SESSION_CLOSED', `session ${this.id} closed while sending`)) : resolve()) : undefined);
      } catch (e) {
        return reject(e);
      }
      this.#sent++;
      this.#lastSent = this.#lastData = Date.now();
      if (!wait) resolve();
    });
  }

  /** Ends the session with SESSION_TERMINATE; resolves once the connection is closed. */
  close(reason = 'done'): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.once('close', () => resolve()));
    this.#end({ by: 'local', reason: reason.slice(0, 256) }, true);
    return done;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    this.#iterating = true;
    try {
      for (;;) {
        if (this.#backlog.length) {
          yield this.#take();
          continue;
        }
        if (this.#closed) return;
        const next = await new Promise<IteratorResult<unknown>>((resolve) => (this.#waiter = resolve));
        if (next.done) return;
        yield next.value;
      }
    } finally {
      this.#iterating = false;
    }
  }

  #take(): unknown {
    const m = this.#backlog.shift();
    if (this.#paused && this.#backlog.length <= LOW_WATER) {
      this.#paused = false;
      this.#channel.resume();
    }
    return m;
  }

  #flush(): void {
    while (this.#backlog.length && !this.#iterating && this.listenerCount('message') > 0) this.emit('message', this.#take());
  }

  #onMessage(m: Message): void {
    if (this.#closed) return;
    this.#lastHeard = Date.now();
    switch (m.type) {
      case 'DATA': {
        if (m['seq'] !== this.#received + 1) return this.#protocolError(`data message ${text(m['seq'])} arrived where ${this.#received + 1} was due`);
        this.#received++;
        this.#lastData = this.#lastHeard;
        return this.#deliver(m['data']);
      }
      case 'PING':
        return this.#control({ type: 'PONG', t: typeof m['t'] === 'number' ? m['t'] : 0 });
      case 'PONG':
        return;
      case 'SESSION_TERMINATE':
        return this.#end({ by: 'remote', reason: typeof m['reason'] === 'string' ? m['reason'].slice(0, 256) : 'terminated' }, false);
      default:
        return this.#protocolError(`unexpected ${text(m.type, 40)} in an open session`);
    }
  }

  #deliver(data: unknown): void {
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      return w({ value: data, done: false });
    }
    if (!this.#iterating && this.#backlog.length === 0 && this.listenerCount('message') > 0) return void this.emit('message', data);
    this.#backlog.push(data);
    if (!this.#paused && this.#backlog.length >= HIGH_WATER) {
      this.#paused = true;
      this.#channel.pause();
    }
  }

  // A control message never throws into a socket's event handler: one that cannot go
  // (the connection is failing) is dropped, and the close will tell.
  #control(m: Message): void {
    try {
      this.#channel.send(m);
    } catch {
      this.#channel.destroy();
    }
  }

  #protocolError(why: string): void {
    this.#control({ type: 'SESSION_TERMINATE', reason: `protocol error: ${why}`.slice(0, 256) });
    this.#end({ by: 'error', reason: why, code: 'ERR_DMSC_SESSION_PROTOCOL' }, false);
  }

  #check(): void {
    const now = Date.now();
    if (now - this.#lastData >= this.params.idleTimeoutMs) {
      return this.#end({ by: 'idle', reason: `no data for ${this.params.idleTimeoutMs} ms`, code: 'ERR_DMSC_SESSION_TIMEOUT' }, true);
    }
    if (now - this.#lastHeard >= 3 * this.params.keepaliveMs) {
      return this.#end({ by: 'lost', reason: `nothing heard for ${3 * this.params.keepaliveMs} ms`, code: 'ERR_DMSC_SESSION_TIMEOUT' }, false);
    }
    if (now - this.#lastSent >= this.params.keepaliveMs) {
      this.#lastSent = now;
      this.#control({ type: 'PING', t: now });
    }
  }

  // Stops the clock, says SESSION_TERMINATE when asked, and ends the connection; the
  // 'close' event comes when the connection is gone.
  #end(close: SessionClose, terminate: boolean): void {
    if (this.#closed) return;
    this.#closed = close;
    clearInterval(this.#tick);
    if (terminate) this.#control({ type: 'SESSION_TERMINATE', reason: close.reason });
    this.#channel.end();
    // A peer that does not close its side is dropped.
    const force = setTimeout(() => this.#channel.destroy(), 2000);
    force.unref();
    this.once('gone', () => clearTimeout(force));
  }

  #gone(err?: Error): void {
    if (!this.#closed) {
      this.#closed = { by: 'lost', reason: err ? `connection failed: ${err.message}` : 'the connection closed without SESSION_TERMINATE', code: 'ERR_DMSC_SESSION_CLOSED' };
      clearInterval(this.#tick);
    }
    this.emit('gone');
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w({ value: undefined, done: true });
    }
    this.emit('close', this.#closed);
  }
}

export interface OpenOptions {
  /** The target's session endpoint (`ws://`, `wss://` or `tcp://`) and AIC, from the resolution. */
  readonly target: { readonly aic: string; readonly session?: string };
  readonly grant: string;
  /** The initiator's own credential. */
  readonly credential: string;
  readonly capability: string;
  /** Proposed parameters; the target may lower the limits. */
  readonly params?: Partial<Omit<SessionParams, 'app'>> & { app?: Record<string, unknown> };
  /** Connect plus SESSION_INIT/ACCEPT (default 10 s). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Opens a session: connect, SESSION_INIT, and SESSION_ACCEPT.
 * @throws ERR_DMSC_GRANT_* or ERR_DMSC_SESSION_REJECTED (the target's reason),
 *   ERR_DMSC_SESSION_TIMEOUT, ERR_DMSC_SESSION_CLOSED (unreachable or closed early).
 */
export async function openSession(options: OpenOptions): Promise<Session> {
  const url = options.target.session;
  if (!url) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', `agent ${options.target.aic} registered no session endpoint`);
  const proposed = checkParams(options.params ?? {});
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  const channel = await connectChannel(url, proposed.maxMessageBytes, timeoutMs, options.signal);
  return new Promise<Session>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    // The handshake ends once, either way: its clock and its abort listener go.
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', abort);
      return true;
    };
    const fail = (e: Error) => {
      if (!settle()) return;
      channel.destroy();
      reject(e);
    };
    const abort = () => fail(new DmscError('ERR_DMSC_CANCELLED', 'opening the session was cancelled'));
    options.signal?.addEventListener('abort', abort, { once: true });
    if (options.signal?.aborted) return abort();
    timer = setTimeout(() => fail(new DmscError('ERR_DMSC_SESSION_TIMEOUT', `${options.target.aic} did not accept within ${timeoutMs} ms`)), Math.max(1, deadline - Date.now()));
    channel.onClose(() => fail(new DmscError('ERR_DMSC_SESSION_CLOSED', `${url} closed the connection before accepting`)));
    channel.onMessage((m) => {
      if (settled) return;
      if (m.type === 'SESSION_REJECT') {
        const code = typeof m['code'] === 'string' && /^ERR_DMSC_(GRANT_[A-Z_]+|SESSION_[A-Z_]+|BUSY)$/.test(m['code']) ? m['code'] : 'ERR_DMSC_SESSION_REJECTED';
        return fail(dmscError(code, `${options.target.aic} rejected the session: ${text(m['reason'], 300)}`));
      }
      if (m.type !== 'SESSION_ACCEPT' || typeof m['session'] !== 'string') return fail(new DmscError('ERR_DMSC_SESSION_PROTOCOL', `expected SESSION_ACCEPT, got ${text(m.type, 40)}`));
      let agreed: SessionParams;
      try {
        agreed = checkParams(m['params'] as Partial<SessionParams>);
      } catch {
        return fail(new DmscError('ERR_DMSC_SESSION_PROTOCOL', 'SESSION_ACCEPT carried bad parameters'));
      }
      // A target may lower the limits, never raise them.
      if (agreed.idleTimeoutMs > proposed.idleTimeoutMs || agreed.keepaliveMs > proposed.keepaliveMs || agreed.maxMessageBytes > proposed.maxMessageBytes) {
        return fail(new DmscError('ERR_DMSC_SESSION_PROTOCOL', 'SESSION_ACCEPT raised a limit above the one proposed'));
      }
      settle();
      // Messages after the ACCEPT in the same read go to the session.
      resolve(new Session(channel, { id: m['session'].slice(0, 64), role: 'initiator', peer: options.target.aic, capability: options.capability, params: agreed }));
    });
    try {
      channel.send({ type: 'SESSION_INIT', v: A2ASP_VERSION, grant: options.grant, credential: options.credential, capability: options.capability, params: proposed });
    } catch (e) {
      fail(e as Error);
    }
  });
}

/** Parameters as proposed or agreed, checked and filled with defaults. */
export function checkParams(p: Partial<SessionParams> | undefined): SessionParams {
  const v = (p ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, [lo, hi]] of Object.entries(LIMITS)) {
    const x = v[k] ?? DEFAULT_PARAMS[k as keyof typeof DEFAULT_PARAMS];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < lo || x > hi) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', `session parameter ${k} must be an integer from ${lo} to ${hi}`);
    out[k] = x;
  }
  const app = v['app'] ?? {};
  if (typeof app !== 'object' || app === null || Array.isArray(app)) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', 'session parameter app must be an object');
  return { ...(out as Omit<SessionParams, 'app'>), app: app as Record<string, unknown> };
}

/** A SESSION_INIT the target checked. */
export interface SessionRequest {
  readonly initiator: string;
  readonly capability: string;
  readonly grant: VerifiedGrant;
  readonly proposed: SessionParams;
}

export interface AcceptorOptions {
  readonly verifier: GrantVerifier;
  /** The most this side allows; proposals above are lowered to these. */
  readonly limits?: Partial<Omit<SessionParams, 'app'>>;
  /**
   * Decides on a checked request: the agreed application parameters, or a throw to
   * reject (its message is the reason sent back).
   */
  readonly accept: (request: SessionRequest) => Promise<Record<string, unknown>> | Record<string, unknown>;
  readonly onSession: (session: Session, request: SessionRequest) => void;
  /** How long a new connection may take to send SESSION_INIT (default 5 s). */
  readonly initTimeoutMs?: number;
}

/** The target side: takes connections, checks SESSION_INIT, and hands out sessions. */
export class SessionAcceptor {
  readonly #options: AcceptorOptions;
  readonly #limits: Omit<SessionParams, 'app'>;
  readonly #open = new Set<Session>();
  readonly #pending = new Set<Channel>();
  #closing = false;

  constructor(options: AcceptorOptions) {
    this.#options = options;
    const { app: _app, ...limits } = checkParams({ ...DEFAULT_PARAMS, ...options.limits });
    this.#limits = limits;
  }

  get sessions(): ReadonlySet<Session> {
    return this.#open;
  }

  /** Takes a new connection (a WebSocket upgraded for us, or a TCP socket). */
  take(channel: Channel): void {
    if (this.#closing) return channel.destroy();
    this.#pending.add(channel);
    let done = false;
    // The handshake ends once: by a rejection, an acceptance, or the connection closing.
    const settle = (): boolean => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      this.#pending.delete(channel);
      return true;
    };
    const timer = setTimeout(() => finish({ code: 'ERR_DMSC_SESSION_TIMEOUT', reason: 'no SESSION_INIT in time' }), this.#options.initTimeoutMs ?? 5000);
    const finish = (reject?: { code: string; reason: string }) => {
      if (!settle()) return;
      try {
        if (reject) channel.send({ type: 'SESSION_REJECT', code: reject.code, reason: reject.reason.slice(0, 300) });
      } catch {
        // Cannot say why: the close says enough.
      }
      channel.end();
      const force = setTimeout(() => channel.destroy(), 2000);
      force.unref();
      channel.onClose(() => clearTimeout(force));
    };
    let seen = false;
    channel.onClose(() => void settle());
    channel.onMessage((m) => {
      if (seen) return;
      seen = true;
      if (m.type !== 'SESSION_INIT') return finish({ code: 'ERR_DMSC_SESSION_PROTOCOL', reason: `expected SESSION_INIT, got ${text(m.type, 40)}` });
      if (m['v'] !== A2ASP_VERSION) return finish({ code: 'ERR_DMSC_SESSION_PROTOCOL', reason: `A2ASP version ${text(m['v'])} is not spoken here (${A2ASP_VERSION} is)` });
      this.#init(m).then((ok) => {
        if (!settle()) return;
        if (this.#closing) return void channel.destroy();
        try {
          channel.send({ type: 'SESSION_ACCEPT', session: ok.id, params: ok.params });
        } catch {
          // Agreed application parameters too large to send.
          return void channel.destroy();
        }
        const session = new Session(channel, { id: ok.id, role: 'target', peer: ok.request.initiator, capability: ok.request.capability, params: ok.params });
        this.#open.add(session);
        session.once('close', () => this.#open.delete(session));
        this.#options.onSession(session, ok.request);
      }, (e: Error) => finish({ code: typeof (e as DmscError).code === 'string' ? (e as DmscError).code : 'ERR_DMSC_SESSION_REJECTED', reason: e.message.slice(0, 300) }));
    });
  }

  async #init(m: Message): Promise<{ id: string; params: SessionParams; request: SessionRequest }> {
    const grant = await this.#options.verifier.verify(m['grant'], m['credential'], m['capability']);
    const proposed = (() => {
      try {
        return checkParams(m['params'] as Partial<SessionParams>);
      } catch (e) {
        throw new DmscError('ERR_DMSC_SESSION_PROTOCOL', (e as Error).message);
      }
    })();
    const request: SessionRequest = { initiator: grant.initiator, capability: m['capability'] as string, grant, proposed };
    const app = await this.#options.accept(request);
    const params: SessionParams = {
      idleTimeoutMs: Math.min(proposed.idleTimeoutMs, this.#limits.idleTimeoutMs),
      keepaliveMs: Math.min(proposed.keepaliveMs, this.#limits.keepaliveMs),
      maxMessageBytes: Math.min(proposed.maxMessageBytes, this.#limits.maxMessageBytes),
      app,
    };
    return { id: randomBytes(12).toString('base64url'), params, request };
  }

  /** Terminates every session and drops connections still in their handshake. */
  async close(reason = 'the agent is closing'): Promise<void> {
    this.#closing = true;
    for (const c of this.#pending) c.destroy();
    this.#pending.clear();
    await Promise.all([...this.#open].map((s) => s.close(reason)));
  }
}
