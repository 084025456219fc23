// Installs system tools from Debian's packages when they are missing (as root, or
// through sudo), for the scripts that need them: the tests (openssl, protoc, Python's
// grpcio) and benchmarks (wrk, nginx). Exits with a message naming the packages if it cannot.
import { spawnSync } from 'node:child_process';

const sh = (script) => spawnSync('sh', ['-c', script], { stdio: 'ignore' }).status === 0;

/**
 * `tools`: [{ command | check, pkg }]. `command` is a program looked for on PATH (or in
 * /usr/sbin); `check` is a shell command that succeeds when the tool is there (for what
 * is not a program, such as a Python module). `pkg` is a package name or a list of them.
 * `who` names the caller in messages.
 */
export function ensureTools(tools, who) {
  const present = (t) => (t.check !== undefined ? sh(t.check) : sh(`command -v ${t.command} || test -x /usr/sbin/${t.command}`));
  const missing = tools.filter((t) => !present(t));
  if (!missing.length) return;
  const pkgs = [...new Set(missing.flatMap((t) => [t.pkg].flat()))];
  console.error(`${who}: installing ${pkgs.join(', ')} (apt-get)`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const run = (args) => {
    const [cmd, ...rest] = [...sudo, ...args];
    return spawnSync(cmd, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status;
  };
  const fail = (why) => {
    console.error(`${who}: ${why}; install them (Debian: apt-get install ${pkgs.join(' ')}) and run again`);
    process.exit(1);
  };
  if (run(['apt-get', 'update', '-qq']) !== 0 || run(['apt-get', 'install', '-y', '-qq', ...pkgs]) !== 0) fail(`could not install ${pkgs.join(', ')}`);
  // A package that installed but left its check failing (a `check` naming another
  // interpreter, say) would otherwise show up later as a confusing test failure.
  const still = missing.filter((t) => !present(t));
  if (still.length) fail(`installed ${pkgs.join(', ')}, but ${still.map((t) => t.command ?? t.check).join('; ')} still fails`);
}
