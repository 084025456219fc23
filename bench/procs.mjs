// The child processes and temp directories of a benchmark: a process is started and
// waited for by its first stdout line (JSON, which it returns); `cleanupAll` kills what
// is still running and removes the directories (also on exit).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const procs = [];
const dirs = [];

/** Starts `cmd args`; resolves with the child and the JSON of its first line. */
export async function startLine(cmd, args, env = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, DMSC_HINTS: '0', ...env } });
  procs.push(child);
  const line = await new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)));
  });
  return { child, info: JSON.parse(line) };
}

/**
 * Registers a process started elsewhere, to be stopped by `cleanupAll` with `signal`
 * (SIGTERM for a process with children of its own, such as nginx's master, which
 * SIGKILL would leave its workers behind).
 */
export function track(child, signal = 'SIGKILL') {
  procs.push(Object.assign(child, { stopSignal: signal }));
  return child;
}

/** A temp directory removed by `cleanupAll`. */
export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

export function cleanupAll() {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill(p.stopSignal ?? 'SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanupAll);
