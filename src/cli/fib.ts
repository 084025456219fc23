// `dmsc fib push|get|watch`: a running node's FIB through its FIB programming API (gRPC,
// `--fib-api`), with FibClient. `push` streams its input: JSON lines are read, checked
// and sent a batch at a time, so a million-entry file is never held whole.
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { Option, type Command } from 'commander';
import { DmscError, DmscRangeError, DmscTypeError } from '../errors.js';
import type { BatchResult, FibClient, FibClientOp, FibClientOptions } from '../programming/client.js';
import type { Persistence } from '../programming/proto.js';
import { adminToken } from './client.js';

interface ApiOptions {
  fibApi: string;
  keyFile?: string;
  data: string;
  tokenFile?: string;
}

interface PushOptions extends ApiOptions {
  controller?: string;
  election: string;
  persistence: string;
  leaseMs?: string;
  batch: string;
  replace?: boolean;
}

/** Where a batch's ops came from (a line, or an index in a JSON array), and its size in the input. */
interface Origin {
  readonly at: number[];
  bytes: number;
}

/** Ops read from the input. The client copies them when they are sent; only the origin is kept. */
interface InputBatch extends Origin {
  readonly ops: FibClientOp[];
}

const MAX_128 = (1n << 128n) - 1n;
/** Failed batches the summary lists in full. */
const REPORTED = 10;

/** Adds --fib-api and the key options to a command that calls the FIB programming API. */
function withFibApi(cmd: Command): Command {
  return cmd
    .addOption(new Option('--fib-api <host:port>', "the node's FIB programming listener").default('127.0.0.1:7072').env('DMSC_FIB_API'))
    .option('--key-file <file>', 'file holding a controller key (or set DMSC_FIB_KEY); without either, the admin token')
    .option('--data <dir>', "the node's data directory, where its admin token is", '.dmsc/node-1')
    .option('--token-file <file>', 'file holding the admin token (or set DMSC_ADMIN_TOKEN)');
}

