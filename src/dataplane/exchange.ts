// One request forwarded by the data plane: the choice of an instance, each attempt, and
// failover. The exchange is itself the undici dispatch handler of its attempts (one at
// a time: the next starts only after the last one ended), so a request costs no stream
// pipeline, no promise and no abort controller of its own.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import { DmscError } from '../errors.js';
import { peerOf } from '../directory/directory.js';
import { namePath, pathBelow } from '../names.js';
import type { LookupResult } from '../fastpath/types.js';
import type { TagSet } from '../fastpath/tags.js';
import type { AgentClaims } from '../identity/credentials.js';
import type { Decision } from '../policy/policy.js';

export const HOPS_HEADER = 'x-dmsc-hops';
export const VIA_HEADER = 'x-dmsc-via';
export const FLOW_HEADER = 'x-dmsc-flow';

/** Counters since start. */
export interface DataPlaneStats {
  requests: number;
  forwarded: number;
  retries: number;
  markedDown: number;
  refused: number;
  failed: number;
}

/** What was asked, as admitted by the listener. */
export interface Ask {
  /** The request path without its query, as it came (percent-encoded). */
  readonly name: string;
  /** The query, with its '?', or ''. */
  readonly query: string;
  /** The name looked up: the path decoded, without a trailing '/'. */
  readonly capability: string;
  readonly token: string;
  /** Gateways the request may still pass, this one included. */
  readonly hops: number;
  /** Gateways it passed already. */
  readonly via: readonly string[];
  readonly flow: string | undefined;
  /** The data plane's decision generation when it was admitted (see DataPlane#teach). */
  readonly generation?: number;
}

export interface Target {
  readonly origin: string;
  readonly path: string;
  /** The pool to send it with, when not the instances' one. */
  readonly dispatcher?: Dispatcher;
}

/** What an exchange uses of its data plane. */
export interface ExchangeHost {
  readonly dispatcher: Dispatcher;
  readonly self: string;
  /** Instances tried per request, the first included. */
  readonly attempts: number;
  readonly stats: DataPlaneStats;
  lookup(capability: string, require: TagSet, flow: string | undefined): LookupResult | null;
  /** The policy's decision; with `before`, merged into it. Throws on a denial. */
  decide(claims: AgentClaims, capability: string, before?: Decision<TagSet>): Decision<TagSet>;
  /** Where an instance (by its AIC) is reached for `rest` of the path. */
  agentTarget(aic: string, rest: string, query: string): Target | undefined;
  /** A peer gateway's data plane, for a path. */
  peerTarget(peer: string, pathAndQuery: string): Target | undefined;
  /** Passive health: a next hop failed. */
  down(nextHop: string): void;
  /** The request is going to a local instance, as admitted with no required tag. */
  teach?(ask: Ask, claims: AgentClaims, prefix: string, aic: string): void;
  /** The error answer (or a cut connection, once the answer has begun). */
  fail(res: ServerResponse, e: unknown): void;
  /** How a request ended, once it has (for events and metrics; never its payload). */
  outcome?(o: Outcome): void;
}

export interface Outcome {
  readonly capability: string;
  readonly requester: AgentClaims;
  /** The next hops tried, in order (AICs, or `peer:<id>`). */
  readonly tried: readonly string[];
  /** The instance's status, when one answered. */
  readonly status?: number;
  /** The error code, when none did. */
  readonly error?: string;
  /** From the request's arrival here to the end of the answer. */
  readonly ms: number;
}

const RETRYABLE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
// Hop-by-hop headers (RFC 9110 §7.6.1), `expect` (answered here already), and the
// credential: never passed on. Headers named in `connection` are dropped too, and so
// are x-dmsc-* headers but for the flow key.
const DROP_REQUEST = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'authorization', 'expect']);
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
/** Failures where the request never reached the instance. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
/** Failures that are the instance's (or the way to it): reason to mark it down. */
const INSTANCE_CODES = new Set([
  ...CONNECT_CODES, 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
  // An answer that is not HTTP, or one we cannot pass on.
  'UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ERR_DMSC_BAD_ANSWER',
]);
const instanceFailure = (e: Error, code: string) => INSTANCE_CODES.has(code) || e instanceof undiciErrors.HTTPParserError;
const gone = () => new Error('the requester went away');

