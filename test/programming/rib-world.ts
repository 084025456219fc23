// In-process worlds for the controller-rib tests: a real ForwardingTable, Directory and
// Store (LMDB in a temp directory) under a Programming, opened again from the same
// directory to see what persisted; Modify sessions driven without a transport.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Directory, type AgentRecord } from '../../src/directory/directory.js';
import type { DmscError } from '../../src/errors.js';
import { ForwardingTable } from '../../src/fastpath/forwarding-table.js';
import { formatAic } from '../../src/identity/aic.js';
import { Programming, type BatchOutcome, type Caller, type PrimaryNews } from '../../src/programming/programming.js';
import type { Persistence } from '../../src/programming/proto.js';
import type { ControllerHop, ControllerOp, Programmer } from '../../src/programming/rib.js';
import { Store } from '../../src/store/store.js';

export const ADMIN = 'admin-token-for-rib-tests-0123456789';
export const everything = { matches: () => true };
export const as = (controller: string): Programmer => ({ controller, scopes: everything });
export const upsert = (prefix: string, nextHops: ControllerHop[]): ControllerOp => ({ op: 'upsert', prefix, nextHops });
export const remove = (prefix: string): ControllerOp => ({ op: 'remove', prefix });
export const peers = (n: number, tag = 'p') => Array.from({ length: n }, (_, i) => ({ id: `peer:${tag}${i}` }));

/** A node's programming parts over one data directory; `world(dir)` starts them again from its store. */
export interface World {
  readonly dir: string;
  store: Store;
  fib: ForwardingTable;
  directory: Directory;
  programming: Programming;
  logs: Record<string, unknown>[];
}

const dirs: string[] = [];
export const worlds: World[] = [];

/** A fresh data directory, removed by `removeDirs`. */
export async function newDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'dmsc-rib-'));
  dirs.push(d);
  return d;
}

export async function world(dir?: string): Promise<World> {
  const d = dir ?? (await newDir());
  const store = Store.open(d);
  const fib = new ForwardingTable();
  const directory = new Directory(fib, () => []);
  const logs: Record<string, unknown>[] = [];
  const programming = new Programming({ directory, fib, store, adminToken: ADMIN, log: (e) => logs.push(e) });
  programming.rib.load();
  const w = { dir: d, store, fib, directory, programming, logs };
  worlds.push(w);
  return w;
}

/**
 * Waits for every store write queued so far, then closes the world; `crash`: without
 * ending its sessions first (what the store holds is what a kill -9 would leave).
 */
export async function close(w: World, crash = false): Promise<void> {
  const i = worlds.indexOf(w);
  if (i < 0) return;
  worlds.splice(i, 1);
  if (!crash) w.programming.stop();
  await w.store.durable(() => {}).catch(() => {});
  await w.store.close();
  w.fib.close();
}

/** Closes every world still open (after each test). */
export async function closeAll(): Promise<void> {
  for (const w of [...worlds]) await close(w);
}

/** Removes every data directory made (after the file). */
export async function removeDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Sorted next-hop ids of the FIB entry for `prefix`, or null when there is none. */
export function ids(fib: ForwardingTable, prefix: string): string[] | null {
  const e = fib.entries().find((x) => x.prefix === prefix);
  return e ? e.nextHops.map((h) => h.id).sort() : null;
}

export function agent(serial: number, names: readonly string[]): AgentRecord {
  return {
    aic: formatAic({ registry: 'gw', provider: 'acme', serial }), provider: 'acme', gateway: 'gw', domain: 'd', endpoint: 'http://127.0.0.1:9/',
    capabilities: names.map((name) => ({ name, attributes: {}, weight: 100, priority: 0 })), denied: [], registeredAt: Date.now(), credentialExpiresAt: Date.now() + 3_600_000, serial,
  };
}

/** Applies a batch and waits until it is VISIBLE (or returns why not). */
export async function apply(w: World, controller: string, ops: readonly ControllerOp[], opts: { expectGeneration?: number; replace?: boolean } = {}) {
  const r = w.programming.rib.apply(as(controller), ops, opts);
  if (r.status === 'VISIBLE') await r.done;
  return r;
}

/** A Modify session opened in process; `send` submits a batch and resolves with its result. */
export function open(w: World, caller: Caller, o: { controllerId?: string; electionId?: bigint; persistence?: Persistence; leaseMs?: number } = {}) {
  const news: PrimaryNews[] = [];
  const ended: DmscError[] = [];
  const s = w.programming.open(caller, { controllerId: o.controllerId ?? '', electionId: o.electionId ?? 1n, persistence: o.persistence ?? 'PRESERVE', leaseMs: o.leaseMs ?? 0 }, (n) => news.push(n), (e) => {
    ended.push(e);
    s.close();
  });
  let seq = 0;
  const submit = (kind: 'batch' | 'begin' | 'end', ops: readonly ControllerOp[] = [], extra: { electionId?: bigint; expectGeneration?: number } = {}) =>
    new Promise<BatchOutcome>((resolve) => s.submit(kind, { seq: String(++seq), electionId: s.electionId, ops, bad: [], ...extra }, (_seq, out) => resolve(out)));
  return { s, news, ended, send: (ops: readonly ControllerOp[], extra?: { electionId?: bigint; expectGeneration?: number }) => submit('batch', ops, extra), submit };
}

/** A controller's entries by prefix, each next hop with its defaults written out. */
export function table(entries: Iterable<{ prefix: string; nextHops: readonly ControllerHop[] }>) {
  const out = new Map<string, ControllerHop[]>();
  for (const e of entries) out.set(e.prefix, e.nextHops.map((h) => ({ ...h, weight: h.weight ?? 100, priority: h.priority ?? 0, tags: [...(h.tags ?? [])] })));
  return out;
}

export const admin = (w: World) => w.programming.authenticate(ADMIN)!;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
