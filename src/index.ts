/**
 * dmsc: a node of the DMSC architecture. The fast path (this release): the native
 * capability forwarding table and its pure-TypeScript reference.
 */
export { ForwardingTable, isCapabilityName } from './fastpath/forwarding-table.js';
export { ReferenceTable } from './fastpath/reference-table.js';
export { TagSet } from './fastpath/tags.js';
export { nativeAvailable } from './fastpath/native.js';
export { BAD_NAME, NO_ROUTE } from './fastpath/types.js';
export type {
  FibEntry, FibOp, FibStats, Health, HealthState, LookupOptions, LookupResult, NextHop, PackedLookupOptions, PackedNames, ShareToken,
} from './fastpath/types.js';
export { DmscError, DmscRangeError, DmscTypeError, dmscError } from './errors.js';
export type { DmscErrorCode } from './errors.js';
