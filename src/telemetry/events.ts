// Operational visibility (architecture draft §6.5): what happened at this node, as events
// an operator can follow live and page through later. Each event says when, where, what
// kind, which agents (AICs) and capability, the decision and the reason; payloads of
// requests and sessions are never recorded.
//
// Events get increasing ids, never given twice: they come from blocks reserved durably
// in the store before use (as AIC serials do), so neither a crash before an event is
// written nor retention emptying the log brings an id back. The newest are held in
// memory; all are written to the audit log in the embedded store, which keeps them for a
// given age and up to a given number, oldest out first. A follower that reconnects with
// the last id it saw gets everything after it that is still kept.
import type { Database } from 'lmdb';
import type { Key, Store } from '../store/store.js';

const RESERVED = 'event-id-reserved';
const BLOCK = 10_000;
/** An event's JSON beyond this keeps its header and loses its detail. */
const MAX_EVENT_BYTES = 8 * 1024;
/** Events a page or a replay step looks at, at most, before it answers or yields. */
export const SCAN_STEP = 2_000;

export const EVENT_KINDS = [
  'registration', 'deregistration', 'health', 'discovery', 'resolution', 'invocation', 'policy', 'peer',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

export interface DmscEvent {
  readonly id: number;
  /** ISO 8601. */
  readonly time: string;
  readonly node: string;
  readonly kind: EventKind;
  /** The agents involved (the requester first, then the target, where both are). */
  readonly aics: readonly string[];
  /** Their providers, for observers scoped to a provider's agents. */
  readonly providers: readonly string[];
  readonly capability?: string;
  /** What was decided: accepted, denied, chosen, no-route, up, down, ok, failed… */
  readonly decision: string;
  /** Why: an ERR_DMSC_* code or a short text. */
  readonly reason?: string;
  /** Kind-specific facts: candidates considered, the one chosen, failover, status… */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export type NewEvent = Omit<DmscEvent, 'id' | 'time' | 'node' | 'aics' | 'providers'> & { aics?: readonly string[]; providers?: readonly string[] };

export interface EventLogOptions {
  /** Events older than this leave the audit log (default 7 days). */
  readonly maxAgeMs?: number;
  /** At most this many events are kept (default 1,000,000). */
  readonly maxEntries?: number;
  /** How often retention runs (default 60 s). */
  readonly pruneEveryMs?: number;
  /** Events held in memory for live followers (default 2,000). */
  readonly recent?: number;
}

export interface AuditQuery {
  /** Events after this id. */
  readonly since?: number;
  readonly kind?: EventKind;
  readonly aic?: string;
  readonly limit?: number;
}

type Listener = (e: DmscEvent) => void;

export class EventLog {
  readonly node: string;
  readonly #db: Database<DmscEvent, Key>;
  readonly #store: Store;
  readonly #meta: Database<number, Key>;
  readonly #maxAgeMs: number;
  readonly #maxEntries: number;
  readonly #recent: DmscEvent[] = [];
  readonly #recentMax: number;
  readonly #listeners = new Set<Listener>();
  readonly #counts = new Map<EventKind, number>();
  #next: number;
  #ceiling: number;
  #reserving: Promise<void> | undefined;
  #stored: number;
  #pruning: Promise<void> | undefined;
  #closed = false;
  readonly #timer: NodeJS.Timeout;

  constructor(store: Store, node: string, options: EventLogOptions = {}) {
    this.node = node;
    this.#store = store;
    this.#db = store.db<DmscEvent>('audit');
    this.#meta = store.db<number>('meta');
    this.#maxAgeMs = options.maxAgeMs ?? 7 * 24 * 3600_000;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    this.#recentMax = options.recent ?? 2_000;
    let last = 0;
    for (const k of this.#db.getKeys({ reverse: true, limit: 1 })) last = Number(k);
    // Past every id handed out before, written or not.
    this.#ceiling = Math.max(last, this.#meta.get(RESERVED) ?? 0);
    this.#next = this.#ceiling + 1;
    this.#stored = this.#db.getCount();
    this.#timer = setInterval(() => void this.prune().catch(() => {}), options.pruneEveryMs ?? 60_000).unref();
  }

  /** Reserves the first block of ids; events are taken only after it. */
  async start(): Promise<void> {
    await this.#reserve();
  }

  /** The id the next event will get. */
  get nextId(): number {
    return this.#next;
  }

  /** Events recorded since start, by kind. */
  get counts(): ReadonlyMap<EventKind, number> {
    return this.#counts;
  }

  /** Events in the audit log. */
  get stored(): number {
    return this.#stored;
  }

  /** Records an event: in memory at once, in the audit log with the next write batch. */
  emit(e: NewEvent): DmscEvent | undefined {
    if (this.#closed) return undefined;
    let event: DmscEvent = {
      id: this.#next++, time: new Date().toISOString(), node: this.node, kind: e.kind,
      aics: [...new Set(e.aics)].slice(0, 16), providers: [...new Set(e.providers)].slice(0, 16), decision: e.decision,
      ...(e.capability !== undefined ? { capability: e.capability } : {}),
      ...(e.reason !== undefined ? { reason: e.reason.slice(0, 300) } : {}),
      ...(e.detail !== undefined ? { detail: e.detail } : {}),
    };
    if (e.detail !== undefined && JSON.stringify(event).length > MAX_EVENT_BYTES) {
      const { detail: _dropped, ...head } = event;
      event = { ...head, detail: { truncated: true } };
    }
    // The next block is reserved well before this one runs out.
    if (this.#next > this.#ceiling - BLOCK / 2) void this.#reserve().catch(() => {});
    this.#recent.push(event);
    // Trimmed in steps, not on every event.
    if (this.#recent.length > this.#recentMax * 1.25) this.#recent.splice(0, this.#recent.length - this.#recentMax);
    this.#counts.set(e.kind, (this.#counts.get(e.kind) ?? 0) + 1);
    this.#db.put(event.id, event).catch(() => {});
    this.#stored++;
    if (this.#stored > this.#maxEntries * 1.1) void this.prune().catch(() => {});
    for (const l of this.#listeners) l(event);
    return event;
  }

  #reserve(): Promise<void> {
    this.#reserving ??= (async () => {
      const ceiling = Math.max(this.#ceiling, this.#next - 1) + BLOCK;
      await this.#store.durable(() => this.#meta.put(RESERVED, ceiling));
      this.#ceiling = ceiling;
    })().finally(() => {
      this.#reserving = undefined;
    });
    return this.#reserving;
  }

  /** Calls `listener` with each new event as it is recorded; returns the function that stops it. */
  follow(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Kept events after `since`, in order, looking at no more than `scan` of them. */
  range(since: number, scan: number): DmscEvent[] {
    const out: DmscEvent[] = [];
    for (const e of this.#after(since)) {
      out.push(e);
      if (out.length >= scan) break;
    }
    return out;
  }

  /**
   * A page of the audit log, oldest first. It looks at no more than SCAN_STEP events, so
   * a narrow filter over a long log answers in steps: `next` is the `since` of the page
   * after (null at the end).
   */
  page(q: AuditQuery, visible: (e: DmscEvent) => boolean = () => true): { events: DmscEvent[]; next: number | null } {
    const limit = q.limit ?? 100;
    const events: DmscEvent[] = [];
    const scanned = this.range(q.since ?? 0, SCAN_STEP);
    for (const e of scanned) {
      if ((q.kind && e.kind !== q.kind) || (q.aic && !e.aics.includes(q.aic)) || !visible(e)) continue;
      events.push(e);
      if (events.length === limit) return { events, next: e.id };
    }
    return { events, next: scanned.length === SCAN_STEP ? scanned.at(-1)!.id : null };
  }

  /** Applies retention now: events past the age, then the oldest past the count. */
  prune(now = Date.now()): Promise<void> {
    this.#pruning ??= (async () => {
      const oldest = new Date(now - this.#maxAgeMs).toISOString();
      const over = Math.max(0, this.#db.getCount() - this.#maxEntries);
      const doomed: number[] = [];
      for (const { key, value } of this.#db.getRange({})) {
        if (doomed.length >= over && value.time >= oldest) break;
        doomed.push(Number(key));
      }
      if (doomed.length) {
        await this.#db.transaction(() => {
          for (const k of doomed) this.#db.removeSync(k);
        });
      }
      this.#stored = this.#db.getCount();
      // Memory holds nothing the log no longer does.
      const last = doomed.at(-1) ?? 0;
      const cut = this.#recent.findIndex((e) => e.id > last);
      this.#recent.splice(0, cut < 0 ? this.#recent.length : cut);
    })().finally(() => {
      this.#pruning = undefined;
    });
    return this.#pruning;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#listeners.clear();
  }

  // Kept events after `since`: from the store up to what memory holds, then memory (the
  // newest may not be written yet).
  *#after(since: number): Generator<DmscEvent> {
    const held = this.#recent[0]?.id ?? this.#next;
    let last = since;
    if (since + 1 < held) {
      for (const { value } of this.#db.getRange({ start: since + 1, end: held })) {
        last = value.id;
        yield value;
      }
    }
    for (const e of this.#recent) if (e.id > last) yield e;
  }
}
