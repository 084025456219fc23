// HTTP routes of the gateway's agents: registration, the agent's own lifecycle
// (heartbeat, renew, deregister), discovery and resolution.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DmscError } from '../errors.js';
import type { HealthState } from '../fastpath/types.js';
import { checkName } from '../fastpath/validate.js';
import { parseAic } from '../identity/aic.js';
import type { AgentClaims, CredentialGuard } from '../identity/credentials.js';
import { adminOnly, bearer } from '../http/server.js';
import { bearerMatches } from '../node/admin-token.js';
import { acsOf } from './directory.js';
import { DEFAULT_TTL, type Gateway, type RegistrationRequest } from './gateway.js';
import type { SemanticLayer } from '../semantic/semantic.js';
import type { NewEvent } from '../telemetry/events.js';

/** Where the routes report what they decided (events) and how long answers took. */
export interface RouteObserver {
  event(e: NewEvent): void;
  resolution(kind: 'resolve' | 'discover' | 'intent', outcome: string, ms: number): void;
}

const codeOf = (e: unknown) => (e instanceof DmscError ? e.code : 'ERR_DMSC_INTERNAL');

const capabilityName = { type: 'string', minLength: 1, maxLength: 1024 } as const;
const tagList = { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 64 } } as const;

const registerBody = {
  type: 'object',
  additionalProperties: false,
  required: ['endpoint', 'capabilities'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 128 },
    endpoint: { type: 'string', minLength: 8, maxLength: 512, pattern: '^https?://[^\\s]+$' },
    session: { type: 'string', minLength: 8, maxLength: 512, pattern: '^(wss?|tcp)://[^\\s]+$' },
    capabilities: {
      type: 'array', minItems: 1, maxItems: 64,
      items: {
        type: 'object', additionalProperties: false, required: ['name'],
        properties: {
          name: capabilityName,
          weight: { type: 'integer', minimum: 0, maximum: 65535 },
          // Above 32767 are peer gateways: local agents always come first.
          priority: { type: 'integer', minimum: 0, maximum: 32767 },
          attributes: {
            type: 'object', maxProperties: 32, propertyNames: { minLength: 1, maxLength: 64 },
            additionalProperties: {
              anyOf: [
                { type: 'string', maxLength: 256 }, { type: 'number' }, { type: 'boolean' },
                { type: 'array', maxItems: 32, items: { type: 'string', maxLength: 256 } },
              ],
            },
          },
        },
      },
    },
  },
} as const;

const aicParams = { type: 'object', required: ['aic'], properties: { aic: { type: 'string', maxLength: 200 } } } as const;

const heartbeatBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { load: { type: 'number', minimum: 0, maximum: 1 }, state: { enum: ['up', 'degraded', 'down'] } },
} as const;

const resolveBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    capability: capabilityName, intent: { type: 'string', minLength: 1, maxLength: 1000 },
    require: tagList, flow: { type: 'string', minLength: 1, maxLength: 256 },
    exclude: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 200 } },
  },
  oneOf: [{ required: ['capability'], not: { required: ['intent'] } }, { required: ['intent'], not: { required: ['capability'] } }],
} as const;

const intentBody = {
  type: 'object', additionalProperties: false, required: ['intent'],
  properties: { intent: { type: 'string', minLength: 1, maxLength: 1000 }, limit: { type: 'integer', minimum: 1, maximum: 20 } },
} as const;

const discoverQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['capability'],
  properties: { capability: capabilityName, require: { type: 'string', maxLength: 1024 } },
} as const;

