// The only module that loads the native addon. If it cannot be loaded, the error says
// every path tried, why each failed, and how to fix it; ReferenceTable keeps working.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DmscError, dmscError } from '../errors.js';

/** The addon's table class (see native/binding/addon.cpp). */
export interface NativeTable {
  /** Stages a chunk of a batch; a chunk after the first is decoded in the background, and its error comes from a later stage() or commit(). */
  stage(bytes: Uint8Array, words: Uint32Array): void;
  commit(): number;
  discard(): void;
  /**
   * A lookup function bound to this table: -1, or next hop + failover * 2^24 + prefix
   * length * 2^25 + epoch * 2^36. With the name alone: no tags and no flow.
   */
  lookupFunction(): (name: string, needLo?: number, needHi?: number, flags?: number, flow?: number) => number;
  /** Returns the low 17 bits of the id epoch the lookups ran under. */
  lookupPacked(bytes: Uint8Array, offsets: Uint32Array, n: number, out: Int32Array, needLo: number, needHi: number, flags: number, flows?: Uint32Array): number;
  setHealth(id: string, state: number, loadQ: number): boolean;
  /** The next-hop index an entry references `id` by, or -1. */
  indexOf(id: string): number;
  /** The health words of next hops [chunk, chunk + 1) * 4096, or undefined before they exist. */
  healthWords(chunk: number): ArrayBuffer | undefined;
  /** The id epoch, a 64-bit counter. */
  epochWords(): ArrayBuffer;
  tagBit(tag: string): number;
  tagCount(): number;
  /** undefined when the index is free or was recycled since `epoch` (-1: any). */
  nextHopId(index: number, epoch: number): string | undefined;
  stats(top: number): NativeStats;
  entries(): Array<[string, Array<[string, number, number, string[], number, number]>]>;
  /** entries() of the first `limit` names in byte order equal to `under` or below it ('' for all), in no order. */
  entriesUnder(under: string, limit: number): Array<[string, Array<[string, number, number, string[], number, number]>]>;
  size(): number;
  generation(): number;
  readersBehind(generation: number): number;
  share(): number;
  close(): void;
}

export interface NativeStats {
  lookups: number;
  misses: number;
  failovers: number;
  invalid: number;
  size: number;
  generation: number;
  nextHops: number;
  tags: number;
  memoryBytes: number;
  usedBytes: number;
  counterBytes: number;
  pendingReclaim: number;
  readers: number;
  prefixHits: Array<[string, number]>;
  nextHopSelections: Array<[string, number]>;
}

/** The addon's relay class (native/core/relay.hpp): the data plane's native listener. */
export interface NativeRelay {
  /** Binds and starts its thread; returns the bound port. */
  start(): number;
  stop(): void;
  learn(token: string, aic: string, expiresAt: number, capability: string): void;
  endpoint(aic: string, ip: string, port: number, base: string, search: string): void;
  forget(aic: string): void;
  dropEndpoint(aic: string): void;
  clear(): void;
  takeDown(): string[];
  counters(): NativeRelayCounters;
}

export interface NativeRelayCounters {
  requests: number;
  served: number;
  handed: number;
  tunnels: number;
  forwarded: number;
  retries: number;
  markedDown: number;
  failed: number;
}

export interface NativeRelayOptions {
  host: string;
  port: number;
  fallbackPort: number;
  self: string;
  attempts?: number;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  clientIdleMs?: number;
  replayBytes?: number;
  cacheMs?: number;
  /** Put before the requester's address in the `x-dmsc-from` header of what is handed over. */
  fromToken?: string;
}

export interface NativeAddon {
  NativeTable: new (tokenId?: number) => NativeTable;
  NativeRelay: new (tableShareId: number, options: NativeRelayOptions) => NativeRelay;
  noop(): void;
  noopString(name: string): number;
  /** ns per dependent read in `bytes` of memory mapped as the table's (benchmarks only). */
  pointerChase(bytes: number, steps: number, seed: number): number;
  nativeHeapBytes(): number;
  setErrorFactory(f: (code: string, message: string) => Error): void;
  isTable(v: unknown): boolean;
  abiVersion: number;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
let cached: NativeAddon | undefined;
let failure: DmscError | undefined;

function candidates(): string[] {
  // An explicit path is the only one tried, so a wrong one fails loudly.
  if (process.env.DMSC_NATIVE_PATH) return [resolve(process.env.DMSC_NATIVE_PATH)];
  const list: string[] = [];
  list.push(join(root, 'build', 'Release', 'dmsc_fastpath.node'));
  list.push(join(root, 'build', 'Debug', 'dmsc_fastpath.node'));
  return list;
}

/** Loads the addon once; throws ERR_DMSC_NATIVE_UNAVAILABLE with what was tried. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (failure) throw failure;
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const path of candidates()) {
    if (!existsSync(path)) {
      tried.push(`  ${path}: not found`);
      continue;
    }
    try {
      const addon = require(path) as NativeAddon;
      addon.setErrorFactory(dmscError);
      cached = addon;
      return addon;
    } catch (e) {
      tried.push(`  ${path}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  failure = new DmscError(
    'ERR_DMSC_NATIVE_UNAVAILABLE',
    'the native forwarding table could not be loaded. Tried:\n' +
      tried.join('\n') +
      '\nBuild it with `npm run build` (needs g++, make, python3 and the Node.js headers; ' +
      'nothing is downloaded), or set DMSC_NATIVE_PATH to a built dmsc_fastpath.node. ' +
      'ReferenceTable works without it.',
  );
  throw failure;
}

/** True when the addon loads; never throws. */
export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}
