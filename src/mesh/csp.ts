// Capability digest sync (CSP, MACP §5.2) over one peering session, both directions.
// Sending: a snapshot (SNAPSHOT, ROUTES..., EOS at a version), then versioned deltas of
// what changed (added, updated, withdrawn), each acknowledged. Receiving: a snapshot
// marks the peer's old routes stale and EOS drops those not re-announced; a delta whose
// base is not the version we hold, or that does not validate, asks for a fresh snapshot
// (RESYNC). Bytes per change are proportional to the change: only the names that
// changed are looked at and sent.
import { DmscError } from '../errors.js';
import { nameProblem, tagProblem } from '../fastpath/validate.js';
import type { Message } from './frames.js';
import { MAX_PATH, sameEntry, type DigestEntry, type Rib } from './rib.js';

/** The part of a session CSP needs (a PeerSession, or a fake in tests). */
export interface Link {
  readonly peer: { readonly gateway: string };
  send(message: Message): boolean;
  /** Ends the session for a protocol error. */
  close(error: DmscError): void;
}

export interface DigestSyncOptions {
  /**
   * A naive full-state flood (a whole snapshot on every change): the baseline the mesh
   * benchmark compares deltas against, never used by a node.
   */
  readonly full?: boolean;
  /** Which names may be advertised to this peer (a domain boundary's export policy). */
  readonly exports?: (name: string) => boolean;
  /** Of our tags, those the peer may see (a domain boundary). */
  readonly shownTags?: (tags: readonly string[]) => string[];
  /** Which of the peer's names we take routes for; others are ignored (a domain boundary). */
  readonly imports?: (name: string) => boolean;
  /** Maps the peer's tags to ours, dropping those with no mapping (a domain boundary). */
  readonly importTags?: (tags: readonly string[]) => string[];
  /** Their names as ours (across a domain boundary); undefined: a name not to take. */
  readonly importName?: (name: string) => string | undefined;
  /** The peer is of another domain: its routes are marked as such (`ext`). */
  readonly external?: boolean;
  /** Routes the peer may hold here at once; past it they go and the session ends (default 100,000). */
  readonly maxRoutes?: number;
  /** How long a snapshot, or one asked for, may take before the session ends (default 60 s). */
  readonly snapshotTimeoutMs?: number;
}

export const DEFAULT_MAX_ROUTES = 100_000;

/** Entries per ROUTES frame or delta, and their rough size (JSON) per frame. */
const CHUNK = 512;
const CHUNK_BYTES = 256 * 1024;
const GATEWAY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Cuts `items` into runs of at most CHUNK items and about CHUNK_BYTES each. */
function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  let run: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = JSON.stringify(item).length;
    if (run.length && (run.length >= CHUNK || bytes + size > CHUNK_BYTES)) {
      out.push(run);
      run = [];
      bytes = 0;
    }
    run.push(item);
    bytes += size;
  }
  if (run.length) out.push(run);
  return out;
}

export interface CspStats {
  snapshotsSent: number;
  deltasSent: number;
  entriesSent: number;
  resyncsAsked: number;
}

export class DigestSync {
  readonly #rib: Rib;
  readonly #link: Link;
  readonly #peer: string;
  /** What the peer holds from us, as we sent it. */
  #sent = new Map<string, DigestEntry>();
  #version = 0;
  #snapshotSent = false;
  #pending = new Set<string>();
  #flushQueued = false;
  /** The version of the peer's digest we hold (-1: none complete yet). */
  #theirs = -1;
  #inSnapshot = false;
  /** Names the snapshot in progress announced; at its end, the peer's others go. */
  #seen = new Set<string>();
  /** Across a domain boundary: their name → ours, and back, as learned this session. */
  readonly #localOf = new Map<string, string>();
  readonly #theirOf = new Map<string, string>();
  /** We asked for a snapshot: everything until it begins is ignored, and not asked again. */
  #awaiting = false;
  #closed = false;
  readonly #unsubscribe: () => void;
  readonly stats: CspStats = { snapshotsSent: 0, deltasSent: 0, entriesSent: 0, resyncsAsked: 0 };

