// Configuration of one node: defaults bind loopback only; every value is checked here so
// a bad flag fails at start with ERR_DMSC_INVALID_CONFIG, not later.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DmscTypeError } from '../errors.js';
import type { FibOp } from '../fastpath/types.js';
import { DEFAULT_AUTH_BURST, DEFAULT_AUTH_PER_SECOND } from '../http/auth-throttle.js';
import type { Listen } from '../net/listen.js';
import { readMeshConfig, type MeshConfig } from './mesh-config.js';

export { formatListen, type Listen } from '../net/listen.js';

/** A node's settings; the mesh's come from --peer, --upstream and the mesh config file. */
export interface NodeConfig extends MeshConfig {
  readonly id: string;
  readonly dataDir: string;
  readonly api: Listen;
  /** A JSON file holding an array of FIB operations to apply at start. */
  readonly fibFile?: string;
  /** The trust domain of the embedded AMC. */
  readonly domain: string;
  readonly credentialTtlMs: number;
  /** Lifetime of the session grants the gateway signs on resolution. */
  readonly grantTtlMs: number;
  readonly heartbeatMs: number;
  /** The task decomposition rules file (TIP); the built-in rules without it. */
  readonly taskRules?: string;
  /** The capability taxonomy file; the built-in taxonomy without it. */
  readonly taxonomy?: string;
  /** The peering listener (gateway-to-gateway sessions). */
  readonly peering: Listen;
  /** The data-plane listener (requests addressed by capability). */
  readonly dataplane: Listen;
  /** The FIB programming listener (gRPC, for external controllers); undefined: off. */
  readonly fibApi?: Listen;
  /** Serve it over the mesh config's TLS (mutual when that has a CA). */
  readonly fibApiTls?: boolean;
  /** How long an instance may take to start answering a data-plane request. */
  readonly upstreamTimeoutMs: number;
  /** Failed authentications per source: in a row, and earned back a second. */
  readonly authFailures: { readonly burst: number; readonly perSecond: number };
  /** A standalone AMC, instead of the embedded one. */
  readonly amc?: { readonly url: string; readonly gatewayKey: string; readonly pollMs: number };
  /** Audit log retention: events older than this go, and the oldest past the count. */
  readonly audit: { readonly maxAgeMs: number; readonly maxEntries: number; readonly pruneEveryMs: number };
}

export interface NodeOptions {
  id?: string;
  data?: string;
  api?: string;
  fib?: string;
  domain?: string;
  credentialTtl?: string;
  grantTtl?: string;
  heartbeat?: string;
  taskRules?: string;
  taxonomy?: string;
  amc?: string;
  amcKeyFile?: string;
  amcPollMs?: string;
  peering?: string;
  dataplane?: string;
  fibApi?: string;
  fibApiTls?: boolean;
  upstreamTimeout?: string;
  authFailBurst?: string;
  authFailRate?: string;
  auditMaxAge?: string;
  auditMaxEntries?: string;
  auditPruneMs?: string;
  peer?: string[];
  upstream?: string;
  meshConfig?: string;
}

export const DEFAULT_PEERING: Listen = { host: '127.0.0.1', port: 7071 };
export const DEFAULT_DATAPLANE: Listen = { host: '127.0.0.1', port: 7080 };
export const DEFAULT_FIB_API: Listen = { host: '127.0.0.1', port: 7072 };

/** ID@HOST:PORT for --peer. */
export function parsePeer(value: string): { id: string; host: string; port: number } {
  const at = value.indexOf('@');
  if (at <= 0) throw invalid(`--peer must be ID@HOST:PORT, got '${value}'`);
  const id = checkId(value.slice(0, at), '--peer id');
  const { host, port } = parseListen(value.slice(at + 1), '--peer');
  if (port === 0) throw invalid(`--peer needs a real port, got '${value}'`);
  return { id, host, port };
}

export const DEFAULT_API: Listen = { host: '127.0.0.1', port: 7070 };
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function invalid(message: string): DmscTypeError {
  return new DmscTypeError('ERR_DMSC_INVALID_CONFIG', message);
}

/** Parses HOST:PORT (IPv6 as [::1]:PORT); port 0 picks a free port. */
export function parseListen(value: string, flag: string): Listen {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw invalid(`${flag} must be HOST:PORT with a port from 0 to 65535, got '${value}'`);
  return { host: m[1] ?? m[2]!, port };
}

/** A whole number within [min, max] from a flag's text. */
export function parseIntFlag(value: string | undefined, flag: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) throw invalid(`${flag} must be a whole number from ${min} to ${max}, got '${value}'`);
  return n;
}

/** Checks an http(s) URL flag and drops a trailing '/'. */
export function parseUrl(value: string, flag: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw invalid(`${flag} must be an http:// or https:// URL, got '${value}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw invalid(`${flag} must be an http:// or https:// URL, got '${value}'`);
  return value.replace(/\/+$/, '');
}

export function checkId(id: string, flag: string): string {
  if (!NODE_ID.test(id)) throw invalid(`${flag} must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, got '${id}'`);
  return id;
}

/** Reads a key from a file (first line), for keys that should not sit in argv. */
export function readKeyFile(path: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw invalid(`cannot read ${flag} ${path}: ${(e as Error).message}`);
  }
  // Either the key alone, or the JSON `dmsc amc gateway add` prints, saved as is.
  let key = text.split('\n')[0]!.trim();
  if (key.startsWith('{')) {
    try {
      key = String((JSON.parse(text) as { key?: unknown }).key ?? '');
    } catch {
      throw invalid(`${flag} ${path} holds neither a key nor the JSON of \`dmsc amc gateway add\``);
    }
  }
  if (!key) throw invalid(`${flag} ${path} is empty`);
  return key;
}

