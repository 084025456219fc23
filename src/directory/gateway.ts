// The Agent Gateway's control logic (MACP §5.1, ARP + AAAP): registration asks the AMC,
// allocates the AIC, builds the ACS, stores it durably, then programs the fast path; it
// also keeps liveness, answers discovery and resolution, and signs session grants.
import { DmscError } from '../errors.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { TagSet } from '../fastpath/tags.js';
import type { HealthState } from '../fastpath/types.js';
import { formatAic } from '../identity/aic.js';
import { nameProblem, quoteName } from '../names.js';
import type { Amc, Denial } from '../identity/amc.js';
import type { AgentClaims } from '../identity/credentials.js';
import { signJwt } from '../identity/jwt.js';
import type { GatewayKey } from '../identity/gateway-key.js';
import { SerialAllocator } from '../identity/serials.js';
import { policyDenial, type PolicyEngine } from '../policy/policy.js';
import type { Store } from '../store/store.js';
import { acsOf, Directory, peerOf, type AgentRecord, type AttributeValue, type CapabilityOffer } from './directory.js';

export const GRANT_TYP = 'dmsc-grant+jwt';
/** Gateway hops a resolution may take. */
export const DEFAULT_TTL = 8;

/** Where a request is on its way through the mesh. */
export interface Hop {
  readonly ttl: number;
  readonly path: readonly string[];
  /** The requester's credential, passed on to the next hop. */
  readonly credential?: string;
  /** Time left for the whole request, in ms; each hop leaves some for the way back. */
  readonly budgetMs?: number;
  /** AICs the requester has already tried (a fallback asks for the next candidate). */
  readonly exclude?: readonly string[];
  /**
   * The prefixes the requester may see (another domain's, under our export policy): a
   * match outside them is answered as no match at all, before anything is forwarded.
   */
  readonly visible?: (prefix: string) => boolean;
}

/** Time a resolution may take end to end, and what each hop keeps for the way back. */
export const SRRP_BUDGET_MS = 3000;
const RETURN_MARGIN_MS = 100;

export interface DiscoverAnswer {
  readonly candidates: readonly Record<string, unknown>[];
  readonly path: readonly string[];
}

/** A resolution (or discovery) another gateway sends on (SRRP). */
export interface ForwardedResolve {
  readonly kind: 'resolve' | 'discover';
  readonly capability: string;
  readonly require: string[];
  readonly flow?: string;
  /** The requester's own credential: every hop checks it and applies its own policy. */
  readonly credential: string;
  readonly ttl: number;
  readonly path: string[];
  readonly budgetMs: number;
  /** AICs to pass over (a task's fallback). */
  readonly exclude?: string[];
}

export interface ResolveTarget {
  readonly aic: string;
  readonly endpoint: string;
  readonly gateway: string;
  /** Where the agent takes A2ASP sessions (ws://, wss:// or tcp://), when it does. */
  readonly session?: string;
}

export interface ResolveAnswer {
  readonly capability: string;
  readonly target: ResolveTarget;
  readonly path: readonly string[];
  readonly failover: boolean;
  readonly grant: string;
  readonly grantExpiresAt: number;
}

export interface RegistrationRequest {
  readonly name?: string;
  readonly endpoint: string;
  readonly session?: string;
  readonly capabilities: readonly { name: string; attributes?: Record<string, AttributeValue>; weight?: number; priority?: number }[];
}

export interface GatewayOptions {
  readonly nodeId: string;
  readonly heartbeatMs: number;
  /** Missed heartbeats before an agent is down in the fast path. */
  readonly misses: number;
  readonly grantTtlMs: number;
}

type Requester = { aic: string; provider: string; domain: string };

export class Gateway {
  readonly directory: Directory;
  readonly options: GatewayOptions;
  readonly #amc: Amc;
  readonly #store: Store;
  readonly #fib: ForwardingTable;
  readonly #policy: PolicyEngine<TagSet>;
  readonly #key: GatewayKey;
  readonly #serials: SerialAllocator;
  readonly #agents: ReturnType<Store['db']>;
  #sweep: NodeJS.Timeout | undefined;

