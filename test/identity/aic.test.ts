// AIC format, check code and error-detection guarantees.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { aicProblem, formatAic, isValidAic, parseAic, PROVIDER_NAME, type AicParts } from '../../src/identity/aic.js';

// Independent reference of the check code, straight from the spec (BigInt powers, not iterative).
const DATA = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-:';
const CHECK = '0123456789abcdefghjkmnpqrstvwxyz';
function refCheck(data: string): string {
  let sum = 0n;
  for (let i = 0; i < data.length; i++) {
    const v = DATA.indexOf(data[i]!);
    if (v < 0) throw new Error(`refCheck: bad char ${data[i]}`);
    sum += BigInt(v + 1) * (2n ** BigInt(i + 1) % 1021n);
  }
  const c = Number(sum % 1021n);
  return CHECK[c >> 5]! + CHECK[c & 31]!;
}
const withCheck = (data: string) => `${data}:${refCheck(data)}`;

const ALNUM = [...'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'];
const nameArb = fc
  .tuple(fc.constantFrom(...ALNUM), fc.string({ unit: fc.constantFrom(...ALNUM, '.', '_', '-'), maxLength: 62 }))
  .map(([first, rest]) => first + rest);
const serialArb = fc.oneof(fc.integer({ min: 1, max: 999 }), fc.maxSafeNat().filter((n) => n > 0));
const partsArb: fc.Arbitrary<AicParts> = fc.record({ registry: nameArb, provider: nameArb, serial: serialArb });
const aicArb = partsArb.map(formatAic);

// All printable ASCII plus some non-ASCII.
const SUBST = [...Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)), 'é', 'ß', '\u00a0', '\u212a', '🙂'];

function expectInvalid(aic: unknown, pattern?: RegExp): void {
  const problem = aicProblem(aic);
  expect(problem, String(aic)).not.toBeNull();
  if (pattern) expect(problem).toMatch(pattern);
  expect(isValidAic(aic)).toBe(false);
  let err: unknown;
  try {
    parseAic(aic);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TypeError);
  expect((err as { code?: unknown }).code).toBe('ERR_DMSC_INVALID_AIC');
  expect((err as Error).message).toContain(`: ${problem}`);
}

describe('AIC format', () => {
  it('matches a hand-computed vector and the spec reference', () => {
    // D = 'a:b:1', values index+1 → 37·2 + 66·4 + 38·8 + 66·16 + 2·32 = 1762 ≡ 741 = 23·32 + 5 → 'q' '5'
    expect(formatAic({ registry: 'a', provider: 'b', serial: 1 })).toBe('a:b:1:q5');
    expect(parseAic('a:b:1:q5')).toEqual({ registry: 'a', provider: 'b', serial: 1 });
    fc.assert(
      fc.property(partsArb, (p) => {
        expect(formatAic(p)).toBe(withCheck(`${p.registry}:${p.provider}:${p.serial}`));
      }),
    );
  });

  it('round-trips arbitrary parts', () => {
    fc.assert(
      fc.property(partsArb, (p) => {
        const aic = formatAic(p);
        expect(aicProblem(aic)).toBeNull();
        expect(isValidAic(aic)).toBe(true);
        expect(parseAic(aic)).toEqual({ registry: p.registry, provider: p.provider, serial: p.serial });
      }),
      { numRuns: 500 },
    );
  });

  it('accepts the longest possible AIC and exports the name regex', () => {
    const aic = formatAic({ registry: 'r'.repeat(63), provider: 'P'.repeat(63), serial: Number.MAX_SAFE_INTEGER });
    expect(aic.length).toBe(63 + 63 + 16 + 2 + 3);
    expect(isValidAic(aic)).toBe(true);
    expect(PROVIDER_NAME.test('acme.ai_2-x')).toBe(true);
    expect(PROVIDER_NAME.test('-acme')).toBe(false);
    expect(PROVIDER_NAME.test('a'.repeat(64))).toBe(false);
  });
});

