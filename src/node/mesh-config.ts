// The mesh config file (`dmsc node --mesh-config FILE`): peers, the upstream, other trust
// domains with their export policy and tag table, route limits, hold time and TLS, in one
// JSON document. It is checked whole at start (schema, then meaning); any problem is
// ERR_DMSC_INVALID_CONFIG naming the file and the field. Relative paths in it are taken
// from the file's own directory.
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { Ajv } from 'ajv';
import { DmscTypeError } from '../errors.js';
import { tagProblem } from '../fastpath/validate.js';
import { jwksOf, type DomainConfig } from '../mesh/domains.js';
import type { PeerConfig, PeeringTls } from '../mesh/mesh.js';
import { patternProblem } from '../policy/pattern.js';
import { checkId, parseListen, type Listen } from './config.js';

export interface MeshConfig {
  /** Peers this node dials. */
  readonly peers: readonly PeerConfig[];
  /** One of the peers, for names with no route here. */
  readonly upstream?: string;
  /** Other trust domains peered with. */
  readonly domains: readonly DomainConfig[];
  /** Routes one peer may hold here. */
  readonly maxRoutes?: number;
  /** Peering hold time proposed to peers. */
  readonly holdMs?: number;
  /** Peering connections in their handshake at once, in all and from one address. */
  readonly maxPendingHandshakes?: number;
  readonly maxPendingPerAddress?: number;
  readonly tls?: PeeringTls;
  /** The data plane's listener for requests from peer gateways, over `tls`. */
  readonly peerDataplane?: Listen;
}

const ID = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' };
const FILE = { type: 'string', minLength: 1, maxLength: 4096 };

const schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    peers: {
      type: 'array',
      maxItems: 1024,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'address'],
        properties: {
          id: ID,
          address: { type: 'string', maxLength: 300 },
          domain: ID,
          maxRoutes: { type: 'integer', minimum: 1, maximum: 10_000_000 },
        },
      },
    },
    upstream: ID,
    maxRoutesPerPeer: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    holdMs: { type: 'integer', minimum: 300, maximum: 3_600_000 },
    maxPendingHandshakes: { type: 'integer', minimum: 1, maximum: 100_000 },
    maxPendingPerAddress: { type: 'integer', minimum: 1, maximum: 100_000 },
    domains: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['domain', 'jwks'],
        properties: {
          domain: ID,
          jwks: FILE,
          export: { type: 'array', maxItems: 10_000, items: { type: 'string', maxLength: 1024 } },
          exportTags: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } },
          import: { type: 'array', maxItems: 10_000, items: { type: 'string', maxLength: 1024 } },
          tags: { type: 'object', maxProperties: 64, additionalProperties: { type: 'string' } },
        },
      },
    },
    peerDataplane: { type: 'string', maxLength: 300 },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['cert', 'key'],
      properties: { cert: FILE, key: FILE, ca: FILE, requireClientCert: { type: 'boolean' } },
    },
  },
} as const;

const validate = new Ajv({ allErrors: false, strict: true }).compile(schema);

interface RawFile {
  peers?: { id: string; address: string; domain?: string; maxRoutes?: number }[];
  upstream?: string;
  maxRoutesPerPeer?: number;
  holdMs?: number;
  maxPendingHandshakes?: number;
  maxPendingPerAddress?: number;
  domains?: { domain: string; jwks: string; export?: string[]; exportTags?: string[]; import?: string[]; tags?: Record<string, string> }[];
  tls?: { cert: string; key: string; ca?: string; requireClientCert?: boolean };
  peerDataplane?: string;
}

