// The FIB's change history, for Watch and GET /v1/fib/watch: every batch the directory
// applied (whatever its source), kept for a while so a watcher can resume from a
// generation, and every next-hop health change, live. A watcher that asks for history
// no longer kept gets a snapshot of the table ended by `end_of_snapshot` instead.
import { randomInt } from 'node:crypto';
import type { Directory } from '../directory/directory.js';
import type { ForwardingTable } from '../fastpath/forwarding-table.js';
import type { FibEntry, FibOp, HealthState } from '../fastpath/types.js';

/** A next hop of an entry as a watcher sees it: as `entries()` lists it, with its health. */
export type HopState = FibEntry['nextHops'][number];

export type WatchEvent =
  /**
   * `last`: the last change of its generation. A watcher that has it may resume from that
   * generation; one cut off before it resumes from the generation before (snapshot
   * entries have none: a watcher resumes only after end_of_snapshot).
   */
  | { readonly type: 'entry'; readonly generation: number; readonly prefix: string; readonly removed: boolean; readonly nextHops: readonly HopState[]; readonly last: boolean; readonly epoch?: number }
  | { readonly type: 'health'; readonly generation: number; readonly nextHopId: string; readonly state: HealthState; readonly load: number }
  | { readonly type: 'end_of_snapshot'; readonly generation: number; readonly epoch?: number };

/** Where a watcher's events go as they happen. */
export interface Watcher {
  push(e: WatchEvent): void;
}

/**
 * Live events a watcher may have waiting before it is ended; it resumes from its last
 * generation, which the history (twice as long) still holds. Counted in events, so a
 * watcher that stops reading holds at most this many entries of up to 64 next hops.
 */
export const WATCH_QUEUE = 1 << 17;

/** What the history keeps: a batch of entry changes, or a next hop's health change. */
type HistoryItem = { generation: number; ops: readonly FibOp[] } | { generation: number; health: WatchEvent & { type: 'health' } };

/** Changes (entries, and health changes counted one each) kept for resuming watchers. */
const HISTORY_OPS = 262_144;

export class FibHistory {
  readonly #directory: Directory;
  readonly #fib: ForwardingTable;
  /** Entry batches and health changes, in the order they happened. */
  readonly #batches: HistoryItem[] = [];
  #kept = 0;
  /** Changes up to this generation are no longer (or never were) in the history. */
  #floor: number;
  readonly #watchers = new Set<Watcher>();
  /** New at each start of the node: generations start again with it. */
  readonly epoch = randomInt(1, 2 ** 31);

  constructor(directory: Directory, fib: ForwardingTable) {
    this.#directory = directory;
    this.#fib = fib;
    this.#floor = fib.generation;
    directory.onFibChange((ops, generation) => {
      this.#keep({ generation, ops }, ops.length);
      for (const w of this.#watchers) for (let i = 0; i < ops.length; i++) w.push(this.#entry(ops[i]!, generation, i === ops.length - 1));
    });
    directory.onNextHopHealth((id, state, load) => {
      const e = { type: 'health', generation: this.#fib.generation, nextHopId: id, state, load } as const;
      this.#keep({ generation: e.generation, health: e }, 1);
      for (const w of this.#watchers) w.push(e);
    });
  }

  #keep(item: HistoryItem, size: number): void {
    this.#batches.push(item);
    this.#kept += size;
    while (this.#kept > HISTORY_OPS && this.#batches.length > 1) {
      const gone = this.#batches.shift()!;
      this.#kept -= 'ops' in gone ? gone.ops.length : 1;
      // A watcher that saw generation g has its changes, but maybe not every health
      // change made at g: once one at g is dropped, only later generations resume.
      this.#floor = Math.max(this.#floor, 'ops' in gone ? gone.generation : gone.generation + 1);
    }
  }

  /**
   * Sends `w` the changes after `since` (or a snapshot, when the history does not reach
   * back that far, or `since` is 0) and then every change as it happens, until `stop()`.
   */
  watch(since: number, w: Watcher, epoch?: number): { backlog: Iterator<WatchEvent>; stop(): void } {
    this.#watchers.add(w);
    return { backlog: this.#backlog(since, epoch), stop: () => this.#watchers.delete(w) };
  }

  /**
   * Sends a watcher its backlog, then its live events, at the pace `write` allows (false:
   * wait for `drained`); `overflow` is called, and the watch stopped, when the live events
   * waiting pass WATCH_QUEUE. Returns what stops it.
   */
  stream(since: number, write: (e: WatchEvent) => boolean, drained: (resume: () => void) => void, overflow: () => void, epoch?: number): () => void {
    const live: WatchEvent[] = [];
    let head = 0;
    let backlog: Iterator<WatchEvent> | undefined;
    let waiting = false;
    let stopped = false;
    const pump = () => {
      waiting = false;
      while (!stopped) {
        let e: WatchEvent;
        if (backlog) {
          const n = backlog.next();
          if (n.done) {
            backlog = undefined;
            continue;
          }
          e = n.value;
        } else if (head < live.length) {
          e = live[head++]!;
          if (head > 4096 && head * 2 > live.length) live.splice(0, head), (head = 0);
        } else return;
        if (!write(e)) {
          waiting = true;
          drained(pump);
          return;
        }
      }
    };
    const sub = this.watch(since, {
      push: (e) => {
        if (stopped) return;
        if (live.length - head >= WATCH_QUEUE) {
          stop();
          overflow();
          return;
        }
        live.push(e);
        if (!waiting && !backlog) pump();
      },
    }, epoch);
    const stop = () => {
      stopped = true;
      sub.stop();
    };
    backlog = sub.backlog;
    pump();
    return stop;
  }

  // The changes after `since` still kept, or the whole table and end_of_snapshot, read as
  // the watcher takes them (the snapshot is the table when the watch began).
  *#backlog(since: number, epoch?: number): Generator<WatchEvent> {
    const current = this.#fib.generation;
    // A generation of an earlier start of the node means nothing now.
    if (since > 0 && (epoch === undefined || epoch === 0 || epoch === this.epoch) && since >= this.#floor && since <= current) {
      // Entry changes after `since`; health changes from `since` on (one made at `since`
      // may not have reached the watcher; sent again, it changes nothing).
      const end = this.#batches.length;
      const items = this.#batches.filter((b, i) => i < end && ('ops' in b ? b.generation > since && b.generation <= current : b.generation >= since));
      for (const b of items) {
        if ('ops' in b) for (let i = 0; i < b.ops.length; i++) yield this.#entry(b.ops[i]!, b.generation, i === b.ops.length - 1);
        else yield b.health;
      }
      return;
    }
    // Read from the directory as the watcher takes it: a copy of a 1M-entry table
    // (`fib.entries()`) would hold the node up for seconds.
    for (const op of this.#directory.programmed()) yield this.#entry(op, current, false);
    yield { type: 'end_of_snapshot', generation: current };
  }

  get watchers(): number {
    return this.#watchers.size;
  }

  #entry(op: FibOp, generation: number, last: boolean): WatchEvent {
    if (op.op === 'remove') return { type: 'entry', generation, prefix: op.prefix, removed: true, nextHops: [], last };
    const d = this.#directory;
    return {
      type: 'entry', generation, prefix: op.prefix, removed: false, last,
      nextHops: op.nextHops.map((h) => ({ id: h.id, weight: h.weight ?? 100, priority: h.priority ?? 0, tags: [...(h.tags ?? [])].sort(), ...d.healthOf(h.id) })),
    };
  }
}
