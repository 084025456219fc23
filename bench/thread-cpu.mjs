// A thread's CPU time, as the kernel counts it: utime + stime, fields 14 and 15 of its
// stat file (after the command name, which may hold spaces), in clock ticks.
import { readFileSync } from 'node:fs';

/** `stat`: the thread's stat file, e.g. /proc/thread-self/stat. */
export function cpuTicks(stat) {
  const text = readFileSync(stat, 'latin1');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
