// Configuration of one node: defaults bind loopback only; every value is checked here so
// a bad flag fails at start with ERR_DMSC_INVALID_CONFIG, not later.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DmscTypeError } from '../errors.js';
import type { FibOp } from '../fastpath/types.js';

export interface Listen {
  readonly host: string;
  readonly port: number;
}

export interface NodeConfig {
  readonly id: string;
  readonly dataDir: string;
  readonly api: Listen;
  /** A JSON file holding an array of FIB operations to apply at start. */
  readonly fibFile?: string;
}

export const DEFAULT_API: Listen = { host: '127.0.0.1', port: 7070 };
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function invalid(message: string): DmscTypeError {
  return new DmscTypeError('ERR_DMSC_INVALID_CONFIG', message);
}

/** Parses HOST:PORT (IPv6 as [::1]:PORT); port 0 picks a free port. */
export function parseListen(value: string, flag: string): Listen {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw invalid(`${flag} must be HOST:PORT with a port from 0 to 65535, got '${value}'`);
  return { host: m[1] ?? m[2]!, port };
}

export function nodeConfig(options: { id?: string; data?: string; api?: string; fib?: string }): NodeConfig {
  const id = options.id ?? 'node-1';
  if (!NODE_ID.test(id)) throw invalid(`--id must be 1 to 63 letters, digits, '.', '_' or '-', got '${id}'`);
  return {
    id,
    dataDir: resolve(options.data ?? `.dmsc/${id}`),
    api: options.api === undefined ? DEFAULT_API : parseListen(options.api, '--api'),
    ...(options.fib !== undefined ? { fibFile: resolve(options.fib) } : {}),
  };
}

/** Reads a FIB file: a JSON array of operations (validated by the table when applied). */
export async function readFibFile(path: string): Promise<FibOp[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw invalid(`cannot read FIB file ${path}: ${(e as Error).message}`);
  }
  let ops: unknown;
  try {
    ops = JSON.parse(text);
  } catch (e) {
    throw invalid(`FIB file ${path} is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(ops)) throw invalid(`FIB file ${path} must hold a JSON array of operations`);
  return ops as FibOp[];
}