/** Reads and checks a mesh config file. */
export function readMeshConfig(path: string): MeshConfig {
  const invalid = (message: string) => new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `mesh config ${path}: ${message}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw invalid((e as Error).message);
  }
  if (!validate(raw)) {
    const e = validate.errors![0]!;
    throw invalid(`${e.instancePath || '(top)'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` ('${String(e.params['additionalProperty'])}')` : ''}`);
  }
  const file = raw as RawFile;
  const base = dirname(resolve(path));
  const local = (p: string) => resolve(base, p);
  const readable = (p: string, field: string) => {
    try {
      accessSync(p, constants.R_OK);
    } catch {
      throw invalid(`${field}: cannot read ${p}`);
    }
    return p;
  };

  const peers = (file.peers ?? []).map((p, i): PeerConfig => {
    let at;
    try {
      at = parseListen(p.address, `/peers/${i}/address`);
    } catch (e) {
      throw invalid((e as Error).message);
    }
    if (at.port === 0) throw invalid(`/peers/${i}/address needs a real port`);
    return { id: p.id, host: at.host, port: at.port, ...(p.domain ? { domain: p.domain } : {}), ...(p.maxRoutes ? { maxRoutes: p.maxRoutes } : {}) };
  });

  const seen = new Set<string>();
  const domains = (file.domains ?? []).map((d, i): DomainConfig => {
    if (seen.has(d.domain)) throw invalid(`/domains/${i}: domain ${d.domain} is listed twice`);
    seen.add(d.domain);
    for (const field of ['export', 'import'] as const) {
      (d[field] ?? []).forEach((p, j) => {
        const problem = patternProblem(p);
        if (problem) throw invalid(`/domains/${i}/${field}/${j}: ${problem}`);
      });
    }
    const tags = d.tags ?? {};
    const tagList: [string, string][] = [...Object.entries(tags).flatMap(([theirs, ours]) => [[theirs, 'their tag'], [ours, 'our tag']] as [string, string][]), ...(d.exportTags ?? []).map((t): [string, string] => [t, 'exportTags'])];
    for (const [t, where] of tagList) {
      const problem = tagProblem(t, where);
      if (problem) throw invalid(`/domains/${i}: ${problem.message}`);
    }
    return { domain: d.domain, jwks: keySource(d.jwks, `/domains/${i}/jwks`), export: d.export ?? [], exportTags: d.exportTags ?? [], import: d.import ?? [], tags };
  });

  // Keys another domain is trusted by: a file (checked now), or https; plain http only
  // on loopback, where nobody can stand in the middle.
  function keySource(source: string, field: string): string {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
      let u: URL;
      try {
        u = new URL(source);
      } catch {
        throw invalid(`${field}: not a URL: ${source}`);
      }
      const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) throw invalid(`${field}: keys must come from a file or an https URL (http only on loopback), got ${source}`);
      return source;
    }
    const path = readable(local(source), field);
    let body: unknown;
    try {
      body = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw invalid(`${field}: ${path}: ${(e as Error).message}`);
    }
    const jwks = jwksOf(body);
    if (typeof jwks === 'string') throw invalid(`${field}: ${path}: ${jwks}`);
    return path;
  }

  let tls: PeeringTls | undefined;
  if (file.tls) {
    const read = (p: string, field: string) => readFileSync(readable(local(p), `/tls/${field}`), 'utf8');
    tls = {
      cert: read(file.tls.cert, 'cert'), key: read(file.tls.key, 'key'),
      ...(file.tls.ca ? { ca: read(file.tls.ca, 'ca') } : {}),
      ...(file.tls.requireClientCert !== undefined ? { requireClientCert: file.tls.requireClientCert } : {}),
    };
    if (tls.requireClientCert && !tls.ca) throw invalid('/tls: requireClientCert needs a ca to check client certificates against');
    try {
      createSecureContext({ cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) });
    } catch (e) {
      throw invalid(`/tls: the certificate, key or CA cannot be used: ${(e as Error).message}`);
    }
  }

  // Requests from peers carry their requesters' credentials: never in clear text.
  let peerDataplane: Listen | undefined;
  if (file.peerDataplane !== undefined) {
    if (!tls) throw invalid('/peerDataplane needs /tls: requests between gateways carry credentials and go over TLS only');
    try {
      peerDataplane = parseListen(file.peerDataplane, '/peerDataplane');
    } catch (e) {
      throw invalid((e as Error).message);
    }
  }

  return {
    peers, domains,
    ...(file.upstream !== undefined ? { upstream: checkId(file.upstream, 'upstream') } : {}),
    ...(file.maxRoutesPerPeer !== undefined ? { maxRoutes: file.maxRoutesPerPeer } : {}),
    ...(file.holdMs !== undefined ? { holdMs: file.holdMs } : {}),
    ...(file.maxPendingHandshakes !== undefined ? { maxPendingHandshakes: file.maxPendingHandshakes } : {}),
    ...(file.maxPendingPerAddress !== undefined ? { maxPendingPerAddress: file.maxPendingPerAddress } : {}),
    ...(tls ? { tls } : {}),
    ...(peerDataplane ? { peerDataplane } : {}),
  };
}
