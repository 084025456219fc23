// The capability taxonomy (MACP §6, semantic layer: ontology, validation rules): a
// versioned set of hierarchical capability names, each with a label, a description,
// synonyms, example utterances, the aliases it replaces, keyword rules for intents and
// the types of its attributes. Registration normalizes declared names against it;
// intent resolution ranks its entries.
//
//   { "version": "2026.11", "unknownNames": "reject",
//     "entries": [
//       { "name": "/capability/vision/ocr", "label": "Optical character recognition",
//         "description": "...", "synonyms": ["text recognition"], "aliases": ["/capability/ocr"],
//         "utterances": ["read the text in this scan"], "keywords": ["ocr"], "open": true,
//         "attributes": { "languages": { "type": "string[]" }, "dpi": { "type": "number", "min": 72 } } } ] }
//
// A name is known when an entry has it, or when it is below an entry marked `open`
// (variants: `/capability/vision/ocr/high-precision`). `unknownNames: "allow"` takes
// any valid name as it is (aliases are still replaced).
import { DmscTypeError } from '../errors.js';
import { nameProblem, prefixesOf } from '../fastpath/validate.js';

export type AttributeKind = 'string' | 'number' | 'boolean' | 'string[]';

export interface AttributeType {
  readonly type: AttributeKind;
  readonly enum?: readonly string[];
  readonly min?: number;
  readonly max?: number;
}

export interface TaxonomyEntry {
  readonly name: string;
  readonly label: string;
  readonly description?: string;
  readonly synonyms?: readonly string[];
  readonly utterances?: readonly string[];
  /** Names registrations may use for this one (replaced by it). */
  readonly aliases?: readonly string[];
  /** Words or phrases that, found whole in an intent, raise this entry (enough for a match alone). */
  readonly keywords?: readonly string[];
  /** Names below this one are accepted as variants of it. */
  readonly open?: boolean;
  readonly attributes?: Readonly<Record<string, AttributeType>>;
}

/**
 * A mapping from another vocabulary into this one: `source` is `domain:<name>` (what
 * that trust domain's gateways advertise and ask for) or `version:<v>` (an earlier
 * version of this taxonomy). A name maps by its longest `from` prefix; what follows the
 * prefix is kept. Mappings below `minConfidence` (default 0.5) are not used.
 */
export interface Alignment {
  readonly source: string;
  readonly minConfidence?: number;
  readonly map: readonly { readonly from: string; readonly to: string; readonly confidence: number }[];
}

export interface TaxonomyDocument {
  readonly version: string;
  /** `reject` (default): only known names register; `allow`: any valid name does. */
  readonly unknownNames?: 'reject' | 'allow';
  readonly entries: readonly TaxonomyEntry[];
  readonly alignments?: readonly Alignment[];
  /**
   * How intents are resolved against this taxonomy, when not the defaults (which were
   * tuned on the built-in one): BM25 scores grow with the taxonomy's text, so a much
   * smaller taxonomy wants a smaller `scale`; `dmsc intent` prints the scores to tune by.
   */
  readonly resolution?: Resolution;
}

export interface Resolution {
  /** Below this confidence the best candidate is not taken. */
  readonly threshold?: number;
  /** When the second is within this much of the first, the answer is ambiguous. */
  readonly margin?: number;
  /** The lexical score at which an intent all of whose words an entry explains gets half confidence. */
  readonly scale?: number;
}

/** A name read through an alignment. */
export interface Aligned {
  readonly name: string;
  readonly from: string;
  readonly confidence: number;
  readonly source: string;
}

/** How a declared name was taken. */
export interface Normalized {
  readonly name: string;
  readonly declared: string;
  readonly via: 'exact' | 'alias' | 'variant' | 'version' | 'unknown-allowed';
  /** With `via: version`: the alignment (`version:<v>`) and its confidence. */
  readonly source?: string;
  readonly confidence?: number;
}

const KINDS: ReadonlySet<string> = new Set(['string', 'number', 'boolean', 'string[]']);