function fibKey(o: ApiOptions): string {
  if (o.keyFile !== undefined) {
    try {
      return readFileSync(o.keyFile, 'utf8').trim();
    } catch (e) {
      throw new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `cannot read the key from ${o.keyFile} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  return process.env['DMSC_FIB_KEY'] || adminToken(o);
}

function positive(v: string, flag: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `${flag} must be a positive integer, got ${v}`);
  return n;
}

function election(v: string): bigint {
  if (!/^\d{1,39}$/.test(v) || BigInt(v) > MAX_128) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `--election must be a decimal integer from 0 to 2^128-1, got ${v}`);
  return BigInt(v);
}

async function client(o: ApiOptions, extra: Partial<FibClientOptions> = {}): Promise<FibClient> {
  // gRPC loads only for the commands that use it.
  const { FibClient } = await import('../programming/client.js');
  return new FibClient({ address: o.fibApi, key: fibKey(o), resync: false, reconnect: false, ...extra });
}

/**
 * The input's ops in batches of at most `size` ops and about `maxBytes` bytes. JSON
 * lines are read as they come; a JSON array (the `--fib` file format) is parsed whole.
 * Each op is checked as it is read, so a bad one is named by its line (or array index).
 */
async function* readBatches(input: Readable, name: string, size: number, maxBytes: number, check: (op: unknown, where: string) => void, onArray: (total: number) => void): AsyncGenerator<InputBatch> {
  let batch: InputBatch = { ops: [], at: [], bytes: 0 };
  function* take(op: unknown, at: number, where: string, bytes: number): Generator<InputBatch> {
    check(op, where);
    if (batch.ops.length > 0 && (batch.ops.length >= size || batch.bytes + bytes > maxBytes)) {
      yield batch;
      batch = { ops: [], at: [], bytes: 0 };
    }
    batch.ops.push(op as FibClientOp);
    batch.at.push(at);
    batch.bytes += bytes;
  }
  let line = 0;
  let started = false;
  let array: string[] | undefined;
  for await (const text of createInterface({ input, crlfDelay: Infinity })) {
    line++;
    if (array) {
      array.push(text);
      continue;
    }
    const t = text.trim();
    if (t === '') continue;
    // A JSON array is recognised only as the first thing in the input.
    if (!started && t.startsWith('[')) {
      array = [text];
      continue;
    }
    started = true;
    let op: unknown;
    try {
      op = JSON.parse(t);
    } catch (e) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${name} line ${line}: not JSON (${(e as Error).message})`);
    }
    yield* take(op, line, `${name} line ${line}`, Buffer.byteLength(text) + 1);
  }
  if (array) {
    let ops: unknown;
    try {
      ops = JSON.parse(array.join('\n'));
    } catch (e) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${name} is neither JSON lines nor a JSON array: ${(e as Error).message}`);
    }
    if (!Array.isArray(ops)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `${name} must hold JSON lines or a JSON array of ops`);
    array = undefined;
    onArray(ops.length);
    for (let i = 0; i < ops.length; i++) yield* take(ops[i], i, `${name} ops[${i}]`, Buffer.byteLength(JSON.stringify(ops[i])));
  }
  if (batch.ops.length > 0) yield batch;
}

/** Entries done, rate and ETA on stderr: redrawn on a TTY, else a line every 5 s. */
class Progress {
  readonly #tty = process.stderr.isTTY === true;
  readonly #start = performance.now();
  #drawn = this.#start;
  entries = 0;
  bytes = 0;
  failed = 0;
  totalEntries: number | undefined;
  constructor(readonly totalBytes: number | undefined) {}

  get seconds(): number {
    return (performance.now() - this.#start) / 1000;
  }

  tick(): void {
    const now = performance.now();
    if (now - this.#drawn < (this.#tty ? 100 : 5000)) return;
    this.#drawn = now;
    process.stderr.write(this.#tty ? `\r\x1b[2K${this.#line()}` : `${this.#line()}\n`);
  }

  end(): void {
    if (this.#tty && this.#drawn !== this.#start) process.stderr.write('\r\x1b[2K');
  }

  #line(): string {
    const s = this.seconds;
    const rate = this.entries / s;
    const done = this.totalEntries ? this.entries / this.totalEntries : this.totalBytes ? this.bytes / this.totalBytes : undefined;
    const parts: string[] = [];
    if (done !== undefined) {
      const width = Math.round(Math.min(1, done) * 24);
      parts.push(`[${'#'.repeat(width)}${'.'.repeat(24 - width)}] ${Math.floor(done * 100)}%`);
    }
    parts.push(`${this.entries} entries`, `${Math.round(rate)}/s`);
    if (done !== undefined && done > 0 && done < 1) parts.push(`ETA ${Math.ceil((s * (1 - done)) / done)} s`);
    if (this.failed > 0) parts.push(`${this.failed} batches failed`);
    return `dmsc fib push: ${parts.join('  ')}`;
  }
}

async function push(file: string, o: PushOptions): Promise<void> {
  const persistence = o.persistence.toUpperCase() as Persistence;
  if (persistence === 'LEASE' && o.leaseMs === undefined) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', '--persistence lease needs --lease-ms');
  const batchSize = positive(o.batch, '--batch');
  const electionId = election(o.election);
  let input: Readable;
  let totalBytes: number | undefined;
  let name = file;
  if (file === '-') {
    input = process.stdin;
    name = 'stdin';
  } else {
    try {
      const st = statSync(file);
      if (st.isFile()) totalBytes = st.size;
    } catch (e) {
      throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    input = createReadStream(file);
  }
  const { checkOp } = await import('../programming/client-encode.js');
  const fib = await client(o, {
    electionId, persistence, ...(o.controller !== undefined ? { controllerId: o.controller } : {}),
    ...(o.leaseMs !== undefined ? { leaseMs: positive(o.leaseMs, '--lease-ms') } : {}),
  });
  try {
    const opened = await fib.open();
    if (!opened.primary) throw new DmscError('ERR_DMSC_NOT_PRIMARY', `another session is primary (election id ${opened.primaryElectionId}); push with a higher --election`);
    const { maxOpsPerBatch, maxBytesPerBatch, window } = opened.limits;
    const progress = new Progress(totalBytes);
    const batches = readBatches(input, name, Math.min(batchSize, maxOpsPerBatch || batchSize), maxBytesPerBatch || 16 << 20, checkOp, (n) => (progress.totalEntries = n));
    const unit = (b: Origin, i: number) => (progress.totalEntries !== undefined ? `ops[${b.at[i]}]` : `line ${b.at[i]}`);
    const summary = { entries: 0, batches: 0, failed: 0, errors: [] as unknown[] };
    let last: BatchResult | undefined;
    const record = (b: Origin, r: BatchResult) => {
      summary.batches++;
      progress.entries += b.at.length;
      progress.bytes += b.bytes;
      if (r.status === 'VISIBLE' || r.status === 'STAGED') {
        summary.entries += b.at.length;
        last = r;
      } else {
        summary.failed++;
        progress.failed++;
        if (summary.errors.length < REPORTED) {
          summary.errors.push({
            from: unit(b, 0), to: unit(b, b.at.length - 1), status: r.status, message: r.message,
            errors: r.errors.slice(0, 3).map((e) => ({ at: unit(b, e.opIndex), code: e.code, message: e.message })),
          });
        }
      }
      progress.tick();
    };
    let final: BatchResult | undefined;
    let error: unknown;
    try {
      if (o.replace) {
        // Batches are answered in the order they were read: sent[] holds those on their way.
        const sent: Origin[] = [];
        const ops = async function* () {
          for await (const { ops, ...origin } of batches) {
            sent.push(origin);
            yield ops;
          }
        };
        final = await fib.replace(ops(), { onBatch: (r) => record(sent.shift()!, r) });
      } else {
        // The node's window of batches on the stream, and no more read ahead.
        const pending: Promise<void>[] = [];
        try {
          for await (const { ops, ...origin } of batches) {
            const p = fib.modify(ops).then((r) => record(origin, r));
            p.catch(() => {});
            pending.push(p);
            if (pending.length >= Math.max(1, window)) await pending.shift();
          }
        } finally {
          // What was sent before a bad line is answered (and counted) before the push stops.
          await Promise.allSettled(pending);
        }
        await Promise.all(pending);
      }
    } catch (e) {
      error = e;
    } finally {
      progress.end();
    }
    const ok = error === undefined && summary.failed === 0 && (!o.replace || final?.status === 'VISIBLE');
    const seconds = progress.seconds;
    // Inside a Replace, only its end says what the table is now.
    const outcome = o.replace ? final : last;
    process.stdout.write(JSON.stringify({
      ...(o.replace ? { replace: final ? { status: final.status, message: final.message } : null } : {}),
      entries: summary.entries, batches: summary.batches, failed: summary.failed, errors: summary.errors,
      elapsedMs: Math.round(seconds * 1000), entriesPerSecond: Math.round(summary.entries / seconds),
      ...(outcome ? { generation: outcome.generation, fibGeneration: outcome.fibGeneration } : {}),
    }) + '\n');
    if (error !== undefined) throw error;
    if (!ok) process.exitCode = 1;
  } finally {
    fib.close();
  }
}

/** `dmsc fib push|get|watch`, beside `dmsc fib show` and the offline tools. */
export function fibClientCommands(fib: Command): void {
  withFibApi(fib.command('push'))
    .description("program a running node's FIB as a controller, over gRPC (the FIB programming API)")
    .argument('<file>', 'ops as JSON lines (one op a line) or a JSON array (the --fib file format); - reads stdin')
    .option('--controller <id>', "the controller to program (default: the key's; another only with the admin token)")
    .option('--election <n>', 'election id, decimal, 0 to 2^128-1: the highest open session is primary', '1')
    .addOption(new Option('--persistence <kind>', 'what becomes of the entries when the session ends').choices(['preserve', 'delete', 'lease']).default('preserve'))
    .option('--lease-ms <ms>', 'with --persistence lease: how long the entries outlive the session (1000 to 86400000)')
    .option('--batch <n>', 'ops a batch (at most the node\'s limit)', '1000')
    .option('--replace', "send everything as one Replace: the controller's whole table, committed at once (entries not in the input are removed)")
    .addHelpText('after', `
An op is {"op":"upsert","prefix":"/capability/ocr","nextHops":[{"id":"ocr-eu","endpoint":"http://10.0.0.7:8080"}]},
{"op":"remove","prefix":"/capability/ocr"} or {"op":"health","nextHopId":"ocr-eu","state":"down"}.
Batches are pipelined; a bad line stops the push there (batches before it stay applied,
unless --replace). Progress goes to stderr; a JSON summary to stdout. Exits 1 if any batch
was not applied.

  dmsc fib push routes.jsonl --key-file ctl.key --controller te
  generate-routes | dmsc fib push - --replace`)
    .action((file: string, o: PushOptions) => push(file, o));

  withFibApi(fib.command('get'))
    .description("print a controller's entries, as JSON lines")
    .option('--controller <id>', "whose entries (default: the key's; another only with the admin token)")
    .action(async (o: ApiOptions & { controller?: string }) => {
      const c = await client(o);
      try {
        for await (const e of c.get(o.controller)) process.stdout.write(JSON.stringify(e) + '\n');
      } finally {
        c.close();
      }
    });

  withFibApi(fib.command('watch'))
    .description("print every change to the node's FIB and every next-hop health change, as JSON lines, until interrupted")
    .option('--since <generation>', 'changes after this FIB generation (0: the whole FIB first, then an end_of_snapshot line)', '0')
    .action(async (o: ApiOptions & { since: string }) => {
      const since = Number(o.since);
      if (!/^\d+$/.test(o.since) || !Number.isSafeInteger(since)) throw new DmscRangeError('ERR_DMSC_OUT_OF_RANGE', `--since must be a generation (an integer from 0), got ${o.since}`);
      const c = await client(o);
      try {
        for await (const ev of c.watch(since)) process.stdout.write(JSON.stringify(ev) + '\n');
      } finally {
        c.close();
      }
    });
}
