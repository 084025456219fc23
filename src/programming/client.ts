// FibClient: a controller's side of `dmsc.fib.v1.FibProgramming` (proto/dmsc/fib/v1/fib.proto).
// One Modify stream per client, batches pipelined up to the node's window and answered in
// order, Replace as an exclusive run of batches, and a reconnect that resyncs the node to
// what the client holds: a controller written against it survives a node restart without
// code of its own.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { DmscError, DmscRangeError, DmscTypeError } from '../errors.js';
import {
  fromGrpc, fromWireHop, fromWireOpened, fromWireResult, fromWireWatch, isPermanent,
  type BatchResult, type FibClientNextHop, type FibClientOp, type Opened, type PrimaryChange, type WatchEvent, type WireOpened, type WireWatchResponse,
} from './client-wire.js';
import { fibService, fromWire128, toWire128, type Persistence, type WireNextHop, type WireResult, type WireUint128 } from './proto.js';
import { encodeOps, type EncodedOps } from './client-encode.js';
import { HeldTable } from './client-held.js';

export type { BatchResult, FibClientNextHop, FibClientOp, FibLimits, Opened, PrimaryChange, WatchEvent, WatchNextHop } from './client-wire.js';

export interface FibClientOptions {
  /** HOST:PORT of the node's `--fib-api` listener. */
  readonly address: string;
  /** A controller key (`dmsc controller add`) or the node's admin token; sent on every call. */
  readonly key: string;
  /** The controller to program; empty takes the key's (only the admin token may name another). */
  readonly controllerId?: string;
  /** 0..2^128-1 (default 1): the session with the highest is the controller's primary. */
  readonly electionId?: bigint;
  /** What becomes of the entries when the session ends (default PRESERVE). */
  readonly persistence?: Persistence;
  /** With LEASE: how long entries outlive the session (1 s to 24 h). */
  readonly leaseMs?: number;
  /** Default: insecure (plain TCP). */
  readonly credentials?: grpc.ChannelCredentials;
  /** Reopen the Modify stream when it breaks (default true). */
  readonly reconnect?: boolean;
  /** After a reconnect, Replace the controller's table with what the client holds (default true). */
  readonly resync?: boolean;
  /** Passed to the gRPC channel (over the client's short reconnect backoff). */
  readonly channelOptions?: grpc.ChannelOptions;
}

export interface ReplaceOptions {
  /** The Replace commits only if the controller's generation is this one. */
  readonly expectGeneration?: number;
  /** Called with each batch's result (STAGED, or why not) and its index, as they arrive. */
  readonly onBatch?: (result: BatchResult, index: number) => void;
}

/** An entry of the controller's table, as `get()` reads it. */
export interface FibClientEntry {
  readonly prefix: string;
  readonly nextHops: readonly FibClientNextHop[];
}

export interface FibClientEvents {
  primary: [PrimaryChange];
  /** The Modify stream broke; the next attempt is `delayMs` away. */
  reconnecting: [{ attempt: number; delayMs: number; error: Error }];
  /** The stream is open again (before the resync). */
  reopened: [Opened];
  /** The answer to the resync's Replace (VISIBLE when the node holds again what the client holds). */
  resync: [BatchResult];
  /** The client gave up (a refused key on reconnect, say); emitted only when listened to. */
  error: [Error];
}

const MAX_128 = (1n << 128n) - 1n;
const PERSISTENCE = new Set<Persistence>(['PRESERVE', 'DELETE', 'LEASE']);
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 5000;

// A Replace in progress: begin, staged batches, end. `sent` once a frame of it is on the
// stream: from then on, a broken stream ends it (the node drops what it staged).
interface ReplaceRun {
  sent: boolean;
  done: boolean;
  /** The table the Replace builds, when the client holds one. */
  readonly next: HeldTable | undefined;
  readonly resolve: (r: BatchResult) => void;
  readonly reject: (e: Error) => void;
  readonly onBatch: ((result: BatchResult, index: number) => void) | undefined;
}