export class Exchange implements Dispatcher.DispatchHandler {
  readonly #host: ExchangeHost;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #ask: Ask;
  readonly #claims: AgentClaims;
  readonly #method: string;
  #decision: Decision<TagSet>;
  #body: Buffer | IncomingMessage | null = null;
  readonly #tried: string[] = [];
  #looks = 0;
  #attempts = 0;
  #last = '';
  #cancelled = false;
  // The attempt under way.
  #hit: LookupResult | null = null;
  #peer: string | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  #answered = false;
  #refused = 0;
  #drainHooked = false;
  #status = 0;
  #reported = false;
  readonly #started = performance.now();

  constructor(host: ExchangeHost, req: IncomingMessage, res: ServerResponse, ask: Ask, claims: AgentClaims, decision: Decision<TagSet>) {
    this.#host = host;
    this.#req = req;
    this.#res = res;
    this.#ask = ask;
    this.#claims = claims;
    this.#decision = decision;
    this.#method = req.method ?? 'GET';
    // The requester gone before the answer ended: the attempt is called off.
    res.once('close', () => {
      if (res.writableEnded) return;
      this.#cancelled = true;
      this.#controller?.abort(gone());
      this.#report({ error: 'ERR_DMSC_CANCELLED' });
    });
  }

  /** Sends the request on, with its body: kept (small) or the request itself (streamed). */
  start(body: Buffer | IncomingMessage | null): void {
    this.#body = body;
    this.#next();
  }

