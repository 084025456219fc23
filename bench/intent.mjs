#!/usr/bin/env node
// The intent evaluation: the labelled set in bench/data/intents.json (written for this
// project; intents at even positions are the tuning part, odd positions the held-out
// part) resolved against the built-in taxonomy, in this process. It reports, per part,
// precision@1 (the answer is a match, and the right capability), precision@3 (the right
// capability among the first three candidates), the share of out-of-scope intents
// answered "no match", and the time per intent; beside the targets.
//   npm run bench -- intent [--rounds 5] [--verbose] [--no-write]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TAXONOMY, TUNED } from '../dist/semantic/default-taxonomy.js';
import { IntentResolver, terms } from '../dist/semantic/intent.js';
import { Taxonomy } from '../dist/semantic/taxonomy.js';
import { benchOptions } from './options.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: npm run bench -- intent [options]
  --rounds N     timing rounds over the whole set; the median is reported (default 5)
  --verbose      list the held-out intents answered wrongly
  --no-write     do not write bench/results/intent.json`;
const { opts, int } = benchOptions('intent', USAGE, { rounds: { type: 'string', default: '5' }, verbose: { type: 'boolean', default: false } });
const ROUNDS = int('rounds', 1, 100);
const TARGETS = { p1: 0.9, oos: 0.8, ms: 1 };

const data = JSON.parse(readFileSync(join(here, 'data', 'intents.json'), 'utf8')).intents;
const items = Object.entries(data).flatMap(([expect, list]) => list.map((text, i) => ({ text, expect: expect === 'none' ? null : expect, part: i % 2 === 0 ? 'tuning' : 'held-out' })));
const resolver = new IntentResolver(Taxonomy.from(DEFAULT_TAXONOMY));

const parts = {};
const wrong = [];
for (const it of items) {
  const a = resolver.resolve(it.text);
  const p = (parts[it.part] ??= { inScope: 0, p1: 0, p3: 0, outOfScope: 0, rejected: 0 });
  if (it.expect === null) {
    p.outOfScope++;
    if (a.status === 'no-match') p.rejected++;
    else if (it.part === 'held-out') wrong.push([it.text, 'no match', `${a.status} ${a.candidates[0]?.capability}`]);
    continue;
  }
  p.inScope++;
  if (a.status === 'match' && a.capability === it.expect) p.p1++;
  else if (it.part === 'held-out') wrong.push([it.text, it.expect, `${a.status} ${a.candidates.slice(0, 2).map((c) => `${c.capability} ${c.confidence}`).join(', ')}`]);
  if (a.candidates.slice(0, 3).some((c) => c.capability === it.expect)) p.p3++;
}

// Leak check: a phrase added from the tuning part (TUNED) whose words all appear in a
// held-out intent of its skill, and in no tuning intent of it, would make the held-out
// part less than held out. (The taxonomy's own phrases were written before the set.)
const leaks = [];
for (const [name, phrases] of Object.entries(TUNED)) {
  const own = items.filter((it) => it.expect === name).map((it) => ({ part: it.part, words: new Set(terms(it.text)) }));
  for (const phrase of phrases) {
    const ws = terms(phrase);
    const inside = (part) => ws.length > 0 && own.some((o) => o.part === part && ws.every((w) => o.words.has(w)));
    if (inside('held-out') && !inside('tuning')) leaks.push(`${name}: ${phrase}`);
  }
}

// Overlap check: held-out intents whose every word is in one example request of the
// taxonomy. The examples were written without sight of the set; a few short, common
// requests still land on one.
const examples = resolver.taxonomy.entries.flatMap((e) => (e.utterances ?? []).map((u) => new Set(terms(u))));
const covered = items.filter((it) => it.part === 'held-out').filter((it) => {
  const ws = terms(it.text);
  return ws.length > 0 && examples.some((ex) => ws.every((w) => ex.has(w)));
});

// Near-duplicates: example requests of the taxonomy whose words and a labelled intent's
// are the same, or one holds all (three or more) of the other's. The vocabulary was
// written without sight of the set; those that came out close to it by chance were taken
// out, and this checks none is left.
const labelled = items.map((it) => new Set(terms(it.text))).filter((w) => w.size > 0);
const within = (a, b) => [...a].every((w) => b.has(w));
const nearDuplicates = examples.filter((ex) => ex.size > 0 && labelled.some((l) => (within(l, ex) && within(ex, l)) || (within(l, ex) && l.size >= 3) || (within(ex, l) && ex.size >= 3)));

// Time per intent: the whole set, several rounds, after a warm-up round.
for (const it of items) resolver.resolve(it.text);
const perIntent = [];
for (let r = 0; r < ROUNDS; r++) {
  const t = process.hrtime.bigint();
  for (const it of items) resolver.resolve(it.text);
  perIntent.push(Number(process.hrtime.bigint() - t) / 1e6 / items.length);
}
const median = [...perIntent].sort((a, b) => a - b)[Math.floor(perIntent.length / 2)];
const worst = [];
for (const it of items) {
  const t = process.hrtime.bigint();
  resolver.resolve(it.text);
  worst.push(Number(process.hrtime.bigint() - t) / 1e6);
}
worst.sort((a, b) => a - b);
const p99 = worst[Math.floor(worst.length * 0.99)];

const rate = (a, b) => (b ? a / b : 0);
const rows = Object.entries(parts).map(([name, p]) => ({ part: name, intents: p.inScope + p.outOfScope, p1: rate(p.p1, p.inScope), p3: rate(p.p3, p.inScope), oos: rate(p.rejected, p.outOfScope) }));
console.log(`\nIntent resolution: ${items.length} labelled intents (${items.filter((i) => i.expect === null).length} out of scope), taxonomy ${resolver.taxonomy.version} (${resolver.taxonomy.entries.length} entries), threshold ${resolver.threshold}, margin ${resolver.margin}`);
console.log(`${'part'.padEnd(10)} ${'intents'.padStart(7)} ${'precision@1'.padStart(12)} ${'precision@3'.padStart(12)} ${'out-of-scope rejected'.padStart(22)}`);
for (const r of rows) console.log(`${r.part.padEnd(10)} ${String(r.intents).padStart(7)} ${r.p1.toFixed(3).padStart(12)} ${r.p3.toFixed(3).padStart(12)} ${r.oos.toFixed(3).padStart(22)}`);
const held = rows.find((r) => r.part === 'held-out');
console.log(`\ntime per intent: median ${(median * 1000).toFixed(0)} µs over ${ROUNDS} rounds, p99 of single intents ${(p99 * 1000).toFixed(0)} µs`);
console.log(`targets (held-out): precision@1 ${held.p1.toFixed(3)} / ${TARGETS.p1} ${held.p1 >= TARGETS.p1 ? 'met' : 'NOT met'}; out-of-scope rejection ${held.oos.toFixed(3)} / ${TARGETS.oos} ${held.oos >= TARGETS.oos ? 'met' : 'NOT met'}; ${median.toFixed(3)} ms / ${TARGETS.ms} ms per intent ${median <= TARGETS.ms ? 'met' : 'NOT met'}`);
console.log(`taxonomy phrases found only in held-out intents (leaks): ${leaks.length}`);
console.log(`held-out intents whose every word is in one example request: ${covered.length} of ${items.filter((it) => it.part === 'held-out').length}`);
console.log(`example requests near-duplicating a labelled intent: ${nearDuplicates.length}`);
if (opts.verbose) {
  for (const [text, expect, got] of wrong) console.log(`  ${JSON.stringify(text)}: expected ${expect}, got ${got}`);
  for (const l of leaks) console.log(`  leak: ${l}`);
  for (const it of covered) console.log(`  covered by an example: ${JSON.stringify(it.text)}`);
}
if (!opts['no-write']) {
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'intent.json'), JSON.stringify({ date: new Date().toISOString(), taxonomy: resolver.taxonomy.version, threshold: resolver.threshold, margin: resolver.margin, parts: rows, msPerIntent: median, p99Ms: p99, leaks: leaks.length, heldOutCoveredByAnExample: covered.length, nearDuplicates: nearDuplicates.length }, null, 2) + '\n');
}