  constructor(deps: { amc: Amc; store: Store; fib: ForwardingTable; policy: PolicyEngine<TagSet>; key: GatewayKey }, options: GatewayOptions) {
    this.#amc = deps.amc;
    this.#store = deps.store;
    this.#fib = deps.fib;
    this.#policy = deps.policy;
    this.#key = deps.key;
    this.options = options;
    this.#serials = new SerialAllocator(deps.store);
    this.#agents = deps.store.db<AgentRecord>('agents');
    this.directory = new Directory(deps.fib, (a) => this.#policy.tagsFor(a));
    // A revoked agent leaves the directory and the fast path at once.
    deps.amc.onChange(({ revoked }) => {
      for (const aic of revoked) if (this.directory.get(aic)) void this.#drop(aic).catch(() => {});
    });
  }

  /**
   * Rebuilds the directory and FIB from the store; agents stay down until they heartbeat.
   * Registrations whose AIC was revoked while the node was away are dropped.
   */
  async start(log: (event: Record<string, unknown>) => void = () => {}): Promise<void> {
    // In registration order (serials grow), which decides standby when a capability has
    // more agents than the FIB installs.
    const all = [...this.#agents.getRange()].map((e) => e.value as AgentRecord).sort((a, b) => a.serial - b.serial);
    const revoked = all.filter((r) => this.#amc.isRevoked(r.aic));
    // Capabilities stored before the name grammar grew stricter, that it now refuses, go
    // (an agent left with none goes too), rather than keep the node from starting.
    const kept: AgentRecord[] = [];
    const rewritten: AgentRecord[] = [];
    const gone: AgentRecord[] = [...revoked];
    for (const r of all) {
      if (this.#amc.isRevoked(r.aic)) continue;
      const valid = r.capabilities.filter((c) => nameProblem(c.name) === null);
      if (valid.length === r.capabilities.length) {
        kept.push(r);
        continue;
      }
      log({ msg: 'stored capabilities no longer valid names, dropped', aic: r.aic, code: 'ERR_DMSC_INVALID_NAME', names: r.capabilities.filter((c) => !valid.includes(c)).map((c) => quoteName(c.name)) });
      if (valid.length === 0) gone.push(r);
      else {
        const fixed = { ...r, capabilities: valid };
        kept.push(fixed);
        rewritten.push(fixed);
      }
    }
    if (gone.length || rewritten.length) {
      await this.#store.durable(() => {
        for (const r of gone) this.#agents.remove(r.aic);
        for (const r of rewritten) this.#agents.put(r.aic, r);
      });
    }
    this.directory.add(kept, false);
    const every = Math.max(10, Math.floor(this.options.heartbeatMs / 4));
    this.#sweep = setInterval(() => this.directory.expire(Date.now() - this.options.misses * this.options.heartbeatMs), every);
    this.#sweep.unref();
  }

  stop(): void {
    clearInterval(this.#sweep);
  }

  /** Where the gateway reports what it cannot tell a caller. */
  onLog: ((event: Record<string, unknown>) => void) | undefined;

  async register(providerKey: string, req: RegistrationRequest): Promise<{ record: AgentRecord; credential: string; expiresAt: number; denied: Denial[] }> {
    const names = req.capabilities.map((c) => c.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup !== undefined) throw new DmscError('ERR_DMSC_INVALID_BODY', `body.capabilities names ${dup} twice`);
    const auth = await this.#amc.authorize(providerKey, this.options.nodeId, names);
    const admitted = this.#policy.admit({ provider: auth.provider, domain: this.#amc.domain }, auth.granted);
    const denied = [...auth.denied, ...admitted.denied];
    if (admitted.granted.length === 0) {
      throw new DmscError('ERR_DMSC_FORBIDDEN', 'no requested capability was granted', { denied });
    }
    const granted = new Set(admitted.granted);
    const serial = await this.#serials.next();
    const aic = formatAic({ registry: this.options.nodeId, provider: auth.provider, serial });
    const { credential, expiresAt } = await this.#amc.issue(this.options.nodeId, aic, auth.provider, admitted.granted);
    const capabilities: CapabilityOffer[] = req.capabilities.filter((c) => granted.has(c.name)).map((c) => ({
      name: c.name, attributes: c.attributes ?? {}, weight: c.weight ?? 100, priority: c.priority ?? 0,
    }));
    const record: AgentRecord = {
      aic, provider: auth.provider, gateway: this.options.nodeId, domain: this.#amc.domain,
      ...(req.name !== undefined ? { name: req.name } : {}),
      endpoint: req.endpoint, ...(req.session !== undefined ? { session: req.session } : {}), capabilities, denied, registeredAt: Date.now(), credentialExpiresAt: expiresAt, serial,
    };
    // Into the FIB first: the table may refuse it (tags), and then nothing is stored. A
    // crash before the store commits loses only an unacknowledged registration.
    this.directory.add([record], true);
    try {
      await this.#store.durable(() => this.#agents.put(aic, record));
    } catch (e) {
      this.directory.remove(aic);
      throw e;
    }
    return { record, credential, expiresAt, denied };
  }

  /** Removes a registration (store, directory, FIB) and revokes its credentials. */
  async deregister(aic: string): Promise<void> {
    if (!this.directory.get(aic)) throw new DmscError('ERR_DMSC_NOT_FOUND', `no agent ${aic} here`);
    // Revoke first: if the AMC cannot be reached nothing changes and the call can be
    // retried; once revoked, the agent leaves (here and through the revocation event).
    await this.#amc.revoke(aic, 'deregistered');
    await this.#drop(aic);
  }

  heartbeat(aic: string, state: HealthState, load: number): void {
    if (!this.directory.heartbeat(aic, state, load)) throw new DmscError('ERR_DMSC_NOT_FOUND', `no agent ${aic} here`);
  }

  async renew(aic: string): Promise<{ credential: string; expiresAt: number }> {
    const r = this.directory.get(aic);
    if (!r) throw new DmscError('ERR_DMSC_NOT_FOUND', `no agent ${aic} here`);
    const issued = await this.#amc.issue(this.options.nodeId, aic, r.provider, r.capabilities.map((c) => c.name));
    // Deregistered or revoked meanwhile: do not write the record back.
    if (this.directory.get(aic) !== r) throw new DmscError('ERR_DMSC_NOT_FOUND', `no agent ${aic} here`);
    const next = { ...r, credentialExpiresAt: issued.expiresAt };
    await this.#store.durable(() => this.#agents.put(aic, next));
    this.directory.replace(next);
    return issued;
  }

  /** The ACS of a registration, with its liveness. */
  describe(aic: string): Record<string, unknown> {
    const r = this.directory.get(aic);
    if (!r) throw new DmscError('ERR_DMSC_NOT_FOUND', `no agent ${aic} here`);
    const l = this.directory.liveness(aic)!;
    return {
      aic, acs: acsOf(r, undefined), denied: r.denied, credentialExpiresAt: new Date(r.credentialExpiresAt).toISOString(),
      health: { state: l.state, load: l.load, lastHeartbeat: l.lastSeen ? new Date(l.lastSeen).toISOString() : null, missed: l.missed },
    };
  }

  /** Candidates for `capability` the requester may see, longest prefix first. */
  /**
   * Candidates for `capability` the requester may see, longest prefix first. With none
   * here, the request follows the fast path's peer next hop, as resolution does, and the
   * answer is that gateway's candidates.
   */
  async discover(requester: Requester, capability: string, require: readonly string[], hop: Hop = { ttl: DEFAULT_TTL, path: [] }): Promise<DiscoverAnswer> {
    const self = this.options.nodeId;
    if (hop.path.includes(self)) throw new DmscError('ERR_DMSC_LOOP', `discovery of ${capability} came back to ${self}`);
    const decision = this.#policy.decide(requester, capability);
    if (decision.effect === 'deny') throw policyDenial(capability, decision.rule);
    const need = [...new Set([...decision.require, ...require])];
    const candidates = this.directory.candidates(capability)
      .filter((c) => need.every((t) => c.tags.includes(t)) && (!hop.visible || hop.visible(c.prefix)))
      .map((c) => ({
        aic: c.record.aic, capability: c.prefix, endpoint: c.record.endpoint, gateway: c.record.gateway,
        state: c.liveness.state, load: c.liveness.load, weight: c.offer.weight, priority: c.offer.priority, tags: c.tags,
      }));
    if (candidates.length) return { candidates, path: [...hop.path, self] };
    const hit = this.#fib.lookup(capability, { require: require.length === 0 ? decision.mask : need });
    const peer = hit && peerOf(hit.nextHop);
    if (!hit || !peer || !this.forward || hop.credential === undefined || (hop.visible && !hop.visible(hit.prefix))) return { candidates: [], path: [...hop.path, self] };
    if (hop.ttl <= 1) throw new DmscError('ERR_DMSC_TTL_EXPIRED', `discovery of ${capability} ran out of hops at ${self}`);
    // What our policy requires goes along: the next hop answers under it too.
    return this.#viaPeers(hit.prefix, peer, 'discover', capability, need, undefined, hop) as Promise<DiscoverAnswer>;
  }

  /** Resolves through the fast path and signs a session grant for the chosen target. */
  /**
   * Sends a resolution on to a peer gateway (SRRP); set by the mesh. `tried` lists the
   * peers already asked for this request.
   */
  forward: ((peer: string, request: ForwardedResolve, timeoutMs: number) => Promise<ResolveAnswer | DiscoverAnswer>) | undefined;
  /** Peer gateways with a route for a FIB prefix, best first (from the mesh). */
  peersFor: ((prefix: string) => string[]) | undefined;

  /**
   * Resolves through the fast path. A local agent is answered here with a grant this
   * gateway signs; a route toward a peer gateway is followed hop by hop (SRRP) with the
   * TTL and the path so far, trying the next-best peer if one fails or times out.
   */
  async resolve(requester: Requester, capability: string, require: readonly string[], flow: string | undefined, hop: Hop = { ttl: DEFAULT_TTL, path: [] }): Promise<ResolveAnswer> {
    const self = this.options.nodeId;
    if (hop.path.includes(self)) throw new DmscError('ERR_DMSC_LOOP', `resolution of ${capability} came back to ${self} (path ${[...hop.path, self].join(' > ')})`);
    const decision = this.#policy.decide(requester, capability);
    if (decision.effect === 'deny') throw policyDenial(capability, decision.rule);
    // The policy's requirement is compiled to a TagSet once per decision; a request's own
    // extra tags are merged per call.
    const mask = require.length === 0 ? decision.mask : [...new Set([...decision.require, ...require])];
    const found = this.#fib.lookup(capability, flow === undefined ? { require: mask } : { require: mask, flow });
    const hit = found && (!hop.visible || hop.visible(found.prefix)) ? found : undefined;
    const need = decision.require.length === 0 ? require : [...new Set([...decision.require, ...require])];
    const excluded = hop.exclude?.length ? new Set(hop.exclude) : undefined;
    // The fast path's choice was tried already: the next local candidate, or the peers.
    if (hit && excluded?.has(hit.nextHop)) {
      const next = this.#nextCandidate(capability, need, excluded, hop.visible);
      if (next) return this.#grant(requester, next.record, next.prefix, capability, hop, false);
      const peers = this.peersFor?.(hit.prefix) ?? [];
      if (peers.length === 0) throw new DmscError('ERR_DMSC_NO_ROUTE', `no untried agent offers ${capability}`);
      if (hop.ttl <= 1) throw new DmscError('ERR_DMSC_TTL_EXPIRED', `resolution of ${capability} ran out of hops at ${self}`);
      return this.#viaPeers(hit.prefix, peers[0]!, 'resolve', capability, need, flow, hop) as Promise<ResolveAnswer>;
    }
    const peer = hit && peerOf(hit.nextHop);
    if (hit && peer) {
      if (hop.ttl <= 1) throw new DmscError('ERR_DMSC_TTL_EXPIRED', `resolution of ${capability} ran out of hops at ${self}`);
      // What our policy requires goes along: the next hop answers under it too.
      return this.#viaPeers(hit.prefix, peer, 'resolve', capability, need, flow, hop) as Promise<ResolveAnswer>;
    }
    const target = hit ? this.directory.get(hit.nextHop) : undefined;
    if (!hit || !target) throw new DmscError('ERR_DMSC_NO_ROUTE', `no reachable agent offers ${capability}${decision.require.length || require.length ? ' with the required tags' : ''}`);
    return this.#grant(requester, target, hit.prefix, capability, hop, hit.failover);
  }

  /**
   * The best local agent for `capability` not in `excluded`, by the fast path's order:
   * longest prefix, then priority, then up before degraded, then effective weight.
   */
  #nextCandidate(capability: string, need: readonly string[], excluded: ReadonlySet<string>, visible: Hop['visible']): { record: AgentRecord; prefix: string } | undefined {
    const rank = (c: ReturnType<Directory['candidates']>[number]) => [c.offer.priority, c.liveness.state === 'up' ? 0 : 1, -c.offer.weight * (1 - c.liveness.load)];
    const usable = this.directory.candidates(capability).filter((c) =>
      !excluded.has(c.record.aic) && c.liveness.state !== 'down' && c.offer.weight > 0 && need.every((t) => c.tags.includes(t)) && (!visible || visible(c.prefix)));
    if (usable.length === 0) return undefined;
    const longest = usable.filter((c) => c.prefix.length === usable[0]!.prefix.length);
    longest.sort((a, b) => {
      const [x, y] = [rank(a), rank(b)];
      return x[0]! - y[0]! || x[1]! - y[1]! || x[2]! - y[2]!;
    });
    return { record: longest[0]!.record, prefix: longest[0]!.prefix };
  }

  /** Signs a session grant for `target`, with the AMC's certificate of the signing key. */
  async #grant(requester: Requester, target: AgentRecord, prefix: string, capability: string, hop: Hop, failover: boolean): Promise<ResolveAnswer> {
    const { key, certificate } = this.#key.current();
    const exp = Math.ceil((Date.now() + this.options.grantTtlMs) / 1000);
    const grant = await signJwt(key, GRANT_TYP, {
      iss: `dmsc-gw:${this.options.nodeId}`, sub: requester.aic, aud: target.aic, cap: prefix, req: capability, exp, gwc: certificate,
    });
    return {
      capability: prefix,
      target: { aic: target.aic, endpoint: target.endpoint, gateway: target.gateway, ...(target.session !== undefined ? { session: target.session } : {}) },
      path: [...hop.path, this.options.nodeId],
      failover,
      grant,
      grantExpiresAt: exp * 1000,
    };
  }

  // Out of the directory (and FIB) first, so a renewal racing this cannot write the
  // record back; then out of the store.
  async #viaPeers(prefix: string, first: string, kind: 'resolve' | 'discover', capability: string, require: readonly string[], flow: string | undefined, hop: Hop): Promise<ResolveAnswer | DiscoverAnswer> {
    if (!this.forward || hop.credential === undefined) throw new DmscError('ERR_DMSC_NO_ROUTE', `${capability} is reachable only through peer gateways, and this request cannot be forwarded`);
    // Never back along the path, the fast path's choice included.
    const peers = [first, ...(this.peersFor?.(prefix) ?? [])].filter((p, i, all) => all.indexOf(p) === i && !hop.path.includes(p));
    let last: unknown;
    // One deadline for the whole request: a hop further on gets less time than this one
    // waits, so its own failover can still answer in time.
    const deadline = Date.now() + Math.min(hop.budgetMs ?? SRRP_BUDGET_MS, SRRP_BUDGET_MS);
    for (const [i, peer] of peers.entries()) {
      const left = deadline - Date.now();
      if (left <= RETURN_MARGIN_MS) break;
      // The time left is shared among the peers still to try, so a silent one cannot use
      // it all; the peer passes on a little less, to answer in time.
      const slot = Math.floor(left / (peers.length - i));
      try {
        return await this.forward(peer, {
          kind, capability, require: [...require], ...(flow !== undefined ? { flow } : {}), credential: hop.credential,
          ...(hop.exclude?.length ? { exclude: [...hop.exclude] } : {}),
          ttl: hop.ttl - 1, path: [...hop.path, this.options.nodeId], budgetMs: Math.max(0, slot - RETURN_MARGIN_MS),
        }, slot);
      } catch (e) {
        last = e;
        // A peer that is slow, gone, or has lost its route since it advertised it (or, at
        // a domain boundary, cannot carry a required tag): try the next best. A definite
        // answer (denied, unauthorized, TTL) is the answer.
        const code = (e as DmscError).code;
        if (code !== 'ERR_DMSC_PEER_TIMEOUT' && code !== 'ERR_DMSC_PEER_CLOSED' && code !== 'ERR_DMSC_LOOP' && code !== 'ERR_DMSC_NO_ROUTE') throw e;
      }
    }
    if (last instanceof DmscError) throw last;
    throw peers.length
      ? new DmscError('ERR_DMSC_PEER_TIMEOUT', `no peer gateway answered for ${capability} in time`)
      : new DmscError('ERR_DMSC_NO_ROUTE', `no peer gateway to ask for ${capability}`);
  }

  async #drop(aic: string): Promise<void> {
    this.directory.remove(aic);
    await this.#store.durable(() => this.#agents.remove(aic));
  }
}

export type { AgentClaims };