  /** The version of our digest sent last, and of the peer's we hold (-1: none complete yet). */
  get versions(): { ours: number; theirs: number } {
    return { ours: this.#version, theirs: this.#theirs };
  }

  readonly #options: DigestSyncOptions;
  readonly #maxRoutes: number;
  /** Runs while a snapshot from the peer is due: started, or asked for. */
  #snapshotTimer: NodeJS.Timeout | undefined;

  constructor(rib: Rib, link: Link, options: DigestSyncOptions = {}) {
    this.#rib = rib;
    this.#link = link;
    this.#options = options;
    this.#maxRoutes = options.maxRoutes ?? DEFAULT_MAX_ROUTES;
    this.#peer = link.peer.gateway;
    this.#unsubscribe = rib.onChange((names) => this.#changed(names));
  }

  /** Starts the session: our snapshot to the peer, and theirs is due. */
  start(): void {
    this.#snapshotDue();
    this.#sendSnapshot();
  }

  /** The session ended: stop sending; the peer's routes stay, stale, for the caller to time out. */
  stop(): void {
    this.#closed = true;
    this.#snapshotEnded();
    this.#unsubscribe();
    this.#rib.markStale(this.#peer);
  }

  /** Handles one CSP message; returns false if it is not a CSP message. */
  receive(m: Message): boolean {
    if (this.#awaiting && (m.type === 'CSP_ROUTES' || m.type === 'CSP_EOS' || m.type === 'CSP_DELTA')) return true;
    switch (m.type) {
      case 'CSP_SNAPSHOT':
        // The peer's routes stay in use while the snapshot refreshes them; those it does
        // not re-announce are withdrawn at its end.
        this.#awaiting = false;
        this.#inSnapshot = true;
        this.#theirs = -1;
        this.#seen = new Set();
        // Read afresh (the alignment may have changed): what is not re-announced under
        // the same name of ours goes at the end of the snapshot.
        this.#localOf.clear();
        this.#theirOf.clear();
        this.#snapshotDue();
        return true;
      case 'CSP_ROUTES': {
        const entries = this.#entries(m['entries']);
        if (!this.#inSnapshot || !entries) this.#resync('bad snapshot chunk');
        else if (this.#withinLimit(entries)) {
          for (const e of entries) this.#seen.add(e.name);
          this.#rib.learn(this.#peer, entries);
        }
        return true;
      }
      case 'CSP_EOS': {
        const v = m['version'];
        if (!this.#inSnapshot || !isVersion(v)) return this.#resync('bad end of snapshot'), true;
        this.#inSnapshot = false;
        this.#snapshotEnded();
        this.#rib.withdraw(this.#peer, this.#rib.namesFrom(this.#peer).filter((n) => !this.#seen.has(n)));
        this.#theirs = v;
        this.#link.send({ type: 'CSP_ACK', version: v });
        return true;
      }
      case 'CSP_DELTA': {
        const { base, version } = m as { base?: unknown; version?: unknown };
        if (this.#theirs < 0 || this.#inSnapshot) return true; // a snapshot is on its way
        if (!isVersion(base) || !isVersion(version) || base !== this.#theirs || version !== base + 1) {
          return this.#resync(`delta ${String(base)}→${String(version)} does not follow version ${this.#theirs}`), true;
        }
        const added = this.#entries(m['added']);
        const updated = this.#entries(m['updated']);
        const withdrawn = names(m['withdrawn']);
        if (!added || !updated || !withdrawn) return this.#resync('delta does not validate'), true;
        if (!this.#withinLimit([...added, ...updated])) return true;
        this.#rib.learn(this.#peer, [...added, ...updated]);
        this.#rib.withdraw(this.#peer, this.#options.importName ? this.#forget(withdrawn) : withdrawn);
        this.#theirs = version;
        this.#link.send({ type: 'CSP_ACK', version });
        return true;
      }
      case 'CSP_ACK':
        return true;
      case 'CSP_RESYNC':
        this.#sendSnapshot();
        return true;
      default:
        return false;
    }
  }

  #resync(reason: string): void {
    if (this.#awaiting) return;
    this.#awaiting = true;
    this.stats.resyncsAsked++;
    this.#inSnapshot = false;
    this.#theirs = -1;
    this.#snapshotDue();
    this.#link.send({ type: 'CSP_RESYNC', reason });
  }

  /**
   * A snapshot from the peer is due (it began, or we asked): one that does not end in
   * time ends the session, so routes it did not re-announce cannot linger.
   */
  // The deadline runs from the first reason to expect one; a peer beginning snapshot
  // after snapshot does not push it back.
  #snapshotDue(): void {
    if (this.#snapshotTimer !== undefined) return;
    const ms = this.#options.snapshotTimeoutMs ?? 60_000;
    this.#snapshotTimer = setTimeout(() => {
      if (!this.#closed) this.#link.close(new DmscError('ERR_DMSC_PEER_TIMEOUT', `${this.#peer}'s snapshot did not end within ${ms} ms`));
    }, ms);
    this.#snapshotTimer.unref?.();
  }

  #snapshotEnded(): void {
    clearTimeout(this.#snapshotTimer);
    this.#snapshotTimer = undefined;
  }

  /**
   * Whether learning `entries` keeps the peer within its route limit. During a snapshot
   * what counts is what it has announced so far (the rest goes at its end), and what it
   * holds here, old and new, may be at most twice the limit (a snapshot started over
   * does not clear what the last one added); otherwise the routes it holds. Past the
   * limit its routes go at once and the session ends.
   */
  #withinLimit(entries: readonly DigestEntry[]): boolean {
    let held = this.#rib.countFrom(this.#peer);
    for (const e of entries) if (!this.#rib.has(this.#peer, e.name)) held++;
    let total = held;
    if (this.#inSnapshot) {
      total = this.#seen.size;
      for (const e of entries) if (!this.#seen.has(e.name)) total++;
    }
    if (total <= this.#maxRoutes && held <= 2 * this.#maxRoutes) return true;
    this.#rib.dropAll(this.#peer);
    this.#link.close(new DmscError('ERR_DMSC_LIMIT_EXCEEDED', `${this.#peer} advertised ${Math.max(total, held)} routes; the limit is ${this.#maxRoutes}`));
    return false;
  }

  /** What we advertise to the peer for `name`, if anything (the export policy applies). */
  #export(name: string): DigestEntry | undefined {
    if (this.#options.exports && !this.#options.exports(name)) return undefined;
    const e = this.#rib.exportFor(this.#peer, name);
    return e && this.#options.shownTags ? { ...e, tags: this.#options.shownTags(e.tags) } : e;
  }

  #sendSnapshot(): void {
    if (this.#closed) return;
    this.#pending.clear();
    this.#sent = new Map();
    for (const name of this.#rib.names()) {
      const e = this.#export(name);
      if (e) this.#sent.set(name, e);
    }
    this.#version++;
    this.#link.send({ type: 'CSP_SNAPSHOT' });
    const all = [...this.#sent.values()];
    for (const entries of chunks(all)) this.#link.send({ type: 'CSP_ROUTES', entries });
    this.#link.send({ type: 'CSP_EOS', version: this.#version });
    this.#snapshotSent = true;
    this.stats.snapshotsSent++;
    this.stats.entriesSent += all.length;
  }

  #changed(changed: ReadonlySet<string>): void {
    if (this.#closed || !this.#snapshotSent) return;
    for (const n of changed) this.#pending.add(n);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    // Changes made in one turn go out as one delta.
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#closed || this.#pending.size === 0) return;
    const added: DigestEntry[] = [];
    const updated: DigestEntry[] = [];
    const withdrawn: string[] = [];
    for (const name of this.#pending) {
      const now = this.#export(name);
      const before = this.#sent.get(name);
      if (now && !before) added.push(now);
      else if (now && before && !sameEntry(now, before)) updated.push(now);
      else if (!now && before) withdrawn.push(name);
      if (now) this.#sent.set(name, now);
      else this.#sent.delete(name);
    }
    this.#pending.clear();
    if (!added.length && !updated.length && !withdrawn.length) return;
    if (this.#options.full) return this.#sendSnapshot();
    // A big change goes as several deltas in a row, each within a frame; withdrawals
    // first, so a peer near its route limit is not pushed past it by a rename.
    const parts = [
      ...chunks(withdrawn).map((w) => ({ added: [] as DigestEntry[], updated: [] as DigestEntry[], withdrawn: w })),
      ...chunks(updated).map((u) => ({ added: [] as DigestEntry[], updated: u, withdrawn: [] as string[] })),
      ...chunks(added).map((a) => ({ added: a, updated: [] as DigestEntry[], withdrawn: [] as string[] })),
    ];
    for (const part of parts) {
      const base = this.#version++;
      this.#link.send({ type: 'CSP_DELTA', base, version: this.#version, ...part });
      this.stats.deltasSent++;
    }
    this.stats.entriesSent += added.length + updated.length + withdrawn.length;
  }

  /**
   * Their name as ours, remembered for this session: a withdrawal then removes what was
   * learned even if the alignment changed meanwhile, and two of their names that would
   * read as one of ours do not merge (the first keeps it; the other is not taken).
   */
  #learn(name: string): string | undefined {
    const known = this.#localOf.get(name);
    if (known !== undefined) return known;
    const local = this.#options.importName!(name);
    if (local === undefined || this.#theirOf.has(local)) return undefined;
    this.#localOf.set(name, local);
    this.#theirOf.set(local, name);
    return local;
  }

  #forget(names: readonly string[]): string[] {
    const out: string[] = [];
    for (const n of names) {
      const local = this.#localOf.get(n);
      if (local === undefined) continue;
      this.#localOf.delete(n);
      this.#theirOf.delete(local);
      out.push(local);
    }
    return out;
  }

  /** Entries from the peer, checked; undefined if any is malformed. */
  #entries(value: unknown): DigestEntry[] | undefined {
    if (!Array.isArray(value) || value.length > 100_000) return undefined;
    const out: DigestEntry[] = [];
    for (const v of value) {
      const { name, tags, cost, path, ext } = (v ?? {}) as Record<string, unknown>;
      if (ext !== undefined && typeof ext !== 'boolean') return undefined;
      if (typeof name !== 'string' || nameProblem(name)) return undefined;
      if (!Array.isArray(tags) || tags.length > 64 || !tags.every((t) => typeof t === 'string' && !tagProblem(t, 'tag'))) return undefined;
      if (!Array.isArray(path) || path.length < 1 || path.length > MAX_PATH || !path.every((g) => typeof g === 'string' && GATEWAY.test(g))) return undefined;
      // The advertiser names itself first; the cost counts the hops after it.
      if (path[0] !== this.#peer || cost !== path.length - 1) return undefined;
      // In our words first: the import policy is written in them.
      const local = this.#options.importName ? this.#learn(name) : name;
      if (local === undefined || (this.#options.imports && !this.#options.imports(local))) continue;
      const ours = this.#options.importTags ? this.#options.importTags(tags as string[]) : (tags as string[]);
      out.push({ name: local, tags: [...new Set(ours)].sort(), cost: cost as number, path: path as string[], ...(ext === true || this.#options.external ? { ext: true } : {}) });
    }
    return out;
  }
}

const isVersion = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const names = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((n) => typeof n === 'string' && !nameProblem(n)) ? (v as string[]) : undefined);

