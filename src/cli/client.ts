// How CLI commands reach a running node or AMC: its URL and the admin token, read from
// --token-file, DMSC_ADMIN_TOKEN, or the server's data directory (`--data`, default
// ./.dmsc/node-1, or ./.dmsc/amc for commands aimed at a standalone AMC). Error bodies become DmscErrors with the server's code.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { DmscTypeError } from '../errors.js';
import { callJson } from '../http/client.js';
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

/** The admin token: --token-file, DMSC_ADMIN_TOKEN, or the admin-token file in --data. */
export function adminToken(o: Pick<ClientOptions, 'data' | 'tokenFile'>): string {
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
export function call(o: ClientOptions, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
  const base = parseUrl(o.url, '--url');
  return callJson(base, { method, path, bearer: adminToken(o), body, timeoutMs: 10_000 }, 'server', 'ERR_DMSC_NOT_READY');
}

/** Calls a route anyone may read (no admin token needed). */
export function callPublic(o: Pick<ClientOptions, 'url'>, path: string): Promise<unknown> {
  return callJson(parseUrl(o.url, '--url'), { method: 'GET', path, timeoutMs: 10_000 }, 'server', 'ERR_DMSC_NOT_READY');
}

export function print(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}
