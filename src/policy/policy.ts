// The policy of a node: which requesters may resolve or register which capabilities, and
// which fast-path tags the next hops of an allowed resolve must carry.
//
// Evaluation, for a requester { aic?, provider, domain }, an action ('resolve' or
// 'register') and a capability name. A rule applies when
//   - its `on` includes the action (default ['resolve']),
//   - its `requesters` match: absent or {} matches everyone; otherwise the requester
//     matches when ANY listed value matches (provider in providers OR domain in domains OR
//     aic in aics; a requester without an aic matches no aics), and
//   - one of its capability patterns matches the name (see pattern.ts).
// The FIRST applying rule with effect 'allow' or 'deny' decides the effect; when none
// applies, the document's `default` does ('allow' unless set). Every applying 'require'
// rule, wherever it stands, adds its tags; the union (sorted, deduplicated) is the
// decision's `require` when the effect is 'allow', and empty when it is 'deny'.
import { LRUCache } from 'lru-cache';
import { DmscError, DmscTypeError } from '../errors.js';
import { describe, MAX_TAGS, nameProblem, tagProblem } from '../fastpath/validate.js';
import { PatternSet, patternProblem } from './pattern.js';

export type PolicyAction = 'resolve' | 'register';
export type PolicyEffect = 'allow' | 'deny';

/** Absent or {}: everyone; otherwise a requester matching ANY listed value. */
export interface PolicyRequesters { readonly providers?: readonly string[]; readonly domains?: readonly string[]; readonly aics?: readonly string[] }
export interface PolicyRule {
  readonly id: string;
  readonly effect: PolicyEffect | 'require';
  readonly on?: readonly PolicyAction[];
  readonly requesters?: PolicyRequesters;
  readonly capabilities: readonly string[];
  readonly tags?: readonly string[];
}
/** An agent whose capability attribute `attribute` has one of `values` carries fast-path tag `tag`. */
export interface TagMapping { readonly tag: string; readonly attribute: string; readonly values: readonly (string | number | boolean)[] }
export interface PolicyDocument {
  readonly version: number;
  readonly default?: PolicyEffect;
  readonly rules: readonly PolicyRule[];
  readonly tags?: readonly TagMapping[];
}
export interface Requester { readonly aic?: string | undefined; readonly provider: string; readonly domain: string }
export interface Decision<M = readonly string[]> {
  readonly effect: PolicyEffect;
  /** Id of the deciding allow/deny rule; null when the policy default decided. */
  readonly rule: string | null;
  readonly require: readonly string[];
  /** compileTags(require), or `require` itself without compileTags. */
  readonly mask: M;
}
export interface AdmitResult { granted: string[]; denied: { capability: string; reason: string }[] }
export interface PolicyEngineOptions<M> {
  compileTags?: (tags: readonly string[]) => M;
  /** Cached resolve decisions (LRU); 0 disables the cache. Default 10000. */
  cacheSize?: number;
}

export const MAX_RULES = 1000;
export const MAX_RULE_CAPABILITIES = 256;
export const MAX_TAG_MAPPINGS = 64;
const MAX_LIST = 1024;
const MAX_TEXT = 1024;
const RULE_ID = /^[A-Za-z0-9._-]{1,64}$/;

function fail(where: string, message: string): never {
  throw new DmscTypeError('ERR_DMSC_INVALID_POLICY', `${where}: ${message}`);
}
const show = (v: unknown): string => (typeof v === 'string' ? `'${v.slice(0, 80)}'` : v === undefined ? 'nothing' : describe(v));
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function record(v: unknown, where: string, fields: readonly string[]): Record<string, unknown> {
  if (!isRecord(v)) fail(where, `must be an object, got ${show(v)}`);
  for (const k of Object.keys(v)) if (!fields.includes(k)) fail(where, `unknown field '${k}'`);
  return v;
}
function list(v: unknown, where: string, min: number, max: number): unknown[] {
  if (!Array.isArray(v)) fail(where, `must be an array, got ${show(v)}`);
  if (v.length < min) fail(where, 'must not be empty');
  if (v.length > max) fail(where, `must have at most ${max} entries, got ${v.length}`);
  return Array.from(v as unknown[]);
}
function text(v: unknown, where: string, max: number): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > max || v.includes('\0') || !v.isWellFormed()) {
    fail(where, `must be a string of 1 to ${max} characters without NUL, got ${show(v)}`);
  }
  return v;
}
function tagList(v: unknown, where: string): string[] {
  return list(v, where, 1, MAX_TAGS).map((t, j) => {
    const p = tagProblem(t, 'tag');
    return p ? fail(`${where}[${j}]`, p.message) : (t as string);
  });
}

