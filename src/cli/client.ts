// How CLI commands reach a running node or AMC: its URL and the admin token, read from
// --token-file, DMSC_ADMIN_TOKEN, or the server's data directory (`--data`, default
// ./.dmsc/node-1, or ./.dmsc/amc for commands aimed at a standalone AMC). Error bodies become DmscErrors with the server's code.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { request } from 'undici';
import { DmscError, DmscTypeError, dmscError } from '../errors.js';
import { parseUrl } from '../node/config.js';

export interface ClientOptions {
  url: string;
  data: string;
  tokenFile?: string;
}

/** Adds --url, --data and --token-file to a command that calls a server. */
export function withServer(cmd: Command, server: 'node' | 'amc' = 'node'): Command {
  const [url, data] = server === 'amc' ? ['http://127.0.0.1:7060', '.dmsc/amc'] : ['http://127.0.0.1:7070', '.dmsc/node-1'];
  return cmd
    .addOption(new Option('--url <url>', `the ${server === 'amc' ? 'AMC' : 'node (or AMC)'} to talk to`).default(url).env('DMSC_URL'))
    .addOption(new Option('--data <dir>', "the server's data directory, where its admin token is").default(data))
    .option('--token-file <file>', 'file holding the admin token (or set DMSC_ADMIN_TOKEN)');
}

function adminToken(o: ClientOptions): string {
  const env = process.env['DMSC_ADMIN_TOKEN'];
  if (o.tokenFile === undefined && env) return env;
  const file = o.tokenFile ?? join(resolve(o.data), 'admin-token');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `cannot read the admin token from ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); pass --data DIR or --token-file FILE`);
  }
}

/** Calls the server's admin API and returns the parsed JSON body (null for 204). */
export async function call(o: ClientOptions, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
  const base = parseUrl(o.url, '--url');
  const token = adminToken(o);
  let res;
  try {
    res = await request(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
  } catch (e) {
    throw new DmscError('ERR_DMSC_NOT_READY', `cannot reach ${base}: ${(e as Error).message}`);
  }
  const text = await res.body.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    throw new DmscError('ERR_DMSC_INTERNAL', `${base} answered ${res.statusCode} with a body that is not JSON; is --url a dmsc node or AMC?`);
  }
  if (res.statusCode >= 400) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw dmscError(err?.code ?? 'ERR_DMSC_INTERNAL', err?.message ?? `HTTP ${res.statusCode}`);
  }
  return json;
}

export function print(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}
