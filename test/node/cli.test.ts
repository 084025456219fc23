// The dmsc command's offline tools and its error conventions.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const dmsc = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe('dmsc CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmsc-cli-'));
    await writeFile(join(dir, 'fib.json'), JSON.stringify([{ op: 'upsert', prefix: '/capability/ocr', nextHops: [{ id: 'a', tags: ['gdpr'] }, { id: 'b', priority: 1 }] }]));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('has --help on every command', () => {
    for (const cmd of [[], ['node'], ['fib'], ['fib', 'check'], ['fib', 'lookup'], ['bench'], ['doctor']]) {
      const r = dmsc(...cmd, '--help');
      expect(r.status, cmd.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage: dmsc');
    }
  });

  it('checks names', () => {
    const r = dmsc('fib', 'check', '/capability/ocr', '/bad/');
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('ok      "/capability/ocr"');
    expect(r.stdout).toContain("invalid \"/bad/\": name must not end with '/'");
  });

  it('looks names up in a FIB file with both implementations alike', () => {
    for (const table of ['native', 'reference']) {
      const r = dmsc('fib', 'lookup', '--fib', join(dir, 'fib.json'), '--table', table, '--require', 'gdpr', '/capability/ocr/x', '/none');
      expect(r.status).toBe(0);
      expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([
        { name: '/capability/ocr/x', prefix: '/capability/ocr', nextHop: 'a', failover: false },
        { name: '/none', nextHop: null },
      ]);
    }
  });

  it('reports errors with their code and exits non-zero', () => {
    const r = dmsc('fib', 'lookup', '--fib', join(dir, 'missing.json'), '/a');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^dmsc: ERR_DMSC_INVALID_CONFIG: cannot read FIB file/);
    expect(dmsc('node', '--api', 'nonsense').stderr).toContain('ERR_DMSC_INVALID_CONFIG');
    expect(dmsc('frobnicate').status).toBe(2);
    expect(dmsc('doctor').stdout).toContain('native fast path: ok');
  });
});
