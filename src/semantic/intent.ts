// Natural-language intent normalization (MACP §6: "text to intent, confidence and
// ambiguity"): an intent is ranked against the taxonomy's entries and answered with
// capability candidates, each with a confidence. Below the threshold the answer is "no
// match" rather than a guess; when the top two are within the margin it is "ambiguous",
// with both.
//
// Ranking is lexical, offline and deterministic: BM25 (minisearch) over each entry's
// label, synonyms, description and utterances, with Porter stemming (stemmer) and stop
// words removed; and exact keyword rules (a keyword found whole in the intent). Rankers
// are pluggable (`IntentRanker`): a deployment can add an embedding model beside the
// lexical one, and the candidates are merged by their best confidence.
import MiniSearch from 'minisearch';
import { stemmer } from 'stemmer';
import type { Resolution, Taxonomy, TaxonomyEntry } from './taxonomy.js';

export interface IntentCandidate {
  readonly capability: string;
  readonly label: string;
  /** 0..1: how sure the ranker is. */
  readonly confidence: number;
  /** The ranker's own score (BM25 for the lexical one). */
  readonly score: number;
  /** The intent's words (stemmed) this entry matched, or the keyword that fired. */
  readonly matched: readonly string[];
  readonly ranker: string;
}

export interface IntentRanker {
  readonly name: string;
  rank(intent: string, limit: number): IntentCandidate[];
}

export interface IntentAnswer {
  readonly intent: string;
  readonly status: 'match' | 'no-match' | 'ambiguous';
  /** The capability chosen (with `status: match`). */
  readonly capability?: string;
  readonly candidates: readonly IntentCandidate[];
  readonly threshold: number;
  readonly taxonomy: string;
}

/** The resolution defaults, tuned on the tuning part of the labelled set with the built-in taxonomy. */
export const DEFAULT_RESOLUTION = { threshold: 0.52, margin: 0.02, scale: 20 } as const;

/** Resolution settings (over the taxonomy's own `resolution`, over the defaults), and more rankers. */
export interface IntentOptions extends Resolution {
  /** Rankers besides the lexical one. */
  readonly rankers?: readonly IntentRanker[];
}

// Words that say nothing about a capability.
const STOP = new Set((
  'a an the this that these those it its is are was were be been being am do does did done doing have has had having i me my we our you your he she they them ' +
  'their his her to of in on at by for with from into onto about as and or but if then so than too very can could would should will shall may might must ' +
  'please pls kindly just some any all each every what which who whom whose when where why how there here up down out over under again further once ' +
  'need needs want wants like get got make made help let lets use using via me mine ours yours also need someone something thing things stuff one'
).split(/\s+/));

/** Lower case, accents off, words only (what the index and the query are cut into). */
function words(text: string): string[] {
  return text.toLowerCase().normalize('NFKD').replace(/[\u0300-\u036f]/g, '').split(/[^a-z0-9]+/);
}

/** A word as the index holds it: stemmed, or null for a stop word. */
function term(word: string): string | null {
  return word.length > 1 && !STOP.has(word) ? stemmer(word) : null;
}

/** Lower case, words only, stop words out, stemmed: the terms of an intent. */
export function terms(text: string): string[] {
  return words(text).map(term).filter((t): t is string => t !== null);
}

/** The BM25 ranker over the taxonomy's text. */
export class LexicalRanker implements IntentRanker {
  readonly name = 'lexical';
  readonly #index: MiniSearch<{ id: string; label: string; synonyms: string; description: string; utterances: string }>;
  readonly #entries = new Map<string, TaxonomyEntry>();
  readonly #keywords: { phrase: RegExp; words: string; capability: string }[] = [];
  /** Score at which a full match reaches half confidence. */
  readonly #scale: number;

