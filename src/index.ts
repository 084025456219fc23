/**
 * dmsc: a node of the DMSC architecture: the native capability forwarding table and its
 * pure-TypeScript reference, the node (Agent Gateway with an embedded or remote AMC), the
 * standalone AMC, AIC helpers, the policy engine, and the agent SDK with A2ASP sessions.
 */
export { ForwardingTable, isCapabilityName } from './fastpath/forwarding-table.js';
export { ReferenceTable } from './fastpath/reference-table.js';
export { TagSet } from './fastpath/tags.js';
export { nativeAvailable } from './fastpath/native.js';
export { BAD_NAME, NO_ROUTE } from './fastpath/types.js';
export type {
  EntriesOptions, FibEntry, FibOp, FibStats, Health, HealthHandle, HealthState, LookupOptions, LookupResult, NextHop, PackedLookupOptions, PackedNames, ShareToken,
} from './fastpath/types.js';
export { DmscError, DmscRangeError, DmscTypeError, dmscError } from './errors.js';
export type { DmscErrorCode } from './errors.js';
export { aicProblem, formatAic, isValidAic, parseAic } from './identity/aic.js';
export type { AicParts } from './identity/aic.js';
export { DmscNode } from './node/node.js';
export { nodeConfig } from './node/config.js';
export type { NodeConfig, NodeOptions } from './node/config.js';
export { AmcServer } from './identity/amc-server.js';
export type { AmcConfig } from './identity/amc-server.js';
export { PolicyEngine, validatePolicy } from './policy/policy.js';
export type { Decision, PolicyDocument, PolicyRule, Requester, TagMapping } from './policy/policy.js';
export { Agent, AgentReply, SESSION_PATH } from './sdk/agent.js';
export type { AgentOptions, AgentState, CapabilityDeclaration, IncomingCall, ResolveRequest, ServeHandlers } from './sdk/agent.js';
export { Session, SessionAcceptor, openSession, checkParams, A2ASP_VERSION } from './session/session.js';
export type { AcceptorOptions, OpenOptions, SessionClose, SessionParams, SessionRequest } from './session/session.js';
export { GrantVerifier } from './session/grants.js';
export type { TrustedAmc, VerifiedGrant } from './session/grants.js';
export type { ResolveAnswer, ResolveTarget } from './directory/gateway.js';
export { FibClient } from './programming/client.js';
export type {
  BatchResult, FibClientEntry, FibClientEvents, FibClientNextHop, FibClientOp, FibClientOptions, FibLimits, Opened, PrimaryChange, ReplaceOptions, WatchEvent, WatchNextHop,
} from './programming/client.js';
