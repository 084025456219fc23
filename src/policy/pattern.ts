// Capability patterns of the policy language. A pattern is a capability name, optionally
// ending in '/**': '/capability/ocr/**' matches '/capability/ocr' itself and every name
// below it at component boundaries ('/capability/ocr/x/y', not '/capability/ocrx');
// '/**' matches every name. A pattern without '/**' matches only that exact name.
import { describe, nameProblem } from '../fastpath/validate.js';

const WILDCARD = '/**';

/**
 * Why a value is not a capability pattern, or null when it is one.
 *
 * @example
 * patternProblem('/capability/ocr/**');   // null
 * patternProblem('/capability//x');       // "name has an empty component ('//')"
 * patternProblem('/a/**\/b');              // "'**' may only be the last component"
 */
export function patternProblem(p: unknown): string | null {
  if (typeof p !== 'string') return `pattern must be a string, got ${describe(p)}`;
  if (p === WILDCARD) return null;
  const wildcard = p.endsWith(WILDCARD);
  const base = wildcard ? p.slice(0, -WILDCARD.length) : p;
  if (wildcard && base === '/') return "name has an empty component ('//')";
  const problem = nameProblem(base);
  if (problem !== null) return problem;
  if ((base + '/').includes('/**/')) return "'**' may only be the last component";
  return null;
}

/**
 * Whether a (valid) pattern matches a capability name.
 *
 * @example
 * matchesPattern('/capability/ocr/**', '/capability/ocr');       // true
 * matchesPattern('/capability/ocr/**', '/capability/ocr/x/y');   // true
 * matchesPattern('/capability/ocr/**', '/capability/ocrx');      // false
 * matchesPattern('/capability/ocr', '/capability/ocr/x');        // false
 * matchesPattern('/**', '/anything');                            // true
 */
export function matchesPattern(pattern: string, name: string): boolean {
  if (!pattern.endsWith(WILDCARD)) return pattern === name;
  const n = pattern.length - WILDCARD.length;
  if (n === 0) return true;
  return (name.length === n || (name.length > n && name.charCodeAt(n) === 0x2f)) && name.startsWith(pattern.slice(0, n));
}

/**
 * Whether any of the (valid) patterns matches the name.
 *
 * @example
 * matchesAny(['/a/**', '/b'], '/a/x'); // true
 * matchesAny(['/a/**', '/b'], '/b/x'); // false
 */
export function matchesAny(patterns: readonly string[], name: string): boolean {
  for (const p of patterns) if (matchesPattern(p, name)) return true;
  return false;
}

/**
 * A list of valid patterns compiled for repeated matching: exact names in a Set, subtree
 * patterns as 'base/' prefixes (their base also goes into the Set), '/**' as a flag.
 * `matches(name)` agrees with `matchesAny(patterns, name)`.
 *
 * @example
 * const set = new PatternSet(['/capability/ocr/**', '/capability/tts']);
 * set.matches('/capability/ocr/fast'); // true
 * set.matches('/capability/tts/x');    // false
 */
export class PatternSet {
  readonly #exact = new Set<string>();
  readonly #prefixes: string[] = [];
  readonly #all: boolean;

  constructor(patterns: readonly string[]) {
    let all = false;
    for (const p of patterns) {
      if (p === WILDCARD) all = true;
      else if (p.endsWith(WILDCARD)) {
        const base = p.slice(0, -WILDCARD.length);
        this.#exact.add(base);
        if (!this.#prefixes.includes(base + '/')) this.#prefixes.push(base + '/');
      } else this.#exact.add(p);
    }
    this.#all = all;
  }

  matches(name: string): boolean {
    if (this.#all || this.#exact.has(name)) return true;
    for (const prefix of this.#prefixes) if (name.startsWith(prefix)) return true;
    return false;
  }
}
