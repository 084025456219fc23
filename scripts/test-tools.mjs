#!/usr/bin/env node
// Makes sure the system tools the tests use are on the machine, installing any that are
// missing from Debian's packages (as root, or through sudo). Today: openssl, which the
// peering TLS tests use to make a throwaway CA and certificates.
import { spawnSync } from 'node:child_process';

const tools = [{ command: 'openssl', pkg: 'openssl' }];
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

const missing = tools.filter((t) => !has(t.command));
if (missing.length) {
  const pkgs = missing.map((t) => t.pkg);
  console.log(`dmsc: installing ${pkgs.join(', ')} for the tests (apt-get)`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  const run = (args) => {
    const [cmd, ...rest] = [...sudo, ...args];
    return spawnSync(cmd, rest, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status;
  };
  if (run(['apt-get', 'update', '-qq']) !== 0 || run(['apt-get', 'install', '-y', '-qq', ...pkgs]) !== 0) {
    console.error(`dmsc: could not install ${pkgs.join(', ')}; install them (Debian: apt-get install ${pkgs.join(' ')}) and run the tests again`);
    process.exit(1);
  }
}
