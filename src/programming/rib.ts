// What external controllers programmed: each controller's own table of prefixes and next
// hops, its generation and its persistence. Per prefix, the controllers' next hops are one
// source of the FIB entry beside static routes, agents and peers (the directory unites
// them), so a controller never touches another source's next hops. A batch is checked
// whole first, naming every bad op, then applied as one FIB batch: all or nothing.
import { DmscError, type DmscErrorCode } from '../errors.js';
import type { Directory } from '../directory/directory.js';
import { peerOf } from '../directory/directory.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { HealthState, NextHop } from '../fastpath/types.js';
import { checkId, isImmutableList, MAX_NEXT_HOPS, MAX_TAGS, MAX_PRIORITY, MAX_WEIGHT, nameProblem, tagProblem } from '../fastpath/validate.js';
import { parseEndpoint } from '../dataplane/endpoint.js';
import { aicProblem } from '../identity/aic.js';
import { notifyAll } from '../listeners.js';
import type { Store } from '../store/store.js';
import { ControllerJournal, type ControllerMeta } from './journal.js';
import { PrefixTable } from './prefix-table.js';
import type { Persistence } from './proto.js';

/** A next hop as a controller gives it: a FIB next hop, and for a plain service its URL. */
export interface ControllerHop extends NextHop {
  readonly endpoint?: string;
}

export type ControllerOp =
  | { readonly op: 'upsert'; readonly prefix: string; readonly nextHops: readonly ControllerHop[] }
  | { readonly op: 'remove'; readonly prefix: string }
  | { readonly op: 'health'; readonly nextHopId: string; readonly state: HealthState; readonly load?: number };

export interface OpError {
  readonly opIndex: number;
  readonly code: DmscErrorCode;
  readonly message: string;
}

export type Applied =
  | { readonly status: 'VISIBLE'; readonly generation: number; readonly fibGeneration: number; readonly done: Promise<void> }
  | { readonly status: 'REJECTED'; readonly generation: number; readonly errors: readonly OpError[] }
  | { readonly status: 'GENERATION_MISMATCH'; readonly generation: number };

export interface ApplyOptions {
  /** Applies only if the controller's generation is this one. */
  readonly expectGeneration?: number;
  /** The controller's entries not in the batch are removed in the same change. */
  readonly replace?: boolean;
  /** The batch as it came on the wire (a Batch message): the journal keeps it as it is. */
  readonly record?: Buffer;
  /** Nothing else of the caller's waits: a small batch may be committed in place (Store.durable). */
  readonly alone?: boolean;
}

/** Who is programming: the controller, and the prefixes its key may program. */
export interface Programmer {
  readonly controller: string;
  readonly scopes: { matches(name: string): boolean };
}

interface Controller {
  readonly id: string;
  readonly entries: PrefixTable<readonly NextHop[]>;
  /** Generation, persistence, lease and journal position: what the store keeps. */
  meta: ControllerMeta;
  /** Open Modify sessions of this controller. */
  sessions: number;
  lease?: NodeJS.Timeout;
}


/** Prefixes a batch may change and still be committed in place when it is alone (Store.durable). */
const INLINE_CHANGES = 16;

/** Tags of the table controllers cannot take: room for the policy's. */
export const TAGS_KEPT_FOR_POLICY = 16;

const bad = (opIndex: number, code: DmscErrorCode, message: string): OpError => ({ opIndex, code, message });

export class ControllerRib {
  readonly #directory: Directory;
  readonly #fib: ForwardingTable;
  readonly #store: Store;
  readonly #journal: ControllerJournal;
  readonly #log: (e: Record<string, unknown>) => void;
  readonly #controllers = new Map<string, Controller>();
  /** Endpoint next hops: their URL, and how many entries of each controller use them. */
  readonly #endpoints = new Map<string, { url: string; users: Map<string, number> }>();
  /** Endpoint URLs already parsed and found good. */
  readonly #goodUrls = new Set<string>();
  /**
   * Next-hop lists shared by the decoder that passed the checks of the list alone, and
   * whether any of their next hops has tags or an endpoint: the checks left to make.
   */
  readonly #wellFormed = new WeakMap<readonly ControllerHop[], { readonly tagged: boolean; readonly endpoints: boolean }>();
  readonly #changeListeners: ((controller: string) => void)[] = [];
  #stopped = false;

