// Real `dmsc` processes on loopback for end-to-end tests: each gets a temp data directory
// and port 0, and is killed (and its directory removed) by `cleanup()`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { request } from 'undici';
import type { JWK } from 'jose';
import { newSigningKey, peekClaim, signingKey } from '../../src/identity/jwt.js';
import type { SessionOptions } from '../../src/mesh/peer-session.js';

export const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;

export interface Proc {
  readonly url: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
  readonly token: string;
  /** HOST:PORT of a node's peering listener. */
  readonly peering?: string;
  /** URL of a node's data plane. */
  readonly dataplane?: string;
  /** HOST:PORT of a node's TLS data-plane listener for peers, when it has one. */
  readonly peerDataplane?: string;
  /** HOST:PORT of a node's FIB programming (gRPC) listener, unless it is off. */
  readonly fibApi?: string;
  /** What the process has logged so far (its last 1 MiB). */
  stderr(): string;
  /** SIGKILL, no chance to clean up. */
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
const dirs: string[] = [];
// If the test worker dies, its servers go with it.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** The environment without DMSC_* variables, so a developer's or CI's settings cannot leak in. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DMSC_')));
  return { ...env, DMSC_HINTS: '0', ...extra };
}

/** A loopback port free now (for a process that must keep its port across a restart). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export async function tempDir(prefix = 'dmsc-e2e-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** Starts `dmsc <command> --api 127.0.0.1:0 --data DIR ...args` and waits for its listening line. */
export async function start(command: 'node' | 'amc', args: string[] = [], dataDir?: string, env: Record<string, string> = {}): Promise<Proc> {
  const dir = dataDir ?? (await tempDir());
  const ports = command === 'node' ? ['--api', '127.0.0.1:0', '--peering', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', '--fib-api', '127.0.0.1:0'] : ['--api', '127.0.0.1:0'];
  const child = spawn(process.execPath, [CLI, command, ...ports, '--data', dir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(env),
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`dmsc ${command} exited ${code}: ${stderr}`)));
  });
  const info = JSON.parse(line) as { msg: string; api: string; peering?: string; dataplane?: string; peerDataplane?: string; fibApi?: string };
  if (info.msg !== 'listening') throw new Error(`unexpected first line: ${line}`);
  const token = (await readFile(join(dir, 'admin-token'), 'utf8')).trim();
  return {
    url: `http://${info.api}`, dataDir: dir, child, token, ...(info.peering ? { peering: info.peering } : {}), ...(info.dataplane ? { dataplane: `http://${info.dataplane}` } : {}),
    ...(info.peerDataplane ? { peerDataplane: info.peerDataplane } : {}), ...(info.fibApi ? { fibApi: info.fibApi } : {}),
    stderr: () => stderr,
    async kill9() {
      child.kill('SIGKILL');
      await exited(child);
    },
    async stop() {
      child.kill('SIGTERM');
      await exited(child);
    },
  };
}

/**
 * Whether a process has logged a line (JSON, one a line) whose fields match: a string
 * or number equal, a RegExp that matches. With `count`, at least that many such lines.
 */
export function logged(p: Proc, fields: Record<string, string | number | RegExp>, count = 1): boolean {
  let n = 0;
  for (const line of p.stderr().split('\n')) {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (Object.entries(fields).every(([k, want]) => (want instanceof RegExp ? typeof o[k] === 'string' && want.test(o[k]) : o[k] === want))) n++;
  }
  return n >= count;
}

