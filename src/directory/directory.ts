// The capability directory of one gateway: the registered agents (their ACS), an index
// from capability name to the agents offering it, and their liveness. It is the one
// writer of the forwarding table's agent routes: each capability name is a FIB prefix
// whose next hops are the AICs offering it, with the tags the policy maps their
// attributes to. Liveness goes to the table as `setHealth`, which is O(1).
import { DmscTypeError } from '../errors.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { FibOp, HealthState, NextHop } from '../fastpath/types.js';
import { prefixesOf } from '../fastpath/validate.js';
import type { Denial } from '../identity/amc.js';
import { notifyAll } from '../listeners.js';

/** Attribute values an agent may declare for a capability. */
export type AttributeValue = string | number | boolean | string[];

export interface CapabilityOffer {
  readonly name: string;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  readonly weight: number;
  readonly priority: number;
}

/** What the store keeps of a registration. */
export interface AgentRecord {
  readonly aic: string;
  readonly provider: string;
  readonly gateway: string;
  readonly domain: string;
  readonly name?: string;
  readonly endpoint: string;
  /** Where the agent takes A2ASP sessions (ws://, wss:// or tcp://). */
  readonly session?: string;
  /** Granted capabilities only. */
  readonly capabilities: readonly CapabilityOffer[];
  readonly denied: readonly Denial[];
  readonly registeredAt: number;
  readonly credentialExpiresAt: number;
  readonly serial: number;
}

export interface Liveness {
  state: HealthState;
  load: number;
  /** Epoch ms of the last heartbeat (or registration); 0 after a restart. */
  lastSeen: number;
  /** True once the agent missed its heartbeats; cleared by the next one. */
  missed: boolean;
}

/** The Agent Capability Specification the gateway publishes for a registration. */
export function acsOf(r: AgentRecord, kid: string | undefined): Record<string, unknown> {
  return {
    aic: r.aic,
    provider: r.provider,
    ...(r.name !== undefined ? { name: r.name } : {}),
    gateway: r.gateway,
    domain: r.domain,
    capabilities: r.capabilities.map((c) => ({ name: c.name, attributes: c.attributes, weight: c.weight, priority: c.priority })),
    endpoints: [{ url: r.endpoint }, ...(r.session !== undefined ? [{ url: r.session, protocol: 'a2asp' }] : [])],
    security: { credential: 'jwt', alg: 'EdDSA', ...(kid ? { kid } : {}), issuer: `dmsc-amc:${r.domain}` },
    createdAt: new Date(r.registeredAt).toISOString(),
  };
}

/** How the policy turns an offer's attributes into fast-path tags. */
export type TagMapper = (attributes: Readonly<Record<string, AttributeValue>>) => string[];

/** The FIB next-hop id of a peer gateway. */
export const peerHop = (gateway: string) => `peer:${gateway}`;

/** The peer gateway a FIB next-hop id leads to, or undefined for an agent. */
export const peerOf = (nextHop: string): string | undefined => (nextHop.startsWith('peer:') ? nextHop.slice(5) : undefined);

/** The fast path holds at most this many next hops per entry; more agents wait as standby. */
export const MAX_INSTALLED = 64;

/** How long passive health keeps a controller's endpoint next hop down before it is tried again. */
export const ENDPOINT_RETRY_MS = 5_000;

export class Directory {
  readonly #fib: ForwardingTable;
  #tagsFor: TagMapper;
  #static = new Map<string, readonly NextHop[]>();
  /**
   * Next hops external controllers program, every controller's together, by prefix: read
   * from the controllers' own tables (`readControlledFrom`), so that a million routes are
   * not kept twice. None until then.
   */
  #controlled: ControlledRoutes = new Map<string, readonly NextHop[]>();
  /** Where controller next hops that are plain services are: id to endpoint URL. */
  readonly #endpointHops = new Map<string, string>();
  /** Controller-stated health of those next hops, which passive health returns to. */
  readonly #endpointHealth = new Map<string, { state: HealthState; load: number }>();
  readonly #fibListeners: ((ops: readonly FibOp[], generation: number) => void)[] = [];
  /** Endpoint next hops passive health took down, until they are tried again. */
  readonly #endpointsDown = new Map<string, NodeJS.Timeout>();
  readonly #hopListeners: ((id: string, state: HealthState, load: number) => void)[] = [];
  /** Next hops toward peer gateways, from the mesh. */
  #learned = new Map<string, readonly NextHop[]>();
  /** Health of next hops that are not agents (peer gateways). */
  readonly #external = new Map<string, HealthState>();
  readonly #localListeners: ((prefixes: ReadonlySet<string>) => void)[] = [];
  readonly #agentListeners: ((aic: string) => void)[] = [];
  readonly #healthListeners: ((change: { aic: string; from: HealthState; to: HealthState; why: string }) => void)[] = [];
  readonly #agents = new Map<string, AgentRecord>();
  readonly #offers = new Map<string, Map<string, CapabilityOffer>>();
  /** The most next hops a static route holds, and the most agents ever on one prefix. */
  #mostStatic = 0;
  #mostOffers = 0;
  readonly #liveness = new Map<string, Liveness>();

