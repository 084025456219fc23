// Operational visibility (architecture draft §6.5): what happened at this node, as events
// an operator can follow live and page through later. Each event says when, where, what
// kind, which agents (AICs) and capability, the decision and the reason; payloads of
// requests and sessions are never recorded.
//
// Events get increasing ids, kept across restarts. The newest are held in memory for
// live followers; all are written to the audit log in the embedded store, which keeps
// them for a given age and up to a given number, oldest out first. A follower that
// reconnects with the last id it saw gets everything after it that is still kept.
import type { Database } from 'lmdb';
import type { Key, Store } from '../store/store.js';

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
  /** Events held in memory for live followers (default 10,000). */
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
  readonly #maxAgeMs: number;
  readonly #maxEntries: number;
  readonly #recent: DmscEvent[] = [];
  readonly #recentMax: number;
  readonly #listeners = new Set<Listener>();
  readonly #counts = new Map<EventKind, number>();
  #next: number;
  #stored: number;
  #pruning: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(store: Store, node: string, options: EventLogOptions = {}) {
    this.node = node;
    this.#db = store.db<DmscEvent>('audit');
    this.#maxAgeMs = options.maxAgeMs ?? 7 * 24 * 3600_000;
    this.#maxEntries = options.maxEntries ?? 1_000_000;
    this.#recentMax = options.recent ?? 10_000;
    let last = 0;
    for (const k of this.#db.getKeys({ reverse: true, limit: 1 })) last = Number(k);
    this.#next = last + 1;
    this.#stored = this.#db.getCount();
    this.#timer = setInterval(() => void this.prune(), options.pruneEveryMs ?? 60_000).unref();
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
  emit(e: NewEvent): DmscEvent {
    const event: DmscEvent = {
      id: this.#next++, time: new Date().toISOString(), node: this.node, kind: e.kind,
      aics: [...new Set(e.aics)], providers: [...new Set(e.providers)], decision: e.decision,
      ...(e.capability !== undefined ? { capability: e.capability } : {}),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
      ...(e.detail !== undefined ? { detail: e.detail } : {}),
    };
    this.#recent.push(event);
    // Trimmed in steps, not on every event.
    if (this.#recent.length > this.#recentMax * 1.25) this.#recent.splice(0, this.#recent.length - this.#recentMax);
    this.#counts.set(e.kind, (this.#counts.get(e.kind) ?? 0) + 1);
    void this.#db.put(event.id, event);
    this.#stored++;
    if (this.#stored > this.#maxEntries * 1.1) void this.prune();
    for (const l of this.#listeners) l(event);
    return event;
  }

  /**
   * Follows the log: first every kept event after `since` (when given), in order, then
   * each new one as it is recorded. Returns the function that stops following.
   */
  follow(since: number | undefined, listener: Listener): () => void {
    if (since !== undefined) for (const e of this.#after(since)) listener(e);
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A page of the audit log, oldest first; `next` is the `since` of the page after. */
  page(q: AuditQuery, visible: (e: DmscEvent) => boolean = () => true): { events: DmscEvent[]; next: number | null } {
    const limit = q.limit ?? 100;
    const events: DmscEvent[] = [];
    for (const e of this.#after(q.since ?? 0)) {
      if ((q.kind && e.kind !== q.kind) || (q.aic && !e.aics.includes(q.aic)) || !visible(e)) continue;
      events.push(e);
      if (events.length === limit) return { events, next: e.id };
    }
    return { events, next: null };
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
      const first = doomed.length ? doomed[doomed.length - 1]! : 0;
      const cut = this.#recent.findIndex((e) => e.id > first);
      if (cut > 0) this.#recent.splice(0, cut);
    })().finally(() => {
      this.#pruning = undefined;
    });
    return this.#pruning;
  }

  close(): void {
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