/** Starts a helper script as its own process; resolves with the JSON of its first line. Killed by `cleanup()`. */
export async function startScript<T = any>(script: string, args: string[] = []): Promise<{ info: T; child: ChildProcess; kill9(): Promise<void> }> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: cleanEnv() });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
  return {
    info: JSON.parse(line) as T, child,
    async kill9() {
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}

export async function cleanup(): Promise<void> {
  for (const c of live) c.kill('SIGKILL');
  await Promise.all([...live].map(exited));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export interface Reply<T = any> {
  status: number;
  body: T;
}

/** One HTTP call; `auth` is the Bearer value. A string body is sent as is. */
export async function api<T = any>(url: string, method: string, path: string, opts: { auth?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply<T>> {
  const headers: Record<string, string> = { ...(opts.auth ? { authorization: `Bearer ${opts.auth}` } : {}), ...opts.headers };
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await request(url + path, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : null };
}

/** Runs the dmsc CLI synchronously. */
export function dmsc(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: cleanEnv({}) });
}

/** Adds a provider through the admin API; returns its key. */
export async function addProvider(p: Proc, name: string, scopes: string[]): Promise<string> {
  const r = await api(p.url, 'POST', '/v1/providers', { auth: p.token, body: { name, scopes } });
  if (r.status !== 201) throw new Error(`provider add: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.key;
}

export interface Registered {
  aic: string;
  credential: string;
}

export async function register(p: Proc, key: string, capabilities: { name: string; attributes?: Record<string, unknown>; weight?: number; priority?: number }[], endpoint = 'http://127.0.0.1:9000'): Promise<Registered & { body: any }> {
  const r = await api(p.url, 'POST', '/v1/agents', { auth: key, body: { endpoint, capabilities } });
  if (r.status !== 201) throw new Error(`register: ${r.status} ${JSON.stringify(r.body)}`);
  return { aic: r.body.aic, credential: r.body.credential, body: r.body };
}

/**
 * Polls `check` every 20 ms until it returns true; throws unless that happens by
 * `deadline` (epoch ms; a check that started before it and then succeeds counts).
 */
export async function waitUntil(check: () => Promise<boolean> | boolean, deadline: number): Promise<void> {
  for (;;) {
    const started = Date.now();
    if (await check()) return;
    if (started > deadline) throw new Error(`condition not met by the deadline (${started - deadline} ms late)`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `waitUntil` with a deadline `ms` from now. */
export function waitFor(check: () => Promise<boolean> | boolean, ms = 5000): Promise<void> {
  return waitUntil(check, Date.now() + ms);
}

/**
 * A throwaway CA and one certificate it signed for 127.0.0.1 and localhost (openssl,
 * which `npm test` makes sure is installed); returns the PEM file paths.
 */
export async function makeCerts(dir: string): Promise<{ ca: string; cert: string; key: string; otherCa: string }> {
  const run = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.error?.message ?? r.stderr}`);
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=dmsc test CA');
  run('req', '-x509', ...ec, '-keyout', 'other-ca.key', '-out', 'other-ca.pem', '-days', '1', '-subj', '/CN=another CA');
  run('req', ...ec, '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=dmsc node');
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run('x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.pem', '-days', '1', '-extfile', 'san.ext');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'node.pem'), key: join(dir, 'node.key'), otherCa: join(dir, 'other-ca.pem') };
}

/**
 * A gateway spoken by hand in a test: a fresh Ed25519 key, certified by the AMC at
 * `amcUrl` for the gateway whose AMC key is `gatewayKey` (what `dmsc amc gateway add`
 * prints). Returns the session options to dial a node as that gateway; the node's own
 * certificate is taken at its word (the node is what the test checks).
 */
export async function handGateway(amcUrl: string, gatewayKey: string, id: string, domain: string, extra: Partial<SessionOptions> = {}): Promise<SessionOptions> {
  const key = signingKey(newSigningKey(`gw-${id}`));
  const r = await api(amcUrl, 'POST', '/v1/amc/grant-key', { auth: gatewayKey, body: { jwk: key.publicJwk } });
  if (r.status !== 200) throw new Error(`grant-key: ${r.status} ${JSON.stringify(r.body)}`);
  const certificate = r.body.credential as string;
  return {
    role: 'dialler', local: { gateway: id, domain }, holdMs: 30_000,
    credentials: () => ({ certificate, privateKey: key.privateKey }),
    certified: async (cert) => (peekClaim(cert, 'cnf') as { jwk: JWK }).jwk,
    ...extra,
  };
}
