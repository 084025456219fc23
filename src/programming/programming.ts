// FIB programming, whatever the transport: who is calling, the single-primary election
// among open Modify sessions, and the sessions themselves (batches answered one each, in
// order, within a window; Replace). The gRPC service and the HTTP routes are thin over it.
import { timingSafeEqual } from 'node:crypto';
import { DmscError } from '../errors.js';
import type { Directory } from '../directory/directory.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { Store } from '../store/store.js';
import { ControllerKeys } from './keys.js';
import type { Persistence, Status } from './proto.js';
import { ControllerRib, type ApplyOptions, type ControllerOp, type OpError, type Programmer } from './rib.js';
import { FibHistory } from './watch.js';

/** What the node tells each session it may send. */
export const LIMITS = { maxOpsPerBatch: 10_000, maxBytesPerBatch: 16 << 20, window: 64 } as const;
/** Modify sessions open at once, over all controllers. */
export const MAX_SESSIONS = 256;
const MIN_LEASE_MS = 1_000;
const MAX_LEASE_MS = 86_400_000;

/** Who is calling: a controller by its key, or the admin (any controller, any prefix, override). */
export interface Caller {
  readonly name: string;
  readonly admin: boolean;
  readonly scopes: { matches(name: string): boolean };
}

export interface BatchOutcome {
  readonly status: Status;
  readonly generation: number;
  readonly fibGeneration: number;
  readonly errors: readonly OpError[];
  readonly message: string;
}

export interface PrimaryNews {
  readonly primary: boolean;
  readonly electionId: bigint;
  readonly controller: string;
}

const EVERYTHING = { matches: () => true };

export class Programming {
  readonly rib: ControllerRib;
  readonly keys: ControllerKeys;
  readonly history: FibHistory;
  readonly #fib: ForwardingTable;
  readonly #adminToken: Buffer;
  readonly #sessions = new Set<ModifySession>();
  /** Open watch streams by caller name, and how to end each. */
  readonly #watches = new Map<string, Set<(e: DmscError) => void>>();
  #primary: ModifySession | undefined;
  #opened = 0;

