// TIP task specifications, and the rule-and-template decomposer a gateway uses for an
// agent that sends a task as text (MACP §5.4: "its attached Agent Gateway MAY act as a
// proxy to analyze and decompose the task"). Rules live in a JSON file operators edit:
//
//   { "version": 1, "rules": [
//     { "name": "translate-scan",
//       "patterns": ["translate (?:this|the) (?:scan|scanned|image).* into (?<lang>[a-z]+)"],
//       "subtasks": [
//         { "id": "ocr", "capability": "/capability/ocr", "input": { "document": "{{input.document}}" } },
//         { "id": "translate", "capability": "/capability/translate", "dependsOn": ["ocr"],
//           "input": { "text": "{{ocr.output.text}}", "to": "{{match.lang}}" } } ] } ] }
//
// The first rule (in file order) with a matching pattern (a case-insensitive regular
// expression) or keyword set wins. Templates `{{path}}` in a sub-task's input (and its
// capability) read the task's `input`, its `text`, the pattern's named groups (`match`),
// and the output of a sub-task it depends on (`<id>.output...`). A string that is one
// template alone takes the value as it is (an object stays an object).
import { DmscError, DmscTypeError } from '../errors.js';
import { nameProblem } from '../fastpath/validate.js';
import { WatchedFile } from '../node/watched-file.js';

/** How a sub-task is invoked: set per sub-task, or for all of them in the task's constraints. */
export interface Invocation {
  /** Time for one attempt (default 10 s). */
  readonly timeoutMs?: number;
  /** Tags the chosen agent must carry (a sub-task's add to the task's). */
  readonly require?: readonly string[];
  /** Invoke by a data-plane request (default) or over an A2ASP session. */
  readonly via?: 'request' | 'session';
  /** Candidates tried before the sub-task escalates (default 3). */
  readonly maxAttempts?: number;
}

export interface SubtaskSpec extends Invocation {
  readonly id: string;
  /** A capability name (templates allowed, checked once filled in). */
  readonly capability: string;
  readonly input?: unknown;
  readonly dependsOn?: readonly string[];
}

export interface TaskConstraints extends Invocation {
  /** The whole task fails when not done in this time. */
  readonly deadlineMs?: number;
}

export interface TaskSpec {
  readonly subtasks?: readonly SubtaskSpec[];
  readonly text?: string;
  readonly input?: unknown;
  readonly constraints?: TaskConstraints;
}

export interface Rule {
  readonly name: string;
  readonly patterns?: readonly string[];
  /** Every one of `all` and, when given, one of `any`, as whole words. */
  readonly keywords?: { readonly all?: readonly string[]; readonly any?: readonly string[] };
  readonly subtasks: readonly SubtaskSpec[];
}

export interface RuleSet {
  readonly version: number;
  readonly rules: readonly Rule[];
}

export const MAX_SUBTASKS = 64;
const ID = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;
const TEMPLATE = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;

function invalid(where: string, why: string): DmscTypeError {
  return new DmscTypeError('ERR_DMSC_INVALID_BODY', `${where}: ${why}`);
}

/**
 * Checks the sub-tasks of a task (given or from a rule): ids, names, a DAG of known
 * dependencies, and templates that read only what a sub-task may see.
 * @throws ERR_DMSC_INVALID_BODY
 */
export function checkSubtasks(subtasks: readonly SubtaskSpec[], where = 'task.subtasks'): void {
  if (!Array.isArray(subtasks) || subtasks.length === 0 || subtasks.length > MAX_SUBTASKS) throw invalid(where, `1 to ${MAX_SUBTASKS} sub-tasks`);
  const ids = new Set<string>();
  for (const [i, s] of subtasks.entries()) {
    const at = `${where}[${i}]`;
    if (typeof s?.id !== 'string' || !ID.test(s.id)) throw invalid(at, 'id must be a letter then up to 62 letters, digits, _ or -');
    if (['input', 'text', 'match'].includes(s.id)) throw invalid(at, `id ${s.id} is reserved for templates`);
    if (ids.has(s.id)) throw invalid(at, `id ${s.id} is used twice`);
    ids.add(s.id);
    if (typeof s.capability !== 'string') throw invalid(at, 'capability is required');
    if (!s.capability.includes('{{')) {
      const p = nameProblem(s.capability);
      if (p) throw invalid(`${at}.capability`, p);
    }
  }
  for (const [i, s] of subtasks.entries()) {
    const at = `${where}[${i}]`;
    const deps = s.dependsOn ?? [];
    for (const d of deps) if (!ids.has(d) || d === s.id) throw invalid(`${at}.dependsOn`, `${JSON.stringify(d)} is not another sub-task of this task`);
    if (new Set(deps).size !== deps.length) throw invalid(`${at}.dependsOn`, 'names a sub-task twice');
    for (const ref of templateRefs([s.input, s.capability])) {
      const head = ref.split('.')[0]!;
      if (head === 'input' || head === 'text' || head === 'match') continue;
      if (!deps.includes(head)) throw invalid(at, `template {{${ref}}} reads ${head}, which this sub-task does not depend on`);
      if (ref.split('.')[1] !== 'output') throw invalid(at, `template {{${ref}}}: a sub-task's value is read as ${head}.output[...]`);
    }
  }
  // Kahn's algorithm: every sub-task must come out, or there is a cycle.
  const indegree = new Map(subtasks.map((s) => [s.id, (s.dependsOn ?? []).length]));
  const ready = subtasks.filter((s) => !(s.dependsOn ?? []).length).map((s) => s.id);
  let seen = 0;
  while (ready.length) {
    const id = ready.pop()!;
    seen++;
    for (const s of subtasks) {
      if ((s.dependsOn ?? []).includes(id)) {
        const n = indegree.get(s.id)! - 1;
        indegree.set(s.id, n);
        if (n === 0) ready.push(s.id);
      }
    }
  }
  if (seen !== subtasks.length) throw invalid(where, 'the dependencies form a cycle');
}

