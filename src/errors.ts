/**
 * Errors of dmsc. Every error carries a literal `code` (`ERR_DMSC_*`) and the HTTP status
 * it maps to; the same code appears in HTTP error bodies, CLI messages and log lines.
 *
 * Argument errors are real `TypeError`/`RangeError` instances (what Node users expect from
 * bad arguments), and `instanceof DmscError` is true for them as well as for plain
 * `DmscError`s.
 */

export type DmscErrorCode =
  | 'ERR_DMSC_INVALID_NAME'
  | 'ERR_DMSC_INVALID_ARGUMENT'
  | 'ERR_DMSC_OUT_OF_RANGE'
  | 'ERR_DMSC_LIMIT_EXCEEDED'
  | 'ERR_DMSC_DUPLICATE_NEXT_HOP'
  | 'ERR_DMSC_INVALID_OFFSETS'
  | 'ERR_DMSC_MALFORMED_BATCH'
  | 'ERR_DMSC_INVALID_TOKEN'
  | 'ERR_DMSC_READ_ONLY'
  | 'ERR_DMSC_CLOSED'
  | 'ERR_DMSC_BUSY'
  | 'ERR_DMSC_NO_MEMORY'
  | 'ERR_DMSC_NATIVE_UNAVAILABLE'
  | 'ERR_DMSC_UNAUTHORIZED'
  | 'ERR_DMSC_NOT_FOUND'
  | 'ERR_DMSC_NOT_READY'
  | 'ERR_DMSC_UNAVAILABLE'
  | 'ERR_DMSC_INVALID_CONFIG'
  | 'ERR_DMSC_INVALID_AIC'
  | 'ERR_DMSC_INVALID_POLICY'
  | 'ERR_DMSC_INVALID_BODY'
  | 'ERR_DMSC_PAYLOAD_TOO_LARGE'
  | 'ERR_DMSC_FORBIDDEN'
  | 'ERR_DMSC_CONFLICT'
  | 'ERR_DMSC_AMC_UNAVAILABLE'
  | 'ERR_DMSC_NO_ROUTE'
  | 'ERR_DMSC_FRAME_TOO_LARGE'
  | 'ERR_DMSC_MALFORMED_FRAME'
  | 'ERR_DMSC_BAD_HANDSHAKE'
  | 'ERR_DMSC_HOLD_EXPIRED'
  | 'ERR_DMSC_PEER_CLOSED'
  | 'ERR_DMSC_TTL_EXPIRED'
  | 'ERR_DMSC_LOOP'
  | 'ERR_DMSC_PEER_TIMEOUT'
  | 'ERR_DMSC_UPSTREAM_FAILED'
  | 'ERR_DMSC_GRANT_INVALID'
  | 'ERR_DMSC_GRANT_EXPIRED'
  | 'ERR_DMSC_GRANT_WRONG_TARGET'
  | 'ERR_DMSC_GRANT_REPLAYED'
  | 'ERR_DMSC_SESSION_REJECTED'
  | 'ERR_DMSC_SESSION_CLOSED'
  | 'ERR_DMSC_SESSION_TIMEOUT'
  | 'ERR_DMSC_SESSION_PROTOCOL'
  | 'ERR_DMSC_TIMEOUT'
  | 'ERR_DMSC_CANCELLED'
  | 'ERR_DMSC_UNKNOWN_CAPABILITY'
  | 'ERR_DMSC_NO_MATCH'
  | 'ERR_DMSC_AMBIGUOUS_INTENT'
  | 'ERR_DMSC_MALFORMED_REQUEST'
  | 'ERR_DMSC_REQUEST_TIMEOUT'
  | 'ERR_DMSC_METHOD_NOT_ALLOWED'
  | 'ERR_DMSC_HEADERS_TOO_LARGE'
  | 'ERR_DMSC_NOT_IMPLEMENTED'
  | 'ERR_DMSC_HTTP_VERSION'
  | 'ERR_DMSC_RATE_LIMITED'
  | 'ERR_DMSC_LISTEN'
  | 'ERR_DMSC_NOT_PRIMARY'
  | 'ERR_DMSC_GENERATION_MISMATCH'
  | 'ERR_DMSC_BATCH_REJECTED'
  | 'ERR_DMSC_INTERNAL';

