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
    const commands = [
      [], ['node'], ['amc'], ['amc', 'rotate-key'], ['amc', 'gateway'], ['amc', 'gateway', 'add'],
      ['provider'], ['provider', 'add'], ['provider', 'list'], ['agent'], ['agent', 'list'], ['agent', 'show'], ['agent', 'revoke'],
      ['aic'], ['aic', 'check'], ['policy'], ['policy', 'get'], ['policy', 'set'], ['policy', 'history'],
      ['fib'], ['fib', 'check'], ['fib', 'lookup'], ['fib', 'show'], ['bench'], ['doctor'],
    ];
    for (const cmd of commands) {
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

  it('checks AICs offline', () => {
    const ok = dmsc('aic', 'check', 'node-1:acme:42:y4');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain('ok      node-1:acme:42:y4 (registry node-1, provider acme, serial 42)');
    const bad = dmsc('aic', 'check', 'node-1:acme:42:y4', 'node-1:acme:24:y4');
    expect(bad.status).toBe(1);
    expect(bad.stdout).toContain('invalid node-1:acme:24:y4: check code mismatch');
  });

  it('says where the admin token was looked for when it is missing', () => {
    const r = dmsc('provider', 'list', '--data', join(dir, 'nowhere'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^dmsc: ERR_DMSC_INVALID_CONFIG: cannot read the admin token from .*nowhere\/admin-token/);
    expect(dmsc('provider', 'add', 'x', '--data', dir).stderr).toContain('ERR_DMSC_INVALID_ARGUMENT: a provider needs at least one --scope');
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