interface Frame {
  readonly kind: 'batch' | 'begin' | 'end';
  /** Until sent; then only while the client holds a table (for the result to update it). */
  ops?: EncodedOps | undefined;
  readonly expectGeneration?: number;
  readonly run?: ReplaceRun;
  readonly index?: number;
  /** A plain batch's caller. */
  readonly resolve?: (r: BatchResult) => void;
  readonly reject?: (e: Error) => void;
  seq?: number;
}

// Work that must wait while a Replace is being queued: started in call order after it.
interface Deferred {
  start(): void;
  reject(e: Error): void;
}

interface FibStub extends grpc.Client {
  Modify(metadata: grpc.Metadata): grpc.ClientDuplexStream<object, { response: string; opened?: WireOpened; result?: WireResult; primary?: { primary: boolean; primaryElectionId: WireUint128 | null; primaryControllerId: string } }>;
  Get(request: object, metadata: grpc.Metadata): grpc.ClientReadableStream<{ generation: string; entries: { prefix: string; nextHops: WireNextHop[] }[]; end: boolean }>;
  Watch(request: object, metadata: grpc.Metadata): grpc.ClientReadableStream<WireWatchResponse>;
  Flush(request: object, metadata: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: { removed: string; generation: string; fibGeneration: string }) => void): grpc.ClientUnaryCall;
}

type ModifyCall = ReturnType<FibStub['Modify']>;

function checkOptions(o: FibClientOptions): FibClientOptions {
  if (typeof o !== 'object' || o === null) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'FibClient needs options { address, key }');
  if (typeof o.address !== 'string' || o.address === '') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'address must be HOST:PORT');
  if (typeof o.key !== 'string' || o.key === '') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'key must be a non-empty string');
  if (o.controllerId !== undefined && typeof o.controllerId !== 'string') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'controllerId must be a string');
  if (o.electionId !== undefined && (typeof o.electionId !== 'bigint' || o.electionId < 0n || o.electionId > MAX_128)) {
    throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', 'electionId must be a bigint from 0 to 2^128-1');
  }
  if (o.persistence !== undefined && !PERSISTENCE.has(o.persistence)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `persistence must be PRESERVE, DELETE or LEASE, got ${String(o.persistence)}`);
  if (o.leaseMs !== undefined && (!Number.isSafeInteger(o.leaseMs) || o.leaseMs < 0)) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', 'leaseMs must be a non-negative integer');
  if (o.credentials !== undefined && !(o.credentials instanceof grpc.ChannelCredentials)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'credentials must be grpc.ChannelCredentials');
  return o;
}

function checkGeneration(g: unknown): number | undefined {
  if (g === undefined) return undefined;
  if (!Number.isSafeInteger(g) || (g as number) < 0) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `expectGeneration must be a non-negative integer, got ${String(g)}`);
  return g as number;
}

/**
 * Programs a node's FIB as one controller, over gRPC.
 *
 * **Batches.** `modify()` sends one batch (all or nothing on the node) and resolves with
 * its result, whatever the status: REJECTED names every bad op, NOT_PRIMARY,
 * GENERATION_MISMATCH and BUSY applied nothing. Calls may overlap: at most the node's
 * `window` batches are on the stream at once, the rest wait in the client, and results
 * come back in call order.
 *
 * **What the client holds.** With `resync` (the default) the client keeps every entry it
 * upserted and did not remove, from VISIBLE results (a Replace's VISIBLE end sets it
 * whole; a Flush of its own entries empties it). Health is not kept.
 *
 * **Reconnect.** When the Modify stream breaks after `open()` (the node restarts, the
 * network drops), batches on the stream are rejected with ERR_DMSC_UNAVAILABLE: they may
 * or may not have been applied. So is a Replace that had begun. The client then reopens,
 * retrying after 100 ms, doubling up to 5 s; once open it Replaces the controller's table
 * with what it holds (the `resync` event gives the answer), then sends the batches that
 * were waiting. A refused key or `open` ends this: everything waiting is rejected, `error`
 * is emitted (when listened to), and later calls reject with that error.
 *
 * Events: `primary`, `reconnecting`, `reopened`, `resync`, `error`.
 *
 * @example
 * const fib = new FibClient({ address: '127.0.0.1:7072', key: process.env.DMSC_FIB_KEY });
 * await fib.open();
 * const r = await fib.modify([{ op: 'upsert', prefix: '/capability/ocr', nextHops: [{ id: 'ocr-eu', endpoint: 'http://10.0.0.7:8080' }] }]);
 * if (r.status !== 'VISIBLE') console.error(r.errors);
 * fib.close();
 */
