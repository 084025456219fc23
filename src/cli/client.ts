// How CLI commands reach a running node or AMC: its URL and the admin token, read from
// --token-file, DMSC_ADMIN_TOKEN, or the server's data directory (`--data`, default
// ./.dmsc/node-1). Error bodies become DmscErrors with the server's code.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { request } from 'undici';
import { DmscError, DmscTypeError, dmscError } from '../errors.js';
import { parseUrl } from '../node/config.js';

export interface ClientOptions {
  url: string;
  data?: string;
  tokenFile?: string;
}

/** Adds --url, --data and --token-file to a command that calls a server. */
export function withServer(cmd: Command, defaultUrl = 'http://127.0.0.1:7070'): Command {
  return cmd
    .addOption(new Option('--url <url>', 'the node (or AMC) to talk to').default(defaultUrl).env('DMSC_URL'))
    .option('--data <dir>', "the server's data directory, where its admin token is (default ./.dmsc/node-1)")
    .option('--token-file <file>', 'file holding the admin token (or set DMSC_ADMIN_TOKEN)');
}

function adminToken(o: ClientOptions): string {
  const env = process.env['DMSC_ADMIN_TOKEN'];
  if (o.tokenFile === undefined && o.data === undefined && env) return env;
  const file = o.tokenFile ?? join(resolve(o.data ?? '.dmsc/node-1'), 'admin-token');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `cannot read the admin token from ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); pass --data DIR or --token-file FILE`);
  }
}

/** Calls the server's admin API and returns the parsed JSON body (null for 204). */
export async function call(o: ClientOptions, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
  const base = parseUrl(o.url, '--url');
  let res;
  try {
    res = await request(base + path, {
      method,
      headers: { authorization: `Bearer ${adminToken(o)}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
  } catch (e) {
    throw new DmscError('ERR_DMSC_NOT_READY', `cannot reach ${base}: ${(e as Error).message}`);
  }
  const text = await res.body.text();
  const json = text ? (JSON.parse(text) as unknown) : null;
  if (res.statusCode >= 400) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw dmscError(err?.code ?? 'ERR_DMSC_INTERNAL', err?.message ?? `HTTP ${res.statusCode}`);
  }
  return json;
}

export function print(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}
