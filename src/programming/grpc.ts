// The `dmsc.fib.v1.FibProgramming` service over gRPC (@grpc/grpc-js), on its own
// listener (`--fib-api`). Every call is authenticated first; messages are turned into
// the transport-free calls of `Programming`, and a client that stops reading is slowed
// down by HTTP/2 flow control instead of growing the node's memory.
import type { Http2Session } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { DmscError } from '../errors.js';
import { formatListen, type Listen } from '../net/listen.js';
import type { NodeBatch } from './batch-codec.js';
import { fibService, fromWire128, toWire128, WIRE_HEALTH, type Persistence } from './proto.js';
import { LIMITS, type BatchOutcome, type Caller, type ModifySession, type Programming } from './programming.js';
import { WATCH_QUEUE, type WatchEvent } from './watch.js';

/** Entries a Get sends per message. */
const GET_CHUNK = 1000;
/** What a controller may send ahead before the node's HTTP/2 flow control holds it back. */
const RECEIVE_WINDOW = 16 << 20;
/** About the bytes a Get message holds at most. */
const GET_BYTES = 1 << 20;


/** Maps a dmsc error to the gRPC status a client library understands. */
function grpcStatus(e: DmscError): grpc.status {
  switch (e.code) {
    case 'ERR_DMSC_UNAUTHORIZED': return grpc.status.UNAUTHENTICATED;
    case 'ERR_DMSC_FORBIDDEN': return grpc.status.PERMISSION_DENIED;
    case 'ERR_DMSC_BUSY': case 'ERR_DMSC_LIMIT_EXCEEDED': return grpc.status.RESOURCE_EXHAUSTED;
    case 'ERR_DMSC_NOT_PRIMARY': case 'ERR_DMSC_CONFLICT': return grpc.status.FAILED_PRECONDITION;
    case 'ERR_DMSC_CLOSED': return grpc.status.UNAVAILABLE;
    case 'ERR_DMSC_NOT_FOUND': return grpc.status.NOT_FOUND;
    case 'ERR_DMSC_INTERNAL': return grpc.status.INTERNAL;
    default: return grpc.status.INVALID_ARGUMENT;
  }
}

function fail(e: unknown): Partial<grpc.StatusObject> {
  const err = e instanceof DmscError ? e : new DmscError('ERR_DMSC_INTERNAL', (e as Error).message);
  const metadata = new grpc.Metadata();
  metadata.set('dmsc-error-code', err.code);
  return { code: grpcStatus(err), details: `${err.code}: ${err.message}`, metadata };
}

function bearerOf(md: grpc.Metadata): string | undefined {
  const v = md.get('authorization')[0];
  return typeof v === 'string' && /^bearer /i.test(v) ? v.slice(7) : undefined;
}

function resultOf(seq: string, o: BatchOutcome) {
  return { result: { seq, status: o.status, generation: String(o.generation), fibGeneration: String(o.fibGeneration), errors: o.errors, message: o.message } };
}

function watchMessage(e: WatchEvent, epoch: number) {
  if (e.type === 'entry') {
    return { entry: { generation: String(e.generation), prefix: e.prefix, removed: e.removed, last: e.last, epoch: String(epoch), nextHops: e.nextHops.map((h) => ({ ...h, state: WIRE_HEALTH[h.state] })) } };
  }
  if (e.type === 'health') return { health: { nextHopId: e.nextHopId, state: WIRE_HEALTH[e.state], load: e.load, generation: String(e.generation) } };
  return { endOfSnapshot: { generation: String(e.generation), epoch: String(epoch) } };
}

export class FibServer {
  readonly #programming: Programming;
  readonly #server: grpc.Server;
  #address: Listen | undefined;

