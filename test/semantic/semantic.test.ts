// The taxonomy (names, aliases, variants, attribute types, validation) and intent
// resolution (threshold, ambiguity, keyword rules, pluggable rankers), on small
// taxonomies made for each case and on the built-in one.
import { describe, expect, it } from 'vitest';
import { DEFAULT_TAXONOMY } from '../../src/semantic/default-taxonomy.js';
import { DEFAULT_RESOLUTION, IntentResolver, terms, type IntentRanker } from '../../src/semantic/intent.js';
import { Taxonomy, type TaxonomyDocument } from '../../src/semantic/taxonomy.js';

const doc: TaxonomyDocument = {
  version: 't1', unknownNames: 'reject', resolution: { scale: 6 },
  entries: [
    { name: '/capability/vision', label: 'Vision' },
    { name: '/capability/vision/ocr', label: 'Optical character recognition', synonyms: ['text recognition', 'read scanned text'], utterances: ['read the words in this scanned page'], aliases: ['/capability/ocr'], keywords: ['ocr'], open: true,
      attributes: { dpi: { type: 'number', min: 72, max: 2400 }, languages: { type: 'string[]' }, mode: { type: 'string', enum: ['fast', 'accurate'] } } },
    { name: '/capability/text/translate', label: 'Translation', synonyms: ['translate text into another language'], utterances: ['translate this letter into french'] },
    { name: '/capability/text/interpret', label: 'Translation', synonyms: ['translate text into another language'], utterances: ['translate this letter into french'] },
  ],
};

