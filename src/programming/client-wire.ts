// What FibClient receives: the wire's answers (decimal-string generations, upper-case
// enums) as plain TypeScript values, and the gRPC status of a failed call as the
// DmscError it means. What it sends is client-encode.ts's.
import { status, type ServiceError } from '@grpc/grpc-js';
import { DmscError, dmscError, type DmscErrorCode } from '../errors.js';
import type { HealthState } from '../fastpath/types.js';
import type { ControllerHop, ControllerOp } from './rib.js';
import type { HopState, WatchEvent } from './watch.js';
import { fromWire128, HEALTH_OF, type Status, type WireHealth, type WireNextHop, type WireResult, type WireUint128 } from './proto.js';

/** A next hop as a controller writes it: an AIC, `peer:<gateway>`, or a name with `endpoint`. */
export type FibClientNextHop = ControllerHop;
/** One op of a batch, in the `--fib` file format (plus `health`): what the node's HTTP batches take too. */
export type FibClientOp = ControllerOp;

/** The answer to one batch (or to a Replace's end). */
export interface BatchResult {
  readonly seq: number;
  readonly status: Status;
  /** The controller's table generation after the batch. */
  readonly generation: number;
  /** The node's FIB generation after the batch. */
  readonly fibGeneration: number;
  /** Every bad op of a REJECTED batch, by its index in the batch. */
  readonly errors: readonly { readonly opIndex: number; readonly code: string; readonly message: string }[];
  /** Why, for statuses other than VISIBLE and STAGED. */
  readonly message: string;
}

/** What the node limits a session to, from its `opened` answer. */
export interface FibLimits {
  readonly maxOpsPerBatch: number;
  readonly maxBytesPerBatch: number;
  /** Batches that may wait for their result at once; the client queues the rest. */
  readonly window: number;
}

/** The node's answer to `open`. */
export interface Opened {
  /** Whether this session is the controller's primary (only the primary's batches apply). */
  readonly primary: boolean;
  readonly primaryElectionId: bigint;
  readonly controllerId: string;
  /** The controller's table generation. */
  readonly generation: number;
  /** The node's FIB generation. */
  readonly fibGeneration: number;
  readonly limits: FibLimits;
}

/** A change of the controller's primary session, told to every open session. */
export interface PrimaryChange {
  readonly primary: boolean;
  readonly primaryElectionId: bigint;
  readonly primaryControllerId: string;
}

/** A next hop as the node's FIB holds it, in a watch event. */
export type WatchNextHop = HopState;
export type { WatchEvent };

/** A next hop read back from the node, in the file format: fields at their defaults left out. */
export function fromWireHop(h: WireNextHop): FibClientNextHop {
  return {
    id: h.id, ...(h.weight !== undefined && h.weight !== null ? { weight: h.weight } : {}), ...(h.priority ? { priority: h.priority } : {}),
    ...(h.tags.length > 0 ? { tags: h.tags } : {}), ...(h.endpoint ? { endpoint: h.endpoint } : {}),
  };
}

export const toState = (s: WireHealth | string): HealthState => HEALTH_OF[s] ?? 'up';

export interface WireOpened {
  primary: boolean;
  primaryElectionId: WireUint128 | null;
  controllerId: string;
  generation: string;
  fibGeneration: string;
  limits: { maxOpsPerBatch: number; maxBytesPerBatch: number; window: number } | null;
}

export function fromWireOpened(o: WireOpened): Opened {
  const l = o.limits;
  return {
    primary: o.primary, primaryElectionId: fromWire128(o.primaryElectionId), controllerId: o.controllerId,
    generation: Number(o.generation), fibGeneration: Number(o.fibGeneration),
    limits: { maxOpsPerBatch: l?.maxOpsPerBatch ?? 0, maxBytesPerBatch: l?.maxBytesPerBatch ?? 0, window: l?.window ?? 0 },
  };
}

export function fromWireResult(r: WireResult): BatchResult {
  return {
    seq: Number(r.seq), status: r.status, generation: Number(r.generation), fibGeneration: Number(r.fibGeneration),
    errors: r.errors.map((e) => ({ opIndex: e.opIndex, code: e.code, message: e.message })), message: r.message,
  };
}

interface WireNextHopState {
  id: string;
  weight: number;
  priority: number;
  tags: string[];
  state: WireHealth;
  load: number;
}

