// The node's semantic layer: the taxonomy in force (a file operators edit, read again
// when it changes, or the built-in one) and the intent resolver built on it. A broken
// edit is logged and the taxonomy before it stays; a node does not start on a broken
// file.
import { DmscError } from '../errors.js';
import { WatchedFile } from '../node/watched-file.js';
import { DEFAULT_TAXONOMY } from './default-taxonomy.js';
import { IntentResolver, type IntentAnswer, type IntentRanker } from './intent.js';
import { Taxonomy, type Normalized } from './taxonomy.js';

export interface Declared {
  readonly name: string;
  readonly attributes?: Readonly<Record<string, unknown>>;
}

export class SemanticLayer {
  readonly #file: WatchedFile<Taxonomy> | undefined;
  readonly #rankers: readonly IntentRanker[];
  #taxonomy: Taxonomy;
  #resolver: IntentResolver;

  constructor(file: string | undefined, log: (event: Record<string, unknown>) => void = () => {}, rankers: readonly IntentRanker[] = []) {
    // Looked at no more than once a second: alignment asks for every route it reads.
    this.#file = file === undefined ? undefined : new WatchedFile(file, 'taxonomy', (doc, source) => Taxonomy.from(doc, source), log, 1000);
    this.#rankers = rankers;
    this.#taxonomy = this.#file?.value ?? Taxonomy.from(DEFAULT_TAXONOMY, 'built-in taxonomy');
    this.#resolver = new IntentResolver(this.#taxonomy, { rankers });
  }

  get source(): string {
    return this.#file?.file ?? 'built-in';
  }

  get taxonomy(): Taxonomy {
    this.#refresh();
    return this.#taxonomy;
  }

  resolveIntent(intent: string, limit = 5): IntentAnswer {
    this.#refresh();
    return this.#resolver.resolve(intent, limit);
  }

  /**
   * Declared capabilities in the taxonomy's names: aliases and earlier versions' names
   * replaced; unknown names
   * returned apart (with `unknownNames: reject`). @throws ERR_DMSC_INVALID_BODY for an
   * attribute of the wrong type, ERR_DMSC_UNKNOWN_CAPABILITY when no name is known.
   */
  normalize<T extends Declared>(declared: readonly T[]): { capabilities: T[]; normalized: Normalized[]; unknown: { capability: string; reason: string }[] } {
    const taxonomy = this.taxonomy;
    const capabilities: T[] = [];
    const normalized: Normalized[] = [];
    const unknown: { capability: string; reason: string }[] = [];
    for (const [i, d] of declared.entries()) {
      const n = taxonomy.normalize(d.name);
      if (!n) {
        unknown.push({ capability: d.name, reason: `not in taxonomy ${taxonomy.version}, which takes no custom names there` });
        continue;
      }
      const problem = taxonomy.attributeProblem(n.name, d.attributes ?? {});
      if (problem) throw new DmscError('ERR_DMSC_INVALID_BODY', `body.capabilities[${i}] (${n.name}): ${problem}`);
      // An alias declared beside its canonical name (during a rename): the first one
      // counts. The same name declared twice is still the client's error.
      const renamed = n.via === 'alias' || n.via === 'version';
      const aliased = renamed || normalized.some((x) => x.name === n.name);
      if (renamed) normalized.push(n);
      if (aliased && capabilities.some((c) => c.name === n.name)) continue;
      capabilities.push(n.name === d.name ? d : { ...d, name: n.name });
    }
    if (capabilities.length === 0) throw new DmscError('ERR_DMSC_UNKNOWN_CAPABILITY', `no declared capability is in taxonomy ${taxonomy.version}`, { unknown });
    return { capabilities, normalized, unknown };
  }

  /**
   * A name of another domain's vocabulary in ours, by the taxonomy's alignment for that
   * domain; undefined when no mapping applies.
   */
  align(domain: string, name: string): { name: string; confidence: number } | undefined {
    this.#refresh();
    return this.#taxonomy.align(`domain:${domain}`, name);
  }

  // A new taxonomy from the file: the index is built again.
  #refresh(): void {
    const current = this.#file?.value;
    if (current && current !== this.#taxonomy) {
      this.#taxonomy = current;
      this.#resolver = new IntentResolver(current, { rankers: this.#rankers });
    }
  }
}
