// Task specifications and the rule-and-template decomposer: DAG checks (property-tested),
// templates, rule matching, the built-in rules, and a rules file that changes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { checkRules, checkSubtasks, decompose, fill, RuleBook, type SubtaskSpec } from '../../src/task/decompose.js';
import { DEFAULT_RULES } from '../../src/task/default-rules.js';

const dirs: string[] = [];
afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

describe('sub-task graphs', () => {
  // n sub-tasks; edges only from later to earlier ones make a DAG; one edge back closes a cycle.
  const graph = fc.integer({ min: 1, max: 12 }).chain((n) => fc.tuple(
    fc.constant(n),
    fc.array(fc.tuple(fc.nat(n - 1), fc.nat(n - 1)), { maxLength: 30 }),
  ));
  const build = (n: number, edges: [number, number][]): SubtaskSpec[] => Array.from({ length: n }, (_, i) => ({
    id: `s${i}`, capability: `/capability/c${i}`, dependsOn: [...new Set(edges.filter(([a, b]) => a === i && b !== i).map(([, b]) => `s${b}`))],
  }));

  it('accepts every graph whose dependencies point back to earlier sub-tasks', () => {
    fc.assert(fc.property(graph, ([n, edges]) => {
      checkSubtasks(build(n, edges.map(([a, b]) => (a > b ? [a, b] : [b, a])).filter(([a, b]) => a !== b) as [number, number][]));
    }));
  });

  it('refuses every graph with a cycle', () => {
    fc.assert(fc.property(graph, fc.integer({ min: 2, max: 12 }), ([n, edges], len) => {
      const k = Math.min(len, Math.max(2, n));
      const size = Math.max(n, k);
      // A ring s0 -> s1 -> ... -> s(k-1) -> s0, plus any other edges.
      const ring: [number, number][] = Array.from({ length: k }, (_, i) => [i, (i + 1) % k]);
      expect(() => checkSubtasks(build(size, [...edges, ...ring]))).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_BODY' }));
    }));
  });

  it('refuses unknown dependencies, reused ids, reserved ids and templates reading what a sub-task does not depend on', () => {
    const bad = (s: SubtaskSpec[]) => expect(() => checkSubtasks(s)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_BODY' }));
    bad([{ id: 'a', capability: '/x', dependsOn: ['zz'] }]);
    bad([{ id: 'a', capability: '/x' }, { id: 'a', capability: '/y' }]);
    bad([{ id: 'input', capability: '/x' }]);
    bad([{ id: 'a', capability: '/x' }, { id: 'b', capability: '/y', input: '{{a.output}}' }]);
    bad([{ id: 'a', capability: '/x' }, { id: 'b', capability: '/y', dependsOn: ['a'], input: '{{a.secret}}' }]);
    bad([{ id: 'a', capability: 'x' }]);
    checkSubtasks([{ id: 'a', capability: '/x' }, { id: 'b', capability: '/y/{{a.output.kind}}', dependsOn: ['a'], input: { t: '{{a.output.text}}', q: '{{input.q}}' } }]);
  });
});

describe('templates', () => {
  const ctx = { input: { doc: 'a.png', n: 3, deep: { list: [1, 2] } }, ocr: { output: { text: 'hello' } }, match: { lang: 'fr' } };
  it('take a whole value as it is, and write values into strings', () => {
    expect(fill('{{input.deep}}', ctx)).toEqual({ list: [1, 2] });
    expect(fill({ a: ['{{input.n}}', 'n={{input.n}} to {{match.lang}}'] }, ctx)).toEqual({ a: [3, 'n=3 to fr'] });
    expect(fill('{{ ocr.output.text }}!', ctx)).toBe('hello!');
    expect(() => fill('{{input.nothing}}', ctx)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_BODY' }));
    expect(() => fill('{{input.doc.length}}', ctx)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_BODY' }));
  });
});

describe('rules', () => {
  it('the built-in rules are valid and decompose what they are for', () => {
    checkRules(DEFAULT_RULES);
    expect(decompose(DEFAULT_RULES, 'Please translate this scanned letter into German').rule).toBe('translate-scan');
    expect(decompose(DEFAULT_RULES, 'Transcribe the call and translate it').rule).toBe('transcribe-translate');
    const pay = decompose(DEFAULT_RULES, 'pay the attached invoice');
    expect(pay.subtasks.map((s) => s.id)).toEqual(['ocr', 'extract', 'screen', 'pay']);
    expect(() => decompose(DEFAULT_RULES, 'tell me a joke')).toThrow(expect.objectContaining({ code: 'ERR_DMSC_NO_ROUTE' }));
  });

  it('match patterns (with named groups) before keywords, first rule first', () => {
    const rules = checkRules({
      version: 1,
      rules: [
        { name: 'p', patterns: ['resize to (?<w>\\d+)px'], subtasks: [{ id: 'r', capability: '/capability/img/resize', input: { w: '{{match.w}}' } }] },
        { name: 'k', keywords: { all: ['resize'], any: ['image', 'photo'] }, subtasks: [{ id: 'r', capability: '/capability/img/resize' }] },
      ],
    });
    expect(decompose(rules, 'Resize to 640px please')).toMatchObject({ rule: 'p', match: { w: '640' } });
    expect(decompose(rules, 'resize this photo')).toMatchObject({ rule: 'k', match: {} });
    expect(() => decompose(rules, 'resize')).toThrow(expect.objectContaining({ code: 'ERR_DMSC_NO_ROUTE' }));
  });

  it('refuse a file with a bad pattern, a rule without a matcher, or a broken sub-task graph, naming the fault', () => {
    const bad = (doc: unknown, fault: RegExp) => expect(() => checkRules(doc)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG', message: expect.stringMatching(fault) }));
    bad({ version: 2, rules: [] }, /version/);
    bad({ version: 1, rules: [{ name: 'a', patterns: ['('], subtasks: [{ id: 'x', capability: '/x' }] }] }, /rules\[0\]\.patterns\[0\]/);
    bad({ version: 1, rules: [{ name: 'a', subtasks: [{ id: 'x', capability: '/x' }] }] }, /needs patterns or keywords/);
    bad({ version: 1, rules: [{ name: 'a', keywords: { all: ['two words'] }, subtasks: [{ id: 'x', capability: '/x' }] }] }, /single words/);
    bad({ version: 1, rules: [{ name: 'a', patterns: ['x'], subtasks: [{ id: 'x', capability: '/x', dependsOn: ['x'] }] }] }, /rules\[0\]\.subtasks/);
  });

  it('a rule book follows its file, and keeps the last good rules through a broken edit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dmsc-rules-'));
    dirs.push(dir);
    const file = join(dir, 'rules.json');
    const doc = (name: string) => JSON.stringify({ version: 1, rules: [{ name, patterns: [name], subtasks: [{ id: 'x', capability: '/x' }] }] });
    await writeFile(file, doc('one'));
    const logs: Record<string, unknown>[] = [];
    const book = new RuleBook(file, DEFAULT_RULES, (e) => logs.push(e));
    expect(book.rules.rules[0]!.name).toBe('one');
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(file, doc('two'));
    expect(book.rules.rules[0]!.name).toBe('two');
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(file, '{');
    expect(book.rules.rules[0]!.name).toBe('two');
    expect(logs.at(-1)).toMatchObject({ msg: expect.stringContaining('rejected') });
    await writeFile(join(dir, 'bad.json'), '[]');
    expect(() => new RuleBook(join(dir, 'bad.json'), DEFAULT_RULES)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG' }));
    expect(new RuleBook(undefined, DEFAULT_RULES).source).toBe('built-in');
  });
});