export function nodeConfig(options: NodeOptions): NodeConfig {
  const id = checkId(options.id ?? 'node-1', '--id');
  let amc: NodeConfig['amc'];
  if (options.amc !== undefined) {
    const url = parseUrl(options.amc, '--amc');
    const gatewayKey = options.amcKeyFile !== undefined ? readKeyFile(options.amcKeyFile, '--amc-key-file') : process.env['DMSC_AMC_KEY'];
    if (!gatewayKey) throw invalid('--amc needs the gateway key: --amc-key-file FILE or DMSC_AMC_KEY (from `dmsc amc gateway add ID`)');
    amc = { url, gatewayKey, pollMs: parseIntFlag(options.amcPollMs, '--amc-poll-ms', 200, 10, 600_000) };
  }
  const mesh = options.meshConfig !== undefined ? readMeshConfig(resolve(options.meshConfig)) : undefined;
  const peers = [...(options.peer ?? []).map(parsePeer), ...(mesh?.peers ?? [])];
  const twice = peers.find((p, i) => peers.findIndex((q) => q.id === p.id) !== i);
  if (twice) throw invalid(`peer ${twice.id} is named twice (--peer and --mesh-config together name each peer once)`);
  if (options.upstream !== undefined && mesh?.upstream !== undefined && options.upstream !== mesh.upstream) {
    throw invalid(`--upstream ${options.upstream} and the mesh config's upstream ${mesh.upstream} differ`);
  }
  const upstream = options.upstream ?? mesh?.upstream;
  if (options.fibApiTls && !mesh?.tls) throw invalid("--fib-api-tls serves the FIB programming listener with the mesh config's TLS: give --mesh-config FILE with /tls");
  if (upstream !== undefined && !peers.some((p) => p.id === upstream)) throw invalid(`upstream ${upstream} must be one of the peers`);
  return {
    id,
    dataDir: resolve(options.data ?? `.dmsc/${id}`),
    api: options.api === undefined ? DEFAULT_API : parseListen(options.api, '--api'),
    ...(options.fib !== undefined ? { fibFile: resolve(options.fib) } : {}),
    domain: checkId(options.domain ?? 'local', '--domain'),
    credentialTtlMs: parseIntFlag(options.credentialTtl, '--credential-ttl', 3600, 1, 30 * 86400) * 1000,
    grantTtlMs: parseIntFlag(options.grantTtl, '--grant-ttl', 60, 1, 3600) * 1000,
    heartbeatMs: parseIntFlag(options.heartbeat, '--heartbeat-ms', 1000, 20, 3_600_000),
    ...(options.taskRules !== undefined ? { taskRules: resolve(options.taskRules) } : {}),
    ...(options.taxonomy !== undefined ? { taxonomy: resolve(options.taxonomy) } : {}),
    peering: options.peering === undefined ? DEFAULT_PEERING : parseListen(options.peering, '--peering'),
    dataplane: options.dataplane === undefined ? DEFAULT_DATAPLANE : parseListen(options.dataplane, '--dataplane'),
    ...(options.fibApi === 'off' ? {} : { fibApi: options.fibApi === undefined ? DEFAULT_FIB_API : parseListen(options.fibApi, '--fib-api') }),
    ...(options.fibApiTls ? { fibApiTls: true } : {}),
    upstreamTimeoutMs: parseIntFlag(options.upstreamTimeout, '--upstream-timeout-ms', 30_000, 10, 3_600_000),
    authFailures: {
      burst: parseIntFlag(options.authFailBurst, '--auth-fail-burst', DEFAULT_AUTH_BURST, 1, 1_000_000),
      perSecond: parseIntFlag(options.authFailRate, '--auth-fail-rate', DEFAULT_AUTH_PER_SECOND, 1, 1_000_000),
    },
    audit: {
      maxAgeMs: parseIntFlag(options.auditMaxAge, '--audit-max-age', 7 * 86400, 1, 3650 * 86400) * 1000,
      maxEntries: parseIntFlag(options.auditMaxEntries, '--audit-max-entries', 1_000_000, 10, 1_000_000_000),
      pruneEveryMs: parseIntFlag(options.auditPruneMs, '--audit-prune-ms', 60_000, 50, 86_400_000),
    },
    peers,
    ...(upstream !== undefined ? { upstream: checkId(upstream, '--upstream') } : {}),
    domains: mesh?.domains ?? [],
    ...(mesh?.maxRoutes !== undefined ? { maxRoutes: mesh.maxRoutes } : {}),
    ...(mesh?.holdMs !== undefined ? { holdMs: mesh.holdMs } : {}),
    ...(mesh?.maxPendingHandshakes !== undefined ? { maxPendingHandshakes: mesh.maxPendingHandshakes } : {}),
    ...(mesh?.maxPendingPerAddress !== undefined ? { maxPendingPerAddress: mesh.maxPendingPerAddress } : {}),
    ...(mesh?.tls ? { tls: mesh.tls } : {}),
    ...(mesh?.peerDataplane ? { peerDataplane: mesh.peerDataplane } : {}),
    ...(amc ? { amc } : {}),
  };
}

/** Reads a FIB file: a JSON array of operations (validated by the table when applied). */
export async function readFibFile(path: string): Promise<FibOp[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw invalid(`cannot read FIB file ${path}: ${(e as Error).message}`);
  }
  let ops: unknown;
  try {
    ops = JSON.parse(text);
  } catch (e) {
    throw invalid(`FIB file ${path} is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(ops)) throw invalid(`FIB file ${path} must hold a JSON array of operations`);
  return ops as FibOp[];
}