function templateRefs(values: unknown[]): string[] {
  const out: string[] = [];
  const walk = (v: unknown, depth: number) => {
    if (depth > 32) return;
    if (typeof v === 'string') for (const m of v.matchAll(TEMPLATE)) out.push(m[1]!);
    else if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
    else if (v && typeof v === 'object') Object.values(v).forEach((x) => walk(x, depth + 1));
  };
  values.forEach((v) => walk(v, 0));
  return out;
}

/** Fills `{{path}}` templates from `context`; a reference to nothing is an error. */
export function fill(value: unknown, context: Record<string, unknown>): unknown {
  const read = (path: string): unknown => {
    let v: unknown = context;
    for (const part of path.split('.')) {
      if (v === null || typeof v !== 'object' || !Object.hasOwn(v, part)) throw new DmscError('ERR_DMSC_INVALID_BODY', `template {{${path}}} names nothing`);
      v = (v as Record<string, unknown>)[part];
    }
    return v;
  };
  if (typeof value === 'string') {
    const whole = /^\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}$/.exec(value);
    if (whole) return read(whole[1]!);
    return value.replace(TEMPLATE, (_, path: string) => {
      const v = read(path);
      return typeof v === 'string' ? v : JSON.stringify(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => fill(v, context));
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, context)]));
  return value;
}

/** Checks a rule file's content. @throws ERR_DMSC_INVALID_CONFIG naming the fault. */
export function checkRules(doc: unknown, source = 'task rules'): RuleSet {
  const bad = (why: string) => new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `${source}: ${why}`);
  const d = doc as Partial<RuleSet> | null;
  if (!d || typeof d !== 'object' || d.version !== 1 || !Array.isArray(d.rules)) throw bad('expected { "version": 1, "rules": [...] }');
  const names = new Set<string>();
  for (const [i, r] of d.rules.entries()) {
    const at = `rules[${i}]`;
    if (typeof r?.name !== 'string' || r.name.length === 0 || r.name.length > 64) throw bad(`${at}.name must be 1 to 64 characters`);
    if (names.has(r.name)) throw bad(`${at}: rule ${r.name} is named twice`);
    names.add(r.name);
    if (!r.patterns?.length && !r.keywords) throw bad(`${at} (${r.name}) needs patterns or keywords`);
    for (const [j, p] of (r.patterns ?? []).entries()) {
      try {
        new RegExp(p, 'iu');
      } catch (e) {
        throw bad(`${at}.patterns[${j}] is not a regular expression: ${(e as Error).message}`);
      }
    }
    const words = [...(r.keywords?.all ?? []), ...(r.keywords?.any ?? [])];
    if (r.keywords && (words.length === 0 || !words.every((w) => typeof w === 'string' && /^[\p{L}\p{N}-]+$/u.test(w)))) throw bad(`${at}.keywords must list single words`);
    try {
      checkSubtasks(r.subtasks, `${at}.subtasks`);
    } catch (e) {
      throw bad((e as Error).message);
    }
  }
  return d as RuleSet;
}

/** The sub-tasks for a text task: the first matching rule's, with the pattern's named groups. */
export function decompose(rules: RuleSet, text: string): { rule: string; subtasks: readonly SubtaskSpec[]; match: Record<string, string> } {
  const words = new Set(text.toLowerCase().split(/[^\p{L}\p{N}-]+/u).filter(Boolean));
  for (const r of rules.rules) {
    for (const p of r.patterns ?? []) {
      const m = new RegExp(p, 'iu').exec(text);
      if (m) return { rule: r.name, subtasks: r.subtasks, match: { ...(m.groups ?? {}) } };
    }
    const k = r.keywords;
    if (k && (k.all ?? []).every((w) => words.has(w.toLowerCase())) && (!k.any?.length || k.any.some((w) => words.has(w.toLowerCase())))) {
      return { rule: r.name, subtasks: r.subtasks, match: {} };
    }
  }
  throw new DmscError('ERR_DMSC_NO_ROUTE', 'no decomposition rule matches this task; give its sub-tasks, or add a rule to the task rules file');
}

/**
 * The rules in force: a file (read again when it changes; a broken edit keeps the rules
 * before it and is reported), or the built-in ones.
 */
export class RuleBook {
  readonly #file: WatchedFile<RuleSet> | undefined;
  readonly #builtIn: RuleSet;

  constructor(file: string | undefined, builtIn: RuleSet, log: (event: Record<string, unknown>) => void = () => {}) {
    this.#builtIn = builtIn;
    this.#file = file === undefined ? undefined : new WatchedFile(file, 'task rules', checkRules, log);
  }

  get rules(): RuleSet {
    return this.#file?.value ?? this.#builtIn;
  }

  get source(): string {
    return this.#file?.file ?? 'built-in';
  }
}