export class Taxonomy {
  readonly version: string;
  readonly unknownNames: 'reject' | 'allow';
  readonly entries: readonly TaxonomyEntry[];
  readonly alignments: readonly Alignment[];
  readonly resolution: Resolution;
  readonly #byName = new Map<string, TaxonomyEntry>();
  readonly #aliases = new Map<string, string>();
  readonly #alignments = new Map<string, { min: number; map: Map<string, { to: string; confidence: number }> }>();

  private constructor(doc: TaxonomyDocument) {
    this.version = doc.version;
    this.unknownNames = doc.unknownNames ?? 'reject';
    this.entries = doc.entries;
    this.alignments = doc.alignments ?? [];
    this.resolution = doc.resolution ?? {};
    for (const e of doc.entries) this.#byName.set(e.name, e);
    for (const e of doc.entries) for (const a of e.aliases ?? []) this.#aliases.set(a, e.name);
    for (const a of doc.alignments ?? []) {
      this.#alignments.set(a.source, { min: a.minConfidence ?? 0.5, map: new Map(a.map.map((m) => [m.from, { to: m.to, confidence: m.confidence }])) });
    }
  }

  /** Checks a taxonomy document. @throws ERR_DMSC_INVALID_CONFIG naming the fault. */
  static from(doc: unknown, source = 'taxonomy'): Taxonomy {
    const bad = (why: string) => new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `${source}: ${why}`);
    const d = doc as Partial<TaxonomyDocument> | null;
    if (!d || typeof d !== 'object' || typeof d.version !== 'string' || d.version.length === 0 || d.version.length > 64 || !Array.isArray(d.entries)) {
      throw bad('expected { "version": "...", "entries": [...] }');
    }
    if (d.unknownNames !== undefined && d.unknownNames !== 'reject' && d.unknownNames !== 'allow') throw bad('unknownNames is "reject" or "allow"');
    if (d.entries.length > 10_000) throw bad('at most 10,000 entries');
    const names = new Set<string>();
    const aliases = new Set<string>();
    const texts = (v: unknown, at: string, max: number) => {
      if (v === undefined) return;
      if (!Array.isArray(v) || v.length > max || !v.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 300)) throw bad(`${at} must be a list of up to ${max} non-empty strings`);
    };
    for (const [i, e] of d.entries.entries()) {
      const at = `entries[${i}]`;
      const p = typeof e?.name === 'string' ? nameProblem(e.name) : 'missing';
      if (p) throw bad(`${at}.name: ${p}`);
      if (names.has(e.name)) throw bad(`${at}: ${e.name} is listed twice`);
      names.add(e.name);
      if (typeof e.label !== 'string' || e.label.length === 0 || e.label.length > 120) throw bad(`${at}.label must be 1 to 120 characters`);
      if (e.description !== undefined && (typeof e.description !== 'string' || e.description.length > 2000)) throw bad(`${at}.description must be a string up to 2000 characters`);
      texts(e.synonyms, `${at}.synonyms`, 64);
      texts(e.utterances, `${at}.utterances`, 256);
      texts(e.keywords, `${at}.keywords`, 64);
      // Intents are matched on ASCII words: a keyword of other characters would never fire whole.
      for (const k of e.keywords ?? []) if (!/^[A-Za-z0-9][A-Za-z0-9 -]*$/.test(k)) throw bad(`${at}.keywords: ${JSON.stringify(k)} must be ASCII letters, digits, spaces and hyphens`);
      texts(e.aliases, `${at}.aliases`, 64);
      for (const a of e.aliases ?? []) {
        const ap = a === '/' ? 'the root cannot be an alias' : nameProblem(a);
        if (ap) throw bad(`${at}.aliases: ${a}: ${ap}`);
        if (aliases.has(a)) throw bad(`${at}.aliases: ${a} is an alias of two entries`);
        aliases.add(a);
      }
      if (e.open !== undefined && typeof e.open !== 'boolean') throw bad(`${at}.open must be true or false`);
      if (e.attributes !== undefined) {
        if (typeof e.attributes !== 'object' || e.attributes === null || Array.isArray(e.attributes)) throw bad(`${at}.attributes must be an object`);
        for (const [k, t] of Object.entries(e.attributes as Record<string, AttributeType>)) {
          if (!t || typeof t !== 'object' || !KINDS.has(t.type)) throw bad(`${at}.attributes.${k}.type is string, number, boolean or string[]`);
          if (t.enum !== undefined && (!Array.isArray(t.enum) || !t.enum.every((x) => typeof x === 'string'))) throw bad(`${at}.attributes.${k}.enum must list strings`);
          for (const b of ['min', 'max'] as const) if (t[b] !== undefined && typeof t[b] !== 'number') throw bad(`${at}.attributes.${k}.${b} must be a number`);
        }
      }
    }
    for (const a of aliases) if (names.has(a)) throw bad(`alias ${a} is also the name of an entry`);
    if (d.alignments !== undefined) {
      if (!Array.isArray(d.alignments) || d.alignments.length > 64) throw bad('alignments must be a list of up to 64');
      const sources = new Set<string>();
      for (const [i, a] of d.alignments.entries()) {
        const at = `alignments[${i}]`;
        if (typeof a?.source !== 'string' || !/^(domain|version):[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(a.source)) throw bad(`${at}.source is domain:<name> or version:<v>`);
        if (sources.has(a.source)) throw bad(`${at}: ${a.source} is aligned twice`);
        sources.add(a.source);
        if (a.minConfidence !== undefined && (typeof a.minConfidence !== 'number' || a.minConfidence < 0 || a.minConfidence > 1)) throw bad(`${at}.minConfidence must be within 0..1`);
        if (!Array.isArray(a.map) || a.map.length > 10_000) throw bad(`${at}.map must be a list`);
        const froms = new Set<string>();
        const tos = new Set<string>();
        for (const [j, m] of a.map.entries()) {
          const mp = typeof m?.from === 'string' ? nameProblem(m.from) : 'missing';
          const tp = typeof m?.to === 'string' ? nameProblem(m.to) : 'missing';
          if (mp || tp) throw bad(`${at}.map[${j}]: ${mp ? `from: ${mp}` : `to: ${tp}`}`);
          // At registration a version mapping renames; from the root it would rename every name.
          if (a.source.startsWith('version:') && m.from === '/') throw bad(`${at}.map[${j}]: a version alignment cannot map from the root`);
          if (typeof m.confidence !== 'number' || !(m.confidence >= 0 && m.confidence <= 1)) throw bad(`${at}.map[${j}].confidence must be within 0..1`);
          // One to one: two of their names on one of ours would mix two routes into one.
          if (froms.has(m.from) || tos.has(m.to)) throw bad(`${at}.map[${j}]: ${froms.has(m.from) ? m.from : m.to} is mapped twice`);
          froms.add(m.from);
          tos.add(m.to);
        }
      }
    }
    if (d.resolution !== undefined) {
      const r = d.resolution;
      if (!r || typeof r !== 'object' || Array.isArray(r)) throw bad('resolution must be an object');
      const unknown = Object.keys(r).find((k) => k !== 'threshold' && k !== 'margin' && k !== 'scale');
      if (unknown !== undefined) throw bad(`resolution has an unknown field '${unknown}' (threshold, margin, scale)`);
      const unit = (k: 'threshold' | 'margin') => r[k] === undefined || (typeof r[k] === 'number' && r[k]! >= 0 && r[k]! <= 1);
      if (!unit('threshold') || !unit('margin')) throw bad('resolution.threshold and resolution.margin must be within 0..1');
      if (r.scale !== undefined && !(typeof r.scale === 'number' && r.scale > 0 && r.scale <= 1e6)) throw bad('resolution.scale must be a number above 0, up to 1,000,000');
    }
    return new Taxonomy(d as TaxonomyDocument);
  }

  /**
   * A name of another vocabulary (`source`) in this one, by its longest mapped prefix;
   * undefined when no mapping (at or above the alignment's minimum confidence) covers it.
   */
  align(source: string, name: string): Aligned | undefined {
    const a = this.#alignments.get(source);
    if (!a) return undefined;
    for (const prefix of prefixesOf(name)) {
      const m = a.map.get(prefix);
      if (!m) continue;
      if (m.confidence < a.min) return undefined;
      const rest = prefix === '/' ? (name === '/' ? '' : name) : name.slice(prefix.length);
      return { name: (m.to === '/' ? '' : m.to) + rest || '/', from: prefix, confidence: m.confidence, source };
    }
    return undefined;
  }

  get(name: string): TaxonomyEntry | undefined {
    return this.#byName.get(name);
  }

  /**
   * The canonical form of a declared name: an entry's own, an alias replaced, a variant
   * name of an earlier version mapped by its `version:<v>` alignment (the first listed
   * that maps it to a valid, known name), a variant below an open entry, or (with `unknownNames:
   * allow`) the name as it is; undefined when the taxonomy does not know it.
   */
  normalize(declared: string): Normalized | undefined {
    if (this.#byName.has(declared)) return { name: declared, declared, via: 'exact' };
    // An alias, or a variant below an alias: the alias part is replaced.
    for (const prefix of prefixesOf(declared)) {
      if (prefix === '/') break;
      const canonical = this.#aliases.get(prefix);
      if (canonical !== undefined) {
        const name = canonical + declared.slice(prefix.length);
        if (nameProblem(name)) break;
        if (name === canonical || this.#openAbove(name)) return { name, declared, via: 'alias' };
        break;
      }
    }
    // An earlier version's name the operator mapped: before variants, since a renamed
    // entry's old name may still sit below an open one.
    for (const a of this.alignments) {
      if (!a.source.startsWith('version:')) continue;
      const m = this.align(a.source, declared);
      if (m && !nameProblem(m.name) && (this.#byName.has(m.name) || this.#openAbove(m.name))) return { name: m.name, declared, via: 'version', source: a.source, confidence: m.confidence };
    }
    if (this.#openAbove(declared)) return { name: declared, declared, via: 'variant' };
    return this.unknownNames === 'allow' ? { name: declared, declared, via: 'unknown-allowed' } : undefined;
  }

  /** The entry a name falls under: itself, or the nearest entry above when that one is open. */
  entryFor(name: string): TaxonomyEntry | undefined {
    const own = this.#byName.get(name);
    if (own) return own;
    const above = this.#nearestAbove(name);
    return above?.open ? above : undefined;
  }

  /** What is wrong with these attributes for `name` under the taxonomy's types, or null. */
  attributeProblem(name: string, attributes: Readonly<Record<string, unknown>>): string | null {
    const types = this.entryFor(name)?.attributes;
    if (!types) return null;
    for (const [k, v] of Object.entries(attributes)) {
      if (!Object.hasOwn(types, k)) continue;
      const t = types[k]!;
      const ok = t.type === 'string[]' ? Array.isArray(v) && v.every((x) => typeof x === 'string') : typeof v === t.type;
      if (!ok) return `attribute ${k} must be ${t.type === 'string[]' ? 'a list of strings' : `a ${t.type}`}`;
      if (t.enum) {
        const values = Array.isArray(v) ? v : [v];
        const off = values.find((x) => !t.enum!.includes(x as string));
        if (off !== undefined) return `attribute ${k} is one of ${t.enum.join(', ')}, not ${JSON.stringify(off)}`;
      }
      if (typeof v === 'number' && ((t.min !== undefined && v < t.min) || (t.max !== undefined && v > t.max))) {
        return `attribute ${k} must be within ${t.min ?? '-∞'}..${t.max ?? '∞'}`;
      }
    }
    return null;
  }

  #openAbove(name: string): boolean {
    return this.#nearestAbove(name)?.open === true;
  }

  /** The nearest entry strictly above `name`, the root included. */
  #nearestAbove(name: string): TaxonomyEntry | undefined {
    for (const prefix of prefixesOf(name)) {
      const e = prefix === name ? undefined : this.#byName.get(prefix);
      if (e) return e;
    }
    return undefined;
  }
}
