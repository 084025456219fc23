// One dmsc node: Agent Gateway and forwarding plane in one process, with the AMC embedded
// unless `--amc URL` names a standalone one. Start order: data directory and admin
// token, store, AMC, policy, directory rebuilt from the store into the FIB, then the API.
import type { FastifyInstance } from 'fastify';
import { DmscError, DmscTypeError } from '../errors.js';
import { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { TagSet } from '../fastpath/tags.js';
import { Gateway, type ForwardedResolve } from '../directory/gateway.js';
import { agentRoutes } from '../directory/routes.js';
import { AuthThrottle } from '../http/auth-throttle.js';
import { adminOnly, bearer, boundAddress, createServer } from '../http/server.js';
import { LocalAmc, type Amc } from '../identity/amc.js';
import { CredentialGuard } from '../identity/credentials.js';
import { GatewayKey } from '../identity/gateway-key.js';
import { KeyRing } from '../identity/key-ring.js';
import { RemoteAmc } from '../identity/remote-amc.js';
import { amcAdminRoutes, jwksRoute, revocationRoute } from '../identity/routes.js';
import { PolicyEngine } from '../policy/policy.js';
import { loadPolicy, policyRoutes } from '../policy/routes.js';
import { Domains } from '../mesh/domains.js';
import { Mesh } from '../mesh/mesh.js';
import { DataPlane } from '../dataplane/dataplane.js';
import { FibServer } from '../programming/grpc.js';
import { Programming } from '../programming/programming.js';
import { programmingRoutes } from '../programming/routes.js';
import { Store } from '../store/store.js';
import { DEFAULT_TTL } from '../directory/gateway.js';
import { RuleBook } from '../task/decompose.js';
import { DEFAULT_RULES } from '../task/default-rules.js';
import { TaskEngine } from '../task/engine.js';
import { SemanticLayer } from '../semantic/semantic.js';
import { taskInvoker, taskRoutes } from '../task/routes.js';
import { EventAccess } from '../telemetry/access.js';
import { consoleRoutes } from '../telemetry/console.js';
import { EventLog } from '../telemetry/events.js';
import { createLogger, logSink, type LogSink } from '../telemetry/log.js';
import { NodeMetrics } from '../telemetry/metrics.js';
import { telemetryRoutes } from '../telemetry/routes.js';
import { bearerMatches, loadAdminToken } from './admin-token.js';
import { listenError } from '../net/listen.js';
import { formatListen, readFibFile, type Listen, type NodeConfig } from './config.js';

export class DmscNode {
  readonly config: NodeConfig;
  readonly fib: ForwardingTable;
  readonly #http: FastifyInstance;
  readonly #store: Store;
  readonly #amc: Amc;
  /** This gateway's key as the AMC certified it: signs grants, proves it to peers. */
  readonly key: GatewayKey;
  readonly gateway: Gateway;
  readonly mesh: Mesh;
  readonly dataPlane: DataPlane;
  readonly tasks: TaskEngine;
  readonly semantic: SemanticLayer;
  readonly #invoker: ReturnType<typeof taskInvoker>;
  #ready = false;
  #address: Listen | undefined;

  readonly #domains: Domains;
  readonly events: EventLog;
  readonly metrics: NodeMetrics;
  readonly #log: LogSink;
  #endStreams: () => void = () => {};
  #endFibStreams: () => void = () => {};
  /** FIB programming by external controllers (gRPC on --fib-api, and HTTP). */
  readonly programming: Programming;
  readonly #fibServer: FibServer | undefined;

  private constructor(config: NodeConfig, parts: { fib: ForwardingTable; store: Store; amc: Amc; grants: KeyRing; key: GatewayKey; token: string; domains: Domains; log: LogSink }) {
    this.config = config;
    const log = parts.log;
    this.#log = log;
    this.events = new EventLog(parts.store, config.id, config.audit);
    this.fib = parts.fib;
    this.#store = parts.store;
    this.#amc = parts.amc;
    this.#domains = parts.domains;
    const policy = new PolicyEngine<TagSet>({ compileTags: (tags) => parts.fib.tagSet(tags) });
    loadPolicy(parts.store, policy, log);
    this.key = parts.key;
    this.gateway = new Gateway({ amc: parts.amc, store: parts.store, fib: parts.fib, policy, key: parts.key }, {
      nodeId: config.id, heartbeatMs: config.heartbeatMs, misses: 3, grantTtlMs: config.grantTtlMs,
    });
    this.mesh = new Mesh({
      self: { gateway: config.id, domain: parts.amc.domain }, listen: config.peering, peers: config.peers,
      ...(config.upstream ? { upstream: config.upstream } : {}),
      domains: parts.domains,
      ...(config.maxRoutes !== undefined ? { maxRoutes: config.maxRoutes } : {}),
      ...(config.holdMs !== undefined ? { holdMs: config.holdMs } : {}),
      ...(config.tls ? { tls: config.tls } : {}),
      ...(config.maxPendingHandshakes !== undefined ? { maxPending: config.maxPendingHandshakes } : {}),
      ...(config.maxPendingPerAddress !== undefined ? { maxPendingPerAddress: config.maxPendingPerAddress } : {}),
      // Peers are told the TLS listener when there is one.
      dataplane: () => {
        const secure = this.dataPlane.peerAddress;
        const plain = this.dataPlane.address;
        return secure ? { address: formatListen(secure), tls: true } : plain ? { address: formatListen(plain), tls: false } : undefined;
      },
      knownTags: () => new Set((policy.document.tags ?? []).map((t) => t.tag)),
      log: (e) => {
        log(e);
        this.#peerEvent(e);
      },
    }, parts.amc, parts.key, this.gateway.directory);
    // One guard for the API and the data plane: a credential verified by either is in
    // the cache of both.
    const guard = new CredentialGuard(parts.amc);
    // One count of failed authentications per source, for the API and the data plane.
    const throttle = new AuthThrottle(config.authFailures);
    this.dataPlane = new DataPlane({
      throttle,
      self: config.id, fib: parts.fib, directory: this.gateway.directory, policy, guard,
      peerDataPlane: (peer) => this.mesh.dataPlaneOf(peer),
      peerFailed: (peer) => this.mesh.holdOff(peer),
      onCredentialChange: (listener) => parts.amc.onChange(listener),
      outcome: (o) => {
        const outcome = o.status !== undefined ? (o.status < 500 ? 'ok' : 'error') : 'failed';
        this.metrics.forwarding(outcome, o.ms);
        const target = o.tried.at(-1);
        this.events.emit({
          kind: 'invocation', capability: o.capability, aics: [o.requester.aic, ...o.tried.filter((t) => !t.startsWith('peer:'))],
          providers: [o.requester.provider, ...o.tried.map((t) => this.gateway.directory.get(t)?.provider).filter((p): p is string => p !== undefined)],
          decision: outcome, ...(o.error ? { reason: o.error } : {}),
          detail: { tried: o.tried, ...(target ? { target } : {}), failover: o.tried.length > 1, ...(o.status !== undefined ? { status: o.status } : {}), ms: Math.round(o.ms * 1000) / 1000 },
        });
      },
    }, {
      listen: config.dataplane, headersTimeoutMs: config.upstreamTimeoutMs,
      ...(config.peerDataplane ? { peerListen: config.peerDataplane } : {}),
      ...(config.tls ? { tls: config.tls } : {}),
    });
    // Tasks (TIP): each sub-task is resolved for the requester as its own resolution
    // would be, then its chosen agent is called.
    const rules = new RuleBook(config.taskRules, DEFAULT_RULES, log);
    this.semantic = new SemanticLayer(config.taxonomy, log);
    // Another domain's capability names, read in ours where the taxonomy aligns them.
    parts.domains.setAligner((domain, name) => this.semantic.align(domain, name));
    this.#invoker = taskInvoker({ self: config.id });
    this.tasks = new TaskEngine({
      store: parts.store, verify: (credential) => guard.verify(credential), invoke: this.#invoker.invoke, rules: () => rules.rules, log,
      resolve: (requester, credential, capability, require, exclude) => this.gateway.resolve(requester, capability, require, undefined, {
        ttl: DEFAULT_TTL, path: [], credential, ...(exclude.length ? { exclude } : {}),
      }),
    });
    this.metrics = new NodeMetrics(config.id, {
      fib: () => {
        // The counters only: no list of the most-hit prefixes.
        const st = this.fib.stats({ top: 0 });
        return { size: st.size, generation: st.generation, lookups: st.lookups, misses: st.misses, failovers: st.failovers };
      },
      agents: () => [...this.gateway.directory.agents()].map((r) => ({ state: this.gateway.directory.liveness(r.aic)?.state ?? 'down' })),
      peers: () => this.mesh.peers().map((p) => ({ gateway: p.gateway, routes: p.routes, csp: { ours: p.csp.ours, theirs: p.csp.theirs } })),
      dataPlane: () => this.dataPlane.stats,
      events: this.events,
    });
    this.gateway.directory.onHealthChange(({ aic, from, to, why }) => {
      const r = this.gateway.directory.get(aic);
      this.events.emit({ kind: 'health', aics: [aic], providers: r ? [r.provider] : [], decision: to, reason: why, detail: { from } });
    });
    this.#http = createServer({
      log, throttle,
      // A throttled source still gets through with the admin token or a credential already verified.
      trusted: (req) => {
        if (bearerMatches(req.headers.authorization, parts.token)) return true;
        try {
          return guard.verified(bearer(req)) !== undefined;
        } catch {
          return false;
        }
      },
    });
    this.#routes(parts.token, policy, parts.grants, guard);
    this.programming = new Programming({ directory: this.gateway.directory, fib: parts.fib, store: parts.store, adminToken: parts.token, log });
    this.#endFibStreams = programmingRoutes(this.#http, this.programming, parts.token);
    this.#fibServer = config.fibApi ? new FibServer(this.programming) : undefined;
    const access = new EventAccess(config.id, parts.token, parts.amc, guard);
    this.#endStreams = telemetryRoutes(this.#http, this.events, access);
    consoleRoutes(this.#http, access, this.metrics, () => this.overview());
    taskRoutes(this.#http, this.tasks, guard, parts.token);
  }

  /** Starts a node; on any failure what was opened is closed again. */
  static async start(config: NodeConfig): Promise<DmscNode> {
    const token = await loadAdminToken(config.dataDir);
    const fib = new ForwardingTable();
    let store: Store | undefined;
    let amc: Amc | undefined;
    let node: DmscNode | undefined;
    try {
      store = Store.open(config.dataDir);
      amc = config.amc
        ? await RemoteAmc.connect({ url: config.amc.url, gatewayKey: config.amc.gatewayKey, gatewayId: config.id, pollMs: config.amc.pollMs })
        : await LocalAmc.open(store, { domain: config.domain, credentialTtlMs: config.credentialTtlMs });
      // Retired grant keys verify until the last grant they signed has expired.
      const grants = await KeyRing.open(store, 'grant-keys', `gw-${config.id}`, config.grantTtlMs + 60_000);
      const log = logSink(createLogger(config.id));
      const key = new GatewayKey(amc, grants, config.id, log);
      node = new DmscNode(config, { fib, store, amc, grants, key, token, domains: trustedDomains(config, amc.domain), log });
      await node.events.start();
      await node.#domains.load(node.#log);
      if (config.fibFile) node.gateway.directory.setStatic(await readFibFile(config.fibFile));
      node.programming.rib.load();
      await node.key.start();
      await node.gateway.start(node.#log);
      await node.dataPlane.start();
      await node.mesh.start();
      await node.tasks.start();
      if (config.fibApi) {
        await node.#fibServer?.start(config.fibApi, config.fibApiTls ? config.tls : undefined);
      }
      await node.#http.listen({ host: config.api.host, port: config.api.port }).catch((e: unknown) => {
        throw listenError({ name: 'API', flag: '--api' }, config.api, e);
      });
    } catch (e) {
      if (node) await node.stop();
      else {
        await amc?.close();
        await store?.close();
        fib.close();
      }
      throw e;
    }
    node.#address = boundAddress(node.#http, config.api);
    node.#ready = true;
    return node;
  }

  /** Where the FIB programming (gRPC) listener listens; undefined when it is off. */
  get fibApiAddress(): Listen | undefined {
    return this.#fibServer?.address;
  }

  /** Where the API listens (the real port when 0 was asked for). */
  get apiAddress(): Listen {
    return this.#address ?? this.config.api;
  }

  async stop(): Promise<void> {
    this.#ready = false;
    await this.tasks.stop();
    await this.#invoker.close();
    this.gateway.stop();
    this.key.stop();
    this.programming.stop();
    await this.#fibServer?.stop();
    this.#endFibStreams();
    await this.dataPlane.stop();
    await this.mesh.stop();
    // Event streams never end by themselves: the listener would wait for them.
    this.#endStreams();
    await this.#http.close();
    this.events.close();
    await this.#amc.close();
    await this.#store.close();
    this.fib.close();
  }

  /** What the console shows: the node, its peers, the FIB with next hops and health, latencies. */
  async overview(): Promise<Record<string, unknown>> {
    const directory = this.gateway.directory;
    return {
      node: this.config.id, domain: this.#amc.domain, time: new Date().toISOString(),
      peers: {
        up: this.mesh.peers().map((p) => ({ gateway: p.gateway, domain: p.domain, routes: p.routes, digest: { ours: p.csp.ours, theirs: p.csp.theirs } })),
        configured: this.config.peers.map((p) => ({ id: p.id, address: `${p.host}:${p.port}` })),
      },
      agents: [...directory.agents()].map((r) => ({ aic: r.aic, provider: r.provider, name: r.name ?? null, state: directory.liveness(r.aic)?.state ?? 'down', capabilities: r.capabilities.map((c) => c.name) })),
      fib: {
        size: this.fib.size, generation: this.fib.generation,
        // Listing (and sorting) a large table on every poll would hold the node up.
        truncated: this.fib.size > OVERVIEW_FIB,
        entries: (this.fib.size > OVERVIEW_FIB ? [] : this.fib.entries()).map((e) => ({ prefix: e.prefix, nextHops: e.nextHops.map((h) => ({ id: h.id, weight: h.weight, priority: h.priority, state: h.state, load: h.load, tags: h.tags })) })),
      },
      latency: await this.metrics.latencies(),
      events: { next: this.events.nextId, stored: this.events.stored },
    };
  }

  // The mesh's reports of sessions coming and going, as peer events.
  #peerEvent(e: Record<string, unknown>): void {
    const decision = PEER_EVENTS[String(e['msg'])];
    if (!decision) return;
    const { msg: _msg, error, reason, ...detail } = e;
    this.events.emit({ kind: 'peer', decision, ...(typeof error === 'string' ? { reason: error } : typeof reason === 'string' ? { reason } : {}), detail });
  }

  #routes(token: string, policy: PolicyEngine<TagSet>, grants: KeyRing, guard: CredentialGuard): void {
    const http = this.#http;
    const amc = this.#amc;
    http.get('/healthz', async () => ({ status: 'ok', node: this.config.id }));
    http.get('/readyz', async (_req, reply) => {
      if (!this.#ready) return reply.status(503).send({ error: { code: 'ERR_DMSC_NOT_READY', message: 'starting' } });
      return { status: 'ready', node: this.config.id, agents: this.gateway.directory.size, generation: this.fib.generation, size: this.fib.size };
    });
    jwksRoute(http, () => ({ keys: [...amc.jwks().keys, ...grants.jwks().keys] }), () => amc.jwks());
    revocationRoute(http, amc, token);
    if (amc instanceof LocalAmc) amcAdminRoutes(http, amc, token);
    else {
      for (const path of ['/v1/providers', '/v1/amc/rotate-key', '/v1/observers']) {
        http.all(path, async () => {
          throw new DmscError('ERR_DMSC_NOT_FOUND', `this node uses the AMC at ${this.config.amc!.url}; manage providers, gateways and keys there`);
        });
      }
    }
    agentRoutes(http, this.gateway, guard, token, this.semantic, {
      event: (e) => this.events.emit(e),
      resolution: (kind, outcome, ms) => this.metrics.resolution(kind, outcome, ms),
    });
    // Requests peers pass on may come from agents of the other domains this node trusts.
    const peerGuard = this.#domains.size ? new CredentialGuard(amc, (d) => this.#domains.get(d)) : guard;
    // Resolution across gateways (SRRP): every hop checks the requester's credential and
    // applies its own policy before answering or passing the request on.
    this.gateway.forward = (peer, request, timeoutMs) => this.mesh.forward(peer, request, timeoutMs);
    this.gateway.peersFor = (prefix) => this.mesh.peersFor(prefix);
    this.mesh.onResolve = async (request, _from, peerVisible) => {
      const claims = await peerGuard.verify(request.credential);
      const answer = (r: ForwardedResolve, requester: { aic: string; provider: string; domain: string }, visible = peerVisible) => {
        const hop = { ttl: r.ttl, path: r.path, credential: r.credential, budgetMs: r.budgetMs, ...(r.exclude ? { exclude: r.exclude } : {}), ...(visible ? { visible } : {}) };
        return r.kind === 'discover'
          ? this.gateway.discover(requester, r.capability, r.require, hop)
          : this.gateway.resolve(requester, r.capability, r.require, r.flow, hop);
      };
      const foreign = claims.domain === amc.domain ? undefined : this.#domains.get(claims.domain);
      if (!foreign) return answer(request, claims);
      // An agent of another domain: policy sees its provider and AIC under its domain's
      // name, so it never matches rules about ours, and it sees only what we export to
      // its domain, whichever peer passed the request on.
      const requester = { aic: `${claims.domain}/${claims.aic}`, provider: `${claims.domain}/${claims.provider}`, domain: claims.domain };
      return foreign.answerWithin(request, this.config.id, (r, visible) => answer(r, requester, (p) => visible(p) && (!peerVisible || peerVisible(p))));
    };
    policyRoutes(http, this.#store, policy, token, (next) => {
      if (JSON.stringify(next.tags ?? []) === JSON.stringify(policy.document.tags ?? [])) return undefined;
      // Re-tag the FIB with the new mapping first: one all-or-nothing batch, so a mapping
      // the table cannot hold (over 64 tags) refuses the document before it is stored.
      const mapping = new PolicyEngine<TagSet>();
      mapping.load(next);
      const current = policy.document;
      this.gateway.directory.retag((a) => mapping.tagsFor(a));
      return () => {
        const back = new PolicyEngine<TagSet>();
        if (current.version > 0) back.load(current);
        this.gateway.directory.retag((a) => back.tagsFor(a));
      };
    }, () => {
      // Decisions the relay holds were made under the policy just replaced.
      this.dataPlane.policyChanged();
      this.mesh.reprogram();
      const doc = policy.document;
      this.events.emit({ kind: 'policy', decision: 'applied', detail: { version: doc.version, rules: doc.rules?.length ?? 0, tags: doc.tags?.length ?? 0 } });
    });
    http.get('/v1/dataplane', { onRequest: adminOnly(token) }, async () => ({
      node: this.config.id,
      listener: this.dataPlane.relayCounters ? 'native' : 'node',
      stats: this.dataPlane.stats,
      ...(this.dataPlane.relayCounters ? { relay: this.dataPlane.relayCounters } : {}),
    }));
    http.get('/v1/peers', { onRequest: adminOnly(token) }, async () => ({
      node: this.config.id, domain: amc.domain, peers: this.mesh.peers(), handshakes: this.mesh.handshakes,
      configured: this.config.peers.map((p) => ({ id: p.id, address: `${p.host}:${p.port}`, ...(p.domain ? { domain: p.domain } : {}) })),
      ...(this.config.upstream ? { upstream: this.config.upstream } : {}),
    }));
    http.get<{ Querystring: { prefix?: string; limit?: number } }>('/v1/fib', {
      onRequest: adminOnly(token),
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            prefix: { type: 'string', minLength: 1, maxLength: 1024 },
            limit: { type: 'integer', minimum: 1, maximum: 100000, default: 1000 },
          },
        },
      },
    }, async (req) => {
      const { prefix, limit = 1000 } = req.query;
      // One more than asked says whether the list was cut, without listing the rest.
      const listed = this.fib.entries({ ...(prefix !== undefined ? { under: prefix } : {}), limit: limit + 1 });
      return { node: this.config.id, generation: this.fib.generation, size: this.fib.size, truncated: listed.length > limit, entries: listed.slice(0, limit) };
    });
  }
}

// Sessions of configured peers; a stranger's refused connection is logged, not an event
// (anyone could fill the audit log with them).
const PEER_EVENTS: Record<string, string> = { 'peer up': 'up', 'peer down': 'down', 'peering failed': 'failed' };
/** FIB entries the console's overview lists, at most. */
const OVERVIEW_FIB = 2000;

/** The other domains of the config, checked against ours (known once the AMC is). */
function trustedDomains(config: NodeConfig, own: string): Domains {
  const invalid = (m: string) => new DmscTypeError('ERR_DMSC_INVALID_CONFIG', m);
  if (config.domains.some((d) => d.domain === own)) throw invalid(`the mesh config lists ${own}, this node's own domain, as another domain`);
  for (const p of config.peers) {
    if (p.domain !== undefined && p.domain !== own && !config.domains.some((d) => d.domain === p.domain)) {
      throw invalid(`peer ${p.id} is of domain ${p.domain}, which the mesh config does not list under domains`);
    }
  }
  return new Domains(config.domains);
}
