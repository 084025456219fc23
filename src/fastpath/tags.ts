import { DmscTypeError } from '../errors.js';
import { tagProblem } from './validate.js';

/**
 * A set of required tags resolved against one table, for `lookupPacked`: resolving names
 * to the table's tag bits once instead of on every batch.
 *
 * @example
 * const gdpr = fib.tagSet(['gdpr']);
 * fib.lookupPacked(names.bytes, names.offsets, out, { require: gdpr });
 */
export class TagSet {
  /** The tag names, as given. */
  readonly tags: readonly string[];
  /** @internal */ lo = 0;
  /** @internal */ hi = 0;
  /** @internal A tag the table has never seen: nothing can match. */ unsatisfiable = false;
  /** @internal Tag count of the table when resolved; unknown tags may appear later. */ resolvedAt = -1;
  /** @internal */ readonly scope: object;

  /** @internal Use `table.tagSet(tags)`; a set made here is resolved on first use. */
  constructor(scope: object, tags: readonly string[]) {
    this.scope = scope;
    this.tags = Object.freeze(checkTags(tags));
  }
}

export function checkTags(tags: unknown): string[] {
  if (!Array.isArray(tags)) throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'require must be an array of tag names or a TagSet');
  const out = Array.from(tags as unknown[]);
  for (let i = 0; i < out.length; i++) {
    const p = tagProblem(out[i], `require[${i}]`);
    if (p) throw p;
  }
  return out as string[];
}

/** Resolves tag names to a 64-bit mask (two halves); bitOf returns -1 for an unknown tag. */
export function resolveMask(set: TagSet, bitOf: (tag: string) => number, tagCount: number): void {
  let lo = 0;
  let hi = 0;
  let unsatisfiable = false;
  for (const t of set.tags) {
    const bit = bitOf(t);
    if (bit < 0) unsatisfiable = true;
    else if (bit < 32) lo |= 1 << bit;
    else hi |= 1 << (bit - 32);
  }
  set.lo = lo >>> 0;
  set.hi = hi >>> 0;
  set.unsatisfiable = unsatisfiable;
  set.resolvedAt = tagCount;
}
