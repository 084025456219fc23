// Other trust domains this node peers with. A gateway of another domain is accepted only
// when its credential verifies with that domain's AMC keys, configured here (a JWKS file,
// or the URL of the other domain's `/v1/amc/jwks`). At the boundary:
// - an export policy decides which names are advertised to that domain and answered
//   for it (anything else is answered as if nobody offered it), and which of our tags
//   it may see;
// - an import policy decides which of its names we take routes for;
// - a translation table maps its tags to ours, and the taxonomy's alignment for it maps
//   its capability names to ours. Everything crosses the boundary in the sender's words
//   and the receiver translates: a tag in a digest or an answer with no mapping is
//   dropped; a request requiring a tag with no mapping finds nothing; a name with no
//   mapping is taken as it is.
import { readFile } from 'node:fs/promises';
import { request } from 'undici';
import type { JSONWebKeySet } from 'jose';
import { DmscError } from '../errors.js';
import type { DiscoverAnswer, ForwardedResolve, ResolveAnswer } from '../directory/gateway.js';
import { JwtVerifier, peekKid } from '../identity/jwt.js';
import { PatternSet } from '../policy/pattern.js';
import { nameProblem } from '../fastpath/validate.js';

export interface DomainConfig {
  readonly domain: string;
  /** The domain's AMC keys: an absolute file path, or an https URL (http on loopback). */
  readonly jwks: string;
  /** Capability patterns advertised to (and answered for) this domain; none by default. */
  readonly export: readonly string[];
  /** Our tags it may see in digests and answers; none by default. */
  readonly exportTags: readonly string[];
  /** Capability patterns we take routes for from its gateways; none by default. */
  readonly import: readonly string[];
  /** Their tag → our tag. */
  readonly tags: Readonly<Record<string, string>>;
}

/** A fresh look at a domain's keys at most this often when a token names an unknown key. */
const UNKNOWN_KID_MS = 5000;
/** Keys older than this are read again before use, so a key withdrawn there stops here. */
const REREAD_MS = 60_000;
/** Keys that could not be read again for this long are no longer trusted. */
const MAX_KEY_AGE_MS = 3_600_000;
/** Failed reads are not retried sooner than this. */
const RETRY_MS = 1000;

/** The answer for a name a domain may not see: the same as for a name nobody offers. */
export function unseen(capability: string): DmscError {
  return new DmscError('ERR_DMSC_NO_ROUTE', `no reachable agent offers ${capability}`);
}

/** A JWK set from a parsed JSON body, or why it is not one. */
export function jwksOf(body: unknown): JSONWebKeySet | string {
  const keys = (body as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))) return 'not a JWK set ({ "keys": [...] })';
  return { keys } as JSONWebKeySet;
}

export class ForeignDomain {
  readonly name: string;
  readonly issuer: string;
  readonly #source: string;
  readonly #exports: PatternSet;
  readonly #imports: PatternSet;
  readonly #shown: ReadonlySet<string>;
  readonly #toOurs: ReadonlyMap<string, string>;
  readonly #verifier = new JwtVerifier();
  /** When the keys were last read (0: never), and last tried. */
  #loadedAt = 0;
  #triedAt = 0;
  #loading: Promise<void> | undefined;

  constructor(config: DomainConfig) {
    this.name = config.domain;
    this.issuer = `dmsc-amc:${config.domain}`;
    this.#source = config.jwks;
    this.#exports = new PatternSet(config.export);
    this.#imports = new PatternSet(config.import);
    this.#shown = new Set(config.exportTags);
    this.#toOurs = new Map(Object.entries(config.tags));
  }

  /** Whether `name` is advertised to this domain and answered for it. */
  exports(name: string): boolean {
    return this.#exports.matches(name);
  }

  /** Whether we take routes for `name` from this domain's gateways. */
  imports(name: string): boolean {
    return this.#imports.matches(name);
  }