  constructor(fib: ForwardingTable, tagsFor: TagMapper) {
    this.#fib = fib;
    this.#tagsFor = tagsFor;
  }

  get size(): number {
    return this.#agents.size;
  }

  get(aic: string): AgentRecord | undefined {
    return this.#agents.get(aic);
  }

  liveness(aic: string): Readonly<Liveness> | undefined {
    return this.#liveness.get(aic);
  }

  agents(): IterableIterator<AgentRecord> {
    return this.#agents.values();
  }

  /**
   * Adds records (new registrations, or all of them after a restart) and programs their
   * prefixes in one FIB batch; if the table refuses the batch (too many distinct tags),
   * nothing is added. `alive` is false when loading from the store: those agents stay
   * down until they heartbeat.
   */
  add(records: readonly AgentRecord[], alive: boolean): void {
    const touched = new Set<string>();
    const now = Date.now();
    for (const r of records) {
      this.#agents.set(r.aic, r);
      this.#agentChanged(r.aic);
      this.#liveness.set(r.aic, { state: alive ? 'up' : 'down', load: 0, lastSeen: alive ? now : 0, missed: !alive });
      for (const c of r.capabilities) {
        let m = this.#offers.get(c.name);
        if (!m) this.#offers.set(c.name, (m = new Map()));
        m.set(r.aic, c);
        if (m.size > this.#mostOffers) this.#mostOffers = m.size;
        touched.add(c.name);
      }
    }
    try {
      this.#program(touched);
    } catch (e) {
      for (const r of records) this.#forget(r);
      throw e;
    }
    this.#localChanged(touched);
  }

  /** Removes an agent and its routes; returns its record. */
  remove(aic: string): AgentRecord | undefined {
    const r = this.#agents.get(aic);
    if (!r) return undefined;
    const touched = this.#forget(r);
    this.#agentChanged(aic);
    this.#program(touched);
    this.#localChanged(touched);
    return r;
  }

  /** Drops a record from the maps; returns the prefixes to re-program. */
  #forget(r: AgentRecord): Set<string> {
    this.#agents.delete(r.aic);
    this.#liveness.delete(r.aic);
    const touched = new Set<string>();
    for (const c of r.capabilities) {
      const m = this.#offers.get(c.name);
      m?.delete(r.aic);
      if (m?.size === 0) this.#offers.delete(c.name);
      touched.add(c.name);
    }
    return touched;
  }