  constructor(taxonomy: Taxonomy, scale: number = DEFAULT_RESOLUTION.scale) {
    this.#scale = scale;
    this.#index = new MiniSearch({
      fields: ['label', 'synonyms', 'description', 'utterances'],
      idField: 'id',
      // The same cutting and stemming for the index and the query (the query is given
      // as text, so its words are stemmed once).
      tokenize: words,
      processTerm: (word) => term(word),
      searchOptions: { boost: { label: 3, synonyms: 2.5, utterances: 1.2, description: 0.8 }, combineWith: 'OR' },
    });
    const docs = taxonomy.entries.filter((e) => e.utterances?.length || e.synonyms?.length).map((e) => ({
      id: e.name, label: e.label, synonyms: (e.synonyms ?? []).join(' | '), description: e.description ?? '', utterances: (e.utterances ?? []).join(' | '),
    }));
    this.#index.addAll(docs);
    for (const e of taxonomy.entries) {
      this.#entries.set(e.name, e);
      for (const k of e.keywords ?? []) {
        const words = k.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean).join(' ');
        if (words) this.#keywords.push({ phrase: new RegExp(`(?:^| )${words.replace(/ /g, ' ')}(?: |$)`), words, capability: e.name });
      }
    }
  }

  rank(intent: string, limit: number): IntentCandidate[] {
    const query = terms(intent);
    const out = new Map<string, IntentCandidate>();
    if (query.length > 0) {
      for (const r of this.#index.search(intent)) {
        // The share of the intent's words this entry explains, and how strongly.
        const matched = [...new Set(Object.keys(r.match))];
        const coverage = query.filter((q) => matched.includes(q)).length / query.length;
        const strength = r.score / (r.score + this.#scale);
        // Words found only in example requests are weaker evidence: they are often the
        // incidental objects of the example ("the sky" in "replace the sky").
        const named = matched.some((t) => r.match[t]!.some((f) => f !== 'utterances'));
        const confidence = round(Math.sqrt(coverage) * strength * (named ? 1 : EXAMPLES_ONLY));
        out.set(r.id, { capability: r.id, label: this.#entries.get(r.id)!.label, confidence, score: round(r.score), matched, ranker: this.name });
      }
    }
    // Keyword rules: a keyword found whole raises its entry, and alone is enough for a
    // match; it does not override the rest of the text ("make the photo fit in an email"
    // is image editing, though it says "email").
    const flat = ` ${intent.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean).join(' ')} `;
    const raised = new Set<string>();
    for (const k of this.#keywords) {
      // One raise an entry, however many of its keywords the intent has.
      if (raised.has(k.capability) || !k.phrase.test(flat)) continue;
      raised.add(k.capability);
      const prev = out.get(k.capability);
      const c = round(Math.min(KEYWORD.ceiling, Math.max(KEYWORD.floor, (prev?.confidence ?? 0) + KEYWORD.bonus)));
      if (!prev || prev.confidence < c) {
        out.set(k.capability, { capability: k.capability, label: this.#entries.get(k.capability)!.label, confidence: c, score: prev?.score ?? 0, matched: [k.words], ranker: 'keyword' });
      }
    }
    return [...out.values()].sort((a, b) => b.confidence - a.confidence || b.score - a.score || (a.capability < b.capability ? -1 : 1)).slice(0, limit);
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const defined = ({ threshold, margin, scale }: Resolution): Resolution => Object.fromEntries(Object.entries({ threshold, margin, scale }).filter(([, v]) => v !== undefined));

// Tuned on the tuning part of bench/data/intents.json, with DEFAULT_RESOLUTION.
const KEYWORD = { floor: 0.6, bonus: 0.1, ceiling: 0.95 };
const EXAMPLES_ONLY = 0.8;

export class IntentResolver {
  readonly taxonomy: Taxonomy;
  readonly threshold: number;
  readonly margin: number;
  readonly #rankers: readonly IntentRanker[];

  constructor(taxonomy: Taxonomy, options: IntentOptions = {}) {
    this.taxonomy = taxonomy;
    const r = { ...DEFAULT_RESOLUTION, ...defined(taxonomy.resolution), ...defined(options) };
    this.threshold = r.threshold;
    this.margin = r.margin;
    this.#rankers = [new LexicalRanker(taxonomy, r.scale), ...(options.rankers ?? [])];
  }

  /** Ranks an intent; at most `limit` candidates (default 5). */
  resolve(intent: string, limit = 5): IntentAnswer {
    const merged = new Map<string, IntentCandidate>();
    for (const r of this.#rankers) {
      for (const c of r.rank(intent, limit * 2)) {
        const prev = merged.get(c.capability);
        if (!prev || c.confidence > prev.confidence) merged.set(c.capability, c);
      }
    }
    const candidates = [...merged.values()].sort((a, b) => b.confidence - a.confidence || b.score - a.score || (a.capability < b.capability ? -1 : 1)).slice(0, limit);
    const base = { intent, candidates, threshold: this.threshold, taxonomy: this.taxonomy.version };
    const [first, second] = candidates;
    if (!first || first.confidence < this.threshold) return { ...base, status: 'no-match' };
    if (second && second.confidence >= this.threshold && first.confidence - second.confidence < this.margin) return { ...base, status: 'ambiguous' };
    return { ...base, status: 'match', capability: first.capability };
  }
}