export function agentRoutes(http: FastifyInstance, gw: Gateway, guard: CredentialGuard, adminToken: string, semantic: SemanticLayer, observe?: RouteObserver): void {
  const agent = (req: FastifyRequest) => guard.verify(bearer(req));
  // A discovery or resolution: timed, and reported with its decision whichever way it went.
  const decided = async <T>(kind: 'resolve' | 'discover', requester: AgentClaims, capability: string, run: () => Promise<T>, detail: (answer: T) => { aics: string[]; providers: string[]; decision: string; detail: Record<string, unknown> }, extra: Record<string, unknown> = {}): Promise<T> => {
    const t = performance.now();
    try {
      const answer = await run();
      const d = detail(answer);
      observe?.resolution(kind, 'ok', performance.now() - t);
      observe?.event({ kind: kind === 'resolve' ? 'resolution' : 'discovery', capability, aics: [requester.aic, ...d.aics], providers: [requester.provider, ...d.providers], decision: d.decision, detail: { ...extra, ...d.detail } });
      return answer;
    } catch (e) {
      observe?.resolution(kind, 'error', performance.now() - t);
      observe?.event({ kind: kind === 'resolve' ? 'resolution' : 'discovery', capability, aics: [requester.aic], providers: [requester.provider], decision: 'refused', reason: codeOf(e), detail: extra });
      throw e;
    }
  };
  const providerOf = (aic: string) => gw.directory.get(aic)?.provider;
  // The agent itself, or an operator with the admin token.
  const selfOrAdmin = async (req: FastifyRequest, aic: string): Promise<void> => {
    if (bearerMatches(req.headers.authorization, adminToken)) return;
    await self(req, aic);
  };
  const self = async (req: FastifyRequest, aic: string): Promise<AgentClaims> => {
    const claims = await agent(req);
    if (claims.aic !== aic) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'this credential belongs to another agent');
    return claims;
  };

  http.post<{ Body: RegistrationRequest }>('/v1/agents', { schema: { body: registerBody } }, async (req, reply) => {
    const key = bearer(req);
    req.body.capabilities.forEach((c, i) => checkName(c.name, `body.capabilities[${i}].name`));
    // In the taxonomy's names: aliases replaced, attributes checked, unknown names out.
    let registered: Awaited<ReturnType<Gateway['register']>>;
    let normalizedNames: ReturnType<typeof semantic.normalize<RegistrationRequest['capabilities'][number]>>;
    try {
      normalizedNames = semantic.normalize<RegistrationRequest['capabilities'][number]>(req.body.capabilities);
      registered = await gw.register(key, { ...req.body, capabilities: normalizedNames.capabilities });
    } catch (e) {
      // A key that is not a provider's is nobody's registration: no event (anyone could
      // fill the audit log with them).
      if (codeOf(e) !== 'ERR_DMSC_UNAUTHORIZED') {
        const names = req.body.capabilities.map((c) => c.name);
        observe?.event({ kind: 'registration', decision: 'denied', reason: codeOf(e), detail: { declared: names.slice(0, 8), ...(names.length > 8 ? { more: names.length - 8 } : {}) } });
      }
      throw e;
    }
    const { capabilities, normalized, unknown } = normalizedNames;
    const { record, credential, expiresAt, denied } = registered;
    observe?.event({
      kind: 'registration', aics: [record.aic], providers: [record.provider], decision: 'accepted',
      detail: { capabilities: record.capabilities.map((c) => c.name), denied: [...unknown, ...denied], ...(normalized.length ? { normalized: normalized.map((n) => ({ declared: n.declared, name: n.name })) } : {}) },
    });
    return reply.status(201).send({
      aic: record.aic,
      credential,
      expiresAt: new Date(expiresAt).toISOString(),
      acs: acsOf(record, undefined),
      denied: [...unknown, ...denied],
      ...(normalized.length ? { normalized: normalized.map((n) => ({ declared: n.declared, name: n.name, ...(n.source ? { via: n.source, confidence: n.confidence } : {}) })) } : {}),
      heartbeat: { intervalMs: gw.options.heartbeatMs, misses: gw.options.misses },
    });
  });

  http.get('/v1/agents', { onRequest: adminOnly(adminToken) }, async () => {
    return { agents: [...gw.directory.agents()].map((r) => ({ aic: r.aic, provider: r.provider, name: r.name ?? null, endpoint: r.endpoint, capabilities: r.capabilities.map((c) => c.name), state: gw.directory.liveness(r.aic)?.state })) };
  });

  http.get<{ Params: { aic: string } }>('/v1/agents/:aic', { schema: { params: aicParams } }, async (req) => {
    parseAic(req.params.aic);
    await selfOrAdmin(req, req.params.aic);
    return gw.describe(req.params.aic);
  });

  http.delete<{ Params: { aic: string } }>('/v1/agents/:aic', { schema: { params: aicParams } }, async (req, reply) => {
    parseAic(req.params.aic);
    await selfOrAdmin(req, req.params.aic);
    const provider = providerOf(req.params.aic);
    await gw.deregister(req.params.aic);
    observe?.event({ kind: 'deregistration', aics: [req.params.aic], providers: provider ? [provider] : [], decision: 'removed', reason: bearerMatches(req.headers.authorization, adminToken) ? 'by the operator' : 'by the agent' });
    return reply.status(204).send();
  });

  http.post<{ Params: { aic: string }; Body: { load?: number; state?: HealthState } | null }>(
    '/v1/agents/:aic/heartbeat', { schema: { params: aicParams, body: heartbeatBody } }, async (req) => {
      parseAic(req.params.aic);
      await self(req, req.params.aic);
      const state = req.body?.state ?? 'up';
      const load = req.body?.load ?? 0;
      gw.heartbeat(req.params.aic, state, load);
      return { aic: req.params.aic, state, load, nextHeartbeatMs: gw.options.heartbeatMs };
    });

  http.post<{ Params: { aic: string } }>('/v1/agents/:aic/renew', { schema: { params: aicParams } }, async (req) => {
    parseAic(req.params.aic);
    await self(req, req.params.aic);
    const { credential, expiresAt } = await gw.renew(req.params.aic);
    return { aic: req.params.aic, credential, expiresAt: new Date(expiresAt).toISOString() };
  });

  http.get<{ Querystring: { capability: string; require?: string } }>('/v1/discover', { schema: { querystring: discoverQuery } }, async (req) => {
    const claims = await agent(req);
    checkName(req.query.capability, 'capability');
    const require = req.query.require ? req.query.require.split(',').filter(Boolean) : [];
    const { candidates, path } = await decided('discover', claims, req.query.capability, () => gw.discover(claims, req.query.capability, require, { ttl: DEFAULT_TTL, path: [], credential: bearer(req) }), (a) => ({
      aics: a.candidates.map((c) => String(c.aic)), providers: [], decision: a.candidates.length ? 'found' : 'none',
      detail: { candidates: a.candidates.length, path: a.path, ...(require.length ? { require } : {}) },
    }));
    return { capability: req.query.capability, candidates, path };
  });

  http.post<{ Body: { capability?: string; intent?: string; require?: string[]; flow?: string; exclude?: string[] } }>('/v1/resolve', { schema: { body: resolveBody } }, async (req) => {
    const claims = await agent(req);
    const exclude = req.body.exclude ?? [];
    const hop = { ttl: DEFAULT_TTL, path: [], credential: bearer(req), ...(exclude.length ? { exclude } : {}) };
    const require = req.body.require ?? [];
    const resolve = (capability: string, extra: Record<string, unknown> = {}) => decided('resolve', claims, capability, () => gw.resolve(claims, capability, require, req.body.flow, hop), (a) => {
      const target = a.target.aic;
      const provider = providerOf(target);
      // The candidates the choice was made among: this node's agents for the prefix.
      const considered = a.path.length === 1 ? gw.directory.candidates(a.capability).map((c) => ({ aic: c.record.aic, state: c.liveness.state, weight: c.offer.weight, priority: c.offer.priority })) : [];
      return {
        aics: [target], providers: provider ? [provider] : [], decision: 'chosen',
        detail: { chosen: target, prefix: a.capability, failover: a.failover, path: a.path, candidates: considered, ...(exclude.length ? { excluded: exclude } : {}), ...(require.length ? { require } : {}) },
      };
    }, extra);
    if (req.body.intent === undefined) {
      checkName(req.body.capability!, 'body.capability');
      return resolve(req.body.capability!);
    }
    // An intent: ranked against the taxonomy; only a clear match is resolved.
    const t = performance.now();
    const answer = semantic.resolveIntent(req.body.intent);
    const intent = { status: answer.status, candidates: answer.candidates, threshold: answer.threshold, taxonomy: answer.taxonomy };
    observe?.resolution('intent', answer.status, performance.now() - t);
    // The intent's text is the request's payload: only how it was read is recorded.
    const reading = { intent: { status: answer.status, candidates: answer.candidates.slice(0, 3).map((c) => ({ capability: c.capability, confidence: c.confidence })) } };
    if (answer.status !== 'match') {
      observe?.event({ kind: 'resolution', aics: [claims.aic], providers: [claims.provider], decision: 'refused', reason: answer.status === 'no-match' ? 'ERR_DMSC_NO_MATCH' : 'ERR_DMSC_AMBIGUOUS_INTENT', detail: reading });
    }
    if (answer.status === 'no-match') throw new DmscError('ERR_DMSC_NO_MATCH', `no capability matches the intent with confidence ${answer.threshold} or more`, { intent });
    if (answer.status === 'ambiguous') {
      const [a, b] = answer.candidates;
      throw new DmscError('ERR_DMSC_AMBIGUOUS_INTENT', `the intent fits ${a!.capability} (${a!.confidence}) and ${b!.capability} (${b!.confidence}) about as well; say which`, { intent });
    }
    return { ...(await resolve(answer.capability!, reading)), intent };
  });

  // The ranking alone, for a person or an agent to see how an intent is read.
  http.post<{ Body: { intent: string; limit?: number } }>('/v1/intents', { schema: { body: intentBody } }, async (req) => {
    if (!bearerMatches(req.headers.authorization, adminToken)) await agent(req);
    return semantic.resolveIntent(req.body.intent, req.body.limit ?? 5);
  });

  http.get('/v1/taxonomy', async () => {
    const t = semantic.taxonomy;
    return { version: t.version, source: semantic.source, unknownNames: t.unknownNames, resolution: t.resolution, entries: t.entries, alignments: t.alignments };
  });
}
