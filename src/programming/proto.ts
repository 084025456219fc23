// The FIB programming contract, `proto/dmsc/fib/v1/fib.proto`, loaded at run time with
// @grpc/proto-loader: the .proto shipped in the package is the one source of the wire
// format for the node, the TypeScript client and any other language's stubs.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { HealthState } from '../fastpath/types.js';
import { encodeModifyRequest } from './codec.js';
import { decodeModifyForNode } from './batch-codec.js';

export const PROTO_PATH = fileURLToPath(new URL('../../proto/dmsc/fib/v1/fib.proto', import.meta.url));

/**
 * How messages look in JavaScript: camelCase fields, 64-bit integers as decimal strings
 * (election ids use all 64 bits of each half), enums by name, defaults filled in, and
 * the name of the field set in each `oneof`.
 */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true };

let cached: grpc.ServiceClientConstructor | undefined;

/** The generic codec's ModifyRequest, for checking the hand-written one against it. */
export function genericModifyCodec(): { serialize: (m: unknown) => Buffer; deserialize: (b: Buffer) => unknown } {
  const def = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  const m = (def['dmsc.fib.v1.FibProgramming'] as grpc.ServiceDefinition)['Modify'] as grpc.MethodDefinition<unknown, unknown>;
  return { serialize: m.requestSerialize as (m: unknown) => Buffer, deserialize: m.requestDeserialize };
}

/** The `dmsc.fib.v1.FibProgramming` service: its client constructor and `.service` definition. */
export function fibService(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const def = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
  // Batches, the bulk of the traffic, go through the hand-written codec (same bytes); the
  // node reads them straight into the rib's ops.
  const modify = (def['dmsc.fib.v1.FibProgramming'] as grpc.ServiceDefinition)['Modify'] as grpc.MethodDefinition<unknown, unknown>;
  Object.assign(modify, { requestSerialize: encodeModifyRequest, requestDeserialize: decodeModifyForNode });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { dmsc: { fib: { v1: { FibProgramming: grpc.ServiceClientConstructor } } } };
  cached = pkg.dmsc.fib.v1.FibProgramming;
  return cached;
}

export type Persistence = 'PRESERVE' | 'DELETE' | 'LEASE';
export type WireHealth = 'UP' | 'DEGRADED' | 'DOWN';

/** Health states on the wire, and back. */
export const WIRE_HEALTH: Readonly<Record<HealthState, WireHealth>> = { up: 'UP', degraded: 'DEGRADED', down: 'DOWN' };
export const HEALTH_OF: Readonly<Record<string, HealthState | undefined>> = { UP: 'up', DEGRADED: 'degraded', DOWN: 'down' };
export type Status = 'VISIBLE' | 'REJECTED' | 'NOT_PRIMARY' | 'GENERATION_MISMATCH' | 'BUSY' | 'STAGED';

/** uint128 as two decimal strings (what the loader gives and takes). */
export interface WireUint128 {
  high: string;
  low: string;
}

const MASK64 = (1n << 64n) - 1n;

export function toWire128(v: bigint): WireUint128 {
  return { high: ((v >> 64n) & MASK64).toString(), low: (v & MASK64).toString() };
}

export function fromWire128(w: WireUint128 | null | undefined): bigint {
  if (!w) return 0n;
  return (BigInt(w.high || '0') << 64n) | BigInt(w.low || '0');
}

export interface WireNextHop {
  id: string;
  weight?: number;
  priority: number;
  tags: string[];
  endpoint: string;
}

export interface WireOp {
  op?: 'upsert' | 'remove' | 'health';
  upsert?: { prefix: string; nextHops: WireNextHop[] } | null;
  remove?: { prefix: string } | null;
  health?: { nextHopId: string; state: WireHealth; load: number } | null;
}

export interface WireResult {
  seq: string;
  status: Status;
  generation: string;
  errors: { opIndex: number; code: string; message: string }[];
  fibGeneration: string;
  message: string;
}
