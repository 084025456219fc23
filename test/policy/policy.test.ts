import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { matchesAny, matchesPattern, patternProblem, PatternSet } from '../../src/policy/pattern.js';
import { PolicyEngine, validatePolicy, type Requester } from '../../src/policy/policy.js';

const alice: Requester = { aic: 'aic-alice', provider: 'acme', domain: 'acme.example' };
const bob: Requester = { provider: 'globex', domain: 'globex.example' };

function rejection(doc: unknown): { code: string; message: string } {
  try {
    validatePolicy(doc);
  } catch (e) {
    return { code: (e as { code: string }).code, message: (e as Error).message };
  }
  throw new Error('expected the document to be rejected');
}

const rule = (extra: Record<string, unknown> = {}) => ({ id: 'r1', effect: 'allow', capabilities: ['/capability/ocr/**'], ...extra });
const docWith = (...rules: unknown[]) => ({ version: 1, rules });

describe('patterns', () => {
  it('match exact names and subtrees at component boundaries', () => {
    expect(matchesPattern('/capability/ocr/**', '/capability/ocr')).toBe(true);
    expect(matchesPattern('/capability/ocr/**', '/capability/ocr/x/y')).toBe(true);
    expect(matchesPattern('/capability/ocr/**', '/capability/ocrx')).toBe(false);
    expect(matchesPattern('/capability/ocr/**', '/capability')).toBe(false);
    expect(matchesPattern('/capability/ocr', '/capability/ocr')).toBe(true);
    expect(matchesPattern('/capability/ocr', '/capability/ocr/x')).toBe(false);
    expect(matchesPattern('/capability/ocr', '/capability/oc')).toBe(false);
    expect(matchesPattern('/**', '/anything/at/all')).toBe(true);
    expect(matchesPattern('/**', '/')).toBe(true);
    expect(matchesAny(['/a', '/b/**'], '/b/c')).toBe(true);
    expect(matchesAny(['/a', '/b/**'], '/a/c')).toBe(false);
    expect(matchesAny([], '/a')).toBe(false);
  });

  it('validates patterns', () => {
    for (const ok of ['/**', '/a', '/a/**', '/capability/ocr/high-precision', '/']) expect(patternProblem(ok), ok).toBeNull();
    for (const bad of ['', 'a', '/a/', '//**', '/a//b', '/a/**/b', '/**/**', '/a/**/', 42, null]) {
      expect(patternProblem(bad), String(bad)).toEqual(expect.any(String));
    }
  });

  const component = fc.constantFrom('a', 'b', 'ab', 'a.b', 'ba');
  const name = fc.array(component, { minLength: 1, maxLength: 5 }).map((cs) => '/' + cs.join('/'));
  const pattern = fc.oneof(
    name,
    name.map((n) => n + '/**'),
    fc.constant('/**'),
  );
  // The model: compare component lists; a trailing '**' matches any (possibly empty) rest.
  function model(p: string, n: string): boolean {
    const pc = p.split('/').slice(1);
    const nc = n.split('/').slice(1);
    if (pc[pc.length - 1] === '**') {
      const base = pc.slice(0, -1);
      return base.length <= nc.length && base.every((c, i) => c === nc[i]);
    }
    return pc.length === nc.length && pc.every((c, i) => c === nc[i]);
  }

  it('matchesPattern and PatternSet agree with a component-list model', () => {
    fc.assert(
      fc.property(pattern, name, (p, n) => {
        expect(patternProblem(p)).toBeNull();
        expect(matchesPattern(p, n)).toBe(model(p, n));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 6 }), name, (ps, n) => {
        expect(new PatternSet(ps).matches(n)).toBe(ps.some((p) => model(p, n)));
        expect(matchesAny(ps, n)).toBe(ps.some((p) => model(p, n)));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('uniformBelow', () => {
  const component = fc.constantFrom('a', 'b', 'ab');
  const name = fc.array(component, { minLength: 1, maxLength: 4 }).map((cs) => '/' + cs.join('/'));
  const pattern = fc.oneof(name, name.map((n) => n + '/**'), fc.constant('/**'));
  const policy = fc.array(fc.record({
    effect: fc.constantFrom('allow', 'deny', 'require'),
    capabilities: fc.array(pattern, { minLength: 1, maxLength: 3 }),
  }), { maxLength: 5 }).map((rules) => ({
    version: 1,
    default: 'deny' as const,
    rules: rules.map((r, i) => ({ id: `r${i}`, ...r, ...(r.effect === 'require' ? { tags: [`t${i}`] } : {}) })),
  }));

  it('holds only where every name below gets the same decision', () => {
    fc.assert(
      fc.property(policy, name, fc.array(component, { minLength: 1, maxLength: 3 }), fc.array(component, { minLength: 1, maxLength: 3 }), (doc, base, x, y) => {
        const engine = new PolicyEngine();
        engine.load(doc);
        if (!engine.uniformBelow(base)) return;
        const one = engine.decide(alice, `${base}/${x.join('/')}`);
        const other = engine.decide(alice, `${base}/${y.join('/')}`);
        expect([other.effect, other.rule, other.require]).toEqual([one.effect, one.rule, one.require]);
      }),
      { numRuns: 3000 },
    );
  });

  it('is false where a rule names something below, and for the root', () => {
    const engine = new PolicyEngine();
    engine.load(docWith(rule({ capabilities: ['/capability/ocr/secret/**'] })));
    expect(engine.uniformBelow('/capability/ocr')).toBe(false);
    expect(engine.uniformBelow('/capability/ocr/secret')).toBe(true);
    expect(engine.uniformBelow('/capability/asr')).toBe(true);
    expect(engine.uniformBelow('/')).toBe(false);
  });
});

describe('validation', () => {
  it('accepts a valid document and returns a frozen normalized copy', () => {
    const input = {
      version: 3,
      rules: [
        { id: 'no-medical', effect: 'deny', capabilities: ['/capability/medical/**'], requesters: { domains: ['evil.example'] } },
        { id: 'eu', effect: 'require', on: ['resolve', 'register'], capabilities: ['/**'], tags: ['gdpr'] },
      ],
      tags: [{ tag: 'gdpr', attribute: 'jurisdiction', values: ['eu', 1, true] }],
    };
    const doc = validatePolicy(input);
    expect(doc).toEqual({ ...input, default: 'allow', rules: [{ ...input.rules[0], on: ['resolve'] }, input.rules[1]] });
    expect(doc).not.toBe(input);
    expect(Object.isFrozen(doc)).toBe(true);
    expect(Object.isFrozen(doc.rules[0]!.on)).toBe(true);
    expect(Object.isFrozen(doc.rules[0]!.requesters!.domains)).toBe(true);
    expect(Object.isFrozen(doc.tags![0]!.values)).toBe(true);
    expect(validatePolicy(doc)).toEqual(doc); // a stored normalized document reloads as itself
    expect(validatePolicy(JSON.parse(JSON.stringify(doc)))).toEqual(doc);
    expect(validatePolicy({ version: 1, rules: [] })).toEqual({ version: 1, default: 'allow', rules: [], tags: [] });
  });

  const cases: [string, unknown, RegExp][] = [
    ['non-object', 'policy', /^policy: must be an object/],
    ['array', [], /^policy: must be an object/],
    ['null', null, /^policy: must be an object/],
    ['unknown top-level field', { version: 1, rules: [], extra: 1 }, /^policy: unknown field 'extra'/],
    ['non-integer version', { version: 1.5, rules: [] }, /^version: must be an integer >= 1/],
    ['zero version', { version: 0, rules: [] }, /^version: /],
    ['string version', { version: '1', rules: [] }, /^version: /],
    ['bad default', { version: 1, default: 'maybe', rules: [] }, /^default: must be 'allow' or 'deny'/],
    ['missing rules', { version: 1 }, /^rules: must be an array/],
    ['non-object rule', docWith(rule(), 7), /^rules\[1\]: must be an object/],
    ['unknown rule field', docWith(rule(), rule({ id: 'r2', efect: 'deny' })), /^rules\[1\] \(id 'r2'\): unknown field 'efect'/],
    ['bad effect', docWith(rule(), rule({ id: 'r2', effect: 'permit' })), /^rules\[1\] \(id 'r2'\)\.effect: must be 'allow', 'deny' or 'require'/],
    ['bad effect, no id', docWith(rule(), rule({ id: undefined, effect: 'permit' })), /^rules\[1\]\.(id|effect): /],
    ['bad id', docWith(rule({ id: 'has space' })), /^rules\[0\]\.id: must be 1 to 64 characters/],
    ['duplicate id', docWith(rule(), rule({ effect: 'deny' })), /^rules\[1\] \(id 'r1'\)\.id: duplicate of rules\[0\]/],
    ['missing tags on require', docWith(rule({ effect: 'require' })), /^rules\[0\] \(id 'r1'\)\.tags: is required/],
    ['tags on deny', docWith(rule({ effect: 'deny', tags: ['gdpr'] })), /^rules\[0\] \(id 'r1'\)\.tags: is only allowed on 'require'/],
    ['empty tags on require', docWith(rule({ effect: 'require', tags: [] })), /^rules\[0\] \(id 'r1'\)\.tags: must not be empty/],
    ['bad rule tag name', docWith(rule({ effect: 'require', tags: ['ok', 'x'.repeat(65)] })), /^rules\[0\] \(id 'r1'\)\.tags\[1\]: /],
    ['bad pattern', docWith(rule(), rule({ id: 'r2' }), rule({ id: 'no-medical', capabilities: ['/capability//x'] })),
      /^rules\[2\] \(id 'no-medical'\)\.capabilities\[0\]: '\/capability\/\/x' is not a valid pattern: /],
    ['inner **', docWith(rule({ capabilities: ['/a', '/a/**/b'] })), /^rules\[0\] \(id 'r1'\)\.capabilities\[1\]: /],
    ['empty capabilities', docWith(rule({ capabilities: [] })), /^rules\[0\] \(id 'r1'\)\.capabilities: must not be empty/],
    ['too many capabilities', docWith(rule({ capabilities: Array(257).fill('/a') })), /^rules\[0\] \(id 'r1'\)\.capabilities: must have at most 256/],
    ['bad on value', docWith(rule({ on: ['resolve', 'lookup'] })), /^rules\[0\] \(id 'r1'\)\.on\[1\]: must be 'resolve' or 'register'/],
    ['duplicate on', docWith(rule({ on: ['register', 'register'] })), /^rules\[0\] \(id 'r1'\)\.on\[1\]: duplicate/],
    ['empty on', docWith(rule({ on: [] })), /^rules\[0\] \(id 'r1'\)\.on: must not be empty/],
    ['on not an array', docWith(rule({ on: 'resolve' })), /^rules\[0\] \(id 'r1'\)\.on: must be an array/],
    ['unknown requesters field', docWith(rule({ requesters: { users: ['x'] } })), /^rules\[0\] \(id 'r1'\)\.requesters: unknown field 'users'/],
    ['bad requester value', docWith(rule({ requesters: { providers: ['a', 5] } })), /^rules\[0\] \(id 'r1'\)\.requesters\.providers\[1\]: /],
    ['too many rules', docWith(...Array.from({ length: 1001 }, (_, i) => rule({ id: `r${i}` }))), /^rules: must have at most 1000/],
    ['bad mapping tag name', { version: 1, rules: [], tags: [{ tag: '', attribute: 'a', values: [1] }] }, /^tags\[0\]\.tag: /],
    ['unknown mapping field', { version: 1, rules: [], tags: [{ tag: 't', attribute: 'a', values: [1], x: 1 }] }, /^tags\[0\]: unknown field 'x'/],
    ['empty mapping values', { version: 1, rules: [], tags: [{ tag: 't', attribute: 'a', values: [] }] }, /^tags\[0\]\.values: must not be empty/],
    ['bad mapping value', { version: 1, rules: [], tags: [{ tag: 't', attribute: 'a', values: [{}] }] }, /^tags\[0\]\.values\[0\]: /],
    ['long attribute', { version: 1, rules: [], tags: [{ tag: 't', attribute: 'a'.repeat(65), values: [1] }] }, /^tags\[0\]\.attribute: /],
    ['too many mappings', { version: 1, rules: [], tags: Array(65).fill({ tag: 't', attribute: 'a', values: [1] }) }, /^tags: must have at most 64/],
  ];
  it.each(cases)('rejects %s', (_what, doc, message) => {
    const e = rejection(doc);
    expect(e.code).toBe('ERR_DMSC_INVALID_POLICY');
    expect(e.message).toMatch(message);
  });

  it('keeps the previous policy after a rejected load', () => {
    const engine = new PolicyEngine();
    expect(engine.version).toBe(0);
    expect(engine.document).toEqual({ version: 0, default: 'allow', rules: [], tags: [] });
    engine.load({ version: 1, default: 'deny', rules: [rule()] });
    expect(engine.decide(alice, '/capability/tts').effect).toBe('deny');
    expect(() => engine.load({ version: 2, rules: [rule({ effect: 'permit' })] })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_POLICY' }));
    expect(engine.version).toBe(1);
    expect(engine.document.default).toBe('deny');
    expect(engine.decide(alice, '/capability/tts').effect).toBe('deny');
    expect(engine.decide(alice, '/capability/ocr/x')).toMatchObject({ effect: 'allow', rule: 'r1' });
  });
});

describe('semantics', () => {
  it('lets the first matching allow or deny decide, so order matters', () => {
    const allowThenDeny = [rule({ id: 'a', capabilities: ['/capability/ocr'] }), rule({ id: 'd', effect: 'deny', capabilities: ['/capability/**'] })];
    const engine = new PolicyEngine();
    engine.load(docWith(...allowThenDeny));
    expect(engine.decide(alice, '/capability/ocr')).toEqual({ effect: 'allow', rule: 'a', require: [], mask: [] });
    expect(engine.decide(alice, '/capability/tts')).toMatchObject({ effect: 'deny', rule: 'd' });
    engine.load(docWith(...[...allowThenDeny].reverse()));
    expect(engine.decide(alice, '/capability/ocr')).toMatchObject({ effect: 'deny', rule: 'd' });
  });

  it('falls back to the default', () => {
    const engine = new PolicyEngine();
    engine.load(docWith(rule()));
    expect(engine.decide(alice, '/capability/tts')).toEqual({ effect: 'allow', rule: null, require: [], mask: [] });
    engine.load({ version: 2, default: 'deny', rules: [rule()] });
    expect(engine.decide(alice, '/capability/tts')).toMatchObject({ effect: 'deny', rule: null });
    expect(engine.decide(alice, '/capability/ocr/fast')).toMatchObject({ effect: 'allow', rule: 'r1' });
  });

  it('matches requesters by provider, domain or aic', () => {
    const engine = new PolicyEngine();
    const deny = (id: string, requesters: unknown) => rule({ id, effect: 'deny', capabilities: [`/${id}`], requesters });
    engine.load(docWith(
      deny('p', { providers: ['acme'] }), deny('d', { domains: ['globex.example'] }), deny('a', { aics: ['aic-alice'] }),
      deny('any', { providers: ['nobody'], domains: ['globex.example'] }), deny('all', {}), deny('none', { aics: ['x'] }),
    ));
    const effect = (r: Requester, c: string) => engine.decide(r, c).effect;
    expect([effect(alice, '/p'), effect(bob, '/p')]).toEqual(['deny', 'allow']);
    expect([effect(alice, '/d'), effect(bob, '/d')]).toEqual(['allow', 'deny']);
    expect([effect(alice, '/a'), effect(bob, '/a'), effect({ ...bob, aic: 'aic-alice' }, '/a')]).toEqual(['deny', 'allow', 'deny']);
    expect([effect(alice, '/any'), effect(bob, '/any')]).toEqual(['allow', 'deny']);
    expect([effect(alice, '/all'), effect(bob, '/all')]).toEqual(['deny', 'deny']);
    expect([effect(alice, '/none'), effect(bob, '/none')]).toEqual(['allow', 'allow']);
  });

  it('accumulates the tags of every matching require rule, wherever it stands', () => {
    const engine = new PolicyEngine();
    engine.load(docWith(
      rule({ id: 'eu', effect: 'require', capabilities: ['/**'], tags: ['gdpr', 'eu'] }),
      rule({ id: 'ok', capabilities: ['/capability/**'] }),
      rule({ id: 'hipaa', effect: 'require', capabilities: ['/capability/medical/**'], tags: ['hipaa', 'gdpr'] }),
      rule({ id: 'acme-only', effect: 'require', capabilities: ['/**'], tags: ['acme'], requesters: { providers: ['acme'] } }),
      rule({ id: 'no-x', effect: 'deny', capabilities: ['/x'] }),
    ));
    expect(engine.decide(alice, '/capability/medical/scan')).toEqual({
      effect: 'allow', rule: 'ok', require: ['acme', 'eu', 'gdpr', 'hipaa'], mask: ['acme', 'eu', 'gdpr', 'hipaa'],
    });
    expect(engine.decide(bob, '/capability/ocr').require).toEqual(['eu', 'gdpr']);
    expect(engine.decide(bob, '/x')).toEqual({ effect: 'deny', rule: 'no-x', require: [], mask: [] });
  });

  it('filters rules by action', () => {
    const engine = new PolicyEngine();
    engine.load(docWith(
      rule({ id: 'reg', effect: 'deny', on: ['register'], capabilities: ['/capability/medical/**'] }),
      rule({ id: 'res', effect: 'deny', capabilities: ['/capability/secret'] }),
      rule({ id: 'both', effect: 'deny', on: ['register', 'resolve'], capabilities: ['/capability/both'] }),
    ));
    expect(engine.decide(alice, '/capability/medical/x').effect).toBe('allow');
    expect(engine.decide(alice, '/capability/medical/x', 'register')).toMatchObject({ effect: 'deny', rule: 'reg' });
    expect(engine.decide(alice, '/capability/secret')).toMatchObject({ effect: 'deny', rule: 'res' });
    expect(engine.admit(alice, ['/capability/secret', '/capability/medical/x', '/capability/both', '/capability/ocr'])).toEqual({
      granted: ['/capability/secret', '/capability/ocr'],
      denied: [
        { capability: '/capability/medical/x', reason: "denied by policy rule 'reg'" },
        { capability: '/capability/both', reason: "denied by policy rule 'both'" },
      ],
    });
    engine.load({ version: 2, default: 'deny', rules: [rule({ on: ['register'] })] });
    expect(engine.admit(bob, ['/capability/ocr/a', '/capability/tts'])).toEqual({
      granted: ['/capability/ocr/a'],
      denied: [{ capability: '/capability/tts', reason: 'denied by the policy default' }],
    });
  });

  it('returns frozen decisions and rejects bad arguments', () => {
    const engine = new PolicyEngine();
    const d = engine.decide(alice, '/a');
    expect(Object.isFrozen(d)).toBe(true);
    expect(Object.isFrozen(d.require)).toBe(true);
    expect(() => engine.decide(alice, '/a//b')).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_NAME' }));
    expect(() => engine.decide(alice, 'a', 'register')).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_NAME' }));
    expect(() => engine.decide({ provider: 1 } as never, '/a')).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_ARGUMENT' }));
    expect(() => engine.decide(alice, '/a', 'lookup' as never)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_ARGUMENT' }));
  });
});

describe('decision cache', () => {
  it('serves repeated resolves from the cache and forgets them on load', () => {
    const engine = new PolicyEngine();
    engine.load(docWith(rule({ effect: 'deny' })));
    const first = engine.decide(alice, '/capability/ocr/x');
    expect(first.effect).toBe('deny');
    expect(engine.decide(alice, '/capability/ocr/x')).toBe(first);
    expect(engine.stats).toEqual({ hits: 1, misses: 1, size: 1 });
    expect(engine.decide(bob, '/capability/ocr/x')).toMatchObject({ effect: 'deny' });
    expect(engine.stats).toEqual({ hits: 1, misses: 2, size: 2 });

    engine.load({ version: 2, rules: [rule()] });
    expect(engine.stats.size).toBe(0);
    expect(engine.decide(alice, '/capability/ocr/x')).toMatchObject({ effect: 'allow', rule: 'r1' });
    expect(engine.stats).toEqual({ hits: 1, misses: 3, size: 1 });
  });

  it('keys on every requester field', () => {
    const engine = new PolicyEngine();
    engine.load(docWith(rule({ effect: 'deny', capabilities: ['/**'], requesters: { aics: ['x'] } })));
    expect(engine.decide({ provider: 'p', domain: 'd' }, '/a').effect).toBe('allow');
    expect(engine.decide({ provider: 'p', domain: 'd', aic: 'x' }, '/a').effect).toBe('deny');
    expect(engine.decide({ provider: 'p', domain: 'd', aic: '' }, '/a').effect).toBe('allow');
    // Field boundaries: these requesters must not share a cache entry.
    engine.load(docWith(rule({ effect: 'deny', capabilities: ['/**'], requesters: { providers: ['a|b', 'xy'] } })));
    expect(engine.decide({ provider: 'a|b', domain: 'c' }, '/a').effect).toBe('deny');
    expect(engine.decide({ provider: 'a', domain: 'b|c' }, '/a').effect).toBe('allow');
    expect(engine.decide({ provider: 'xy', domain: 'd' }, '/a').effect).toBe('deny');
    expect(engine.decide({ provider: 'y', domain: 'd', aic: 'x' }, '/a').effect).toBe('allow');
  });

  it('does not cache register decisions, and can be disabled', () => {
    const engine = new PolicyEngine();
    engine.decide(alice, '/a', 'register');
    engine.admit(alice, ['/a', '/a']);
    expect(engine.stats).toEqual({ hits: 0, misses: 0, size: 0 });
    const uncached = new PolicyEngine({ cacheSize: 0 });
    uncached.decide(alice, '/a');
    uncached.decide(alice, '/a');
    expect(uncached.stats).toEqual({ hits: 0, misses: 0, size: 0 });
    const small = new PolicyEngine({ cacheSize: 2 });
    for (const c of ['/a', '/b', '/c']) small.decide(alice, c);
    expect(small.stats.size).toBe(2);
  });
});

describe('compileTags', () => {
  it('is called with the require list and its result is the mask', () => {
    const compileTags = vi.fn((tags: readonly string[]) => ({ bits: tags.length, tags: [...tags] }));
    const engine = new PolicyEngine({ compileTags });
    engine.load(docWith(
      rule({ id: 'eu', effect: 'require', capabilities: ['/**'], tags: ['gdpr'] }),
      rule({ id: 'med', effect: 'require', capabilities: ['/medical/**'], tags: ['hipaa'] }),
    ));
    const d = engine.decide(alice, '/medical/scan');
    expect(compileTags).toHaveBeenCalledWith(['gdpr', 'hipaa']);
    expect(d.require).toEqual(['gdpr', 'hipaa']);
    expect(d.mask).toEqual({ bits: 2, tags: ['gdpr', 'hipaa'] });
    expect(engine.decide(bob, '/ocr').mask).toEqual({ bits: 1, tags: ['gdpr'] });
    expect(compileTags).toHaveBeenCalledTimes(2); // masks are compiled once per tag set per version
    const widened: PolicyEngine<unknown> = engine; // M is covariant: callers may take PolicyEngine<unknown>
    expect(widened.decide(alice, '/medical/x').mask).toBe(d.mask);
  });
});

describe('tagsFor', () => {
  it('maps scalar and array attributes to sorted tags', () => {
    const engine = new PolicyEngine();
    expect(engine.tagsFor({ jurisdiction: 'eu' })).toEqual([]);
    engine.load({
      version: 1,
      rules: [],
      tags: [
        { tag: 'gdpr', attribute: 'jurisdiction', values: ['eu', 'uk'] },
        { tag: 'certified', attribute: 'iso27001', values: [true] },
        { tag: 'fast', attribute: 'tier', values: [1, 2] },
        { tag: 'eu-or-ch', attribute: 'jurisdiction', values: ['eu', 'ch'] },
      ],
    });
    expect(engine.tagsFor({ jurisdiction: 'eu', iso27001: true, tier: 3 })).toEqual(['certified', 'eu-or-ch', 'gdpr']);
    expect(engine.tagsFor({ jurisdiction: ['us', 'uk'], tier: [5, 2] })).toEqual(['fast', 'gdpr']);
    expect(engine.tagsFor({ jurisdiction: 'us', iso27001: 'true', tier: '1' })).toEqual([]);
    expect(engine.tagsFor({})).toEqual([]);
  });
});
