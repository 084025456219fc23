// Wire helpers for the FIB programming edge tests: a Modify stream over grpc-js that also
// sends raw bytes, a raw HTTP/2 gRPC call (for frames cut short or announcing too much),
// protobuf written by hand (for what no codec writes), and `curl -sN` on the SSE watch.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { fibService, toWire128 } from '../../src/programming/proto.js';
import { waitFor, type Proc } from '../e2e/harness.js';

export const MODIFY = '/dmsc.fib.v1.FibProgramming/Modify';
const method = () => fibService().service['Modify']!;
export const encode = (m: unknown): Buffer => method().requestSerialize(m);
export const decode = (b: Buffer): any => method().responseDeserialize(b);

/** A gRPC message frame: not compressed, 4-byte big-endian length, the bytes. */
export function frame(body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

// Protobuf by hand, for what the codecs will not write (an op of a kind the proto lacks).
export function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return Buffer.from(out);
}
export const field = (no: number, body: Buffer) => Buffer.concat([varint((no << 3) | 2), varint(body.length), body]);
export const varField = (no: number, v: number) => Buffer.concat([varint(no << 3), varint(v)]);

export const upsertOp = (prefix: string, ids: string[]) => ({ upsert: { prefix, nextHops: ids.map((id) => ({ id })) } });
export const removeOp = (prefix: string) => ({ remove: { prefix } });

export function metadata(key: string | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (key !== undefined) md.set('authorization', `Bearer ${key}`);
  return md;
}

/** A client on its own connection (sessions of one test never share another's). */
export function client(p: Proc): grpc.Client {
  const Ctor = fibService();
  return new Ctor(p.fibApi!, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
}

/**
 * One Modify stream over grpc-js: messages are objects (the project's codec) or Buffers
 * (sent as they are). Responses are kept; `next` waits for one that matches.
 */
export class Modify {
  readonly call: grpc.ClientDuplexStream<unknown, any>;
  readonly responses: any[] = [];
  readonly status: Promise<grpc.StatusObject & { errorCode?: string }>;
  #waiters: (() => void)[] = [];
  #seq = 0;
  electionId = toWire128(0n);
  /** The call has its status. */
  ended = false;

  constructor(c: grpc.Client, key: string | undefined) {
    this.call = c.makeBidiStreamRequest(MODIFY, (m: unknown) => (Buffer.isBuffer(m) ? m : encode(m)), decode, metadata(key));
    this.call.on('data', (r) => {
      this.responses.push(r);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.call.on('error', () => {});
    this.status = new Promise((resolve) => this.call.on('status', (s) => {
      for (const w of this.#waiters.splice(0)) w();
      resolve({ ...s, errorCode: s.metadata.get('dmsc-error-code')[0] as string | undefined });
    }));
    void this.status.then(() => (this.ended = true));
  }

  /** Waits for a response `match` accepts (rejects once the stream ended without one). */
  async next(match: (r: any) => boolean, ms = 10_000): Promise<any> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.responses.find(match);
      if (found) return found;
      if (this.ended) throw new Error(`the stream ended without the response (${JSON.stringify(await this.status)})`);
      if (Date.now() > deadline) throw new Error('no such response in time');
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  async open(o: { controllerId?: string; electionId?: bigint; persistence?: string | number; leaseMs?: number } = {}): Promise<any> {
    this.electionId = toWire128(o.electionId ?? 1n);
    this.call.write({ open: { controllerId: o.controllerId ?? '', electionId: this.electionId, persistence: o.persistence ?? 'PRESERVE', leaseMs: String(o.leaseMs ?? 0) } });
    return (await this.next((r) => r.response === 'opened')).opened;
  }

  /** How an open sent already was answered: `opened`, or the status that ended the call. */
  async answer(ms = 10_000): Promise<{ opened: any } | { status: grpc.StatusObject & { errorCode?: string } }> {
    return this.next((r) => r.response === 'opened', ms).then((r) => ({ opened: r.opened }), async () => ({ status: await this.status }));
  }

  /** Sends a batch; resolves with its result. */
  async batch(ops: unknown[], extra: Record<string, unknown> = {}): Promise<any> {
    const seq = String(++this.#seq);
    this.call.write({ batch: { seq, electionId: this.electionId, ops, ...extra } });
    return (await this.next((r) => r.response === 'result' && r.result.seq === seq)).result;
  }

  /** Sends bytes as one message; resolves with the result for `seq`. */
  async raw(bytes: Buffer, seq: string): Promise<any> {
    this.call.write(bytes);
    return (await this.next((r) => r.response === 'result' && r.result.seq === seq)).result;
  }

  async close(): Promise<void> {
    this.call.end();
    await Promise.race([this.status, new Promise((r) => setTimeout(r, 3000))]);
    if (!this.ended) this.call.cancel();
  }
}

/** A raw HTTP/2 gRPC call: frames in, the response's frames and grpc-status out. */
export function rawCall(p: Proc, key: string) {
  const session = http2.connect(`http://${p.fibApi}`);
  session.on('error', () => {});
  const stream = session.request({ ':method': 'POST', ':path': MODIFY, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${key}` });
  stream.on('error', () => {});
  let pending = Buffer.alloc(0);
  const messages: any[] = [];
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  let status: { code: number; message: string } | undefined;
  const onHeaders = (h: http2.IncomingHttpHeaders) => {
    if (h['grpc-status'] !== undefined) status = { code: Number(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) };
    wake();
  };
  stream.on('response', onHeaders);
  stream.on('trailers', onHeaders);
  stream.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const n = pending.readUInt32BE(1);
      messages.push(decode(pending.subarray(5, 5 + n)));
      pending = pending.subarray(5 + n);
    }
    wake();
  });
  stream.on('close', wake);
  const until = async (check: () => boolean, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error('raw call: not in time');
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  return {
    session, stream, messages,
    get status() {
      return status;
    },
    until,
    /** Waits for the call's grpc-status. */
    ended: async (ms?: number) => {
      await until(() => status !== undefined || stream.closed, ms);
      return status;
    },
    close: () => {
      stream.destroy();
      session.destroy();
    },
  };
}

/** The node's resident set size, in bytes. */
export async function rss(p: Proc): Promise<number> {
  return Number(/VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${p.child.pid}/status`, 'utf8'))![1]) * 1024;
}

export interface SseEvent {
  id?: string;
  event?: string;
  data?: any;
}

/** `curl -sN` on GET /v1/fib/watch; the events as they come. */
export function sse(p: Proc, key: string, lastEventId?: string) {
  const args = ['-sN', '-H', `authorization: Bearer ${key}`, ...(lastEventId ? ['-H', `Last-Event-ID: ${lastEventId}`] : []), `${p.url}/v1/fib/watch`];
  const child: ChildProcess = spawn('curl', args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let text = '';
  const events: SseEvent[] = [];
  child.stdout!.on('data', (d) => {
    text += d;
    events.length = 0;
    for (const block of text.split('\n\n').slice(0, -1)) {
      const e: SseEvent = {};
      for (const line of block.split('\n')) {
        const at = line.indexOf(': ');
        if (at < 0) continue;
        const [k, v] = [line.slice(0, at), line.slice(at + 2)];
        if (k === 'id') e.id = v;
        else if (k === 'event') e.event = v;
        else if (k === 'data') e.data = JSON.parse(v);
      }
      if (e.event) events.push(e);
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    events, exited,
    raw: () => text,
    until: (check: (events: SseEvent[]) => boolean) => waitFor(() => check(events), 10_000),
    stop: () => child.kill('SIGTERM'),
  };
}