interface CodeInfo {
  kind: 'type' | 'range' | 'error';
  status: number;
}

const CODES: Record<DmscErrorCode, CodeInfo> = {
  ERR_DMSC_INVALID_NAME: { kind: 'type', status: 400 },
  ERR_DMSC_INVALID_ARGUMENT: { kind: 'type', status: 400 },
  ERR_DMSC_OUT_OF_RANGE: { kind: 'range', status: 400 },
  ERR_DMSC_LIMIT_EXCEEDED: { kind: 'range', status: 413 },
  ERR_DMSC_DUPLICATE_NEXT_HOP: { kind: 'type', status: 400 },
  ERR_DMSC_INVALID_OFFSETS: { kind: 'range', status: 400 },
  ERR_DMSC_MALFORMED_BATCH: { kind: 'type', status: 400 },
  ERR_DMSC_INVALID_TOKEN: { kind: 'type', status: 400 },
  ERR_DMSC_READ_ONLY: { kind: 'type', status: 405 },
  ERR_DMSC_CLOSED: { kind: 'error', status: 503 },
  ERR_DMSC_BUSY: { kind: 'error', status: 409 },
  ERR_DMSC_NO_MEMORY: { kind: 'error', status: 507 },
  ERR_DMSC_NATIVE_UNAVAILABLE: { kind: 'error', status: 500 },
  ERR_DMSC_UNAUTHORIZED: { kind: 'error', status: 401 },
  ERR_DMSC_NOT_FOUND: { kind: 'error', status: 404 },
  ERR_DMSC_NOT_READY: { kind: 'error', status: 503 },
  // A node that cannot be reached, or a stream to it that broke: a request in flight may or may not have been applied.
  ERR_DMSC_UNAVAILABLE: { kind: 'error', status: 503 },
  ERR_DMSC_INVALID_CONFIG: { kind: 'type', status: 400 },
  ERR_DMSC_INVALID_AIC: { kind: 'type', status: 400 },
  ERR_DMSC_INVALID_POLICY: { kind: 'type', status: 400 },
  ERR_DMSC_INVALID_BODY: { kind: 'type', status: 400 },
  ERR_DMSC_PAYLOAD_TOO_LARGE: { kind: 'range', status: 413 },
  ERR_DMSC_FORBIDDEN: { kind: 'error', status: 403 },
  ERR_DMSC_CONFLICT: { kind: 'error', status: 409 },
  ERR_DMSC_AMC_UNAVAILABLE: { kind: 'error', status: 503 },
  ERR_DMSC_NO_ROUTE: { kind: 'error', status: 404 },
  ERR_DMSC_FRAME_TOO_LARGE: { kind: 'range', status: 413 },
  ERR_DMSC_MALFORMED_FRAME: { kind: 'type', status: 400 },
  ERR_DMSC_BAD_HANDSHAKE: { kind: 'error', status: 401 },
  ERR_DMSC_HOLD_EXPIRED: { kind: 'error', status: 504 },
  ERR_DMSC_PEER_CLOSED: { kind: 'error', status: 502 },
  ERR_DMSC_TTL_EXPIRED: { kind: 'error', status: 508 },
  ERR_DMSC_LOOP: { kind: 'error', status: 508 },
  ERR_DMSC_PEER_TIMEOUT: { kind: 'error', status: 504 },
  ERR_DMSC_UPSTREAM_FAILED: { kind: 'error', status: 502 },
  ERR_DMSC_GRANT_INVALID: { kind: 'error', status: 401 },
  ERR_DMSC_GRANT_EXPIRED: { kind: 'error', status: 401 },
  ERR_DMSC_GRANT_WRONG_TARGET: { kind: 'error', status: 403 },
  ERR_DMSC_GRANT_REPLAYED: { kind: 'error', status: 409 },
  ERR_DMSC_SESSION_REJECTED: { kind: 'error', status: 403 },
  ERR_DMSC_SESSION_CLOSED: { kind: 'error', status: 410 },
  ERR_DMSC_SESSION_TIMEOUT: { kind: 'error', status: 504 },
  ERR_DMSC_SESSION_PROTOCOL: { kind: 'error', status: 400 },
  ERR_DMSC_TIMEOUT: { kind: 'error', status: 504 },
  ERR_DMSC_CANCELLED: { kind: 'error', status: 409 },
  ERR_DMSC_UNKNOWN_CAPABILITY: { kind: 'error', status: 400 },
  ERR_DMSC_NO_MATCH: { kind: 'error', status: 404 },
  ERR_DMSC_AMBIGUOUS_INTENT: { kind: 'error', status: 409 },
  ERR_DMSC_MALFORMED_REQUEST: { kind: 'error', status: 400 },
  ERR_DMSC_REQUEST_TIMEOUT: { kind: 'error', status: 408 },
  ERR_DMSC_METHOD_NOT_ALLOWED: { kind: 'error', status: 405 },
  ERR_DMSC_HEADERS_TOO_LARGE: { kind: 'error', status: 431 },
  ERR_DMSC_NOT_IMPLEMENTED: { kind: 'error', status: 501 },
  ERR_DMSC_HTTP_VERSION: { kind: 'error', status: 505 },
  ERR_DMSC_RATE_LIMITED: { kind: 'error', status: 429 },
  ERR_DMSC_LISTEN: { kind: 'error', status: 500 },
  // FIB programming: another controller is primary; the controller's table moved on; a batch had bad ops.
  ERR_DMSC_NOT_PRIMARY: { kind: 'error', status: 409 },
  ERR_DMSC_GENERATION_MISMATCH: { kind: 'error', status: 409 },
  ERR_DMSC_BATCH_REJECTED: { kind: 'error', status: 422 },
  ERR_DMSC_INTERNAL: { kind: 'error', status: 500 },
};