  constructor(programming: Programming) {
    this.#programming = programming;
    this.#server = new grpc.Server({
      'grpc.max_receive_message_length': LIMITS.maxBytesPerBatch,
      'grpc.max_concurrent_streams': 128,
      // A connection that never sends anything is not kept forever.
      'grpc.max_connection_idle_ms': 300_000,
    });
    this.#server.addService(fibService().service, {
      Modify: (call: grpc.ServerDuplexStream<any, any>) => this.#modify(call),
      Get: (call: grpc.ServerWritableStream<any, any>) => this.#get(call),
      Watch: (call: grpc.ServerWritableStream<any, any>) => this.#watch(call),
      Flush: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => this.#flush(call, cb),
    });
  }

  get address(): Listen | undefined {
    return this.#address;
  }

  /**
   * Listens; with `tls`, over TLS with the mesh's certificate, and when it has a CA, only
   * for clients presenting a certificate that CA signed (mutual TLS).
   */
  async start(listen: Listen, tls?: { cert: string; key: string; ca?: string }): Promise<void> {
    const creds = tls
      ? grpc.ServerCredentials.createSsl(tls.ca ? Buffer.from(tls.ca) : null, [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }], !!tls.ca)
      : grpc.ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) => {
      this.#server.bindAsync(formatListen(listen), creds, (err, p) => (err ? reject(err) : resolve(p)));
    }).catch((e: Error) => {
      throw new DmscError('ERR_DMSC_LISTEN', `the FIB programming listener cannot listen on ${formatListen(listen)}: ${e.message}; choose another address with --fib-api HOST:PORT (or --fib-api off)`);
    });
    this.#address = { host: listen.host, port };
    this.#widenWindows();
  }

  // HTTP/2's default 64 KiB receive window holds less than one 1,000-op batch (about
  // 93 KB), so a pipelining controller waited on window updates while the node idled.
  // grpc-js offers no server option for it; its HTTP/2 servers are reached here, and if a
  // later grpc-js keeps them elsewhere, this does nothing and only speed is lost.
  #widenWindows(): void {
    const servers = (this.#server as unknown as { http2Servers?: unknown }).http2Servers;
    if (!(servers instanceof Map)) return;
    for (const h2 of servers.keys() as IterableIterator<{ on?: (event: string, f: (s: Http2Session) => void) => void }>) {
      h2.on?.('session', (session: Http2Session) => {
        try {
          session.settings({ initialWindowSize: RECEIVE_WINDOW });
          session.setLocalWindowSize(RECEIVE_WINDOW);
        } catch {
          // A session already closing.
        }
      });
    }
  }

  /** Stops listening; end the sessions first (`Programming.stop`). */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, 1000);
      this.#server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  #caller(call: { metadata: grpc.Metadata }): Caller {
    const c = this.#programming.authenticate(bearerOf(call.metadata));
    if (!c) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'a controller key (or the admin token) is needed as `authorization: Bearer <key>` metadata');
    return c;
  }

  // A stream's caller, or undefined once the stream is ended with UNAUTHENTICATED.
  #streamCaller(call: grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>): Caller | undefined {
    try {
      return this.#caller(call);
    } catch (e) {
      call.emit('error', fail(e));
      return undefined;
    }
  }

  #modify(call: grpc.ServerDuplexStream<any, any>): void {
    const caller = this.#streamCaller(call);
    if (!caller) return;
    let session: ModifySession | undefined;
    let ended = false;
    const finish = (e?: unknown) => {
      if (ended) return;
      ended = true;
      session?.close();
      if (e) call.emit('error', fail(e));
      else call.end();
    };
    // The client not reading its results, or the window full: its batches wait unread.
    let blocked = false;
    let full = false;
    const send = (msg: unknown) => {
      if (ended) return;
      if (!call.write(msg) && !blocked) {
        blocked = true;
        call.pause();
        call.once('drain', () => {
          blocked = false;
          if (!full) call.resume();
        });
      }
    };
    call.on('data', (req: any) => {
      if (ended) return;
      try {
        if (!session) {
          if (req.request !== 'open') throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', 'the first message of Modify must be open');
          const o = req.open;
          const persistence = (o.persistence ?? 'PRESERVE') as Persistence;
          session = this.#programming.open(caller, { controllerId: o.controllerId, electionId: fromWire128(o.electionId), persistence, leaseMs: Number(o.leaseMs) }, (n) => {
            send({ primary: { primary: n.primary, primaryElectionId: toWire128(n.electionId), primaryControllerId: n.controller } });
          }, (e) => finish(e));
          const st = this.#programming.opened(session);
          send({ opened: { primary: st.primary, primaryElectionId: toWire128(st.primaryElectionId), controllerId: session.controller, generation: String(st.generation), fibGeneration: String(st.fibGeneration), limits: LIMITS } });
          return;
        }
        const s = session;
        const reply = (seq: string, o: BatchOutcome) => {
          send(resultOf(seq, o));
          // A result went out: room in the window again.
          if (full && s.waiting < LIMITS.window) {
            full = false;
            if (!blocked) call.resume();
          }
        };
        if (req.request === 'batch') {
          const b = req.batch as NodeBatch;
          s.submit('batch', { seq: b.seq, electionId: fromWire128(b.electionId), ...(b._expectGeneration ? { expectGeneration: Number(b.expectGeneration) } : {}), ops: b.ops, bad: b.bad, record: b.record }, reply);
        } else if (req.request === 'replaceBegin') {
          s.submit('begin', { seq: req.replaceBegin.seq, electionId: fromWire128(req.replaceBegin.electionId), ops: [], bad: [] }, reply);
        } else if (req.request === 'replaceEnd') {
          const e = req.replaceEnd;
          s.submit('end', { seq: e.seq, electionId: fromWire128(e.electionId), ...(e._expectGeneration ? { expectGeneration: Number(e.expectGeneration) } : {}), ops: [], bad: [] }, reply);
        } else throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', 'open was already sent; send batch, replace_begin or replace_end');
        // The window is full: read no more batches until a result goes out, so a client
        // that sends ahead is slowed by flow control instead of answered BUSY.
        if (s.waiting >= LIMITS.window && !full) {
          full = true;
          call.pause();
        }
      } catch (e) {
        finish(e);
      }
    });
    // The controller sent its last batch: its results still go out, then the stream ends.
    call.on('end', () => {
      if (session) void session.settled().then(() => finish());
      else finish();
    });
    call.on('error', () => finish());
    call.on('cancelled', () => finish());
    call.on('close', () => session?.close());
  }

  #get(call: grpc.ServerWritableStream<any, any>): void {
    let controller: string;
    try {
      const caller = this.#caller(call);
      controller = call.request.controllerId || caller.name;
      if (!caller.admin && controller !== caller.name) throw new DmscError('ERR_DMSC_FORBIDDEN', `this key is controller ${caller.name}'s, not ${controller}'s`);
    } catch (e) {
      call.emit('error', fail(e));
      return;
    }
    const rib = this.#programming.rib;
    // One generation: the entries are copied now, sent at the client's pace.
    const generation = String(rib.generation(controller));
    const entries = [...rib.entries(controller)];
    let i = 0;
    let cancelled = false;
    call.on('cancelled', () => (cancelled = true));
    const pump = () => {
      while (!cancelled && i < entries.length) {
        // Chunks of GET_CHUNK entries, or fewer that stay well under a client's 4 MiB
        // default message limit (entries of 64 next hops with long URLs are large).
        const start = i;
        let bytes = 0;
        while (i < entries.length && i - start < GET_CHUNK && bytes < GET_BYTES) {
          const e = entries[i++]!;
          bytes += e.prefix.length + 16;
          for (const h of e.nextHops) bytes += h.id.length + (h.endpoint?.length ?? 0) + 24 + (h.tags ?? []).reduce((n, t) => n + t.length + 2, 0);
        }
        const chunk = entries.slice(start, i);
        if (!call.write({ generation, entries: chunk, end: i >= entries.length })) {
          call.once('drain', pump);
          return;
        }
      }
      if (!cancelled) {
        if (entries.length === 0) call.write({ generation, entries: [], end: true });
        call.end();
      }
    };
    pump();
  }

  #watch(call: grpc.ServerWritableStream<any, any>): void {
    const caller = this.#streamCaller(call);
    if (!caller) return;
    let stop = () => {};
    const untrack = this.#programming.watching(caller, (e) => {
      stop();
      call.emit('error', fail(e));
    });
    stop = this.#programming.history.stream(
      Number(call.request.sinceGeneration),
      (e) => call.write(watchMessage(e, this.#programming.history.epoch)),
      (resume) => call.once('drain', resume),
      () => call.emit('error', fail(new DmscError('ERR_DMSC_BUSY', `the watcher fell ${WATCH_QUEUE} changes behind; watch again from the last generation it saw`))),
      Number(call.request.epoch),
    );
    const ended = () => {
      stop();
      untrack();
    };
    call.on('cancelled', ended);
    call.on('close', ended);
  }

  #flush(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>): void {
    let caller: Caller;
    try {
      caller = this.#caller(call);
    } catch (e) {
      cb(fail(e));
      return;
    }
    const r = call.request;
    this.#programming.flush(caller, r.controllerId, fromWire128(r.electionId), !!r.override).then(
      (out) => cb(null, { removed: String(out.removed), generation: String(out.generation), fibGeneration: String(out.fibGeneration) }),
      (e: unknown) => cb(fail(e)),
    );
  }
}