  // --- the undici dispatch handler ------------------------------------------------------
  // undici turns a throw from these into an 'error' event nobody listens to, which would
  // end the process: none may throw.

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#cancelled) controller.abort(gone());
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    if (statusCode === 502 || statusCode === 503) {
      // Tried elsewhere when it can be: this answer is drained and dropped.
      this.#down();
      if (this.#again(false)) {
        this.#refused = statusCode;
        return;
      }
    }
    const res = this.#res;
    try {
      res.writeHead(statusCode, this.#responseHeaders(headers));
    } catch (e) {
      // A status or header Node will not send: the instance's fault, like a bad answer.
      return controller.abort(Object.assign(new Error(`an answer that cannot be passed on (${(e as Error).message})`), { code: 'ERR_DMSC_BAD_ANSWER' }));
    }
    this.#answered = true;
    this.#status = statusCode;
    if (!this.#drainHooked) {
      this.#drainHooked = true;
      res.on('drain', () => this.#controller?.resume());
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#refused === 0 && !this.#res.write(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    if (this.#refused !== 0) {
      this.#last = `${this.#hit!.nextHop}: answered ${this.#refused}`;
      return this.#next();
    }
    this.#host.stats.forwarded++;
    try {
      this.#res.end();
    } catch {
      this.#res.destroy();
    }
    this.#report({ status: this.#status });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, e: Error): void {
    const res = this.#res;
    try {
      // Once our answer has begun, a failure can only cut it short.
      if (this.#answered || res.destroyed || this.#cancelled) {
        if (this.#answered) this.#report({ error: 'ERR_DMSC_UPSTREAM_FAILED' });
        return void res.destroy();
      }
      const failed = this.#hit!.nextHop;
      const code = (e as NodeJS.ErrnoException).code ?? '';
      // Only a failure of the instance (or of the way to it) counts against it; one of
      // the request itself (its body, a header undici refuses) is the request's answer.
      if (!instanceFailure(e, code)) {
        this.#report({ error: 'ERR_DMSC_UPSTREAM_FAILED' });
        return this.#host.fail(res, new DmscError('ERR_DMSC_UPSTREAM_FAILED', `the request could not be sent to ${failed}: ${describeFailure(e)}`));
      }
      this.#last = `${failed}: ${describeFailure(e)}`;
      this.#down();
      if (this.#again(CONNECT_CODES.has(code))) this.#next();
      else this.#finish();
    } catch {
      res.destroy();
    }
  }

  // --- choosing and failing over ---------------------------------------------------------

  #next(): void {
    try {
      if (!this.#dispatchNext()) this.#finish();
    } catch (e) {
      this.#host.fail(this.#res, e);
    }
  }

  /** Looks up the next choice and sends the request to it; false when there is none. */
  #dispatchNext(): boolean {
    const host = this.#host;
    const ask = this.#ask;
    while (this.#looks < host.attempts * 2 && this.#attempts < host.attempts && !this.#res.destroyed) {
      this.#looks++;
      let hit = host.lookup(ask.capability, this.#decision.mask, ask.flow);
      if (hit && hit.prefix !== ask.capability) {
        // Policy is about capabilities: the prefix that matched decides too.
        const more = host.decide(this.#claims, hit.prefix, this.#decision);
        if (more !== this.#decision) {
          this.#decision = more;
          hit = host.lookup(ask.capability, more.mask, ask.flow);
        }
      }
      if (!hit || this.#tried.includes(hit.nextHop)) return false;
      this.#tried.push(hit.nextHop);
      const peer = peerOf(hit.nextHop);
      const target = peer ? (ask.hops > 1 ? host.peerTarget(peer, ask.name + ask.query) : undefined) : host.agentTarget(hit.nextHop, pathBelow(ask.name, hit.prefix), ask.query);
      this.#hit = hit;
      this.#peer = peer;
      if (!target) {
        // A peer with no data plane to send to, or none left in hops: the next choice is
        // looked up with this one out of the way for a moment.
        if (peer) host.down(hit.nextHop);
        this.#last = `${hit.nextHop}: ${peer && ask.hops <= 1 ? 'out of gateway hops' : 'no address'}`;
        continue;
      }
      this.#attempts++;
      if (this.#attempts > 1) host.stats.retries++;
      if (!peer && this.#decision.require.length === 0) host.teach?.(ask, this.#claims, hit.prefix, hit.nextHop);
      this.#controller = undefined;
      this.#answered = false;
      this.#refused = 0;
      (target.dispatcher ?? host.dispatcher).dispatch({ origin: target.origin, path: target.path, method: this.#method as Dispatcher.HttpMethod, headers: this.#requestHeaders(), body: this.#body }, this);
      return true;
    }
    return false;
  }

  /** Nothing (more) to try: the answer says why. */
  #finish(): void {
    if (this.#res.destroyed) return;
    const { capability } = this.#ask;
    if (this.#tried.length === 0) {
      this.#report({ error: 'ERR_DMSC_NO_ROUTE' });
      return this.#host.fail(this.#res, new DmscError('ERR_DMSC_NO_ROUTE', `no reachable instance offers ${capability}${this.#decision.require.length ? ' with the required tags' : ''}`));
    }
    this.#host.stats.failed++;
    this.#host.fail(this.#res, new DmscError('ERR_DMSC_UPSTREAM_FAILED', `every instance tried for ${capability} failed (${this.#attempts} tried; last: ${this.#last})`, { attempts: this.#attempts }));
    this.#report({ error: 'ERR_DMSC_UPSTREAM_FAILED' });
  }

  // Once per request, however it ended.
  #report(end: { status: number } | { error: string }): void {
    if (this.#reported) return;
    this.#reported = true;
    try {
      this.#host.outcome?.({ capability: this.#ask.capability, requester: this.#claims, tried: [...this.#tried], ...end, ms: performance.now() - this.#started });
    } catch {
      // Reporting never changes the answer.
    }
  }

  /**
   * Whether the request can go again after a failure: never a streamed body (gone with
   * the attempt); a kept or no body for a method without side effects, or for any
   * method the instance never got.
   */
  #again(nothingSent: boolean): boolean {
    return this.#body !== this.#req && (RETRYABLE_METHODS.has(this.#method) || nothingSent);
  }

  /**
   * Passive health: down in the fast path now; a heartbeat (for a peer, a short while
   * with its session up) brings it back. A table that cannot take the change (closed,
   * out of memory) does not stop the failover: the request goes on to the next choice.
   */
  #down(): void {
    try {
      this.#host.down(this.#hit!.nextHop);
    } catch {
      // The next lookup may choose it again; `#tried` keeps this request off it.
    }
  }

  // --- headers -------------------------------------------------------------------------

  #requestHeaders(): string[] {
    const headers = this.#req.headers;
    const out: string[] = [];
    const hop = named(headers);
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined || DROP_REQUEST.has(k) || (hop !== undefined && hop.has(k)) || (k.startsWith('x-dmsc-') && k !== FLOW_HEADER)) continue;
      if (typeof v === 'string') out.push(k, v);
      else for (const one of v) out.push(k, one);
    }
    // The path goes on below the prefix; the agent learns which capability it serves.
    out.push('x-dmsc-requester', this.#claims.aic, 'x-dmsc-capability', namePath(this.#hit!.prefix));
    if (this.#peer !== undefined) {
      const { token, hops, via } = this.#ask;
      out.push('authorization', `Bearer ${token}`, HOPS_HEADER, String(hops - 1), VIA_HEADER, via.length ? `${via.join(',')},${this.#host.self}` : this.#host.self);
    }
    return out;
  }

  /**
   * The answer's headers, and what the requester is told: the capability matched, the
   * instance, the gateways passed, and the attempts made here. Through a peer, the far
   * gateway's word on the first three; no other x-dmsc-* header, a peer's or an
   * instance's, is passed on.
   */
  #responseHeaders(headers: IncomingHttpHeaders): string[] {
    const out: string[] = [];
    const fromPeer = this.#peer !== undefined;
    const hop = named(headers);
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined || DROP_RESPONSE.has(k) || (hop !== undefined && hop.has(k)) || k.startsWith('x-dmsc-')) continue;
      if (typeof v === 'string') out.push(k, v);
      else for (const one of v) out.push(k, one);
    }
    const far = (h: string) => (fromPeer && typeof headers[h] === 'string' ? (headers[h] as string) : undefined);
    const hit = this.#hit!;
    const self = this.#host.self;
    const path = far('x-dmsc-path');
    out.push(
      'x-dmsc-capability', far('x-dmsc-capability') ?? namePath(hit.prefix),
      'x-dmsc-instance', far('x-dmsc-instance') ?? hit.nextHop,
      'x-dmsc-path', path ? `${self},${path}` : self,
      'x-dmsc-attempts', String(this.#attempts),
    );
    return out;
  }
}

/** Headers named in a `connection` header (hop-by-hop too). */
function named(headers: IncomingHttpHeaders): Set<string> | undefined {
  const c = headers['connection'];
  if (typeof c !== 'string') return undefined;
  const tokens = c.toLowerCase().split(',').map((t) => t.trim()).filter((t) => t && t !== 'keep-alive' && t !== 'close');
  return tokens.length ? new Set(tokens) : undefined;
}

function describeFailure(e: unknown): string {
  if (e instanceof undiciErrors.ConnectTimeoutError) return 'connect timeout';
  if (e instanceof undiciErrors.HeadersTimeoutError) return 'no answer in time';
  if (e instanceof undiciErrors.SocketError) return `connection reset (${e.message})`;
  const code = (e as NodeJS.ErrnoException).code;
  return code ? `${code}` : (e as Error).message || 'failed';
}