export class FibClient extends EventEmitter<FibClientEvents> {
  readonly #options: FibClientOptions;
  readonly #stub: FibStub;
  readonly #election: WireUint128;
  readonly #reconnect: boolean;
  #state: 'idle' | 'opening' | 'open' | 'reconnecting' | 'failed' | 'closed' = 'idle';
  #failure: Error | undefined;
  #call: ModifyCall | undefined;
  #opening: { resolve: (o: Opened) => void; reject: (e: Error) => void } | undefined;
  #openPromise: Promise<Opened> | undefined;
  #opened: Opened | undefined;
  #primary = false;
  #seq = 0;
  #queue: Frame[] = [];
  #inflight: Frame[] = [];
  #held: HeldTable | undefined;
  #exclusive: ReplaceRun | undefined;
  #deferred: Deferred[] = [];
  #wakers: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #wakeTimer: (() => void) | undefined;

  constructor(options: FibClientOptions) {
    super();
    this.#options = checkOptions(options);
    this.#election = toWire128(options.electionId ?? 1n);
    this.#reconnect = options.reconnect ?? true;
    if (options.resync ?? true) this.#held = new HeldTable();
    const Service = fibService();
    // grpc-js waits up to 2 minutes between attempts by default; a restarted node should
    // be found within the client's own backoff.
    this.#stub = new Service(options.address, options.credentials ?? grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': BACKOFF_FIRST_MS, 'grpc.max_reconnect_backoff_ms': BACKOFF_MAX_MS, ...options.channelOptions,
    }) as unknown as FibStub;
  }

  /** The last `opened` answer (undefined before `open()`). */
  get opened(): Opened | undefined {
    return this.#opened;
  }

  /** Whether this session is the controller's primary, as last told. */
  get primary(): boolean {
    return this.#primary;
  }

  /** How many entries the client holds (what a resync would Replace the table with); 0 without `resync`. */
  get held(): number {
    return this.#held?.size ?? 0;
  }

  /**
   * Opens the Modify stream and resolves with the node's `opened` answer. Calling it
   * again returns the same answer. Rejects with ERR_DMSC_UNAVAILABLE when the node cannot
   * be reached and ERR_DMSC_UNAUTHORIZED when it refuses the key; then it may be called again.
   * @example
   * const { primary, limits } = await fib.open();
   */
  open(): Promise<Opened> {
    if (this.#state === 'closed') return Promise.reject(this.#closedError());
    if (this.#state === 'failed') return Promise.reject(this.#failure!);
    if (!this.#openPromise) {
      this.#state = 'opening';
      this.#openPromise = this.#connect().catch((e: Error) => {
        this.#openPromise = undefined;
        throw e;
      });
    }
    return this.#openPromise;
  }

  /**
   * Sends one batch and resolves with its result. Rejects with ERR_DMSC_INVALID_ARGUMENT
   * for an op that cannot be sent (the node checks the rest and answers REJECTED), and
   * ERR_DMSC_UNAVAILABLE if the stream broke while the batch was on it.
   * @example
   * const r = await fib.modify([{ op: 'remove', prefix: '/capability/old' }], { expectGeneration: 41 });
   */
  modify(ops: readonly FibClientOp[], opts: { readonly expectGeneration?: number } = {}): Promise<BatchResult> {
    let frame: Omit<Frame, 'resolve' | 'reject'>;
    try {
      this.#checkUsable();
      const expectGeneration = checkGeneration(opts.expectGeneration);
      frame = { kind: 'batch', ops: encodeOps(ops, 'ops', !!this.#held), ...(expectGeneration !== undefined ? { expectGeneration } : {}) };
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => this.#whenFree({ start: () => this.#enqueue({ ...frame, resolve, reject }), reject }));
  }

  /**
   * Replaces the controller's whole table with the batches given, in one change: entries
   * not announced again are removed. Batches are read as the window allows (a generator
   * of a million entries is never held at once) and resolve STAGED; the promise resolves
   * with the answer to the Replace's end. Other calls wait until the Replace is queued.
   * If the batches throw (or hold an op that cannot be sent) after the Replace began,
   * the client ends its session so the node drops what was staged, and reconnects.
   * @example
   * const r = await fib.replace([[{ op: 'upsert', prefix: '/capability/a', nextHops: [{ id: 'peer:gw2' }] }]]);
   */
  async replace(batches: AsyncIterable<readonly FibClientOp[]> | Iterable<readonly FibClientOp[]>, opts: ReplaceOptions = {}): Promise<BatchResult> {
    this.#checkUsable();
    const expectGeneration = checkGeneration(opts.expectGeneration);
    let run!: ReplaceRun;
    const result = new Promise<BatchResult>((resolve, reject) => {
      run = { sent: false, done: false, next: this.#held ? new HeldTable() : undefined, resolve, reject, onBatch: opts.onBatch };
    });
    // It may fail while the batches are still being read; the caller sees that when it is returned.
    result.catch(() => {});
    await new Promise<void>((resolve) => this.#whenFree({
      start: () => {
        this.#exclusive = run;
        resolve();
      },
      reject: (e) => {
        this.#failRun(run, e);
        resolve();
      },
    }));
    try {
      if (!run.done) {
        this.#enqueue({ kind: 'begin', run });
        let index = 0;
        for await (const ops of batches) {
          const wire = encodeOps(ops, `batch ${index}`, !!run.next);
          // Read no further ahead than the window: the batches may be a million entries.
          await this.#waitFor(() => run.done || this.#queue.length < this.#window());
          if (run.done) break;
          this.#enqueue({ kind: 'batch', ops: wire, run, index: index++ });
        }
        if (!run.done) this.#enqueue({ kind: 'end', run, ...(expectGeneration !== undefined ? { expectGeneration } : {}) });
      }
    } catch (e) {
      await this.#abandon(run, e as Error);
    } finally {
      if (this.#exclusive === run) this.#release();
    }
    return result;
  }

  /**
   * The controller's entries (or `controllerId`'s, with the admin token), all at one
   * generation, in the file format.
   * @example
   * for await (const { prefix, nextHops } of fib.get()) console.log(prefix, nextHops.length);
   */
  async *get(controllerId?: string): AsyncGenerator<FibClientEntry> {
    const call = this.#stub.Get({ controllerId: controllerId ?? this.#options.controllerId ?? '' }, this.#metadata());
    try {
      for await (const chunk of this.#read(call)) {
        for (const e of chunk.entries) yield { prefix: e.prefix, nextHops: e.nextHops.map(fromWireHop) };
        if (chunk.end) return;
      }
    } finally {
      call.cancel();
    }
  }

  /**
   * Every change to the node's FIB after `sinceGeneration` (0: a snapshot first, ended by
   * an `end_of_snapshot` event), and every next-hop health change, until the loop breaks.
   * To resume, pass the generation of the last change marked `last` (or of the end of the
   * snapshot) and its `epoch`: a node restarted since answers with a snapshot.
   * @example
   * for await (const ev of fib.watch()) if (ev.type === 'entry') console.log(ev.prefix, ev.removed);
   */
  async *watch(sinceGeneration = 0, epoch = 0): AsyncGenerator<WatchEvent> {
    checkGeneration(sinceGeneration);
    checkGeneration(epoch);
    const call = this.#stub.Watch({ sinceGeneration: String(sinceGeneration), epoch: String(epoch) }, this.#metadata());
    try {
      for await (const m of this.#read(call)) yield fromWireWatch(m);
    } finally {
      call.cancel();
    }
  }

  /**
   * Removes the controller's entries (this session's election id must be the primary's,
   * unless `override` with the admin token). Flushing its own entries empties what the
   * client holds.
   * @example
   * const { removed } = await fib.flush();
   */
  flush(opts: { readonly override?: boolean; readonly controllerId?: string } = {}): Promise<{ removed: number; generation: number; fibGeneration: number }> {
    const own = opts.controllerId === undefined || opts.controllerId === this.#options.controllerId;
    const request = { controllerId: opts.controllerId ?? this.#options.controllerId ?? '', electionId: this.#election, override: opts.override === true };
    return new Promise((resolve, reject) => {
      this.#stub.Flush(request, this.#metadata(), (e, r) => {
        if (e) return reject(fromGrpc(e, this.#options.address));
        if (!r) return reject(new DmscError('ERR_DMSC_INTERNAL', 'Flush answered without a response'));
        if (own) this.#held?.clear();
        resolve({ removed: Number(r.removed), generation: Number(r.generation), fibGeneration: Number(r.fibGeneration) });
      });
    });
  }

  /**
   * Ends the session and the channel. Batches not yet answered are rejected with
   * ERR_DMSC_CLOSED (those on the stream may have been applied): await them first.
   */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearTimeout(this.#timer);
    this.#wakeTimer?.();
    this.#failAll(this.#closedError());
    const call = this.#call;
    this.#call = undefined;
    call?.end();
    call?.cancel();
    this.#stub.close();
  }

  #closedError(): DmscError {
    return new DmscError('ERR_DMSC_CLOSED', 'the FibClient was closed');
  }

  #checkUsable(): void {
    if (this.#state === 'closed') throw this.#closedError();
    if (this.#state === 'failed') throw this.#failure!;
    if (this.#state === 'idle') throw new DmscError('ERR_DMSC_NOT_READY', 'call open() before sending batches');
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.#options.key}`);
    return md;
  }

  #window(): number {
    return Math.max(1, this.#opened?.limits.window ?? 1);
  }

  /** A server stream as an async iterable whose errors are DmscErrors. */
  async *#read<T>(call: grpc.ClientReadableStream<T>): AsyncGenerator<T> {
    // cancel() in a `finally` makes grpc-js emit a CANCELLED error nobody else listens to.
    call.on('error', () => {});
    try {
      for await (const m of call) yield m as T;
    } catch (e) {
      throw fromGrpc(e, this.#options.address);
    }
  }

  /** Starts a Modify stream and sends `open`; resolves with `opened`. */
  #connect(): Promise<Opened> {
    const o = this.#options;
    const call = this.#stub.Modify(this.#metadata());
    this.#call = call;
    let error: Error | undefined;
    // A failed call emits `error` at once but `end` only after every message before it has
    // been delivered: the stream counts as broken from `end`, so no result is lost.
    call.on('error', (e) => void (error = fromGrpc(e, o.address)));
    const broken = () => this.#onBroken(call, error ?? new DmscError('ERR_DMSC_UNAVAILABLE', `the node at ${o.address} ended the Modify stream`));
    call.on('end', broken);
    call.on('close', broken);
    call.on('data', (m) => this.#onMessage(call, m));
    const promise = new Promise<Opened>((resolve, reject) => {
      this.#opening = { resolve, reject };
    });
    call.write({
      open: {
        controllerId: o.controllerId ?? '', electionId: this.#election, persistence: o.persistence ?? 'PRESERVE', leaseMs: String(o.leaseMs ?? 0),
      },
    });
    return promise;
  }

  #onMessage(call: ModifyCall, m: { response: string; opened?: WireOpened; result?: WireResult; primary?: { primary: boolean; primaryElectionId: WireUint128 | null; primaryControllerId: string } }): void {
    if (call !== this.#call) return;
    if (m.response === 'opened' && m.opened) {
      const opened = fromWireOpened(m.opened);
      const reopened = this.#state === 'reconnecting';
      this.#opened = opened;
      this.#primary = opened.primary;
      this.#state = 'open';
      // Resync before anything that waited: the node must hold what the client holds
      // before the batches written on top of it.
      if (reopened && this.#held) this.#queue.unshift(...this.#resyncFrames());
      const opening = this.#opening;
      this.#opening = undefined;
      opening?.resolve(opened);
      if (reopened) this.emit('reopened', opened);
      this.#pump();
    } else if (m.response === 'result' && m.result) {
      this.#onResult(fromWireResult(m.result));
    } else if (m.response === 'primary' && m.primary) {
      this.#primary = m.primary.primary;
      this.emit('primary', { primary: m.primary.primary, primaryElectionId: fromWire128(m.primary.primaryElectionId), primaryControllerId: m.primary.primaryControllerId });
    }
  }

  #onResult(r: BatchResult): void {
    const i = this.#inflight.findIndex((f) => f.seq === r.seq);
    if (i < 0) return;
    const f = this.#inflight.splice(i, 1)[0]!;
    const run = f.run;
    if (!run) {
      if (r.status === 'VISIBLE' && this.#held) this.#held.apply(f.ops!);
      f.resolve!(r);
    } else if (!run.done) {
      if (f.kind === 'batch') {
        if (r.status === 'STAGED' && run.next) run.next.apply(f.ops!);
        try {
          run.onBatch?.(r, f.index!);
        } catch {
          // The caller's progress callback must not break the stream's bookkeeping.
        }
      } else if (f.kind === 'end') {
        run.done = true;
        if (r.status === 'VISIBLE' && run.next) this.#held = run.next;
        run.resolve(r);
      }
    }
    this.#pump();
  }

  #onBroken(call: ModifyCall, error: Error): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    if (this.#state === 'closed') return;
    const doubt = new DmscError('ERR_DMSC_UNAVAILABLE', `the Modify stream to ${this.#options.address} broke before the node answered (${error.message}); the batch may or may not have been applied`);
    for (const f of this.#inflight.splice(0)) this.#fail(f, doubt);
    for (const f of this.#queue) if (f.run?.sent) this.#failRun(f.run, doubt);
    if (this.#exclusive?.sent) this.#failRun(this.#exclusive, doubt);
    const opening = this.#opening;
    if (this.#state === 'opening') {
      // The first open() failed: it rejects, and so does whatever was sent after it.
      this.#failAll(error);
      this.#state = 'idle';
    } else if (opening) {
      // The reconnect loop is waiting for this attempt: it decides.
      this.#opening = undefined;
      opening.reject(error);
    } else if (this.#reconnect && !isPermanent(error)) {
      void this.#reconnectLoop(error);
    } else {
      this.#giveUp(error);
    }
    this.#wake();
  }

  async #reconnectLoop(cause: Error): Promise<void> {
    this.#state = 'reconnecting';
    let delayMs = BACKOFF_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      this.emit('reconnecting', { attempt, delayMs, error: cause });
      await new Promise<void>((resolve) => {
        this.#wakeTimer = resolve;
        this.#timer = setTimeout(resolve, delayMs * (0.8 + Math.random() * 0.4));
      });
      this.#wakeTimer = undefined;
      if (this.#state !== 'reconnecting') return;
      try {
        await this.#connect();
        return;
      } catch (e) {
        if (this.#state !== 'reconnecting') return;
        if (isPermanent(e)) return this.#giveUp(e as Error);
        cause = e as Error;
        delayMs = Math.min(delayMs * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /** The frames of a Replace with everything the client holds, cut to the node's limits. */
  #resyncFrames(): Frame[] {
    const limits = this.#opened!.limits;
    const maxOps = limits.maxOpsPerBatch || 1000;
    const maxBytes = limits.maxBytesPerBatch || 1 << 20;
    const run: ReplaceRun = {
      sent: false, done: false, next: undefined, onBatch: undefined,
      resolve: (r) => this.emit('resync', r),
      // A resync cut short by another break is redone by the next reconnect.
      reject: () => {},
    };
    const frames: Frame[] = [{ kind: 'begin', run }];
    let ops: Buffer[] = [];
    let bytes = 0;
    // Copied at once: the views are of the held table's buffer, which the next result may change.
    const batch = () => {
      const all = Buffer.concat(ops, bytes);
      frames.push({ kind: 'batch', ops: { bytes: all, held: all, count: ops.length, changes: { starts: [], ends: [] } }, run, index: frames.length - 1 });
    };
    // Room for the batch's other fields under the node's byte limit.
    const room = maxBytes - 64;
    for (const op of this.#held!.ops()) {
      if (ops.length > 0 && (ops.length >= maxOps || bytes + op.length > room)) {
        batch();
        ops = [];
        bytes = 0;
      }
      ops.push(op);
      bytes += op.length;
    }
    if (ops.length > 0) batch();
    frames.push({ kind: 'end', run });
    return frames;
  }

  /** Runs `d` now, or after the Replace being queued (in call order). */
  #whenFree(d: Deferred): void {
    if (this.#exclusive || this.#deferred.length > 0) this.#deferred.push(d);
    else d.start();
  }

  #release(): void {
    this.#exclusive = undefined;
    while (!this.#exclusive && this.#deferred.length > 0) this.#deferred.shift()!.start();
  }

  #enqueue(f: Frame): void {
    if (this.#state === 'failed' || this.#state === 'closed') return this.#fail(f, this.#state === 'closed' ? this.#closedError() : this.#failure!);
    this.#queue.push(f);
    this.#pump();
  }

  /** Sends what waits, up to the window. */
  #pump(): void {
    const call = this.#call;
    if (this.#state !== 'open' || !call) return;
    const window = this.#window();
    while (this.#queue.length > 0 && this.#inflight.length < window) {
      const f = this.#queue.shift()!;
      f.seq = ++this.#seq;
      if (f.run) f.run.sent = true;
      this.#inflight.push(f);
      call.write(this.#message(f));
      // grpc-js has encoded the message: without a table to update, the ops are done with.
      if (!this.#held) f.ops = undefined;
    }
    this.#wake();
  }

  #message(f: Frame): object {
    const seq = String(f.seq);
    const electionId = this.#election;
    const expect = f.expectGeneration !== undefined ? { expectGeneration: String(f.expectGeneration) } : {};
    if (f.kind === 'begin') return { replaceBegin: { seq, electionId } };
    if (f.kind === 'end') return { replaceEnd: { seq, electionId, ...expect } };
    return { batch: { seq, electionId, ...expect, opsBytes: f.ops?.bytes } };
  }

  #fail(f: Frame, e: Error): void {
    if (f.run) this.#failRun(f.run, e);
    else f.reject!(e);
  }

  #failRun(run: ReplaceRun, e: Error): void {
    if (run.done) return;
    run.done = true;
    this.#queue = this.#queue.filter((f) => f.run !== run);
    run.reject(e);
    this.#wake();
  }

  /**
   * Ends a Replace whose batches failed on the client. Once it is on the stream, only
   * ending the session makes the node drop what it staged; batches sent before it are
   * answered first.
   */
  async #abandon(run: ReplaceRun, e: Error): Promise<void> {
    if (!run.sent) return this.#failRun(run, e);
    await this.#waitFor(() => run.done || this.#state !== 'open' || this.#inflight.every((f) => f.run === run));
    this.#failRun(run, e);
    if (this.#state === 'open') this.#call?.cancel();
  }

  /** Rejects everything waiting with `e`: the client is closed or has given up. */
  #failAll(e: Error): void {
    const opening = this.#opening;
    this.#opening = undefined;
    opening?.reject(e);
    for (const f of [...this.#inflight.splice(0), ...this.#queue.splice(0)]) this.#fail(f, e);
    if (this.#exclusive) this.#failRun(this.#exclusive, e);
    for (const d of this.#deferred.splice(0)) d.reject(e);
    this.#wake();
  }

  #giveUp(e: Error): void {
    this.#state = 'failed';
    this.#failure = e;
    this.#failAll(e);
    if (this.listenerCount('error') > 0) this.emit('error', e);
  }

  async #waitFor(done: () => boolean): Promise<void> {
    while (!done()) await new Promise<void>((resolve) => this.#wakers.push(resolve));
  }

  #wake(): void {
    for (const w of this.#wakers.splice(0)) w();
  }
}