  constructor(deps: { directory: Directory; fib: ForwardingTable; store: Store; adminToken: string; log: (e: Record<string, unknown>) => void }) {
    this.#fib = deps.fib;
    this.#adminToken = Buffer.from(deps.adminToken);
    this.rib = new ControllerRib(deps);
    this.keys = new ControllerKeys(deps.store);
    this.history = new FibHistory(deps.directory, deps.fib);
    this.keys.onRevoke((name) => {
      const revoked = new DmscError('ERR_DMSC_UNAUTHORIZED', `the key of controller ${name} was revoked`);
      for (const s of this.#sessions) if (s.caller.name === name && !s.caller.admin) s.end(revoked);
      if (name !== 'admin') for (const end of [...(this.#watches.get(name) ?? [])]) end(revoked);
    });
  }

  /** The caller a bearer value names, or undefined. */
  authenticate(bearer: string | undefined): Caller | undefined {
    if (!bearer) return undefined;
    const given = Buffer.from(bearer);
    if (given.length === this.#adminToken.length && timingSafeEqual(given, this.#adminToken)) return { name: 'admin', admin: true, scopes: EVERYTHING };
    const k = this.keys.verify(bearer);
    return k ? { name: k.name, admin: false, scopes: k.patterns } : undefined;
  }

  get fibGeneration(): number {
    return this.#fib.generation;
  }

  get sessions(): number {
    return this.#sessions.size;
  }

  get primary(): { controller: string; electionId: bigint } | undefined {
    const p = this.#primary;
    return p ? { controller: p.controller, electionId: p.electionId } : undefined;
  }

  /**
   * Opens a Modify session; `notify` hears of changes of primary, `end` is how the node
   * ends the session (a revoked key). Throws a typed error for a bad open.
   */
  open(caller: Caller, o: { controllerId: string; electionId: bigint; persistence: Persistence; leaseMs: number }, notify: (n: PrimaryNews) => void, end: (e: DmscError) => void): ModifySession {
    const controller = o.controllerId || caller.name;
    if (!caller.admin && controller !== caller.name) throw new DmscError('ERR_DMSC_FORBIDDEN', `this key is controller ${caller.name}'s, not ${controller}'s`);
    if (controller === 'admin' && !caller.admin) throw new DmscError('ERR_DMSC_FORBIDDEN', 'the controller id admin is reserved');
    if (o.persistence !== 'PRESERVE' && o.persistence !== 'DELETE' && o.persistence !== 'LEASE') {
      throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', `persistence must be PRESERVE, DELETE or LEASE, got ${String(o.persistence)}`);
    }
    if (o.persistence === 'LEASE' && !(o.leaseMs >= MIN_LEASE_MS && o.leaseMs <= MAX_LEASE_MS)) {
      throw new DmscError('ERR_DMSC_OUT_OF_RANGE', `LEASE needs lease_ms from ${MIN_LEASE_MS} to ${MAX_LEASE_MS}, got ${o.leaseMs}`);
    }
    // One persistence a controller: a standby session must not turn the primary's
    // PRESERVE routes into DELETE ones (or drop them from the store).
    const current = this.rib.openPersistence(controller);
    if (current && (current.persistence !== o.persistence || (o.persistence === 'LEASE' && current.leaseMs !== o.leaseMs))) {
      throw new DmscError('ERR_DMSC_CONFLICT', `controller ${controller} has sessions open with persistence ${current.persistence}${current.persistence === 'LEASE' ? ` (lease ${current.leaseMs} ms)` : ''}; open with the same`);
    }
    if (this.#sessions.size >= MAX_SESSIONS) throw new DmscError('ERR_DMSC_BUSY', `${MAX_SESSIONS} Modify sessions are open; try later`);
    const s = new ModifySession(this, caller, controller, o.electionId, ++this.#opened, notify, end);
    this.#sessions.add(s);
    this.rib.sessionOpened(controller, o.persistence, o.persistence === 'LEASE' ? o.leaseMs : 0);
    this.#elect(s);
    return s;
  }

  /** What a new session is told. */
  opened(s: ModifySession): { primary: boolean; primaryElectionId: bigint; generation: number; fibGeneration: number } {
    return { primary: this.#primary === s, primaryElectionId: this.#primary?.electionId ?? 0n, generation: this.rib.generation(s.controller), fibGeneration: this.#fib.generation };
  }

  /** @internal */
  closed(s: ModifySession): void {
    if (!this.#sessions.delete(s)) return;
    this.rib.sessionEnded(s.controller);
    this.#elect();
  }

  /** @internal */
  isPrimary(s: ModifySession): boolean {
    return this.#primary === s;
  }

  /**
   * One batch outside any session (HTTP): refused while another controller's session is
   * primary. Resolves once VISIBLE, or with why not. `bad`: ops the caller could not even
   * read, named with the others' problems, and nothing applied.
   */
  async batch(caller: Caller, controller: string | undefined, ops: readonly ControllerOp[], ifGeneration?: number, bad: readonly OpError[] = []): Promise<BatchOutcome> {
    const id = controller ?? caller.name;
    if (!caller.admin && id !== caller.name) throw new DmscError('ERR_DMSC_FORBIDDEN', `this key is controller ${caller.name}'s, not ${id}'s`);
    const p = this.#primary;
    if (p && p.controller !== id) {
      return { status: 'NOT_PRIMARY', generation: this.rib.generation(id), fibGeneration: this.#fib.generation, errors: [], message: `controller ${p.controller} is primary (election id ${p.electionId})` };
    }
    if (ops.length > LIMITS.maxOpsPerBatch) throw new DmscError('ERR_DMSC_LIMIT_EXCEEDED', `a batch holds at most ${LIMITS.maxOpsPerBatch} ops, got ${ops.length}`);
    const who = { controller: id, scopes: caller.scopes };
    if (bad.length) {
      const errors = this.withChecks(who, ops, bad);
      return { status: 'REJECTED', generation: this.rib.generation(id), fibGeneration: this.#fib.generation, errors, message: `${errors.length} bad op${errors.length === 1 ? '' : 's'}; nothing was applied` };
    }
    return this.run(who, ops, ifGeneration === undefined ? {} : { expectGeneration: ifGeneration });
  }

  /**
   * `bad`, ops that could not be read, and the rib's problems with the others: one bad op
   * never hides another. @internal
   */
  withChecks(who: Programmer, ops: readonly ControllerOp[], bad: readonly OpError[], staged?: ReadonlySet<string>): OpError[] {
    const named = new Set(bad.map((e) => e.opIndex));
    return [...bad, ...this.rib.check(who, ops, staged).filter((e) => !named.has(e.opIndex))].sort((a, b) => a.opIndex - b.opIndex);
  }

  /** Applies and waits for VISIBLE. @internal */
  async run(who: Programmer, ops: readonly ControllerOp[], opts: ApplyOptions): Promise<BatchOutcome> {
    const r = this.rib.apply(who, ops, opts);
    const fibGeneration = this.#fib.generation;
    if (r.status === 'GENERATION_MISMATCH') return { status: r.status, generation: r.generation, fibGeneration, errors: [], message: `the controller's generation is ${r.generation}` };
    if (r.status === 'REJECTED') return { status: r.status, generation: r.generation, fibGeneration, errors: r.errors, message: `${r.errors.length} bad op${r.errors.length === 1 ? '' : 's'}; nothing was applied` };
    await r.done;
    return { status: 'VISIBLE', generation: r.generation, fibGeneration: r.fibGeneration, errors: [], message: '' };
  }

  /** Flush: by the primary session's election id, or the admin with `override`. */
  async flush(caller: Caller, controllerId: string, electionId: bigint, override: boolean): Promise<{ removed: number; generation: number; fibGeneration: number }> {
    const controller = controllerId || caller.name;
    if (!caller.admin && controller !== caller.name) throw new DmscError('ERR_DMSC_FORBIDDEN', `this key is controller ${caller.name}'s, not ${controller}'s`);
    if (override && !caller.admin) throw new DmscError('ERR_DMSC_FORBIDDEN', 'override takes the admin token');
    const p = this.#primary;
    if (!override && p && (p.controller !== controller || p.electionId !== electionId)) {
      throw new DmscError('ERR_DMSC_NOT_PRIMARY', `controller ${p.controller} is primary with election id ${p.electionId}; flush with that id, or with override and the admin token`);
    }
    const r = this.rib.flush(controller);
    await r.done;
    return { removed: r.removed, generation: r.generation, fibGeneration: r.fibGeneration };
  }

  /** Ends every session (the node is stopping). */
  stop(): void {
    for (const s of this.#sessions) s.end(new DmscError('ERR_DMSC_CLOSED', 'the node is stopping'));
    for (const end of [...this.#watches.values()].flatMap((m) => [...m])) end(new DmscError('ERR_DMSC_CLOSED', 'the node is stopping'));
    this.rib.stop();
  }

  /**
   * A watch stream of `caller` is open; `end` closes it (its key was revoked, the node is
   * stopping). Returns what to call when it ends by itself.
   */
  watching(caller: Caller, end: (e: DmscError) => void): () => void {
    let m = this.#watches.get(caller.name);
    if (!m) this.#watches.set(caller.name, (m = new Set()));
    const set = m;
    set.add(end);
    return () => {
      set.delete(end);
      if (set.size === 0 && this.#watches.get(caller.name) === set) this.#watches.delete(caller.name);
    };
  }

  // The highest election id is primary; between equal ids, the newest session.
  #elect(joining?: ModifySession): void {
    let best: ModifySession | undefined;
    for (const s of this.#sessions) if (!best || s.electionId > best.electionId || (s.electionId === best.electionId && s.order > best.order)) best = s;
    if (best === this.#primary) return;
    this.#primary = best;
    if (!best) return;
    for (const s of this.#sessions) if (s !== joining) s.notify({ primary: s === best, electionId: best.electionId, controller: best.controller });
  }
}

/**
 * One Modify session: batches in, one result each, in order. At most `window` batches
 * wait for their result; more get BUSY (in their turn). Inside a Replace, batches are
 * checked and kept (STAGED) and `replace_end` applies the whole table at once.
 */
export class ModifySession {
  readonly caller: Caller;
  readonly controller: string;
  readonly electionId: bigint;
  readonly order: number;
  readonly notify: (n: PrimaryNews) => void;
  readonly end: (e: DmscError) => void;
  readonly #owner: Programming;
  #tail: Promise<void> = Promise.resolve();
  #waiting = 0;
  #staged: Map<string, ControllerOp> | undefined;
  #stagedEndpoints = new Set<string>();
  #closed = false;

  constructor(owner: Programming, caller: Caller, controller: string, electionId: bigint, order: number, notify: (n: PrimaryNews) => void, end: (e: DmscError) => void) {
    this.#owner = owner;
    this.caller = caller;
    this.controller = controller;
    this.electionId = electionId;
    this.order = order;
    this.notify = notify;
    this.end = end;
  }

  get waiting(): number {
    return this.#waiting;
  }

  /** Resolves once every batch taken so far has had its result. */
  settled(): Promise<void> {
    return this.#tail;
  }

  /**
   * Takes a batch (or a Replace's begin or end: `kind`); `reply` gets its result, in the
   * order batches came. `bad` are ops that could not even be read (an unknown op).
   */
  submit(kind: 'batch' | 'begin' | 'end', b: { seq: string; electionId: bigint; expectGeneration?: number; ops: readonly ControllerOp[]; bad: readonly OpError[]; record?: Buffer }, reply: (seq: string, o: BatchOutcome) => void): void {
    if (this.#closed) return;
    const outcome = this.#waiting >= LIMITS.window ? this.#now('BUSY', `more than ${LIMITS.window} batches wait for their result`) : this.#take(kind, b);
    this.#waiting++;
    this.#tail = this.#tail.then(() => outcome).then((o) => {
      this.#waiting--;
      if (!this.#closed) reply(b.seq, o);
    }, (e: unknown) => {
      // Applied but not stored (the store failed): no status says that truly, so the
      // session ends and the controller resyncs.
      this.#waiting--;
      if (!this.#closed) this.end(new DmscError('ERR_DMSC_INTERNAL', `batch ${b.seq} was applied but could not be stored (${(e as Error).message}); reconnect and resync with a Replace`));
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner.closed(this);
  }

  #take(kind: 'batch' | 'begin' | 'end', b: { electionId: bigint; expectGeneration?: number; ops: readonly ControllerOp[]; bad: readonly OpError[]; record?: Buffer }): Promise<BatchOutcome> {
    if (!this.#owner.isPrimary(this)) return this.#now('NOT_PRIMARY', `session is not primary${this.#owner.primary ? `: controller ${this.#owner.primary.controller} is, with election id ${this.#owner.primary.electionId}` : ''}`);
    if (b.electionId !== this.electionId) return this.#now('NOT_PRIMARY', `the batch's election id ${b.electionId} is not the session's (${this.electionId})`);
    const who: Programmer = { controller: this.controller, scopes: this.caller.scopes };
    if (kind === 'begin') {
      this.#staged = new Map();
      this.#stagedEndpoints = new Set();
      return this.#now('STAGED', '');
    }
    if (b.bad.length || b.ops.length > LIMITS.maxOpsPerBatch) {
      const errors = b.ops.length > LIMITS.maxOpsPerBatch ? [{ opIndex: LIMITS.maxOpsPerBatch, code: 'ERR_DMSC_LIMIT_EXCEEDED' as const, message: `a batch holds at most ${LIMITS.maxOpsPerBatch} ops, got ${b.ops.length}` }]
        : this.#owner.withChecks(who, b.ops, b.bad, this.#staged ? this.#stagedEndpoints : undefined);
      return Promise.resolve({ ...this.#nowOutcome('REJECTED', `${errors.length} bad op(s); nothing was applied`), errors });
    }
    if (kind === 'end') {
      const staged = this.#staged;
      this.#staged = undefined;
      if (!staged) return this.#now('REJECTED', 'replace_end without replace_begin');
      return this.#owner.run(who, [...staged.values()], { replace: true, ...(b.expectGeneration !== undefined ? { expectGeneration: b.expectGeneration } : {}) });
    }
    if (this.#staged) {
      // Health may name an endpoint next hop an earlier staged batch defined.
      const errors = this.#owner.rib.check(who, b.ops, this.#stagedEndpoints);
      if (errors.length) return Promise.resolve({ ...this.#nowOutcome('REJECTED', `${errors.length} bad op(s); nothing was staged`), errors });
      for (const op of b.ops) if (op.op === 'upsert') for (const h of op.nextHops) if (h.endpoint) this.#stagedEndpoints.add(h.id);
      // The last op on a prefix wins; health ops go in order after the table is replaced.
      for (const [i, op] of b.ops.entries()) this.#staged.set(op.op === 'health' ? `health ${this.#staged.size} ${i}` : op.prefix, op);
      return this.#now('STAGED', '');
    }
    return this.#owner.run(who, b.ops, {
      ...(b.expectGeneration !== undefined ? { expectGeneration: b.expectGeneration } : {}), ...(b.record ? { record: b.record } : {}), alone: this.#waiting === 0,
    });
  }

  #now(status: Status, message: string): Promise<BatchOutcome> {
    return Promise.resolve(this.#nowOutcome(status, message));
  }

  #nowOutcome(status: Status, message: string): BatchOutcome {
    return { status, generation: this.#owner.rib.generation(this.controller), fibGeneration: this.#owner.fibGeneration, errors: [], message };
  }
}