function validateRule(raw: unknown, i: number, seen: Map<string, number>): PolicyRule {
  let at = `rules[${i}]`;
  if (!isRecord(raw)) fail(at, `must be an object, got ${describe(raw)}`);
  const { id, effect, on, requesters, capabilities, tags } = raw;
  if (typeof id === 'string' && RULE_ID.test(id)) at += ` (id '${id}')`;
  record(raw, at, ['id', 'effect', 'on', 'requesters', 'capabilities', 'tags']);
  if (typeof id !== 'string' || !RULE_ID.test(id)) fail(`${at}.id`, `must be 1 to 64 characters of [A-Za-z0-9._-], got ${show(id)}`);
  const first = seen.get(id);
  if (first !== undefined) fail(`${at}.id`, `duplicate of rules[${first}]`);
  seen.set(id, i);
  if (effect !== 'allow' && effect !== 'deny' && effect !== 'require') fail(`${at}.effect`, `must be 'allow', 'deny' or 'require', got ${show(effect)}`);
  const actions = on === undefined ? ['resolve' as const] : list(on, `${at}.on`, 1, 2).map((a, j, all) => {
    if (a !== 'resolve' && a !== 'register') fail(`${at}.on[${j}]`, `must be 'resolve' or 'register', got ${show(a)}`);
    if (all.indexOf(a) !== j) fail(`${at}.on[${j}]`, `duplicate '${a}'`);
    return a;
  });
  const rule: { -readonly [K in keyof PolicyRule]: PolicyRule[K] } = { id, effect, on: actions, capabilities: [] };
  if (requesters !== undefined) {
    const r = record(requesters, `${at}.requesters`, ['providers', 'domains', 'aics']);
    const out: Record<string, string[]> = {};
    for (const field of ['providers', 'domains', 'aics'] as const) {
      const w = `${at}.requesters.${field}`;
      if (r[field] !== undefined) out[field] = list(r[field], w, 1, MAX_LIST).map((s, j) => text(s, `${w}[${j}]`, MAX_TEXT));
    }
    rule.requesters = out;
  }
  rule.capabilities = list(capabilities, `${at}.capabilities`, 1, MAX_RULE_CAPABILITIES).map((p, j) => {
    const problem = patternProblem(p);
    if (problem !== null) fail(`${at}.capabilities[${j}]`, typeof p === 'string' ? `'${p}' is not a valid pattern: ${problem}` : problem);
    return p as string;
  });
  if (effect === 'require') {
    if (tags === undefined) fail(`${at}.tags`, "is required on a 'require' rule");
    rule.tags = tagList(tags, `${at}.tags`);
  } else if (tags !== undefined) {
    fail(`${at}.tags`, `is only allowed on 'require' rules, not on '${effect}'`);
  }
  return rule;
}