export interface WireWatchResponse {
  change: 'entry' | 'health' | 'endOfSnapshot';
  entry?: { generation: string; prefix: string; removed: boolean; nextHops: WireNextHopState[]; last: boolean; epoch: string } | null;
  health?: { nextHopId: string; state: WireHealth; load: number; generation: string } | null;
  endOfSnapshot?: { generation: string; epoch: string } | null;
}

export function fromWireWatch(m: WireWatchResponse): WatchEvent {
  if (m.change === 'entry' && m.entry) {
    const e = m.entry;
    return {
      type: 'entry', generation: Number(e.generation), prefix: e.prefix, removed: e.removed, last: !!e.last, epoch: Number(e.epoch ?? 0),
      nextHops: e.nextHops.map((h) => ({ id: h.id, weight: h.weight, priority: h.priority, tags: h.tags, state: toState(h.state), load: h.load })),
    };
  }
  if (m.change === 'health' && m.health) {
    const h = m.health;
    return { type: 'health', generation: Number(h.generation), nextHopId: h.nextHopId, state: toState(h.state), load: h.load };
  }
  return { type: 'end_of_snapshot', generation: Number(m.endOfSnapshot?.generation ?? 0), epoch: Number(m.endOfSnapshot?.epoch ?? 0) };
}

// gRPC statuses after which a new attempt cannot succeed as it stands (a bad key, a bad
// `open`, a server without the service); any other failure may be the network or a restart.
const PERMANENT = new Set<number>([
  status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.INVALID_ARGUMENT, status.FAILED_PRECONDITION,
  status.OUT_OF_RANGE, status.NOT_FOUND, status.UNIMPLEMENTED,
]);

export function isPermanent(e: unknown): boolean {
  const code = (e as { grpcCode?: unknown }).grpcCode;
  return typeof code === 'number' && PERMANENT.has(code);
}

const BY_STATUS: Partial<Record<number, DmscErrorCode>> = {
  [status.UNAUTHENTICATED]: 'ERR_DMSC_UNAUTHORIZED',
  [status.PERMISSION_DENIED]: 'ERR_DMSC_FORBIDDEN',
  [status.INVALID_ARGUMENT]: 'ERR_DMSC_INVALID_ARGUMENT',
  [status.OUT_OF_RANGE]: 'ERR_DMSC_OUT_OF_RANGE',
  [status.FAILED_PRECONDITION]: 'ERR_DMSC_CONFLICT',
  [status.ALREADY_EXISTS]: 'ERR_DMSC_CONFLICT',
  [status.NOT_FOUND]: 'ERR_DMSC_NOT_FOUND',
  [status.RESOURCE_EXHAUSTED]: 'ERR_DMSC_LIMIT_EXCEEDED',
  [status.UNIMPLEMENTED]: 'ERR_DMSC_NOT_IMPLEMENTED',
  [status.DEADLINE_EXCEEDED]: 'ERR_DMSC_TIMEOUT',
  [status.CANCELLED]: 'ERR_DMSC_CANCELLED',
  [status.UNAVAILABLE]: 'ERR_DMSC_UNAVAILABLE',
};

/**
 * The DmscError for a failed gRPC call to the node at `address`: the node's own
 * `ERR_DMSC_*` code when its message starts with one, else one for the gRPC status. The
 * status stays on the error as `grpcCode`.
 */
export function fromGrpc(e: unknown, address: string): Error {
  if (e instanceof DmscError) return e;
  const se = e as Partial<ServiceError>;
  if (typeof se.code !== 'number') return new DmscError('ERR_DMSC_INTERNAL', (e as Error)?.message ?? String(e));
  const details = se.details || (se.message ?? '');
  const own = /^(ERR_DMSC_[A-Z_]+):?\s*(.*)$/s.exec(details);
  const code = own ? own[1]! : BY_STATUS[se.code] ?? (se.code === status.INTERNAL || se.code === status.UNKNOWN ? 'ERR_DMSC_INTERNAL' : 'ERR_DMSC_UNAVAILABLE');
  const said = own ? own[2]! : details;
  const message = code === 'ERR_DMSC_UNAUTHORIZED' ? `the node at ${address} refused the key: ${said}`
    : !own && code === 'ERR_DMSC_UNAVAILABLE' ? `cannot reach the FIB API at ${address}: ${said}`
    : !own && code === 'ERR_DMSC_NOT_IMPLEMENTED' ? `${address} does not serve dmsc.fib.v1 (${said}); is that a dmsc node's --fib-api listener?`
    : said;
  const err = dmscError(code, message);
  Object.defineProperty(err, 'grpcCode', { value: se.code, enumerable: false });
  return err;
}
