// One JSON call to a dmsc server (a node or an AMC), as the node's AMC client and the CLI
// make them: Bearer auth, JSON in and out, and the server's ERR_DMSC_* error re-raised
// with its own code. `who` names the server in messages; an unreachable server is
// `unreachable` (ERR_DMSC_AMC_UNAVAILABLE for a node's AMC, ERR_DMSC_NOT_READY for the CLI).
import { getGlobalDispatcher, type Dispatcher } from 'undici';
import { DmscError, dmscError, type DmscErrorCode } from '../errors.js';

export interface JsonCall {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  /** Sent as `authorization: Bearer …` when given. */
  readonly bearer?: string;
  readonly body?: unknown;
  readonly timeoutMs: number;
  /** Aborts the call (its error is then `unreachable`, like any failed connection). */
  readonly signal?: AbortSignal;
}

export async function callJson<T>(origin: string, call: JsonCall, who: string, unreachable: DmscErrorCode, dispatcher: Dispatcher = getGlobalDispatcher()): Promise<T> {
  let res;
  try {
    res = await dispatcher.request({
      origin, method: call.method, path: call.path,
      headers: { ...(call.bearer !== undefined ? { authorization: `Bearer ${call.bearer}` } : {}), ...(call.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(call.body !== undefined ? { body: JSON.stringify(call.body) } : {}),
      headersTimeout: call.timeoutMs, bodyTimeout: call.timeoutMs, ...(call.signal ? { signal: call.signal } : {}),
    });
  } catch (e) {
    throw new DmscError(unreachable, `cannot reach ${who} at ${origin}: ${(e as Error).message}`);
  }
  const text = await res.body.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    throw new DmscError(unreachable, `${who} at ${origin} answered ${res.statusCode} with a body that is not JSON; is that a dmsc server?`);
  }
  if (res.statusCode >= 400) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    // The CLI shows the server's message as is; the node says it came from its AMC.
    throw dmscError(err?.code ?? 'ERR_DMSC_INTERNAL', `${who === 'server' ? '' : `${who}: `}${err?.message ?? `HTTP ${res.statusCode}`}`);
  }
  return json as T;
}