  /** Of our tags, those this domain may see. */
  shownTags(tags: readonly string[]): string[] {
    return tags.filter((t) => this.#shown.has(t));
  }

  /**
   * Answers a request this domain sent (or one of its agents made) with `answer`, within
   * the export policy. A name not exported is answered as one nobody offers, before
   * anything is looked up; `answer` is given the prefixes the domain may see, so a match
   * outside them is no match, before anything is forwarded. Of the errors, only a policy
   * denial or a refused credential (about the exported name asked for) is passed on as
   * it is: any other (no route, TTL, loop, timeouts, from here or further on) could tell
   * what lies beyond the export, and is answered as no match. Discovery shows only
   * exported candidates, with the tags the domain may see.
   */
  async answerWithin(request: ForwardedResolve, self: string, answer: (r: ForwardedResolve, visible: (prefix: string) => boolean) => Promise<ResolveAnswer | DiscoverAnswer>): Promise<ResolveAnswer | DiscoverAnswer> {
    const none: DiscoverAnswer = { candidates: [], path: [...request.path, self] };
    const nothing = () => {
      if (request.kind === 'discover') return none;
      throw unseen(request.capability);
    };
    if (!this.exports(request.capability)) return nothing();
    let a: ResolveAnswer | DiscoverAnswer;
    try {
      a = await answer(request, (prefix) => this.exports(prefix));
    } catch (e) {
      const code = (e as DmscError).code;
      if (code === 'ERR_DMSC_FORBIDDEN' || code === 'ERR_DMSC_UNAUTHORIZED') throw e;
      return nothing();
    }
    if ('candidates' in a) {
      const candidates = a.candidates
        .filter((c) => typeof c['capability'] === 'string' && this.exports(c['capability']))
        .map((c) => ({ ...c, tags: this.shownTags(Array.isArray(c['tags']) ? (c['tags'] as string[]) : []) }));
      return candidates.length ? { ...a, candidates } : none;
    }
    if (!this.exports(a.capability)) return nothing();
    return a;
  }

  /**
   * How a name of theirs reads in our vocabulary (the taxonomy's alignment for this
   * domain); set by the node. Without it, or for a name it does not cover, names are
   * the same on both sides.
   */
  aligner: ((name: string) => { name: string; confidence: number } | undefined) | undefined;

  /**
   * Their name (in a digest, a request or an answer) as ours; undefined when its mapping
   * makes a name that is not valid here (too deep, too long), which then crosses not at all.
   */
  importName(name: string): string | undefined {
    const aligned = this.aligner?.(name);
    if (!aligned) return name;
    return nameProblem(aligned.name) ? undefined : aligned.name;
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
   * Verifies a token this domain's AMC signed. Keys are read on first use, again in the
   * background once a minute old (a key withdrawn there stops verifying here within
   * about a minute), and again, waited for, at most every 5 s, when a token names a key
   * not seen yet, so a rotation there is followed without a restart. Failed reads are
   * retried at most once a second; keys that could not be read again for an hour are no
   * longer trusted.
   */
  async verify(token: string, typ: string): Promise<Record<string, unknown>> {
    if (token.length > 8192) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: too long');
    const now = Date.now();
    const kid = peekKid(token);
    const never = this.#loadedAt === 0;
    const stale = now - this.#loadedAt >= REREAD_MS;
    const unknown = kid !== undefined && !this.#verifier.knows(kid) && now - this.#triedAt >= UNKNOWN_KID_MS;
    if ((never || stale || unknown) && now - this.#triedAt >= RETRY_MS) {
      // Only a token we cannot judge yet waits for the read; keys merely a minute old
      // are read again in the background, and the ones held serve meanwhile.
      const reading = this.load().catch(() => {});
      if (never || unknown) await reading;
    }
    if (Date.now() - this.#loadedAt >= MAX_KEY_AGE_MS) {
      throw new DmscError('ERR_DMSC_AMC_UNAVAILABLE', `the keys of domain ${this.name} cannot be read from ${this.#source} now`);
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
      this.#loadedAt = Date.now();
    }).finally(() => {
      this.#triedAt = Date.now();
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
    const jwks = jwksOf(body);
    if (typeof jwks === 'string') throw new DmscError('ERR_DMSC_AMC_UNAVAILABLE', `keys of domain ${this.name} from ${this.#source}: ${jwks}`);
    return jwks;
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

  /** How each domain's names read in ours (the node's taxonomy, which may change). */
  setAligner(align: (domain: string, name: string) => { name: string; confidence: number } | undefined): void {
    for (const d of this.#byName.values()) d.aligner = (name) => align(d.name, name);
  }

  /** Reads every domain's keys; a domain whose keys cannot be had now is tried again on use. */
  async load(log: (event: Record<string, unknown>) => void): Promise<void> {
    await Promise.all([...this.#byName.values()].map((d) => d.load().catch((e: DmscError) => log({ msg: 'domain keys unavailable', domain: d.name, error: e.code, reason: e.message }))));
  }
}