/** Base class of dmsc errors; also matches the TypeError/RangeError ones via `instanceof`. */
export class DmscError extends Error {
  readonly code: DmscErrorCode;
  readonly status: number;
  /** Structured detail for the HTTP error body (for example the denied capabilities). */
  readonly details?: unknown;
  constructor(code: DmscErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'DmscError';
    this.code = code;
    this.status = CODES[code]?.status ?? 500;
    if (details !== undefined) this.details = details;
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    const code = value instanceof Error ? (value as unknown as { code?: unknown }).code : undefined;
    return typeof code === 'string' && Object.hasOwn(CODES, code);
  }
}

/** A bad argument type or value, with a `code`. */
export class DmscTypeError extends TypeError {
  readonly code: DmscErrorCode;
  readonly status: number;
  constructor(code: DmscErrorCode, message: string) {
    super(message);
    this.name = 'TypeError';
    this.code = code;
    this.status = CODES[code]?.status ?? 400;
  }
}

/** A numeric argument or size out of its range, with a `code`. */
export class DmscRangeError extends RangeError {
  readonly code: DmscErrorCode;
  readonly status: number;
  constructor(code: DmscErrorCode, message: string) {
    super(message);
    this.name = 'RangeError';
    this.code = code;
    this.status = CODES[code]?.status ?? 400;
  }
}

/** Builds the error of the right class for a code (also used by the native addon). */
export function dmscError(code: string, message: string): Error {
  const info = CODES[code as DmscErrorCode];
  const c = (info ? code : 'ERR_DMSC_INTERNAL') as DmscErrorCode;
  switch (info?.kind) {
    case 'type':
      return new DmscTypeError(c, message);
    case 'range':
      return new DmscRangeError(c, message);
    default:
      return new DmscError(c, message);
  }
}
