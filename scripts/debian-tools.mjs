// Installs system tools from Debian's packages when they are missing (as root, or
// through sudo), for the scripts that need them: the tests (openssl) and benchmarks
// (wrk, nginx). Exits with a message naming the packages if it cannot.
import { spawnSync } from 'node:child_process';

/** `tools`: [{ command, pkg }]; `who` names the caller in messages. */
export function ensureTools(tools, who) {
  const has = (command) => spawnSync('sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command}`], { stdio: 'ignore' }).status === 0;
  const missing = tools.filter((t) => !has(t.command));
  if (!missing.length) return;
  const pkgs = missing.map((t) => t.pkg);
  console.error(`${who}: installing ${pkgs.join(', ')} (apt-get)`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const run = (args) => {
    const [cmd, ...rest] = [...sudo, ...args];
    return spawnSync(cmd, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status;
  };
  if (run(['apt-get', 'update', '-qq']) !== 0 || run(['apt-get', 'install', '-y', '-qq', ...pkgs]) !== 0) {
    console.error(`${who}: could not install ${pkgs.join(', ')}; install them (Debian: apt-get install ${pkgs.join(' ')}) and run again`);
    process.exit(1);
  }
}
