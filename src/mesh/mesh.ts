// The mesh side of one node: a peering listener, sessions to the configured peers (with
// reconnect and backoff), digest sync on each, and the routes learned programmed into the
// node's forwarding table as next hops `peer:<gateway>`, after the local agents. When a
// session drops, that peer's next hop goes down at once (traffic fails over) and its
// routes are kept as stale for the hold time, then dropped unless a new session
// re-announces them.
import { randomUUID } from 'node:crypto';
import { createServer, connect, isIP, type Server, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { DmscError, dmscError } from '../errors.js';
import { peerHop, type Directory } from '../directory/directory.js';
import type { DiscoverAnswer, ForwardedResolve, ResolveAnswer } from '../directory/gateway.js';
import type { NextHop } from '../fastpath/types.js';
import type { JWK } from 'jose';
import { checkGrantKey, GRANT_KEY_TYP, type Amc } from '../identity/amc.js';
import { AmcTokenVerifier } from '../identity/credentials.js';
import type { GatewayKey } from '../identity/gateway-key.js';
import { sourceOf } from '../net/source.js';
import { listenOn, type Listen } from '../net/listen.js';
import { DEFAULT_MAX_ROUTES, DigestSync } from './csp.js';
import { Domains, unseen, type ForeignDomain } from './domains.js';
import { text, type Message } from './frames.js';
import { PeerSession, type Identity, type Role, type SessionOptions } from './peer-session.js';
import { Rib } from './rib.js';

export interface PeerConfig {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** The domain the peer must belong to (this node's own, if not given). */
  readonly domain?: string;
  /** Routes this peer may hold here (the mesh's `maxRoutes` if not given). */
  readonly maxRoutes?: number;
}

/** TLS for peering: PEM texts. With a CA, each side checks the other's certificate. */
export interface PeeringTls {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
  /** Refuse peers that present no certificate signed by the CA (mutual TLS). */
  readonly requireClientCert?: boolean;
}

export interface MeshOptions {
  readonly self: Identity;
  readonly listen: Listen;
  readonly peers: readonly PeerConfig[];
  /**
   * The tags this node's policy knows. Learned tags outside it are not programmed: a peer
   * cannot fill the FIB's tag dictionary with tags nobody here filters on.
   */
  readonly knownTags?: () => ReadonlySet<string>;
  /** A peer to send names with no route to (a default route `/`). */
  readonly upstream?: string;
  readonly holdMs?: number;
  /** Other trust domains this node peers with, their export policies and tag tables. */
  readonly domains?: Domains;
  /** Routes one peer may hold here, unless its own config says otherwise (default 100,000). */
  readonly maxRoutes?: number;
  readonly tls?: PeeringTls;
  /**
   * Where this gateway takes requests from peers (HOST:PORT), told to them in the OPEN,
   * and whether that listener speaks TLS.
   */
  readonly dataplane?: () => { readonly address: string; readonly tls: boolean } | undefined;
  /** Connections still in their handshake, in all (default 256) and from one address (default 16). */
  readonly maxPending?: number;
  readonly maxPendingPerAddress?: number;
  readonly log?: (event: Record<string, unknown>) => void;
}

/** Priority of a learned route: above every local agent (0..32767), shorter paths first. */
export const PEER_PRIORITY_BASE = 32768;
/** Routes from another domain (`ext`, here or at a border of ours) come after every route within ours. */
export const FOREIGN_PRIORITY_BASE = PEER_PRIORITY_BASE + 4096;
/** How long a TCP connect and TLS handshake may take. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long a stranger has for its TLS handshake with the peering listener. */
const PENDING_TLS_MS = 5000;
export const DEFAULT_MAX_PENDING = 256;
export const DEFAULT_MAX_PENDING_PER_ADDRESS = 16;
/** Refusals of strangers logged one by one each second; past that, counted. */
const REFUSALS_LOGGED = 10;
export const UPSTREAM_PRIORITY = 65000;

/** A configured peer's dialling: the redial in wait, and dials that failed in a row. */
interface Dialer {
  readonly peer: PeerConfig;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  dialling: boolean;
}

interface Live {
  session: PeerSession;
  sync: DigestSync;
  /** Who dialled: the collision rule keeps the session dialled by the smaller id. */
  dialler: string;
}

export class Mesh {
  readonly rib: Rib;
  readonly #options: MeshOptions;
  readonly #amc: Amc;
  readonly #key: GatewayKey;
  readonly #directory: Directory;
  readonly #verifier: AmcTokenVerifier;
  readonly #domains: Domains;
  readonly #sessions = new Map<string, Live>();
  readonly #staleTimers = new Map<string, NodeJS.Timeout>();
  readonly #heldOff = new Map<string, NodeJS.Timeout>();
  readonly #dialers = new Map<string, Dialer>();
  /** Sockets still in their handshake, destroyed on stop. */
  readonly #opening = new Set<Socket>();
  /**
   * Accepted connections not authenticated yet, by `address:port` (the same for a TLS
   * socket and the TCP socket under it), with their release; and how many per address.
   */
  readonly #pending = new Map<string, () => void>();
  readonly #pendingPerAddress = new Map<string, number>();
  readonly #handshakeStats = { pending: 0, refused: 0 };
  /** Sources of the configured peers given by address. */
  readonly #peerSources: ReadonlySet<string>;
  #refusals = { windowStart: 0, logged: 0, unlogged: 0 };
  /** Every connection the listener took, until it closes (TLS handshakes included). */
  readonly #accepted = new Set<Socket>();
  /**
   * The domain each peer id was first seen with: an id keeps its domain for the life of
   * the node, so a gateway of another domain cannot take over the id (and the routes)
   * of one of ours while it is away.
   */
  readonly #peerDomains = new Map<string, string>();
  readonly #asked = new Map<string, { peer: string; kind: ForwardedResolve['kind']; resolve: (a: ResolveAnswer | DiscoverAnswer) => void; reject: (e: DmscError) => void; timer: NodeJS.Timeout }>();
  /**
   * Answers a resolution or discovery a peer sent us (set by the node: verify, apply
   * policy, resolve); `visible`, for a peer of another domain, is what it may see.
   */
  onResolve: ((request: ForwardedResolve, from: string, visible?: (prefix: string) => boolean) => Promise<ResolveAnswer | DiscoverAnswer>) | undefined;
  #server: Server | undefined;
  #address: Listen | undefined;
  #stopped = false;

  constructor(options: MeshOptions, amc: Amc, key: GatewayKey, directory: Directory) {
    this.#options = options;
    this.#amc = amc;
    this.#key = key;
    this.#peerSources = new Set(options.peers.filter((p) => isIP(p.host) !== 0).map((p) => sourceOf(p.host)));
    this.#directory = directory;
    this.rib = new Rib(options.self.gateway);
    this.#verifier = new AmcTokenVerifier(amc);
    this.#domains = options.domains ?? new Domains();
    for (const name of directory.localNames()) this.rib.setLocal(name, directory.localTags(name));
    directory.onLocalChange((names) => {
      for (const n of names) this.rib.setLocal(n, directory.localTags(n));
    });
    this.rib.onChange((names) => {
      for (const n of names) this.#program(n);
    });
  }

  get address(): Listen | undefined {
    return this.#address;
  }

  /** Connections in their handshake now, and those refused for being over the limits. */
  get handshakes(): { readonly pending: number; readonly refused: number } {
    return { ...this.#handshakeStats };
  }

  /** Peers with an open session, with what each has sent and advertised. */
  peers(): { gateway: string; domain: string; holdMs: number; routes: number; frames: PeerSession['stats']; csp: DigestSync['stats'] & DigestSync['versions'] }[] {
    return [...this.#sessions.values()].map(({ session, sync }) => ({
      ...session.peer, holdMs: session.holdMs, routes: this.rib.countFrom(session.peer.gateway), frames: { ...session.stats }, csp: { ...sync.stats, ...sync.versions },
    }));
  }

  async start(): Promise<void> {
    const t = this.#options.tls;
    const server = t
      ? tls.createServer({
        cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}), requestCert: !!t.requireClientCert, rejectUnauthorized: !!t.requireClientCert,
        handshakeTimeout: PENDING_TLS_MS,
      }, (socket) => void this.#accept(socket))
      : createServer();
    // Admission comes before anything is read: on TLS, before the TLS handshake.
    server.on('connection', (socket: Socket) => {
      if (!this.#admit(socket)) return;
      this.#accepted.add(socket);
      socket.once('close', () => this.#accepted.delete(socket));
      if (!t) void this.#accept(socket);
    });
    // A client that fails the TLS handshake is logged (ten a second at most); the listener goes on.
    server.on('tlsClientError', (e: Error, socket: Socket) => this.#refused({ msg: 'peer refused', remote: socket.remoteAddress, error: 'ERR_DMSC_BAD_HANDSHAKE', reason: `TLS: ${e.message}` }));
    this.#address = await listenOn(server, this.#options.listen, { name: 'peering', flag: '--peering' });
    this.#server = server;
    for (const peer of this.#options.peers) {
      const dialer: Dialer = { peer, attempt: 0, timer: undefined, dialling: false };
      this.#dialers.set(peer.id, dialer);
      this.#dial(dialer);
    }
    if (this.#options.upstream) {
      this.#directory.setExternalHealth(peerHop(this.#options.upstream), 'down');
      this.#program('/');
    }
  }

  /**
   * The origin (`https://HOST:PORT`, or `http://` on a mesh without TLS) of the data
   * plane a peer of our domain gave in its OPEN; none across domains. A mesh with TLS
   * sends requests (and the credentials in them) over TLS only: a peer that offers a
   * clear-text data plane gets none. A wildcard or loopback host from a peer that is not
   * on this host is taken as the address its session comes from, with the port it gave.
   */
  dataPlaneOf(peer: string): string | undefined {
    const session = this.#sessions.get(peer)?.session;
    const given = session && session.peer.domain === this.#options.self.domain ? session.peer.dataplane : undefined;
    if (!given || !session) return undefined;
    const secure = session.peer.dataplaneTls === true;
    if (this.#options.tls && !secure) return undefined;
    const scheme = secure ? 'https' : 'http';
    const at = given.lastIndexOf(':');
    const host = given.slice(0, at).replace(/^\[|\]$/g, '');
    const remote = session.remoteAddress?.replace(/^::ffff:/, '');
    const local = (h: string) => h === '0.0.0.0' || h === '::' || h === '::1' || h.startsWith('127.') || h === 'localhost';
    if (!local(host) || !remote || local(remote)) return `${scheme}://${given}`;
    return `${scheme}://${remote.includes(':') ? `[${remote}]` : remote}${given.slice(at)}`;
  }

  /**
   * A data-plane request to `peer` failed: its next hop is down for a moment (2 s), so
   * requests go to the next choice; it comes back then if its session is still up.
   */
  holdOff(peer: string): void {
    if (!this.#sessions.has(peer) || this.#heldOff.has(peer)) return;
    this.#directory.setExternalHealth(peerHop(peer), 'down');
    const t = setTimeout(() => {
      this.#heldOff.delete(peer);
      if (this.#sessions.has(peer)) this.#directory.setExternalHealth(peerHop(peer), 'up');
    }, 2000);
    t.unref();
    this.#heldOff.set(peer, t);
  }

  /** Peers with a fresh route for `prefix`, best first. */
  peersFor(prefix: string): string[] {
    return this.rib.nextHops(prefix).filter((h) => !h.stale && this.#sessions.has(h.peer)).map((h) => h.peer);
  }

  /** Sends a resolution to `peer` and waits for its answer (SRRP), at most `timeoutMs`. */
  forward(peer: string, request: ForwardedResolve, timeoutMs: number): Promise<ResolveAnswer | DiscoverAnswer> {
    const live = this.#sessions.get(peer);
    if (!live) return Promise.reject(new DmscError('ERR_DMSC_PEER_CLOSED', `no session with ${peer}`));
    const id = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#asked.delete(id);
        reject(new DmscError('ERR_DMSC_PEER_TIMEOUT', `${peer} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#asked.set(id, { peer, kind: request.kind, resolve, reject, timer });
      live.session.send({ type: 'SRRP_RESOLVE', id, request });
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const d of this.#dialers.values()) clearTimeout(d.timer);
    for (const t of this.#staleTimers.values()) clearTimeout(t);
    for (const t of this.#heldOff.values()) clearTimeout(t);
    for (const s of this.#opening) s.destroy();
    // Sessions first, so their peers are told; then whatever the listener still holds.
    for (const { session } of this.#sessions.values()) session.close();
    for (const s of this.#accepted) s.destroy();
    await new Promise((r) => (this.#server ? this.#server.close(r) : r(null)));
    for (const t of this.#staleTimers.values()) clearTimeout(t);
    for (const [id, p] of this.#asked) {
      clearTimeout(p.timer);
      this.#asked.delete(id);
      p.reject(new DmscError('ERR_DMSC_PEER_CLOSED', 'the node is stopping'));
    }
  }

  /** The domain of a peer, when it is not ours (undefined too for one we do not trust). */
  #foreign(peer: Identity): ForeignDomain | undefined {
    return peer.domain === this.#options.self.domain ? undefined : this.#domains.get(peer.domain);
  }

  #sessionOptions(role: Role, expect?: PeerConfig): SessionOptions {
    const dataplane = this.#options.dataplane?.();
    return {
      role,
      local: dataplane ? { ...this.#options.self, dataplane: dataplane.address, ...(dataplane.tls ? { dataplaneTls: true } : {}) } : this.#options.self,
      credentials: () => {
        const { key, certificate } = this.#key.current();
        return { certificate, privateKey: key.privateKey };
      },
      certified: (certificate, claimed) => this.#certified(certificate, claimed),
      holdMs: this.#options.holdMs ?? 9000,
      ...(expect ? { expect: expect.id } : {}),
    };
  }

  // A peer is a gateway of our domain, whose key our AMC certified, or of a domain we
  // trust, whose key that domain's AMC certified. A configured peer must be of its
  // configured domain (ours if none is set), whoever dialled; any other keeps the domain
  // its id was first seen with.
  async #certified(certificate: string, claimed: Identity): Promise<JWK> {
    const configured = this.#options.peers.find((p) => p.id === claimed.gateway);
    const expected = configured ? configured.domain ?? this.#amc.domain : this.#peerDomains.get(claimed.gateway);
    if (expected !== undefined && claimed.domain !== expected) throw new Error(`${claimed.gateway} is a gateway of domain ${expected}, not ${claimed.domain}`);
    const foreign = this.#foreign(claimed);
    if (claimed.domain !== this.#options.self.domain && !foreign) throw new Error(`gateway of domain ${claimed.domain}, which this node does not trust`);
    const claims = await (foreign ?? this.#verifier).verify(certificate, GRANT_KEY_TYP);
    if (claims['sub'] !== claimed.gateway || claims['dom'] !== claimed.domain) throw new Error(`its key certificate is for ${text(claims['sub'])}@${text(claims['dom'])}`);
    try {
      return checkGrantKey((claims['cnf'] as { jwk?: unknown } | undefined)?.jwk);
    } catch {
      throw new Error('its key certificate holds no usable key');
    }
  }

  /**
   * Takes a connection to the peering listener only within the limits on handshakes in
   * progress (in all, and from its address); counts it as pending until it has
   * authenticated, or until it is closed (a refused one while its NOTIFY drains too). A
   * stranger cannot make us hold more than a handshake's frame and a read or two per
   * connection, for the handshake's time, on so many connections.
   */
  #admit(socket: Socket): boolean {
    const address = sourceOf(socket.remoteAddress);
    const fromAddress = this.#pendingPerAddress.get(address) ?? 0;
    const max = this.#options.maxPending ?? DEFAULT_MAX_PENDING;
    const perAddress = this.#options.maxPendingPerAddress ?? DEFAULT_MAX_PENDING_PER_ADDRESS;
    // A configured peer's address is held only to its own limit: strangers filling every
    // slot cannot keep our peers from dialling in.
    const full = this.#handshakeStats.pending >= max && !this.#peerSources.has(address);
    if (full || fromAddress >= perAddress) {
      socket.destroy();
      this.#handshakeStats.refused++;
      this.#refused({ msg: 'peer refused', remote: address, error: 'ERR_DMSC_LIMIT_EXCEEDED', reason: fromAddress >= perAddress ? `${perAddress} handshakes already in progress from this address` : `${max} handshakes already in progress` });
      return false;
    }
    this.#handshakeStats.pending++;
    this.#pendingPerAddress.set(address, fromAddress + 1);
    const key = `${socket.remoteAddress ?? ''}:${socket.remotePort}`;
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.#handshakeStats.pending--;
      const left = (this.#pendingPerAddress.get(address) ?? 1) - 1;
      if (left > 0) this.#pendingPerAddress.set(address, left);
      else this.#pendingPerAddress.delete(address);
      if (this.#pending.get(key) === release) this.#pending.delete(key);
    };
    this.#pending.set(key, release);
    socket.once('close', release);
    return true;
  }

  /** Logs a refused stranger; past a few a second, only how many were not logged. */
  #refused(event: Record<string, unknown>): void {
    const now = Date.now();
    const r = this.#refusals;
    if (now - r.windowStart >= 1000) {
      if (r.unlogged > 0) this.#log({ msg: 'peer refused', error: 'ERR_DMSC_LIMIT_EXCEEDED', reason: `${r.unlogged} more refusals not logged one by one` });
      this.#refusals = { windowStart: now, logged: 0, unlogged: 0 };
    }
    if (this.#refusals.logged++ < REFUSALS_LOGGED) this.#log(event);
    else this.#refusals.unlogged++;
  }

  async #accept(socket: Socket): Promise<void> {
    this.#opening.add(socket);
    socket.on('error', () => {});
    try {
      const session = await PeerSession.establish(socket, this.#sessionOptions('listener'));
      // Authenticated: no longer a pending handshake.
      this.#pending.get(`${socket.remoteAddress ?? ''}:${socket.remotePort}`)?.();
      this.#adopt(session, session.peer.gateway);
    } catch (e) {
      this.#refused({ msg: 'peer refused', remote: socket.remoteAddress, error: (e as DmscError).code, reason: (e as Error).message });
    } finally {
      this.#opening.delete(socket);
    }
  }

  /**
   * Dials a configured peer unless it has a session, or a dial is under way. A dial that
   * fails is tried again with backoff (0.1 s doubling to 5 s); so is a peer whose session
   * ends, whoever dialled it and whatever ended it (see #adopt).
   */
  #dial(d: Dialer): void {
    const peer = d.peer;
    if (this.#stopped || this.#sessions.has(peer.id) || d.dialling) return;
    clearTimeout(d.timer);
    d.timer = undefined;
    d.dialling = true;
    const t = this.#options.tls;
    const socket = t
      ? tls.connect({ host: peer.host, port: peer.port, cert: t.cert, key: t.key, ...(t.ca ? { ca: t.ca } : {}), ...(isIP(peer.host) ? {} : { servername: peer.host }) })
      : connect(peer.port, peer.host);
    let connected = false;
    let tcpUp = false;
    socket.once('connect', () => (tcpUp = true));
    socket.on('error', (e) => {
      // Refused or unreachable is the retry's business; a failed TLS handshake is worth a line.
      if (t && tcpUp && !connected) this.#log({ msg: 'peering failed', peer: peer.id, error: 'ERR_DMSC_BAD_HANDSHAKE', reason: `TLS: ${e.message}` });
    });
    // Nothing may hang a dial: a peer that takes the connection and says nothing is dropped.
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => {
      if (!connected) socket.destroy();
    });
    const failed = () => {
      d.dialling = false;
      d.attempt++;
      this.#redial(d);
    };
    this.#opening.add(socket);
    socket.once(t ? 'secureConnect' : 'connect', () => {
      connected = true;
      socket.setTimeout(0);
      PeerSession.establish(socket, this.#sessionOptions('dialler', peer)).then(
        (session) => {
          this.#opening.delete(socket);
          d.dialling = false;
          this.#adopt(session, this.#options.self.gateway);
          // Refused here (another domain's gateway under this id, a node stopping) or
          // lost to a session the peer dialled: the latter's end brings a redial.
          if (!this.#sessions.has(peer.id)) failed();
        },
        (e: DmscError) => {
          this.#opening.delete(socket);
          this.#log({ msg: 'peering failed', peer: peer.id, error: e.code, reason: e.message });
          failed();
        },
      );
    });
    socket.once('close', () => {
      this.#opening.delete(socket);
      if (!connected) failed();
    });
  }

  /** Dials `d` again after its backoff, unless a session or a dial is there already. */
  #redial(d: Dialer): void {
    if (this.#stopped || d.timer || d.dialling || this.#sessions.has(d.peer.id)) return;
    const delay = Math.min(5000, 100 * 2 ** Math.min(d.attempt, 6));
    d.timer = setTimeout(() => {
      d.timer = undefined;
      this.#dial(d);
    }, delay);
  }

  #adopt(session: PeerSession, dialler: string): void {
    if (this.#stopped) return session.close();
    const peer = session.peer.gateway;
    const existing = this.#sessions.get(peer);
    const known = existing?.session.peer.domain ?? this.#peerDomains.get(peer);
    if (known !== undefined && known !== session.peer.domain) {
      return session.close(new DmscError('ERR_DMSC_BAD_HANDSHAKE', `${peer} is a gateway of domain ${known}`));
    }
    if (existing) {
      // Both sides dialled: keep the session dialled by the smaller gateway id. The same
      // side dialling again means its old session is dead: the new one replaces it.
      const keep = [existing.dialler, dialler].sort()[0]!;
      if (existing.dialler !== dialler) this.#log({ msg: 'peering collision', peer, kept: `the session ${keep} dialled` });
      if (existing.dialler !== dialler && existing.dialler === keep) return session.close();
      existing.session.close();
    }
    const foreign = this.#foreign(session.peer);
    const configured = this.#options.peers.find((p) => p.id === peer);
    const sync = new DigestSync(this.rib, session, {
      maxRoutes: configured?.maxRoutes ?? this.#options.maxRoutes ?? DEFAULT_MAX_ROUTES,
      ...(foreign ? {
        external: true,
        exports: (name: string) => foreign.exports(name), shownTags: (tags: readonly string[]) => foreign.shownTags(tags),
        imports: (name: string) => foreign.imports(name), importTags: (tags: readonly string[]) => foreign.importTags(tags),
        importName: (name: string) => foreign.importName(name),
      } : {}),
    });
    this.#peerDomains.set(peer, session.peer.domain);
    this.#sessions.set(peer, { session, sync, dialler });
    clearTimeout(this.#staleTimers.get(peer));
    this.#staleTimers.delete(peer);
    this.#directory.setExternalHealth(peerHop(peer), 'up');
    const opened = Date.now();
    session.on('message', (m) => {
      if (sync.receive(m)) return;
      if (m.type === 'SRRP_RESOLVE') void this.#answer(session, m);
      else if (m.type === 'SRRP_RESULT') this.#settle(session, m);
      else this.#log({ msg: 'unknown peering message', peer, type: text(m.type, 32) });
    });
    session.once('close', (error) => {
      if (this.#sessions.get(peer)?.session !== session) return;
      this.#sessions.delete(peer);
      sync.stop();
      for (const [id, p] of this.#asked) {
        if (p.peer !== peer) continue;
        clearTimeout(p.timer);
        this.#asked.delete(id);
        p.reject(new DmscError('ERR_DMSC_PEER_CLOSED', `session with ${peer} closed`));
      }
      // At once: traffic fails over. The routes stay, stale, for the hold time.
      this.#directory.setExternalHealth(peerHop(peer), 'down');
      // A configured peer is dialled again, whoever dialled this session and whatever
      // ended it; a session that lived its hold time earns a quick redial, one that died
      // young backs off, so a peer that keeps refusing is not hammered.
      const dialer = this.#dialers.get(peer);
      if (dialer) {
        dialer.attempt = Date.now() - opened >= session.holdMs ? 0 : dialer.attempt + 1;
        this.#redial(dialer);
      }
      this.#log({ msg: 'peer down', peer, ...(error ? { error: error.code, reason: error.message } : {}) });
      const t = setTimeout(() => {
        this.#staleTimers.delete(peer);
        if (!this.#sessions.has(peer)) this.rib.dropStale(peer);
      }, session.holdMs);
      t.unref();
      this.#staleTimers.set(peer, t);
    });
    this.#log({ msg: 'peer up', peer, holdMs: session.holdMs });
    sync.start();
  }

  async #answer(session: PeerSession, m: Message): Promise<void> {
    const id = typeof m['id'] === 'string' ? m['id'].slice(0, 64) : '';
    try {
      const asked = checkForwarded(m['request']);
      const onResolve = this.onResolve;
      if (!onResolve) throw new DmscError('ERR_DMSC_NO_ROUTE', 'this gateway does not resolve for peers');
      const foreign = this.#foreign(session.peer);
      // A name of another domain's vocabulary is read in ours (the taxonomy's alignment).
      const local = foreign ? foreign.importName(asked.capability) : asked.capability;
      if (local === undefined) throw unseen(asked.capability);
      const request = local === asked.capability ? asked : { ...asked, capability: local };
      // From another domain: its tags read through our table (a tag with no mapping
      // matches nothing here), within our export policy for it.
      const answer = foreign
        ? await foreign.answerWithin(request, this.#options.self.gateway, (r, visible) => {
          const require = foreign.importRequired(r.require);
          if (!require) throw unseen(r.capability);
          return onResolve({ ...r, require }, session.peer.gateway, visible);
        })
        : await onResolve(request, session.peer.gateway);
      session.send({ type: 'SRRP_RESULT', id, answer });
    } catch (e) {
      const err = e as DmscError;
      session.send({ type: 'SRRP_RESULT', id, error: { code: typeof err.code === 'string' ? err.code : 'ERR_DMSC_INTERNAL', message: String(err.message).slice(0, 500) } });
    }
  }

  #settle(session: PeerSession, m: Message): void {
    const peer = session.peer.gateway;
    const p = typeof m['id'] === 'string' ? this.#asked.get(m['id']) : undefined;
    if (!p || p.peer !== peer) return;
    this.#asked.delete(m['id'] as string);
    clearTimeout(p.timer);
    const error = m['error'] as { code?: unknown; message?: unknown } | undefined;
    if (error) {
      const code = typeof error.code === 'string' && error.code.startsWith('ERR_DMSC_') ? error.code : 'ERR_DMSC_INTERNAL';
      return p.reject(dmscError(code, `${peer}: ${text(error.message, 500)}`) as DmscError);
    }
    const answer = m['answer'] as (ResolveAnswer & DiscoverAnswer) | undefined;
    const valid = !!answer && typeof answer === 'object' && Array.isArray(answer.path) &&
      (p.kind === 'discover'
        ? Array.isArray(answer.candidates) && answer.candidates.every((c) => typeof c === 'object' && c !== null && !Array.isArray(c))
        : typeof answer.grant === 'string' && typeof answer.target?.aic === 'string');
    if (!valid) return p.reject(new DmscError('ERR_DMSC_MALFORMED_FRAME', `${peer} sent a malformed ${p.kind} answer`));
    const foreign = this.#foreign(session.peer);
    if (foreign && p.kind === 'discover') {
      // Candidates from another domain are shown in our tags and our names.
      return p.resolve({
        ...answer!,
        candidates: answer!.candidates.map((c) => ({
          ...c, ...(typeof c['capability'] === 'string' ? { capability: foreign.importName(c['capability']) ?? c['capability'] } : {}),
          tags: foreign.importTags(Array.isArray(c['tags']) ? (c['tags'] as unknown[]).filter((t): t is string => typeof t === 'string') : []),
        })),
      });
    }
    if (foreign && typeof answer!.capability === 'string') return p.resolve({ ...answer!, capability: foreign.importName(answer!.capability) ?? answer!.capability });
    p.resolve(answer!);
  }

  /** Programs every learned name again (after the known tags changed). */
  reprogram(): void {
    for (const name of this.rib.names()) this.#program(name);
  }

  #program(name: string): void {
    const known = this.#options.knownTags?.();
    const hops: NextHop[] = this.rib.nextHops(name).map((h) => ({
      id: peerHop(h.peer),
      priority: (h.entry.ext ? FOREIGN_PRIORITY_BASE : PEER_PRIORITY_BASE) + h.entry.cost,
      tags: known ? h.entry.tags.filter((t) => known.has(t)) : [...h.entry.tags],
    }));
    // The upstream is the route of last resort: the root, after anything learned there.
    const up = this.#options.upstream;
    if (name === '/' && up && !hops.some((h) => h.id === peerHop(up))) hops.push({ id: peerHop(up), priority: UPSTREAM_PRIORITY });
    try {
      this.#directory.setLearned(name, hops);
    } catch (e) {
      this.#log({ msg: 'learned route refused by the FIB', name, error: (e as DmscError).code, reason: (e as Error).message });
    }
  }

  #log(event: Record<string, unknown>): void {
    this.#options.log?.(event);
  }
}

/** A forwarded resolution from a peer, checked field by field. */
function checkForwarded(v: unknown): ForwardedResolve {
  const r = (v ?? {}) as Record<string, unknown>;
  const bad = (what: string) => new DmscError('ERR_DMSC_MALFORMED_FRAME', `SRRP_RESOLVE: ${what}`);
  if (typeof r['capability'] !== 'string' || r['capability'].length > 1024) throw bad('capability');
  if (!Array.isArray(r['require']) || r['require'].length > 64 || !r['require'].every((t) => typeof t === 'string')) throw bad('require');
  if (r['flow'] !== undefined && (typeof r['flow'] !== 'string' || r['flow'].length > 256)) throw bad('flow');
  if (typeof r['credential'] !== 'string' || r['credential'].length > 8192) throw bad('credential');
  if (typeof r['ttl'] !== 'number' || !Number.isInteger(r['ttl']) || r['ttl'] < 0 || r['ttl'] > 64) throw bad('ttl');
  if (!Array.isArray(r['path']) || r['path'].length > 64 || !r['path'].every((g) => typeof g === 'string' && g.length <= 63)) throw bad('path');
  const budget = r['budgetMs'] ?? 2000;
  if (typeof budget !== 'number' || !Number.isInteger(budget) || budget < 0 || budget > 60_000) throw bad('budgetMs');
  const kind = r['kind'] ?? 'resolve';
  if (kind !== 'resolve' && kind !== 'discover') throw bad('kind');
  const exclude = r['exclude'];
  if (exclude !== undefined && (!Array.isArray(exclude) || exclude.length > 64 || !exclude.every((a) => typeof a === 'string' && a.length <= 200))) throw bad('exclude');
  return {
    kind, capability: r['capability'], require: r['require'] as string[], ...(r['flow'] !== undefined ? { flow: r['flow'] as string } : {}),
    ...(exclude !== undefined ? { exclude: exclude as string[] } : {}),
    credential: r['credential'], ttl: r['ttl'], path: r['path'] as string[], budgetMs: budget,
  };
}
