#!/usr/bin/env node
// Builds the native addon with node-gyp against the Node headers already on this machine.
// It never downloads headers: if none are found it stops and says where it looked.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function findHeaders() {
  const candidates = [
    process.env.npm_config_nodedir,
    process.env.DMSC_NODEDIR,
    resolve(dirname(process.execPath), '..'),
    '/usr',
    '/usr/local',
  ].filter(Boolean);
  for (const dir of candidates) {
    if (existsSync(join(dir, 'include', 'node', 'node_api.h'))) return { dir, candidates };
  }
  return { dir: null, candidates };
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  return { path: candidates.find((p) => existsSync(p)) ?? null, candidates };
}

const headers = findHeaders();
if (!headers.dir) {
  console.error(
    `dmsc: no Node.js headers found (looked for include/node/node_api.h under ${headers.candidates.join(', ')}).\n` +
      'Install the headers that match this Node (for Debian: the nodejs development package), ' +
      'or point DMSC_NODEDIR at a directory holding include/node.',
  );
  process.exit(1);
}
const gyp = findNodeGyp();
if (!gyp.path) {
  console.error(`dmsc: node-gyp not found (looked in ${gyp.candidates.join(', ')}). It ships with npm.`);
  process.exit(1);
}
const args = [gyp.path, 'rebuild', `--nodedir=${headers.dir}`, '--jobs=max'];
console.log(`dmsc: building the native fast path (headers from ${headers.dir})`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