function validateMapping(raw: unknown, i: number): TagMapping {
  const at = `tags[${i}]`;
  const { tag, attribute, values } = record(raw, at, ['tag', 'attribute', 'values']);
  const p = tagProblem(tag, 'tag');
  if (p) fail(`${at}.tag`, p.message);
  return {
    tag: tag as string,
    attribute: text(attribute, `${at}.attribute`, 64),
    values: list(values, `${at}.values`, 1, MAX_LIST).map((v, j) => {
      if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) return v;
      return fail(`${at}.values[${j}]`, `must be a string, a finite number or a boolean, got ${describe(v)}`);
    }),
  };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/**
 * Validates a policy document strictly (unknown fields, wrong types and out-of-range values
 * are errors) and returns a deep-frozen normalized copy: `default`, every rule's `on` and
 * the top-level `tags` filled in. Throws a DmscTypeError with code ERR_DMSC_INVALID_POLICY
 * whose message names the field at fault, e.g. `rules[1] (id 'x').effect: ...`.
 *
 * @example
 * const doc = validatePolicy({ version: 1, rules: [{ id: 'no-med', effect: 'deny', capabilities: ['/capability/medical/**'] }] });
 * doc.default;       // 'allow'
 * doc.rules[0].on;   // ['resolve']
 */
export function validatePolicy(doc: unknown): PolicyDocument {
  const { version, default: dflt, rules, tags } = record(doc, 'policy', ['version', 'default', 'rules', 'tags']);
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) fail('version', `must be an integer >= 1, got ${show(version)}`);
  if (dflt !== undefined && dflt !== 'allow' && dflt !== 'deny') fail('default', `must be 'allow' or 'deny', got ${show(dflt)}`);
  const seen = new Map<string, number>();
  return deepFreeze({
    version,
    default: dflt ?? 'allow',
    rules: list(rules, 'rules', 0, MAX_RULES).map((r, i) => validateRule(r, i, seen)),
    tags: tags === undefined ? [] : list(tags, 'tags', 0, MAX_TAG_MAPPINGS).map(validateMapping),
  });
}

interface CompiledRule {
  readonly id: string;
  readonly effect: PolicyEffect | 'require';
  readonly who: ((r: Requester) => boolean) | null; // null: everyone
  readonly caps: PatternSet;
  readonly tags: readonly string[];
}
interface Compiled {
  readonly doc: PolicyDocument;
  readonly rules: Readonly<Record<PolicyAction, readonly CompiledRule[]>>;
  readonly mappings: readonly { tag: string; attribute: string; values: ReadonlySet<unknown> }[];
  readonly masks: Map<string, unknown>;
}

function compileRequesters(r: PolicyRequesters | undefined): CompiledRule['who'] {
  const set = (xs: readonly string[] | undefined) => (xs === undefined ? null : new Set(xs));
  const providers = set(r?.providers), domains = set(r?.domains), aics = set(r?.aics);
  if (!providers && !domains && !aics) return null;
  return (q) => !!(providers?.has(q.provider) || domains?.has(q.domain) || (q.aic !== undefined && aics?.has(q.aic)));
}

function compile(doc: PolicyDocument): Compiled {
  const rules: Record<PolicyAction, CompiledRule[]> = { resolve: [], register: [] };
  for (const r of doc.rules) {
    const c: CompiledRule = { id: r.id, effect: r.effect, who: compileRequesters(r.requesters), caps: new PatternSet(r.capabilities), tags: r.tags ?? [] };
    for (const action of r.on ?? ['resolve']) rules[action].push(c);
  }
  const mappings = (doc.tags ?? []).map((m) => ({ tag: m.tag, attribute: m.attribute, values: new Set<unknown>(m.values) }));
  return { doc, rules, mappings, masks: new Map() };
}

const EMPTY_DOC: PolicyDocument = deepFreeze({ version: 0, default: 'allow', rules: [], tags: [] });
const NO_TAGS: readonly string[] = Object.freeze([]);

const argError = (message: string) => new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', message);

/**
 * Holds the current policy, compiled, and decides requests against it. `load` swaps in a
 * new version atomically and clears the decision cache; a rejected document leaves the
 * current one in effect. See the top of this file for the evaluation rules.
 *
 * @example
 * const engine = new PolicyEngine({ compileTags: (tags) => fib.tagSet(tags) });
 * engine.load({ version: 1, rules: [{ id: 'eu', effect: 'require', capabilities: ['/**'], tags: ['gdpr'] }] });
 * const d = engine.decide({ provider: 'acme', domain: 'acme.example' }, '/capability/ocr');
 * // d.effect === 'allow', d.require = ['gdpr'], d.mask = the TagSet for ['gdpr']
 */
