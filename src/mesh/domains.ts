// Other trust domains this node peers with. A gateway of another domain is accepted only
// when its credential verifies with that domain's AMC keys, configured here (a JWKS file,
// or the URL of the other domain's `/v1/amc/jwks`). At the boundary, an export policy
// decides which names are advertised to that domain (and which of its requests are
// answered), and a translation table maps its tags to ours. Everything crosses the
// boundary in the sender's words and the receiver translates: a tag in a digest or an
// answer with no mapping is dropped; a request requiring a tag with no mapping finds
// nothing.
import { readFile } from 'node:fs/promises';
import { request } from 'undici';
import type { JSONWebKeySet } from 'jose';
import { DmscError } from '../errors.js';
import { JwtVerifier, peekKid } from '../identity/jwt.js';
import { PatternSet } from '../policy/pattern.js';

export interface DomainConfig {
  readonly domain: string;
  /** The domain's AMC keys: an absolute file path, or an http(s) URL. */
  readonly jwks: string;
  /** Capability patterns advertised to (and answered for) this domain; none by default. */
  readonly export: readonly string[];
  /** Their tag → our tag. */
  readonly tags: Readonly<Record<string, string>>;
}

/** A fresh look at a domain's keys at most this often, when a token names an unknown key. */
const REFRESH_MS = 5000;

export class ForeignDomain {
  readonly name: string;
  readonly issuer: string;
  readonly #source: string;
  readonly #exports: PatternSet;
  readonly #toOurs: ReadonlyMap<string, string>;
  readonly #verifier = new JwtVerifier();
  #loaded = false;
  #lastLoad = 0;
  #loading: Promise<void> | undefined;

  constructor(config: DomainConfig) {
    this.name = config.domain;
    this.issuer = `dmsc-amc:${config.domain}`;
    this.#source = config.jwks;
    this.#exports = new PatternSet(config.export);
    this.#toOurs = new Map(Object.entries(config.tags));
  }

  /** Whether `name` is advertised to this domain and answered for it. */
  exports(name: string): boolean {
    return this.#exports.matches(name);
  }

  /** Their tags as ours (what they advertise or show); tags without a mapping are dropped. */
  importTags(tags: readonly string[]): string[] {
    return translate(this.#toOurs, tags, false)!;
  }

  /**
   * The tags one of their requests requires, as ours; undefined when one has no mapping,
   * as nothing here carries it.
   */
  importRequired(tags: readonly string[]): string[] | undefined {
    return translate(this.#toOurs, tags, true);
  }

  /**
   * Verifies a token this domain's AMC signed. Keys are read on first use and again
   * (at most every 5 s) when a token names a key not seen yet, so a rotation there is
   * followed without a restart.
   */
  async verify(token: string, typ: string): Promise<Record<string, unknown>> {
    if (token.length > 8192) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: too long');
    const kid = peekKid(token);
    if (!this.#loaded || (kid && !this.#verifier.knows(kid) && Date.now() - this.#lastLoad >= REFRESH_MS)) {
      await this.load().catch((e: unknown) => {
        if (!this.#loaded) throw e;
      });
    }
    const claims = (await this.#verifier.verify(token, typ, this.issuer)) as Record<string, unknown>;
    if (claims['dom'] !== this.name) throw new DmscError('ERR_DMSC_UNAUTHORIZED', `credential rejected: not of domain ${this.name}`);
    return claims;
  }

  /** Reads the keys now; ERR_DMSC_AMC_UNAVAILABLE if they cannot be had. */
  load(): Promise<void> {
    this.#loading ??= this.#fetch().then((jwks) => {
      try {
        this.#verifier.setKeys(jwks);
      } catch (e) {
        throw new DmscError('ERR_DMSC_AMC_UNAVAILABLE', `keys of domain ${this.name} from ${this.#source}: ${(e as Error).message}`);
      }
      this.#loaded = true;
    }).finally(() => {
      this.#lastLoad = Date.now();
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #fetch(): Promise<JSONWebKeySet> {
    let body: unknown;
    try {
      if (/^https?:\/\//.test(this.#source)) {
        const res = await request(this.#source, { headersTimeout: 3000, bodyTimeout: 3000 });
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new Error(`HTTP ${res.statusCode}`);
        }
        body = await res.body.json();
      } else {
        body = JSON.parse(await readFile(this.#source, 'utf8'));
      }
    } catch (e) {
      throw new DmscError('ERR_DMSC_AMC_UNAVAILABLE', `keys of domain ${this.name} from ${this.#source}: ${(e as Error).message}`);
    }
    const keys = (body as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'object' && k !== null)) {
      throw new DmscError('ERR_DMSC_AMC_UNAVAILABLE', `keys of domain ${this.name} from ${this.#source}: not a JWK set`);
    }
    return { keys } as JSONWebKeySet;
  }
}

function translate(map: ReadonlyMap<string, string>, tags: readonly string[], strict: boolean): string[] | undefined {
  const out: string[] = [];
  for (const t of tags) {
    const mapped = map.get(t);
    if (mapped !== undefined) out.push(mapped);
    else if (strict) return undefined;
  }
  return out;
}

/** The domains this node trusts besides its own. */
export class Domains {
  readonly #byName = new Map<string, ForeignDomain>();

  constructor(configs: readonly DomainConfig[] = []) {
    for (const c of configs) this.#byName.set(c.domain, new ForeignDomain(c));
  }

  get(domain: string): ForeignDomain | undefined {
    return this.#byName.get(domain);
  }

  get size(): number {
    return this.#byName.size;
  }

  /** Reads every domain's keys; a domain whose keys cannot be had now is tried again on use. */
  async load(log: (event: Record<string, unknown>) => void): Promise<void> {
    await Promise.all([...this.#byName.values()].map((d) => d.load().catch((e: DmscError) => log({ msg: 'domain keys unavailable', domain: d.name, error: e.code, reason: e.message }))));
  }
}
