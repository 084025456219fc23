// The capability-name grammar (src/names.ts) and its URI form: what it refuses and where
// it says the fault is; that the native core draws the line in the same place (names
// built from an alphabet full of the characters at stake, through lookupPacked against
// the TypeScript grammar); and that the URI form of every name decodes back to it.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ForwardingTable } from '../src/index.js';
import { checkName, nameFromPath, namePath, nameProblem, pathBelow, quoteName } from '../src/names.js';

/** Characters at the edges of the grammar, and ordinary ones. */
const CHARS = [
  'a', 'Z', '0', '-', '.', '_', '~', '!', '$', '&', "'", '(', ')', '*', '+', ',', ';', '=', ':', '@', '%', '?', '#', '[', ']', '"', '<', '>', '^', '`', '{', '|', '}',
  '\\', ' ', '\t', '\n', '\r', '\0', '\x7f', '\x85', '\x9f', '\xa0', '\u1680', '\u2000', '\u200a', '\u2028', '\u202f', '\u3000',
  '\u061c', '\u200e', '\u200f', '\u202a', '\u202e', '\u2066', '\u2069', '\u200b', '\u200c', '\u200d', '\u2060', '\u180e', '\ufeff',
  'é', 'ß', '翻', '訳', 'ع', '😀', '\ud800', '\udfff',
];
const component = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.constantFrom(...CHARS), { minLength: 1, maxLength: 6 }).map((cs) => cs.join('')) },
  { weight: 1, arbitrary: fc.constantFrom('.', '..', '', 'capability', '...', '.a') },
);
const anyName = fc.array(component, { minLength: 0, maxLength: 5 }).map((cs) => `/${cs.join('/')}`);