  replace(record: AgentRecord): void {
    if (!this.#agents.has(record.aic)) return;
    this.#agents.set(record.aic, record);
    this.#agentChanged(record.aic);
  }

  /** Records a heartbeat; returns false for an unknown AIC. */
  heartbeat(aic: string, state: HealthState, load: number): boolean {
    const l = this.#liveness.get(aic);
    if (!l) return false;
    const wasDown = l.state === 'down';
    const before = l.state;
    l.lastSeen = Date.now();
    l.missed = false;
    l.state = state;
    if (before !== state) this.#healthChanged(aic, before, state, 'heartbeat');
    l.load = load;
    this.#fib.setHealth(aic, { state, load });
    if (before !== state) this.#hopChanged(aic, state, load);
    if (wasDown !== (state === 'down')) this.#reselect(aic);
    return true;
  }

  /**
   * Passive health: a request to the agent failed, so it is down in the fast path at
   * once; its next heartbeat brings it back. Returns false for an unknown AIC.
   */
  markDown(aic: string): boolean {
    const l = this.#liveness.get(aic);
    if (!l) return this.#endpointDown(aic);
    if (l.state === 'down') return true;
    const before = l.state;
    l.state = 'down';
    this.#fib.setHealth(aic, { state: 'down' });
    this.#reselect(aic);
    this.#healthChanged(aic, before, 'down', 'request failed');
    this.#hopChanged(aic, 'down', l.load);
    return true;
  }

  /** Marks down every agent whose last heartbeat is older than `deadline`; returns them. */
  expire(deadline: number): string[] {
    const gone: string[] = [];
    for (const [aic, l] of this.#liveness) {
      if (!l.missed && l.lastSeen < deadline) {
        l.missed = true;
        const before = l.state;
        l.state = 'down';
        this.#fib.setHealth(aic, { state: 'down' });
        gone.push(aic);
        if (before !== 'down') {
          this.#healthChanged(aic, before, 'down', 'heartbeats missed');
          this.#hopChanged(aic, 'down', l.load);
        }
      }
    }
    for (const aic of gone) this.#reselect(aic);
    return gone;
  }

  /** Re-derives every route's tags, after the policy's tag mapping changed. */
  retag(tagsFor: TagMapper): void {
    // The mapping changes only once the table took the whole batch.
    this.#program(new Set(this.#offers.keys()), tagsFor);
    this.#tagsFor = tagsFor;
    this.#localChanged(new Set(this.#offers.keys()));
  }

  /** Calls `listener` when an agent's health state changes, with why. */
  onHealthChange(listener: (change: { aic: string; from: HealthState; to: HealthState; why: string }) => void): void {
    this.#healthListeners.push(listener);
  }

  #healthChanged(aic: string, from: HealthState, to: HealthState, why: string): void {
    notifyAll(this.#healthListeners, { aic, from, to, why });
  }

  /**
   * Calls `listener` with the AIC of an agent whose record was added, replaced or removed,
   * and with the id of a controller's endpoint next hop that came or went.
   */
  onAgentChange(listener: (aic: string) => void): void {
    this.#agentListeners.push(listener);
  }

  #agentChanged(aic: string): void {
    notifyAll(this.#agentListeners, aic);
  }

  /** Calls `listener` with the capability names whose local agents (or their tags) changed. */
  onLocalChange(listener: (prefixes: ReadonlySet<string>) => void): void {
    this.#localListeners.push(listener);
  }

  /** The tags of the local agents offering exactly `prefix` (union), or null if none do. */
  localTags(prefix: string): string[] | null {
    const m = this.#offers.get(prefix);
    const reached = this.#reachedHere(prefix);
    if ((!m || m.size === 0) && !reached) return null;
    const tags = new Set<string>();
    for (const o of m?.values() ?? []) for (const t of this.#tagsFor(o.attributes)) tags.add(t);
    for (const h of reached ?? []) for (const t of h.tags ?? []) tags.add(t);
    return [...tags].sort();
  }

  /**
   * Names served here: those local agents offer, and those controllers route to agents or
   * services through this node (a controller route through a peer is that peer's to
   * advertise).
   */
  *localNames(): IterableIterator<string> {
    yield* this.#offers.keys();
    for (const prefix of this.#controlled.keys()) if (!this.#offers.has(prefix) && this.#reachedHere(prefix)) yield prefix;
  }

  #reachedHere(prefix: string): NextHop[] | undefined {
    const all = this.#controlled.get(prefix);
    return reachesHere(all) ? all!.filter((h) => !h.id.startsWith('peer:')) : undefined;
  }

  /** Next hops toward peer gateways for `prefix` (empty or null: none), after local agents. */
  setLearned(prefix: string, hops: readonly NextHop[] | null): void {
    const before = this.#learned.get(prefix);
    // Nothing learned before or now: nothing to program (a new local name, say).
    if (!before && !hops?.length) return;
    if (hops && hops.length) this.#learned.set(prefix, hops);
    else this.#learned.delete(prefix);
    try {
      this.#program(new Set([prefix]));
    } catch (e) {
      if (before) this.#learned.set(prefix, before);
      else this.#learned.delete(prefix);
      throw e;
    }
  }

  /** Health of a non-agent next hop (a peer gateway), kept across re-programming. */
  setExternalHealth(id: string, state: HealthState): void {
    const before = this.#external.get(id) ?? 'up';
    this.#external.set(id, state);
    this.#fib.setHealth(id, { state });
    if (before !== state) this.#hopChanged(id, state, 0);
  }

  /**
   * Reads controllers' next hops from `routes` from now on: their holder changes them
   * itself, before it calls `setControlled` (and undoes that if it throws).
   */
  readControlledFrom(routes: ControlledRoutes): void {
    this.#controlled = routes;
  }

  /**
   * Programs controller next hops for each prefix (null: none left), every controller's
   * together, as one FIB batch: if the table refuses it, the error is thrown and the FIB
   * is unchanged. `before`: what they were (without it, every prefix is taken as maybe
   * served here). Returns the FIB generation.
   */
  setControlled(prefixes: readonly string[], hops: readonly (readonly NextHop[] | null)[], before?: readonly (readonly NextHop[] | null | undefined)[]): number {
    // Prefixes are distinct (the caller's batch has each once). A bulk load comes this way:
    // the ops are made from the next hops given, with no lookup in the controllers' tables.
    const ops: FibOp[] = new Array(prefixes.length);
    for (let i = 0; i < prefixes.length; i++) ops[i] = this.#opFor(prefixes[i]!, this.#tagsFor, hops[i] ?? NONE);
    this.#programOps(ops);
    const local = new Set<string>();
    for (let i = 0; i < prefixes.length; i++) {
      const prefix = prefixes[i]!;
      // What this node advertises changes only where it serves the name itself.
      if (!before || this.#offers.has(prefix) || reachesHere(hops[i]) || reachesHere(before[i])) local.add(prefix);
    }
    this.#localChanged(local);
    return this.#fib.generation;
  }

  /** How many next hops other sources than controllers hold on `prefix`: static, then agents. */
  othersOn(prefix: string): number {
    return (this.#static.get(prefix)?.length ?? 0) + (this.#offers.get(prefix)?.size ?? 0);
  }

  /**
   * At least `othersOn` of any prefix: a controller list that fits beside this many fits
   * on every prefix, with no lookup (a bulk load's lists are far below the limit).
   */
  get othersAtMost(): number {
    return this.#mostStatic + this.#mostOffers;
  }

  /** Controller next hops that are plain services: their endpoint URLs (null: gone). */
  setEndpoints(changes: ReadonlyMap<string, string | null>): void {
    for (const [id, url] of changes) {
      if (url === null) {
        this.#endpointHops.delete(id);
        this.#endpointHealth.delete(id);
      } else this.#endpointHops.set(id, url);
      // Whoever cached where the next hop was (the native relay) forgets it.
      this.#agentChanged(id);
    }
  }

  /** The health a controller states for one of its endpoint next hops. */
  setEndpointHealth(id: string, state: HealthState, load: number): void {
    if (!this.#endpointHops.has(id)) return;
    const before = this.#endpointHealth.get(id) ?? { state: 'up', load: 0 };
    this.#endpointHealth.set(id, { state, load });
    this.#fib.setHealth(id, { state, load });
    if (before.state !== state || before.load !== load) this.#hopChanged(id, state, load);
  }

  /** Where a next hop is reached over HTTP: an agent's endpoint, or a controller's endpoint next hop. */
  endpointOf(id: string): string | undefined {
    return this.#agents.get(id)?.endpoint ?? this.#endpointHops.get(id);
  }

  /** The health of a next hop as this directory knows it. */
  healthOf(id: string): { state: HealthState; load: number } {
    const l = this.#liveness.get(id);
    if (l) return { state: l.state, load: l.load };
    const e = this.#endpointHealth.get(id);
    if (this.#endpointsDown.has(id)) return { state: 'down', load: e?.load ?? 0 };
    if (e) return e;
    return { state: this.#external.get(id) ?? 'up', load: 0 };
  }

  /** Calls `listener` with every batch this directory applied to the FIB, and the generation after it. */
  onFibChange(listener: (ops: readonly FibOp[], generation: number) => void): void {
    this.#fibListeners.push(listener);
  }

  /** Calls `listener` when a next hop's health state changes (a controller's endpoint next hops: its load too). */
  onNextHopHealth(listener: (id: string, state: HealthState, load: number) => void): void {
    this.#hopListeners.push(listener);
  }

  #hopChanged(id: string, state: HealthState, load: number): void {
    notifyAll(this.#hopListeners, id, state, load);
  }

  // A request to a controller's endpoint next hop failed: down at once, and back to what
  // the controller stated after a while (nothing heartbeats for a plain service).
  #endpointDown(id: string): boolean {
    if (!this.#endpointHops.has(id)) return false;
    const stated = this.#endpointHealth.get(id) ?? { state: 'up' as HealthState, load: 0 };
    if (stated.state === 'down' || this.#endpointsDown.has(id)) return true;
    this.#fib.setHealth(id, { state: 'down' });
    this.#hopChanged(id, 'down', stated.load);
    const timer = setTimeout(() => {
      this.#endpointsDown.delete(id);
      const now = this.#endpointHealth.get(id) ?? (this.#endpointHops.has(id) ? { state: 'up' as HealthState, load: 0 } : undefined);
      if (!now) return;
      this.#fib.setHealth(id, now);
      this.#hopChanged(id, now.state, now.load);
    }, ENDPOINT_RETRY_MS);
    timer.unref();
    this.#endpointsDown.set(id, timer);
    return true;
  }

  #localChanged(prefixes: ReadonlySet<string>): void {
    if (prefixes.size) notifyAll(this.#localListeners, prefixes);
  }

  /**
   * Static routes (the node's `--fib` file): kept beside the agents' next hops on the same
   * prefix instead of being replaced by them, and programmed now.
   */
  setStatic(ops: readonly FibOp[]): void {
    const next = new Map(this.#static);
    for (const [i, op] of ops.entries()) {
      const o = op as { op?: unknown; nextHops?: unknown };
      if (typeof o !== 'object' || o === null || !((o.op === 'upsert' && Array.isArray(o.nextHops)) || o.op === 'remove')) {
        throw new DmscTypeError('ERR_DMSC_MALFORMED_BATCH', `static route ${i}: must be { op: 'upsert', prefix, nextHops: [...] } or { op: 'remove', prefix }`);
      }
      if (op.op === 'upsert') next.set(op.prefix, op.nextHops);
      else next.delete(op.prefix);
    }
    const touched = new Set([...this.#static.keys(), ...next.keys()]);
    const previous = this.#static;
    const mostBefore = this.#mostStatic;
    this.#static = next;
    this.#mostStatic = 0;
    for (const hops of next.values()) if (hops.length > this.#mostStatic) this.#mostStatic = hops.length;
    try {
      this.#program(touched);
    } catch (e) {
      this.#static = previous;
      this.#mostStatic = mostBefore;
      throw e;
    }
  }

  /**
   * Agents offering `name` or one of its prefixes, longest prefix first, each with its
   * liveness and tags: what `discover` shows.
   */
  candidates(name: string): { prefix: string; record: AgentRecord; offer: CapabilityOffer; tags: string[]; liveness: Liveness }[] {
    const out = [];
    for (const prefix of prefixesOf(name)) {
      for (const [aic, offer] of this.#offers.get(prefix) ?? []) {
        out.push({ prefix, record: this.#agents.get(aic)!, offer, tags: this.#tagsFor(offer.attributes), liveness: this.#liveness.get(aic)! });
      }
    }
    return out;
  }

  // An agent that changed between down and alive may change which agents an entry with
  // standbys installs.
  #reselect(aic: string): void {
    const r = this.#agents.get(aic);
    if (!r) return;
    const crowded = r.capabilities.filter((c) => (this.#offers.get(c.name)?.size ?? 0) + (this.#static.get(c.name)?.length ?? 0) + (this.#controlled.get(c.name)?.length ?? 0) > MAX_INSTALLED).map((c) => c.name);
    if (crowded.length) this.#program(new Set(crowded));
  }

  /**
   * Every entry this directory has programmed, computed as it is read: a watcher's
   * snapshot, without copying a large table at once. Entries that change while it is
   * read may come out as they are after the change (a watcher gets that change after the
   * snapshot anyway); none that exists throughout is left out.
   */
  *programmed(): Generator<FibOp & { op: 'upsert' }> {
    const sources = [this.#offers, this.#static, this.#controlled, this.#learned] as const;
    for (let i = 0; i < sources.length; i++) {
      for (const prefix of sources[i]!.keys()) {
        // Each prefix once: from the first source that holds it.
        let earlier = false;
        for (let j = 0; j < i && !earlier; j++) earlier = sources[j]!.has(prefix);
        if (earlier) continue;
        const op = this.#opFor(prefix, this.#tagsFor);
        if (op.op === 'upsert') yield op;
      }
    }
  }

  // What the FIB holds for `prefix`: every source's next hops, within the 64 the table
  // takes; `controlled`, when given, in place of the controllers' next hops held now.
  #opFor(prefix: string, tagsFor: TagMapper, controlled: readonly NextHop[] = this.#controlled.get(prefix) ?? NONE): FibOp {
    const m = this.#offers.get(prefix);
    const learnedAll = this.#learned.get(prefix);
    const staticAll = this.#static.get(prefix);
    // Only controllers, or nothing: their union, as they gave it (the common case of a
    // large push, taken with no array made on the way).
    if (!m && !learnedAll && !staticAll) return controlled.length ? { op: 'upsert', prefix, nextHops: controlled } : { op: 'remove', prefix };
    const statics = staticAll ?? [];
    const fixed = statics.length + controlled.length;
    // Agents come first; peer gateways fill what room is left.
    const learned = (learnedAll ?? []).slice(0, Math.max(0, MAX_INSTALLED - fixed - (m?.size ?? 0)));
    if ((!m || m.size === 0) && fixed === 0 && learned.length === 0) return { op: 'remove', prefix };
    let members = [...(m ?? [])];
    const room = MAX_INSTALLED - fixed;
    if (members.length > room) {
      const rank = ([aic, o]: [string, CapabilityOffer]) => (this.#liveness.get(aic)?.state === 'down' ? 1 << 20 : 0) + o.priority;
      members = members.map((e, i) => ({ e, i, k: rank(e) })).sort((a, b) => a.k - b.k || a.i - b.i).slice(0, Math.max(0, room)).map((x) => x.e);
    }
    const agents: NextHop[] = members.map(([aic, o]) => ({ id: aic, weight: o.weight, priority: o.priority, tags: tagsFor(o.attributes) }));
    return { op: 'upsert', prefix, nextHops: distinct([...statics, ...controlled, ...agents, ...learned]) };
  }

  #program(prefixes: ReadonlySet<string> | readonly string[], tagsFor: TagMapper = this.#tagsFor): void {
    if ((prefixes instanceof Set ? prefixes.size : (prefixes as readonly string[]).length) === 0) return;
    const ops: FibOp[] = [];
    for (const prefix of prefixes) ops.push(this.#opFor(prefix, tagsFor));
    this.#programOps(ops);
  }

  #programOps(ops: readonly FibOp[]): void {
    const generation = this.#fib.apply(ops);
    // Health is per next hop and survives re-programming; re-assert it for new next hops,
    // once for each list of them (a bulk load's entries share a few hundred lists).
    const lists = new Set<readonly NextHop[]>();
    // Indexed: a for-of here allocated an iterator result per op in a bulk load.
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.op !== 'upsert' || lists.has(op.nextHops)) continue;
      lists.add(op.nextHops);
      for (let j = 0; j < op.nextHops.length; j++) {
        const h = op.nextHops[j]!;
        const l = this.#liveness.get(h.id);
        if (l && (l.state !== 'up' || l.load > 0)) this.#fib.setHealth(h.id, { state: l.state, load: l.load });
        const external = this.#external.get(h.id);
        if (external && external !== 'up') this.#fib.setHealth(h.id, { state: external });
        const stated = this.#endpointHealth.get(h.id);
        if (stated && (stated.state !== 'up' || stated.load > 0)) this.#fib.setHealth(h.id, stated);
        if (this.#endpointsDown.has(h.id)) this.#fib.setHealth(h.id, { state: 'down' });
      }
    }
    notifyAll(this.#fibListeners, ops, generation);
  }
}

const NONE: readonly NextHop[] = [];

/** Controllers' next hops by prefix, every controller's together, as the directory reads them. */
export interface ControlledRoutes {
  get(prefix: string): readonly NextHop[] | undefined;
  has(prefix: string): boolean;
  keys(): IterableIterator<string>;
}

/** Whether controller next hops lead to an agent or service of this node (not only to peers). */
function reachesHere(hops: readonly NextHop[] | null | undefined): boolean {
  if (hops) for (let j = 0; j < hops.length; j++) if (!hops[j]!.id.startsWith('peer:')) return true;
  return false;
}

/** Next hops with each id once, the first kept: sources may name the same next hop. */
function distinct(hops: NextHop[]): NextHop[] {
  const seen = new Set<string>();
  return hops.filter((h) => !seen.has(h.id) && (seen.add(h.id), true));
}