describe('taxonomy', () => {
  const t = Taxonomy.from(doc);
  it('keeps known names, replaces aliases (and variants below them), takes variants below open entries', () => {
    expect(t.normalize('/capability/vision/ocr')).toMatchObject({ name: '/capability/vision/ocr', via: 'exact' });
    expect(t.normalize('/capability/ocr')).toMatchObject({ name: '/capability/vision/ocr', via: 'alias' });
    expect(t.normalize('/capability/ocr/fast')).toMatchObject({ name: '/capability/vision/ocr/fast', via: 'alias' });
    expect(t.normalize('/capability/vision/ocr/handwriting')).toMatchObject({ name: '/capability/vision/ocr/handwriting', via: 'variant' });
  });

  it('rejects unknown names, and names below an entry that is not open; or takes them all with unknownNames: allow', () => {
    expect(t.normalize('/capability/weather')).toBeUndefined();
    expect(t.normalize('/capability/text/translate/fast')).toBeUndefined();
    expect(t.normalize('/capability/vision/detect')).toBeUndefined();
    const open = Taxonomy.from({ ...doc, unknownNames: 'allow' });
    expect(open.normalize('/capability/weather')).toMatchObject({ name: '/capability/weather', via: 'unknown-allowed' });
    expect(open.normalize('/capability/ocr')).toMatchObject({ name: '/capability/vision/ocr', via: 'alias' });
  });

  it('checks attributes against the types declared, for variants too', () => {
    expect(t.attributeProblem('/capability/vision/ocr', { dpi: 300, languages: ['en'], mode: 'fast', other: { any: 1 } })).toBeNull();
    expect(t.attributeProblem('/capability/vision/ocr/x', { dpi: '300' })).toMatch(/dpi must be a number/);
    expect(t.attributeProblem('/capability/vision/ocr', { dpi: 10 })).toMatch(/dpi must be within 72..2400/);
    expect(t.attributeProblem('/capability/vision/ocr', { languages: 'en' })).toMatch(/list of strings/);
    expect(t.attributeProblem('/capability/vision/ocr', { mode: 'slow' })).toMatch(/one of fast, accurate/);
  });

  it('refuses a bad document, naming the fault', () => {
    const bad = (d: unknown, fault: RegExp) => expect(() => Taxonomy.from(d)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG', message: expect.stringMatching(fault) }));
    bad({ entries: [] }, /version/);
    bad({ version: 'x', entries: [{ name: 'nope', label: 'x' }] }, /entries\[0\]\.name/);
    bad({ version: 'x', entries: [{ name: '/a', label: 'x' }, { name: '/a', label: 'y' }] }, /listed twice/);
    bad({ version: 'x', entries: [{ name: '/a', label: 'x', aliases: ['/b'] }, { name: '/c', label: 'y', aliases: ['/b'] }] }, /alias of two entries/);
    bad({ version: 'x', entries: [{ name: '/a', label: 'x', aliases: ['/c'] }, { name: '/c', label: 'y' }] }, /also the name of an entry/);
    bad({ version: 'x', entries: [{ name: '/a', label: 'x', attributes: { k: { type: 'date' } } }] }, /attributes\.k\.type/);
    bad({ version: 'x', unknownNames: 'maybe', entries: [] }, /unknownNames/);
    bad({ version: 'x', entries: [{ name: '/a', label: 'x', aliases: ['/'] }] }, /root cannot be an alias/);
    bad({ version: 'x', entries: [{ name: '/a', label: 'x', keywords: ['c++'] }] }, /ASCII/);
  });

  it('takes variants below an open root, and reads attribute types only from the nearest entry', () => {
    const rooted = Taxonomy.from({ version: 'r', entries: [{ name: '/', label: 'all', open: true }, { name: '/x', label: 'x', attributes: { n: { type: 'number' } } }, { name: '/x/closed', label: 'c' }] });
    expect(rooted.normalize('/anything/here')).toMatchObject({ via: 'variant' });
    // /x/closed/deeper is refused (closed), and /x's types do not leak through it.
    const strict = Taxonomy.from({ version: 's', entries: [{ name: '/x', label: 'x', open: true, attributes: { n: { type: 'number' } } }, { name: '/x/closed', label: 'c' }] });
    expect(strict.normalize('/x/closed/deeper')).toBeUndefined();
    expect(strict.entryFor('/x/closed/deeper')).toBeUndefined();
    expect(strict.attributeProblem('/x/other', { constructor: 'fine', toString: 1 })).toBeNull();
  });

  it('aligns another vocabulary by the longest mapped prefix, above the minimum confidence only', () => {
    const a = Taxonomy.from({
      ...doc,
      alignments: [
        { source: 'domain:metro', map: [
          { from: '/skills/ocr', to: '/capability/vision/ocr', confidence: 0.9 },
          { from: '/skills/ocr/hand', to: '/capability/vision/ocr/handwriting', confidence: 0.7 },
          { from: '/skills/guess', to: '/capability/text/translate', confidence: 0.4 },
        ] },
        { source: 'version:t0', minConfidence: 0.2, map: [{ from: '/vision', to: '/capability/vision', confidence: 0.3 }] },
      ],
    });
    expect(a.align('domain:metro', '/skills/ocr/fast')).toEqual({ name: '/capability/vision/ocr/fast', from: '/skills/ocr', confidence: 0.9, source: 'domain:metro' });
    expect(a.align('domain:metro', '/skills/ocr/hand/cursive')).toMatchObject({ name: '/capability/vision/ocr/handwriting/cursive', confidence: 0.7 });
    expect(a.align('domain:metro', '/skills/guess')).toBeUndefined();
    expect(a.align('domain:metro', '/other')).toBeUndefined();
    expect(a.align('domain:unknown', '/skills/ocr')).toBeUndefined();
    expect(a.align('version:t0', '/vision/ocr')).toMatchObject({ name: '/capability/vision/ocr', confidence: 0.3 });
    // At registration, a name of an earlier version becomes the one it maps to, when that one is known.
    expect(a.normalize('/vision/ocr/fast')).toEqual({ name: '/capability/vision/ocr/fast', declared: '/vision/ocr/fast', via: 'version', source: 'version:t0', confidence: 0.3 });
    expect(a.normalize('/nowhere')).toBeUndefined();
    // Another domain's names are read only where routes cross to it, not at registration.
    expect(Taxonomy.from({ ...doc, alignments: [{ source: 'domain:metro', map: [{ from: '/skills/ocr', to: '/capability/vision/ocr', confidence: 0.9 }] }] }).normalize('/skills/ocr')).toBeUndefined();
    // The first version listed that maps a name wins; a mapping to an invalid name is not
    // taken; an explicit mapping wins over a variant of the old place; never from the root.
    const v = Taxonomy.from({ ...doc, alignments: [
      { source: 'version:t1', map: [{ from: '/capability/vision/ocr/hand', to: '/capability/vision/ocr/handwriting', confidence: 0.8 }, { from: '/old', to: '/capability/vision/ocr' + '/x'.repeat(28), confidence: 0.9 }] },
      { source: 'version:t0', map: [{ from: '/capability/vision/ocr/hand', to: '/capability/vision', confidence: 0.6 }] },
    ] });
    expect(v.normalize('/capability/vision/ocr/hand')).toMatchObject({ name: '/capability/vision/ocr/handwriting', via: 'version', source: 'version:t1' });
    expect(v.normalize('/old/a/b')).toBeUndefined(); // 33 components
    expect(() => Taxonomy.from({ ...doc, alignments: [{ source: 'version:t0', map: [{ from: '/', to: '/capability', confidence: 1 }] }] })).toThrow(/cannot map from the root/);
    const bad = (alignments: unknown, fault: RegExp) => expect(() => Taxonomy.from({ ...doc, alignments })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG', message: expect.stringMatching(fault) }));
    bad([{ source: 'metro', map: [] }], /source is domain/);
    bad([{ source: 'domain:m', map: [{ from: '/a', to: '/b', confidence: 0.5 }, { from: '/c', to: '/b', confidence: 0.5 }] }], /mapped twice/);
    bad([{ source: 'domain:m', map: [{ from: '/a', to: '/b', confidence: 2 }] }], /confidence/);
    bad([{ source: 'domain:m', map: [] }, { source: 'domain:m', map: [] }], /aligned twice/);
  });

  it('the built-in taxonomy is valid and takes any name, with no aliases', () => {
    const d = Taxonomy.from(DEFAULT_TAXONOMY);
    expect(d.entries.length).toBeGreaterThan(50);
    expect(d.normalize('/capability/echo')).toMatchObject({ name: '/capability/echo' });
    expect(d.normalize('/capability/ocr')).toMatchObject({ name: '/capability/ocr' });
  });
});

describe('intent resolution', () => {
  const r = new IntentResolver(Taxonomy.from(doc));
  it('matches with a confidence, and says no match below the threshold rather than guessing', () => {
    const a = r.resolve('please read the words on this scanned receipt');
    expect(a).toMatchObject({ status: 'match', capability: '/capability/vision/ocr', taxonomy: 't1' });
    expect(a.candidates[0]!.confidence).toBeGreaterThanOrEqual(r.threshold);
    const none = r.resolve('what is the weather tomorrow');
    expect(none.status).toBe('no-match');
    expect(none.capability).toBeUndefined();
  });

  it('reports ambiguity with both when the top two are too close', () => {
    const a = r.resolve('translate this letter into french');
    expect(a.status).toBe('ambiguous');
    expect(a.candidates.slice(0, 2).map((c) => c.capability).sort()).toEqual(['/capability/text/interpret', '/capability/text/translate']);
  });

  it('takes a keyword found whole as a match on its own, and only whole', () => {
    expect(r.resolve('run OCR on it')).toMatchObject({ status: 'match', capability: '/capability/vision/ocr' });
    expect(r.resolve('run OCR on it').candidates[0]!.ranker).toBe('keyword');
    expect(r.resolve('the procress went fine').status).toBe('no-match');
  });

  it('raises an entry once, however many of its keywords an intent has', () => {
    const k = new IntentResolver(Taxonomy.from({ version: 'k', entries: [{ name: '/capability/s', label: 'S', synonyms: ['condense'], keywords: ['summarize', 'summary', 'tldr'] }] }));
    const one = k.resolve('summarize').candidates[0]!.confidence;
    expect(one).toBe(0.6);
    expect(k.resolve('summarize summary tldr').candidates[0]!.confidence).toBe(one);
  });

  it('does not let a keyword override the rest of the intent', () => {
    // "email" is a keyword of email sending; the request is to edit an image.
    const d = new IntentResolver(Taxonomy.from(DEFAULT_TAXONOMY));
    const a = d.resolve('make the photo smaller so it fits in an email');
    expect(a).toMatchObject({ status: 'match', capability: '/capability/vision/edit' });
    expect(a.candidates.find((c) => c.capability === '/capability/comms/email')?.ranker).toBe('keyword');
  });

  it('counts words found only in example requests for less than words that name the entry', () => {
    const one = (field: 'synonyms' | 'utterances') => new IntentResolver(Taxonomy.from({ version: 'x', entries: [
      { name: '/capability/vision/edit', label: 'Image editing', [field]: ['replace the sky in this photo'] },
      { name: '/capability/other', label: 'Other', synonyms: ['unrelated words'] },
    ] }), { scale: 6 }).resolve('the sky').candidates[0]!;
    const named = one('synonyms');
    const examples = one('utterances');
    // The same formula, ×0.8 when the words are in example requests only.
    const expected = (c: typeof named) => c.score / (c.score + 6);
    expect(named.confidence).toBeCloseTo(expected(named), 2);
    expect(examples.confidence).toBeCloseTo(expected(examples) * 0.8, 2);
  });

  it('takes its threshold, margin and scale from the options, over the taxonomy, over the defaults', () => {
    const plain = new IntentResolver(Taxonomy.from({ ...doc, resolution: undefined }));
    expect([plain.threshold, plain.margin]).toEqual([DEFAULT_RESOLUTION.threshold, DEFAULT_RESOLUTION.margin]);
    const own = new IntentResolver(Taxonomy.from({ ...doc, resolution: { threshold: 0.7, margin: 0.1 } }));
    expect([own.threshold, own.margin]).toEqual([0.7, 0.1]);
    expect(new IntentResolver(Taxonomy.from({ ...doc, resolution: { threshold: 0.7 } }), { threshold: 0.3 }).threshold).toBe(0.3);
    // The scale: the same score reads as more confident against a smaller one.
    const at = (scale: number) => new IntentResolver(Taxonomy.from({ ...doc, resolution: { scale } })).resolve('read the words in this scanned page').candidates[0]!.confidence;
    expect(at(3)).toBeGreaterThan(at(30));
    for (const resolution of [{ threshold: 2 }, { margin: -1 }, { scale: 0 }, [], null, 'x', { treshold: 0.5 }]) {
      expect(() => Taxonomy.from({ ...doc, resolution })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG', message: expect.stringContaining('resolution') }));
    }
  });

  it('merges a pluggable ranker by its best confidence', () => {
    const embedding: IntentRanker = { name: 'embedding', rank: (intent) => (intent.includes('forecast') ? [{ capability: '/capability/text/translate', label: 'Translation', confidence: 0.9, score: 0.9, matched: [], ranker: 'embedding' }] : []) };
    const withModel = new IntentResolver(Taxonomy.from(doc), { rankers: [embedding] });
    expect(withModel.resolve('forecast the weather')).toMatchObject({ status: 'match', capability: '/capability/text/translate' });
    expect(withModel.resolve('forecast the weather').candidates[0]!.ranker).toBe('embedding');
  });

  it('is deterministic, and stems and drops stop words', () => {
    expect(terms('Please read the Scanned invoices')).toEqual(['read', 'scan', 'invoic']);
    const d = new IntentResolver(Taxonomy.from(DEFAULT_TAXONOMY));
    expect(d.resolve('transcribe the meeting recording')).toEqual(d.resolve('transcribe the meeting recording'));
  });
});