  constructor(deps: { directory: Directory; fib: ForwardingTable; store: Store; log: (e: Record<string, unknown>) => void }) {
    this.#directory = deps.directory;
    this.#fib = deps.fib;
    this.#store = deps.store;
    this.#journal = new ControllerJournal(deps.store);
    this.#log = deps.log;
    // The directory reads the controllers' routes from here rather than keep its own copy.
    deps.directory.readControlledFrom({
      get: (prefix) => this.#union(prefix) ?? undefined,
      has: (prefix) => this.#anyHas(prefix),
      keys: () => this.#prefixes(),
    });
  }

  #anyHas(prefix: string): boolean {
    for (const c of this.#controllers.values()) if (c.entries.has(prefix)) return true;
    return false;
  }

  // Every controller's prefixes, each once.
  *#prefixes(): Generator<string, undefined, undefined> {
    const all = [...this.#controllers.values()];
    for (let i = 0; i < all.length; i++) {
      for (const prefix of all[i]!.entries.keys()) {
        let earlier = false;
        for (let j = 0; j < i && !earlier; j++) earlier = all[j]!.entries.has(prefix);
        if (!earlier) yield prefix;
      }
    }
  }

  /** Programs what PRESERVE and LEASE controllers left in the store; LEASE ones start their lease now. */
  load(): void {
    const changes = new Map<string, readonly NextHop[] | null>();
    for (const [id, kept] of this.#journal.load()) {
      const c = this.#controller(id);
      c.meta = kept.meta;
      for (const [prefix, hops] of kept.entries) {
        for (const h of hops) if (h.endpoint !== undefined) this.#use(c.id, h.id, h.endpoint, 1);
        c.entries.set(prefix, plainHops(hops));
        changes.set(prefix, null);
      }
    }
    const prefixes = [...changes.keys()];
    this.#directory.setEndpoints(new Map([...this.#endpoints].map(([id, e]) => [id, e.url])));
    try {
      if (prefixes.length) this.#directory.setControlled(prefixes, prefixes.map((p) => this.#union(p)), prefixes.map(() => null));
    } catch {
      // Something the table cannot hold now (a --fib file that grew, say): program what it
      // can, entry by entry, and drop what it cannot rather than fail to start. A dropped
      // route leaves the controller's table, here (which the directory reads) and in the
      // store, with a new generation: the node holds what it programmed, and the
      // controller's next resync or Get tells it so.
      const dropped = new Map<Controller, Map<string, null>>();
      const urls = new Map<string, string | null>();
      for (const p of prefixes) {
        try {
          this.#directory.setControlled([p], [this.#union(p)], [null]);
        } catch (e) {
          for (const c of this.#controllers.values()) {
            const hops = c.entries.get(p);
            if (!hops) continue;
            this.#release(c.id, hops, urls);
            c.entries.delete(p);
            let gone = dropped.get(c);
            if (!gone) dropped.set(c, (gone = new Map()));
            gone.set(p, null);
          }
          this.#log({ msg: 'controller route dropped: the table cannot hold it', prefix: p, code: (e as DmscError).code ?? 'ERR_DMSC_INTERNAL', reason: (e as Error).message });
        }
      }
      this.#directory.setEndpoints(urls);
      for (const [c, gone] of dropped) {
        c.meta.generation++;
        void this.#store.durable(this.#journaled(c, gone)).catch((e) => this.#storeFailed(e));
      }
    }
    for (const c of this.#controllers.values()) if (c.meta.persistence === 'LEASE') this.#startLease(c);
    if (changes.size) this.#log({ msg: 'controller routes loaded', entries: changes.size, controllers: this.#controllers.size });
  }

  /** The controller's generation (0 for one never seen). */
  generation(controller: string): number {
    return this.#controllers.get(controller)?.meta.generation ?? 0;
  }

  /** The controller's entries, with each endpoint next hop's URL. */
  *entries(controller: string): Generator<{ prefix: string; nextHops: ControllerHop[] }> {
    const c = this.#controllers.get(controller);
    if (!c) return;
    for (const [prefix, hops] of c.entries) {
      yield { prefix, nextHops: hops.map((h) => this.#withEndpoint(h)) };
    }
  }

  /** Calls `listener` with a controller whose table changed. */
  onChange(listener: (controller: string) => void): void {
    this.#changeListeners.push(listener);
  }

  /** A Modify session of `controller` opened with this persistence. */
  /** The persistence of the controller's open sessions, or undefined when none is open. */
  openPersistence(controller: string): { persistence: Persistence; leaseMs: number } | undefined {
    const c = this.#controllers.get(controller);
    return c && c.sessions > 0 ? { persistence: c.meta.persistence, leaseMs: c.meta.leaseMs } : undefined;
  }

  sessionOpened(controller: string, persistence: Persistence, leaseMs: number): void {
    const c = this.#controller(controller);
    c.sessions++;
    if (c.lease) clearTimeout(c.lease);
    c.lease = undefined;
    const was = c.meta.persistence;
    c.meta.persistence = persistence;
    c.meta.leaseMs = leaseMs;
    // The store holds the routes of PRESERVE and LEASE controllers only.
    const write = was === 'DELETE' && persistence !== 'DELETE' ? () => this.#journal.rewrite(c.id, c.meta, this.#withEndpoints(c))
      : was !== 'DELETE' && persistence === 'DELETE' ? () => this.#journal.drop(c.id, c.meta)
        : () => this.#journal.writeMeta(c.id, c.meta);
    void this.#store.durable(write).catch((e) => this.#storeFailed(e));
  }

  /** A Modify session of `controller` ended: DELETE routes go now, LEASE ones after the lease. */
  sessionEnded(controller: string): void {
    const c = this.#controllers.get(controller);
    if (!c) return;
    c.sessions = Math.max(0, c.sessions - 1);
    if (c.sessions > 0) return;
    if (c.meta.persistence === 'DELETE') this.#flushQuietly(controller);
    else if (c.meta.persistence === 'LEASE') this.#startLease(c);
  }

  /** The node is stopping: no lease runs out on a table and store that are closing. */
  stop(): void {
    this.#stopped = true;
    for (const c of this.#controllers.values()) {
      if (c.lease) clearTimeout(c.lease);
      c.lease = undefined;
    }
  }

  // A flush nobody waits for (a session's end, a lease): failures are logged.
  #flushQuietly(controller: string): void {
    if (this.#stopped) return;
    try {
      this.flush(controller).done.catch((e: unknown) => this.#storeFailed(e));
    } catch (e) {
      this.#log({ msg: 'controller routes not flushed', controller, code: (e as DmscError).code ?? 'ERR_DMSC_INTERNAL', reason: (e as Error).message });
    }
  }

  /**
   * Checks a batch whole: every bad op gets its error, none stops the others being
   * checked. `staged`: endpoint next hops a Replace in progress already defined.
   */
  check(who: Programmer, ops: readonly ControllerOp[], staged?: ReadonlySet<string>): OpError[] {
    const errors: OpError[] = [];
    const c = this.#controllers.get(who.controller);
    const batchUrls = new Map<string, string>();
    const defined = new Set<string>();
    const newTags = new Set<string>();
    const room = MAX_NEXT_HOPS - this.#directory.othersAtMost - this.#mostControlled(who.controller);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.op === 'health') continue;
      const p = nameProblem(op.prefix);
      if (p !== null) {
        errors.push(bad(i, 'ERR_DMSC_INVALID_NAME', `prefix: ${p}`));
        continue;
      }
      if (!who.scopes.matches(op.prefix)) {
        errors.push(bad(i, 'ERR_DMSC_FORBIDDEN', `${op.prefix} is outside the scopes of controller ${who.controller}`));
        continue;
      }
      if (op.op === 'remove') continue;
      const facts = this.#wellFormed.get(op.nextHops);
      const e = this.#checkHops(i, op.prefix, op.nextHops, who.controller, room, batchUrls, facts) ?? (facts?.tagged === false ? null : this.#checkTags(i, op.nextHops, newTags));
      if (e) errors.push(e);
      else if (facts?.endpoints !== false) for (let j = 0; j < op.nextHops.length; j++) if (op.nextHops[j]!.endpoint) defined.add(op.nextHops[j]!.id);
    }
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.op !== 'health') continue;
      if (op.state !== 'up' && op.state !== 'degraded' && op.state !== 'down') {
        errors.push(bad(i, 'ERR_DMSC_INVALID_ARGUMENT', `state must be up, degraded or down`));
      } else if (op.load !== undefined && !(op.load >= 0 && op.load <= 1)) {
        errors.push(bad(i, 'ERR_DMSC_OUT_OF_RANGE', `load must be from 0 to 1, got ${op.load}`));
      } else if (!defined.has(op.nextHopId) && !staged?.has(op.nextHopId) && !(c && this.#endpoints.get(op.nextHopId)?.users.has(c.id))) {
        errors.push(bad(i, 'ERR_DMSC_NOT_FOUND', `${JSON.stringify(op.nextHopId)} is not an endpoint next hop of controller ${who.controller}; health is set on those only`));
      }
    }
    return errors;
  }

  // `room`: next hops any prefix has room for whatever other sources hold there.
  #checkHops(i: number, prefix: string, hops: readonly ControllerHop[], controller: string, room: number, batchUrls: Map<string, string>, facts?: { readonly endpoints: boolean }): OpError | null {
    if (hops.length === 0) return bad(i, 'ERR_DMSC_INVALID_ARGUMENT', `an upsert needs at least one next hop (remove the prefix instead)`);
    const others = hops.length <= room ? 0 : this.#directory.othersOn(prefix) + this.#othersControlled(prefix, controller);
    if (hops.length + others > MAX_NEXT_HOPS) {
      return bad(i, 'ERR_DMSC_LIMIT_EXCEEDED', `${prefix} would have ${hops.length + others} next hops (${hops.length} here, ${others} from other sources); the limit is ${MAX_NEXT_HOPS}`);
    }
    // A list the decoder shares, once found good, needs only what depends on the batch:
    // who holds its endpoints. Others are checked hop by hop, the first problem named.
    if (facts) {
      if (!facts.endpoints) return null;
      for (let j = 0; j < hops.length; j++) {
        const h = hops[j]!;
        const e = h.endpoint ? this.#checkEndpoint(controller, h.id, h.endpoint, batchUrls) : null;
        if (e) return bad(i, e.code, `nextHops[${j}]: ${e.message}`);
      }
      return null;
    }
    for (let j = 0; j < hops.length; j++) {
      const h = hops[j]!;
      const at = `nextHops[${j}]`;
      try {
        checkId(h.id);
      } catch (e) {
        return bad(i, (e as DmscError).code, `${at}.id: ${(e as Error).message}`);
      }
      for (let k = 0; k < j; k++) if (hops[k]!.id === h.id) return bad(i, 'ERR_DMSC_DUPLICATE_NEXT_HOP', `${at}: next hop ${JSON.stringify(h.id)} appears twice`);
      if (h.weight !== undefined && !(Number.isInteger(h.weight) && h.weight >= 0 && h.weight <= MAX_WEIGHT)) return bad(i, 'ERR_DMSC_OUT_OF_RANGE', `${at}.weight must be an integer from 0 to ${MAX_WEIGHT}`);
      if (h.priority !== undefined && !(Number.isInteger(h.priority) && h.priority >= 0 && h.priority <= MAX_PRIORITY)) return bad(i, 'ERR_DMSC_OUT_OF_RANGE', `${at}.priority must be an integer from 0 to ${MAX_PRIORITY}`);
      for (const t of h.tags ?? []) {
        const p = tagProblem(t, `${at}.tags`);
        if (p) return bad(i, p.code, p.message);
      }
      const e = h.endpoint ? this.#endpointProblem(h.id, h.endpoint) ?? this.#checkEndpoint(controller, h.id, h.endpoint, batchUrls) : this.#checkReference(h.id);
      if (e) return bad(i, e.code, `${at}: ${e.message}`);
    }
    if (isImmutableList(hops)) this.#wellFormed.set(hops, { tagged: hops.some((h) => h.tags?.length), endpoints: hops.some((h) => h.endpoint) });
    return null;
  }

  // The table's 64 tags are added for good: controllers may bring new ones only while
  // room is left for the policy's.
  #checkTags(i: number, hops: readonly ControllerHop[], newTags: Set<string>): OpError | null {
    for (let j = 0; j < hops.length; j++) {
      const tags = hops[j]!.tags;
      if (!tags) continue;
      for (let k = 0; k < tags.length; k++) {
        const t = tags[k]!;
        if (newTags.has(t) || this.#fib.hasTag(t)) continue;
        newTags.add(t);
        if (this.#fib.tagCount + newTags.size > MAX_TAGS - TAGS_KEPT_FOR_POLICY) {
          return bad(i, 'ERR_DMSC_LIMIT_EXCEEDED', `tag ${JSON.stringify(t)} is new to the table, which has ${this.#fib.tagCount} of its ${MAX_TAGS} tags and keeps the last ${TAGS_KEPT_FOR_POLICY} for the policy; use a tag it has`);
        }
      }
    }
    return null;
  }

  // A next hop without an endpoint is an agent here (by its AIC) or a peer gateway.
  #checkReference(id: string): { code: DmscErrorCode; message: string } | null {
    if (peerOf(id) !== undefined) return peerOf(id) ? null : { code: 'ERR_DMSC_INVALID_ARGUMENT', message: "'peer:' needs a gateway id after it" };
    if (aicProblem(id) === null) return null;
    return { code: 'ERR_DMSC_INVALID_ARGUMENT', message: `${JSON.stringify(id)} is neither an AIC nor peer:<gateway>; a plain service needs an endpoint URL` };
  }

