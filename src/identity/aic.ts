/**
 * AIC (Agent Identity Code): `<registry>:<provider>:<serial>:<check>`, allocated by a gateway.
 *
 * Check code: c = Σ v_i·w_i mod 1021 over D = `<registry>:<provider>:<serial>`, with v_i one more than
 * the index of D[i] in DATA_ALPHABET (66 symbols, ':' included, so v_i is 1..66, never 0) and w_i = 2^(i+1) mod 1021. Why every
 * single-character substitution and every swap of two adjacent different characters is caught:
 * - in D, a substitution changes c by Δv·w_i and a swap by (b−a)(w_i − w_{i+1}) = (a−b)·w_i; 1021 is
 *   prime, w_i ≠ 0 and 0 < |Δv|, |a−b| < 66 < 1021, so the change is never ≡ 0 (mod 1021);
 * - a changed check char decodes to a different value (or to none); so does swapping the two;
 * - anything that moves the last ':' or adds/removes a field breaks the strict structure (4 fields,
 *   2 check chars from a lowercase alphabet, digits-only serial), so it cannot go unnoticed either.
 * No character counts as 0, so appending one (a serial 1 read as 10) always changes c; other
 * insertions and deletions are caught with probability about 1020/1021.
 */
import { DmscTypeError } from '../errors.js';

/** Registry and provider names: 1..63 chars, alphanumeric first. @example PROVIDER_NAME.test('acme-ai') // true */
export const PROVIDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const SERIAL = /^[1-9][0-9]{0,15}$/;
const CHECK_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const DATA_ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._-:';
const MOD = 1021;
const MAX_LENGTH = 160;

/** The parts of an AIC. @example const p: AicParts = { registry: 'gw1', provider: 'acme', serial: 42 }; */
export interface AicParts {
  readonly registry: string;
  readonly provider: string;
  readonly serial: number;
}

/** Check value of a data string whose characters all are in DATA_ALPHABET (callers ensure it). */
function checkValue(data: string): number {
  let sum = 0;
  let w = 2;
  for (const ch of data) {
    sum = (sum + (DATA_ALPHABET.indexOf(ch) + 1) * w) % MOD;
    w = (w * 2) % MOD;
  }
  return sum;
}

const encodeCheck = (c: number): string => CHECK_ALPHABET[c >> 5]! + CHECK_ALPHABET[c & 31]!;

function nameProblem(what: string, name: unknown): string | null {
  return typeof name === 'string' && PROVIDER_NAME.test(name)
    ? null
    : `${what} must be 1..63 chars of [A-Za-z0-9._-], starting with a letter or digit`;
}

function partsProblem(registry: unknown, provider: unknown, serial: unknown): string | null {
  const problem = nameProblem('registry', registry) ?? nameProblem('provider', provider);
  if (problem !== null) return problem;
  const ok = typeof serial === 'number' && Number.isSafeInteger(serial) && serial >= 1;
  return ok ? null : 'serial must be a positive safe integer';
}

/**
 * Builds an AIC; throws DmscTypeError('ERR_DMSC_INVALID_AIC') if a part is invalid.
 * @example formatAic({ registry: 'gw1', provider: 'acme', serial: 42 }) // 'gw1:acme:42:' + 2 check chars
 */
export function formatAic(parts: AicParts): string {
  const p = (typeof parts === 'object' && parts !== null ? parts : {}) as Partial<AicParts>;
  const problem = partsProblem(p.registry, p.provider, p.serial);
  if (problem !== null) throw new DmscTypeError('ERR_DMSC_INVALID_AIC', `invalid AIC parts: ${problem}`);
  const data = `${p.registry}:${p.provider}:${p.serial}`;
  return `${data}:${encodeCheck(checkValue(data))}`;
}

/**
 * Returns null if `aic` is a valid AIC, else a message saying what is wrong. Never throws.
 * @example aicProblem('gw1:acme:042:00') // 'serial must be a decimal integer without leading zeros'
 */
export function aicProblem(aic: unknown): string | null {
  if (typeof aic !== 'string') return 'an AIC must be a string';
  if (aic.length === 0) return 'an AIC must not be empty';
  if (aic.length > MAX_LENGTH) return `an AIC must be at most ${MAX_LENGTH} characters`;
  const fields = aic.split(':');
  if (fields.length !== 4) return 'an AIC must have 4 fields: <registry>:<provider>:<serial>:<check>';
  const [registry, provider, serial, check] = fields as [string, string, string, string];
  const problem = nameProblem('registry', registry) ?? nameProblem('provider', provider);
  if (problem !== null) return problem;
  if (!SERIAL.test(serial)) return 'serial must be a decimal integer without leading zeros';
  if (!Number.isSafeInteger(Number(serial))) return 'serial must be a positive safe integer';
  const hi = CHECK_ALPHABET.indexOf(check[0] ?? '');
  const lo = CHECK_ALPHABET.indexOf(check[1] ?? '');
  if (check.length !== 2 || hi < 0 || lo < 0 || hi * 32 + lo >= MOD) {
    return `check code must be 2 chars of '${CHECK_ALPHABET}' encoding a value below ${MOD}`;
  }
  if (hi * 32 + lo !== checkValue(`${registry}:${provider}:${serial}`)) return 'check code mismatch';
  return null;
}

/** Printable, bounded rendering of a rejected input for error messages. */
function show(aic: unknown): string {
  if (typeof aic !== 'string') return `<${aic === null ? 'null' : typeof aic}>`;
  const s = aic.replace(/[^\x20-\x7e]/g, '?');
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

/**
 * Parses and validates an AIC; throws DmscTypeError('ERR_DMSC_INVALID_AIC') if it is invalid.
 * @example parseAic(formatAic({ registry: 'gw1', provider: 'acme', serial: 42 })).serial // 42
 */
export function parseAic(aic: unknown): AicParts {
  const problem = aicProblem(aic);
  if (problem !== null) throw new DmscTypeError('ERR_DMSC_INVALID_AIC', `invalid AIC '${show(aic)}': ${problem}`);
  const [registry, provider, serial] = (aic as string).split(':') as [string, string, string];
  return { registry, provider, serial: Number(serial) };
}

/**
 * True iff `aic` is a valid AIC.
 * @example isValidAic('gw1:acme:42:zz') // false (zz encodes 1023, out of range)
 */
export function isValidAic(aic: unknown): boolean {
  return aicProblem(aic) === null;
}