export class PolicyEngine<M = readonly string[]> {
  // M appears only in what the public members return, so that a PolicyEngine<TagSet> is
  // also a PolicyEngine<unknown>; the internals hold masks as unknown.
  readonly #compileTags: ((tags: readonly string[]) => unknown) | undefined;
  readonly #cache: LRUCache<string, Decision<unknown>> | null;
  #compiled: Compiled = compile(EMPTY_DOC);
  #hits = 0;
  #misses = 0;

  constructor(options: PolicyEngineOptions<M> = {}) {
    const { compileTags, cacheSize = 10000 } = options;
    if (compileTags !== undefined && typeof compileTags !== 'function') throw argError('compileTags must be a function');
    if (!Number.isSafeInteger(cacheSize) || cacheSize < 0) throw argError(`cacheSize must be an integer >= 0, got ${describe(cacheSize)}`);
    this.#compileTags = compileTags;
    this.#cache = cacheSize > 0 ? new LRUCache({ max: cacheSize }) : null;
  }

  /** Version of the policy in effect; 0 before any load. */
  get version(): number { return this.#compiled.doc.version; }

  /** The (normalized, frozen) policy in effect; an empty default-allow version 0 before any load. */
  get document(): PolicyDocument { return this.#compiled.doc; }

  /**
   * Validates, compiles and installs a policy document; returns its normalized form.
   *
   * @example
   * engine.load(JSON.parse(await readFile('policy.json', 'utf8')));
   */
  load(doc: unknown): PolicyDocument {
    const compiled = compile(validatePolicy(doc));
    this.#compiled = compiled;
    this.#cache?.clear();
    return compiled.doc;
  }

  /**
   * The decision for a requester, capability name and action. Resolve decisions are cached.
   *
   * @example
   * engine.decide({ provider: 'acme', domain: 'acme.example' }, '/capability/ocr').effect; // 'allow'
   */
  decide(requester: Requester, capability: string, action: PolicyAction = 'resolve'): Decision<M> {
    if (typeof requester !== 'object' || requester === null) throw argError(`requester must be an object, got ${describe(requester)}`);
    const { aic, provider, domain } = requester;
    if (typeof provider !== 'string' || typeof domain !== 'string' || (aic !== undefined && typeof aic !== 'string')) {
      throw argError('requester must have string provider and domain and an optional string aic');
    }
    if (typeof capability !== 'string') throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `capability must be a string, got ${describe(capability)}`);
    if (action !== 'resolve' && action !== 'register') throw argError(`action must be 'resolve' or 'register', got ${show(action)}`);
    const cache = action === 'resolve' ? this.#cache : null;
    // Length-prefixed fields keep the key unambiguous whatever the strings contain.
    const key = cache ? `${aic === undefined ? '-' : aic.length}:${aic ?? ''}${provider.length}:${provider}${domain.length}:${domain}${capability}` : '';
    if (cache) {
      const hit = cache.get(key);
      if (hit !== undefined) {
        this.#hits++;
        return hit as Decision<M>;
      }
      this.#misses++;
    }
    const problem = nameProblem(capability);
    if (problem !== null) throw new DmscTypeError('ERR_DMSC_INVALID_NAME', `invalid capability ${JSON.stringify(capability)}: ${problem}`);
    const decision = this.#evaluate({ aic, provider, domain }, capability, action);
    cache?.set(key, decision);
    return decision;
  }

  #evaluate(requester: Requester, name: string, action: PolicyAction): Decision<M> {
    const c = this.#compiled;
    let decider: CompiledRule | null = null;
    const tags = new Set<string>();
    for (const r of c.rules[action]) {
      if (decider !== null && r.effect !== 'require') continue;
      if ((r.who !== null && !r.who(requester)) || !r.caps.matches(name)) continue;
      if (r.effect === 'require') for (const t of r.tags) tags.add(t);
      else decider = r;
    }
    const effect = decider ? (decider.effect as PolicyEffect) : (c.doc.default ?? 'allow');
    const require = effect === 'allow' && tags.size > 0 ? Object.freeze([...tags].sort()) : NO_TAGS;
    return Object.freeze({ effect, rule: decider ? decider.id : null, require, mask: this.#mask(c, require) });
  }

  #mask(c: Compiled, require: readonly string[]): M {
    if (this.#compileTags === undefined) return require as unknown as M;
    const key = require.join('\0'); // tags never contain NUL
    let mask = c.masks.get(key);
    if (mask === undefined && !c.masks.has(key)) {
      mask = this.#compileTags(require);
      c.masks.set(key, mask);
    }
    return mask as M;
  }

  /**
   * Whether every name strictly below `name` gets the same resolve decision from this
   * policy, whoever asks: true when no rule's pattern names anything below it (such a
   * pattern would match some of those names and not others).
   *
   * @example
   * engine.load({ version: 1, rules: [{ id: 'r', effect: 'deny', capabilities: ['/capability/ocr/secret'] }] });
   * engine.uniformBelow('/capability/ocr');        // false
   * engine.uniformBelow('/capability/ocr/secret'); // true
   */
  uniformBelow(name: string): boolean {
    if (name === '/' || nameProblem(name) !== null) return false;
    const below = name + '/';
    for (const r of this.#compiled.doc.rules) {
      if (!(r.on ?? ['resolve']).includes('resolve')) continue;
      for (const p of r.capabilities) if ((p.endsWith('/**') ? p.slice(0, -3) : p).startsWith(below)) return false;
    }
    return true;
  }

  /**
   * Checks a registration: each capability is decided with action 'register'.
   *
   * @example
   * engine.admit(agent, ['/capability/ocr', '/capability/medical/x']);
   * // { granted: ['/capability/ocr'], denied: [{ capability: '/capability/medical/x', reason: "denied by policy rule 'no-med'" }] }
   */
  admit(requester: Requester, capabilities: readonly string[]): AdmitResult {
    if (!Array.isArray(capabilities)) throw argError(`capabilities must be an array, got ${describe(capabilities)}`);
    const result: AdmitResult = { granted: [], denied: [] };
    for (const capability of capabilities as readonly string[]) {
      const d = this.decide(requester, capability, 'register');
      if (d.effect === 'allow') result.granted.push(capability);
      else result.denied.push({ capability, reason: d.rule === null ? 'denied by the policy default' : `denied by policy rule '${d.rule}'` });
    }
    return result;
  }

  /**
   * The fast-path tags an agent with these capability attributes carries, sorted: a
   * mapping applies when the attribute's value, or for an array any element, is one of
   * its values.
   *
   * @example
   * // with tags: [{ tag: 'gdpr', attribute: 'jurisdiction', values: ['eu'] }]
   * engine.tagsFor({ jurisdiction: ['us', 'eu'] }); // ['gdpr']
   */
  tagsFor(attributes: Readonly<Record<string, unknown>>): string[] {
    if (!isRecord(attributes)) throw argError(`attributes must be an object, got ${describe(attributes)}`);
    const out = new Set<string>();
    for (const m of this.#compiled.mappings) {
      if (!Object.hasOwn(attributes, m.attribute)) continue;
      const v = attributes[m.attribute];
      if (Array.isArray(v) ? v.some((x) => m.values.has(x)) : m.values.has(v)) out.add(m.tag);
    }
    return [...out].sort();
  }

  /** Decision cache statistics (hits and misses since construction; size now). */
  get stats(): { hits: number; misses: number; size: number } {
    return { hits: this.#hits, misses: this.#misses, size: this.#cache?.size ?? 0 };
  }
}

/** The error for a request the policy denies (rule `null`: the document's default). */
export function policyDenial(capability: string, rule: string | null): DmscError {
  return new DmscError('ERR_DMSC_FORBIDDEN', `policy denies ${capability} to this requester (${rule ? `rule '${rule}'` : 'the policy default'})`);
}