describe('AIC error detection', () => {
  it('rejects every single-character substitution at every position', () => {
    fc.assert(
      fc.property(aicArb, (aic) => {
        for (let i = 0; i < aic.length; i++) {
          for (const ch of SUBST) {
            const mutated = aic.slice(0, i) + ch + aic.slice(i + 1);
            if (mutated !== aic && isValidAic(mutated)) expect.fail(`accepted ${mutated} (from ${aic})`);
          }
        }
      }),
      { numRuns: 150 },
    );
  });

  it('rejects every swap of two adjacent different characters', () => {
    fc.assert(
      fc.property(aicArb, (aic) => {
        for (let i = 0; i + 1 < aic.length; i++) {
          if (aic[i] === aic[i + 1]) continue;
          const swapped = aic.slice(0, i) + aic[i + 1] + aic[i] + aic.slice(i + 2);
          if (isValidAic(swapped)) expect.fail(`accepted ${swapped} (from ${aic})`);
        }
      }),
      { numRuns: 1000 },
    );
  });

  // Insertions and deletions are caught by chance only (~1/1021 slip through) except a character
  // appended to the data, which always changes the sum: fixed examples checked exhaustively for
  // deletions and a sample of insertions, plus a bound on the random miss rate.
  const lastColon = (aic: string) => aic.lastIndexOf(':');
  const trailingZeroAdded = (aic: string) => aic.slice(0, lastColon(aic)) + '0' + aic.slice(lastColon(aic));
  const trailingZeroRemoved = (aic: string) =>
    aic[lastColon(aic) - 1] === '0' ? aic.slice(0, lastColon(aic) - 1) + aic.slice(lastColon(aic)) : null;

  it('rejects deletions and insertions of one character (sample)', () => {
    for (const aic of ['a:b:1:q5', formatAic({ registry: 'gw-eu.1', provider: 'acme_ai', serial: 90210 })]) {
      for (let i = 0; i < aic.length; i++) {
        expectInvalid(aic.slice(0, i) + aic.slice(i + 1));
      }
      for (let j = 0; j <= aic.length; j++) {
        for (const ch of [':', '0', 'é', ' ']) {
          expectInvalid(aic.slice(0, j) + ch + aic.slice(j));
        }
      }
    }
    let tried = 0;
    let accepted = 0;
    fc.assert(
      fc.property(aicArb, fc.nat(), fc.nat(), fc.constantFrom(...SUBST), (aic, d, n, ch) => {
        const i = d % aic.length;
        const j = n % (aic.length + 1);
        tried += 2;
        if (isValidAic(aic.slice(0, i) + aic.slice(i + 1))) accepted++;
        if (isValidAic(aic.slice(0, j) + ch + aic.slice(j))) accepted++;
      }),
      { numRuns: 2000, seed: 20240601 },
    );
    expect(tried).toBeGreaterThan(3900);
    expect(accepted).toBeLessThanOrEqual(12); // ~4 expected at 1/1021
  });

  it("catches a '0' appended to or dropped from the end of the serial (1 read as 10)", () => {
    expect(isValidAic('a:b:10:q5')).toBe(false);
    fc.assert(
      fc.property(partsArb.filter((p) => p.serial <= Number.MAX_SAFE_INTEGER / 10), (p) => {
        const aic = formatAic(p);
        expect(isValidAic(trailingZeroAdded(aic))).toBe(false);
        const removed = trailingZeroRemoved(aic);
        if (removed !== null) expect(isValidAic(removed)).toBe(false);
      }),
    );
  });
});

describe('AIC bad inputs', () => {
  it('rejects non-strings', () => {
    for (const v of [undefined, null, 42, {}, ['a:b:1:q5'], Symbol('x'), 10n]) {
      expect(aicProblem(v)).toBe('an AIC must be a string');
      expectInvalid(v);
    }
  });

  it('rejects malformed strings, each for its own reason', () => {
    expectInvalid('');
    const long = withCheck(`${'r'.repeat(63)}:${'p'.repeat(63)}:1`);
    expectInvalid(long + 'x'.repeat(161 - long.length), /at most 160/);
    expectInvalid('a:b:1', /4 fields/);
    expectInvalid('a:b:c:1:q5', /4 fields/);
    expectInvalid('a:b:1:q5:', /4 fields/);
    expectInvalid(withCheck('a:b:01'), /leading zeros/);
    expectInvalid(withCheck('a:b:0'), /serial/);
    expectInvalid(withCheck('a:b:-1'), /serial/);
    expectInvalid(withCheck('a:b:1.5'), /serial/);
    expectInvalid(withCheck('a:b:9007199254740992'), /safe/);
    expectInvalid('g w:b:1:00', /registry/);
    expectInvalid('gé:b:1:00', /registry/);
    expectInvalid(withCheck('.gw:b:1'), /registry/);
    expectInvalid(withCheck(`${'r'.repeat(64)}:b:1`), /registry/);
    expectInvalid(withCheck('a:-b:1'), /provider/);
    expectInvalid(withCheck(':b:1'), /registry/);
    expectInvalid('a:b:1:N7', /check code must be/);
    expectInvalid('a:b:1:n', /check code must be/);
    expectInvalid('a:b:1:q5a', /check code must be/);
    expectInvalid('a:b:1:zz', /check code must be/); // 1023 ≥ 1021
    expectInvalid('a:b:1:il', /check code must be/); // not Crockford
    expectInvalid('a:b:1:n8', /mismatch/);
    expectInvalid('a:b:2:q5', /mismatch/);
  });

  it('formatAic rejects invalid parts', () => {
    const bad: unknown[] = [
      null,
      {},
      { registry: '', provider: 'b', serial: 1 },
      { registry: 'a:b', provider: 'b', serial: 1 },
      { registry: 'a', provider: 'b c', serial: 1 },
      { registry: 'a', provider: 'p'.repeat(64), serial: 1 },
      { registry: 'a', provider: 'b', serial: 0 },
      { registry: 'a', provider: 'b', serial: -3 },
      { registry: 'a', provider: 'b', serial: 1.5 },
      { registry: 'a', provider: 'b', serial: Number.MAX_SAFE_INTEGER + 1 },
      { registry: 'a', provider: 'b', serial: Number.NaN },
      { registry: 'a', provider: 'b', serial: '1' },
    ];
    for (const parts of bad) {
      expect(() => formatAic(parts as AicParts), JSON.stringify(parts)).toThrow(
        expect.objectContaining({ code: 'ERR_DMSC_INVALID_AIC', name: 'TypeError' }),
      );
      try {
        formatAic(parts as AicParts);
      } catch (e) {
        expect(e).toBeInstanceOf(TypeError);
      }
    }
  });
});