  // What an endpoint next hop must be, whoever holds it: an id of its own and an http:// URL.
  #endpointProblem(id: string, url: string): { code: DmscErrorCode; message: string } | null {
    if (peerOf(id) !== undefined || aicProblem(id) === null) return { code: 'ERR_DMSC_INVALID_ARGUMENT', message: `an endpoint next hop needs an id of its own, not an AIC or peer:<gateway> (${JSON.stringify(id)})` };
    if (!this.#goodUrls.has(url)) {
      const e = parseEndpoint(url);
      if (!e || !e.origin.startsWith('http:')) return { code: 'ERR_DMSC_INVALID_ARGUMENT', message: `endpoint must be an http:// URL, got ${JSON.stringify(url)}` };
      if (this.#goodUrls.size > 100_000) this.#goodUrls.clear();
      this.#goodUrls.add(url);
    }
    return null;
  }

  #checkEndpoint(controller: string, id: string, url: string, batchUrls: Map<string, string>): { code: DmscErrorCode; message: string } | null {
    // An endpoint id is its first controller's: another can neither point it elsewhere nor
    // set its health (nor learn where it is).
    const held = this.#endpoints.get(id);
    if (held && !held.users.has(controller)) return { code: 'ERR_DMSC_CONFLICT', message: `next hop ${JSON.stringify(id)} is another controller's; give yours another id` };
    const known = batchUrls.get(id) ?? held?.url;
    if (known !== undefined && known !== url) return { code: 'ERR_DMSC_CONFLICT', message: `next hop ${JSON.stringify(id)} is ${known}; give ${url} another id (or remove it first)` };
    batchUrls.set(id, url);
    return null;
  }

  /**
   * Applies a batch checked by `check`, as one FIB change; resolves `done` once it is on
   * disk (PRESERVE, LEASE) and every reader of the table sees it. With `replace`, the
   * controller's entries not in the batch are removed in the same change.
   */
  apply(who: Programmer, ops: readonly ControllerOp[], opts: ApplyOptions = {}): Applied {
    const c = this.#controller(who.controller);
    if (opts.expectGeneration !== undefined && opts.expectGeneration !== c.meta.generation) return { status: 'GENERATION_MISMATCH', generation: c.meta.generation };
    const errors = this.check(who, ops);
    if (errors.length) return { status: 'REJECTED', generation: c.meta.generation, errors };
    // The controller's new next hops for each prefix the batch names (last op wins).
    const next = new Map<string, readonly ControllerHop[] | null>();
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.op === 'upsert') next.set(op.prefix, op.nextHops);
      else if (op.op === 'remove') next.set(op.prefix, null);
    }
    if (opts.replace) for (const prefix of c.entries.keys()) if (!next.has(prefix)) next.set(prefix, null);
    // The prefixes the batch changes, each once, and what the controller had there: sized
    // once (pushed to, they were a tenth of what a bulk load allocated on the node).
    const prefixes: string[] = new Array(next.size);
    const before: (readonly NextHop[] | undefined)[] = new Array(next.size);
    // With one controller (the usual case) an entry's union is its own next hops.
    const alone = this.#controllers.size === 1;
    const unions: (readonly NextHop[] | null)[] = alone ? new Array(next.size) : [];
    let n = 0;
    // forEach: a for-of over the map would make an array of each entry.
    next.forEach((hops, prefix) => {
      const plain = hops ? plainHops(hops) : null;
      const old = plain ? c.entries.swap(prefix, plain) : c.entries.get(prefix);
      if (!plain) {
        if (!old) {
          next.delete(prefix);
          return;
        }
        c.entries.delete(prefix);
      }
      prefixes[n] = prefix;
      before[n] = old;
      if (alone) unions[n] = plain;
      n++;
    });
    prefixes.length = n;
    before.length = n;
    if (alone) unions.length = n;
    let fibGeneration: number;
    try {
      fibGeneration = prefixes.length ? this.#directory.setControlled(prefixes, alone ? unions : prefixes.map((p) => this.#union(p)), alone ? before : undefined) : this.#fib.generation;
    } catch (e) {
      for (let i = 0; i < prefixes.length; i++) {
        const hops = before[i];
        if (hops) c.entries.set(prefixes[i]!, hops);
        else c.entries.delete(prefixes[i]!);
      }
      return { status: 'REJECTED', generation: c.meta.generation, errors: [bad(0, (e as DmscError).code ?? 'ERR_DMSC_INTERNAL', `the forwarding table refused the batch: ${(e as Error).message}`)] };
    }
    // All on this thread: nothing forwards between the FIB change and the endpoints'.
    const urls = new Map<string, string | null>();
    this.#countEndpoints(c.id, next, before, urls);
    this.#directory.setEndpoints(urls);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.op === 'health') this.#directory.setEndpointHealth(op.nextHopId, op.state, op.load ?? 0);
    }
    if (next.size) c.meta.generation++;
    const durable = c.meta.persistence !== 'DELETE' && next.size > 0
      // A rewrite of the whole table is not one to block the loop for.
      ? this.#store.durable(this.#journaled(c, next, opts.replace ? undefined : opts.record), { inline: !!opts.alone && next.size <= INLINE_CHANGES && !this.#journal.rewriteDue(c.meta, next.size, c.entries.size) })
      : Promise.resolve();
    if (next.size) notifyAll(this.#changeListeners, c.id);
    return { status: 'VISIBLE', generation: c.meta.generation, fibGeneration, done: Promise.all([durable, this.#fib.visible(fibGeneration)]).then(() => undefined) };
  }

  /** Removes every entry of `controller`; returns how many and the generations after. */
  flush(controller: string): { removed: number; generation: number; fibGeneration: number; done: Promise<void> } {
    const c = this.#controllers.get(controller);
    if (!c || c.entries.size === 0) return { removed: 0, generation: c?.meta.generation ?? 0, fibGeneration: this.#fib.generation, done: Promise.resolve() };
    const removed = c.entries.size;
    const r = this.apply({ controller, scopes: ALL }, [], { replace: true });
    if (r.status !== 'VISIBLE') throw new DmscError('ERR_DMSC_INTERNAL', `flushing ${controller} failed: ${r.status}`);
    this.#log({ msg: 'controller routes flushed', controller, removed });
    return { removed, generation: r.generation, fibGeneration: r.fibGeneration, done: r.done };
  }

  #controller(id: string): Controller {
    let c = this.#controllers.get(id);
    if (!c) this.#controllers.set(id, (c = { id, entries: new PrefixTable(), meta: { generation: 0, persistence: 'PRESERVE', leaseMs: 0, next: 0, changes: 0 }, sessions: 0 }));
    return c;
  }

  #startLease(c: Controller): void {
    if (c.lease) clearTimeout(c.lease);
    if (this.#stopped) return;
    c.lease = setTimeout(() => {
      c.lease = undefined;
      if (c.sessions === 0) this.#flushQuietly(c.id);
    }, c.meta.leaseMs);
    c.lease.unref();
  }

  // Every controller's next hops for `prefix`, together (usually there is one controller).
  #union(prefix: string): readonly NextHop[] | null {
    if (this.#controllers.size === 1) for (const c of this.#controllers.values()) return c.entries.get(prefix) ?? null;
    let out: NextHop[] | readonly NextHop[] | null = null;
    let shared = true;
    for (const c of this.#controllers.values()) {
      const hops = c.entries.get(prefix);
      if (!hops) continue;
      if (out === null) out = hops;
      else {
        if (shared) out = [...out];
        shared = false;
        const have = new Set(out.map((h) => h.id));
        for (const h of hops) if (!have.has(h.id)) (out as NextHop[]).push(h);
      }
    }
    return out;
  }

  // At least #othersControlled of any prefix: the longest list other controllers may hold.
  #mostControlled(controller: string): number {
    let n = 0;
    for (const c of this.#controllers.values()) if (c.id !== controller && c.entries.size > 0) n += MAX_NEXT_HOPS;
    return n;
  }

  #othersControlled(prefix: string, controller: string): number {
    let n = 0;
    for (const c of this.#controllers.values()) if (c.id !== controller) n += c.entries.get(prefix)?.length ?? 0;
    return n;
  }

  // Moves the endpoint counts from the `before` entries to the `next` ones; endpoints that
  // appear or go are put in `urls` for the directory.
  #countEndpoints(controller: string, next: ReadonlyMap<string, readonly ControllerHop[] | null>, before: readonly (readonly NextHop[] | undefined)[], urls: Map<string, string | null>): void {
    if (this.#endpoints.size === 0 && !this.#anyEndpoint(next)) return;
    for (const hops of before) if (hops) this.#release(controller, hops, urls);
    for (const hops of next.values()) {
      if (!hops) continue;
      for (let j = 0; j < hops.length; j++) {
        const h = hops[j]!;
        if (h.endpoint) this.#use(controller, h.id, h.endpoint, 1, urls);
      }
    }
  }

  // Gives back the endpoint counts that `hops` held for `controller`.
  #release(controller: string, hops: readonly NextHop[], urls: Map<string, string | null>): void {
    for (let j = 0; j < hops.length; j++) {
      const e = this.#endpoints.get(hops[j]!.id);
      if (e) this.#use(controller, hops[j]!.id, e.url, -1, urls);
    }
  }

  #anyEndpoint(next: ReadonlyMap<string, readonly ControllerHop[] | null>): boolean {
    for (const hops of next.values()) if (hops) for (let j = 0; j < hops.length; j++) if (hops[j]!.endpoint) return true;
    return false;
  }

  #use(controller: string, id: string, url: string, delta: number, urls?: Map<string, string | null>): void {
    let e = this.#endpoints.get(id);
    if (!e) {
      if (delta < 0) return;
      this.#endpoints.set(id, (e = { url, users: new Map() }));
      urls?.set(id, url);
    }
    const n = (e.users.get(controller) ?? 0) + delta;
    if (n > 0) e.users.set(controller, n);
    else e.users.delete(controller);
    if (e.users.size === 0) {
      this.#endpoints.delete(id);
      urls?.set(id, null);
    }
  }

  #withEndpoint(h: NextHop): ControllerHop {
    const url = this.#endpoints.get(h.id)?.url;
    return url ? { ...h, endpoint: url } : h;
  }

  *#withEndpoints(c: Controller): Generator<[string, readonly ControllerHop[]]> {
    for (const [prefix, hops] of c.entries) yield [prefix, hops.map((h) => this.#withEndpoint(h))];
  }

  // The store writes of a change to the controller's table: its journal record, and the
  // journal rewritten as the table when it has grown well past it.
  #journaled(c: Controller, changes: ReadonlyMap<string, readonly ControllerHop[] | null>, record?: Buffer): () => void {
    return () => {
      if (this.#journal.append(c.id, c.meta, changes, c.entries.size, record)) this.#journal.rewrite(c.id, c.meta, this.#withEndpoints(c));
    };
  }

  #storeFailed(e: unknown): void {
    this.#log({ msg: 'controller state not stored', code: (e as DmscError).code ?? 'ERR_DMSC_INTERNAL', reason: (e as Error).message });
  }
}

/** Every prefix: what a flush (or the admin) may touch. */
const ALL = { matches: () => true };

/** The FIB's next hops of a controller's: without endpoints (the same array when none has one). */
function plainHops(hops: readonly ControllerHop[]): readonly NextHop[] {
  for (let j = 0; j < hops.length; j++) if (hops[j]!.endpoint !== undefined) return hops.map(plainHop);
  return hops;
}

function plainHop(h: ControllerHop): NextHop {
  if (h.endpoint === undefined) return h;
  const { endpoint: _e, ...rest } = h;
  return rest;
}