describe('capability names', () => {
  it('refuses control characters, white space, bidirectional controls, invisible characters, backslashes and dot components, naming the place', () => {
    const cases: [string, RegExp][] = [
      ['/capability/a\nb', /a control character \(U\+000A\) at character 14/],
      ['/capability/x\r\nx-evil: 1', /a control character \(U\+000D\) at character 14/],
      ['/capability/del\x7f', /a control character \(U\+007F\)/],
      ['/capability/c1\x85', /a control character \(U\+0085\)/],
      ['/capability/a b', /white space \(U\+0020\) at character 14/],
      ['/capability/nb\u00a0sp', /white space \(U\+00A0\)/],
      ['/capability/\u3000', /white space \(U\+3000\)/],
      ['/capability/pay\u202egnp.exe', /a bidirectional control \(U\+202E\) at character 16/],
      ['/capability/\u2066x', /a bidirectional control \(U\+2066\)/],
      ['/capability/zw\u200bsp', /an invisible character \(U\+200B\)/],
      ['/capability/\ufeffbom', /an invisible character \(U\+FEFF\)/],
      ['/capability/a\\b', /a backslash \(U\+005C\)/],
      ['/capability/../admin', /a '\.\.' component \(component 2\)/],
      ['/capability/./x', /a '\.' component \(component 2\)/],
      ['/capability/😀\ud800', /a lone surrogate .* at character 14/],
    ];
    for (const [name, why] of cases) {
      expect(nameProblem(name), JSON.stringify(name)).toMatch(why);
      expect(() => checkName(name)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_NAME' }));
    }
    // What stays a name: dots within a component, other scripts, symbols, joiners, '%'.
    for (const name of ['/capability/.hidden/a..b/...', '/capability/翻訳/😀', '/capability/100%', '/capability/ocr:v2@x', '/capability/a\u200db']) {
      expect(nameProblem(name), name).toBeNull();
    }
  });

  it('quotes a refused name so that nothing in it can reorder or hide text in a message or a log', () => {
    expect(quoteName('/capability/pay\u202egnp.exe')).toBe('"/capability/pay\\u202egnp.exe"');
    expect(quoteName('/a\nb\u200bc')).toBe('"/a\\nb\\u200bc"');
    expect(() => checkName('/capability/x\u202ey')).toThrow(/invalid name "\/capability\/x\\u202ey"/);
  });

  it('draws the line where the native core draws it (lookupPacked against the TypeScript grammar)', () => {
    const fib = new ForwardingTable();
    fib.upsert('/', [{ id: 'root' }]);
    const encoder = new TextEncoder();
    try {
      fc.assert(fc.property(fc.array(anyName, { minLength: 1, maxLength: 40 }), (names) => {
        const encoded = names.map((n) => encoder.encode(n));
        const offsets = new Uint32Array(names.length + 1);
        for (let i = 0; i < names.length; i++) offsets[i + 1] = offsets[i]! + encoded[i]!.length;
        const bytes = new Uint8Array(offsets[names.length]!);
        encoded.forEach((e, i) => bytes.set(e, offsets[i]!));
        const out = new Int32Array(names.length);
        fib.lookupPacked(bytes, offsets, out);
        for (const [i, n] of names.entries()) {
          // A lone surrogate encodes as U+FFFD, which is a name; the grammar checks the string.
          const asBytes = new TextDecoder().decode(encoded[i]);
          expect(out[i] === -2, JSON.stringify(n)).toBe(nameProblem(asBytes) !== null);
          if (nameProblem(n) === null) expect(fib.lookup(n)?.nextHop).toBe('root');
          else expect(() => fib.lookup(n)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_NAME', message: expect.stringMatching(/character|component|UTF-8|bytes|'\/'/) }));
        }
      }), { numRuns: 300 });
    } finally {
      fib.close();
    }
  });

  it('writes every name in a URI form that decodes back to it, and only in RFC 3986 path characters', () => {
    fc.assert(fc.property(anyName.filter((n) => nameProblem(n) === null), (name) => {
      const path = namePath(name);
      expect(path).toMatch(/^(?:\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-F]{2})+)*$|^\/$/);
      // As Node reads it off the wire: one character per byte.
      expect(nameFromPath(path)).toEqual({ name });
    }), { numRuns: 500 });
    expect(namePath('/capability/ocr/high-precision')).toBe('/capability/ocr/high-precision');
    expect(namePath('/capability/100%/翻訳')).toBe('/capability/100%25/%E7%BF%BB%E8%A8%B3');
  });

  it('decodes a path once, component by component, and refuses what would be no name once decoded', () => {
    expect(nameFromPath('/capability/a%2520b')).toEqual({ name: '/capability/a%20b' });
    expect(nameFromPath('/capability/%C3%A9t%C3%A9')).toEqual({ name: '/capability/été' });
    // Raw UTF-8 in a request line reaches Node as one character per byte.
    expect(nameFromPath('/capability/\xc3\xa9t\xc3\xa9')).toEqual({ name: '/capability/été' });
    for (const [path, why] of [
      ['/capability/a%2Fb', /encoded '\/' \(%2F\) in component 2/],
      ['/capability/a%2', /'%' not followed by two hex digits/],
      ['/capability/%ff', /not UTF-8/],
      ['/capability/a%20b', /white space/],
      ['/capability/%2e%2e', /'\.\.' component/],
      ['/capability/a%5Cb', /backslash/],
      ['/capability/%E2%80%AEx', /bidirectional control/],
      ['/capability/a%0D%0Ax-evil:%201', /control character/],
    ] as const) {
      expect(nameFromPath(path), path).toEqual({ problem: expect.stringMatching(why) });
    }
  });

  it('sends on what lies below the matched prefix in the path\'s own encoding', () => {
    expect(pathBelow('/capability/ocr/v1/jobs', '/capability/ocr')).toBe('/v1/jobs');
    expect(pathBelow('/capability/%C3%A9t%C3%A9/a%20b', '/capability/été')).toBe('/a%20b');
    expect(pathBelow('/capability/ocr/', '/capability/ocr')).toBe('/');
    expect(pathBelow('/capability/ocr', '/capability/ocr')).toBe('');
    expect(pathBelow('/capability/ocr', '/')).toBe('/capability/ocr');
  });
});
