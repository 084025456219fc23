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
  required: ['capability'],
  properties: {
    capability: capabilityName, require: tagList, flow: { type: 'string', minLength: 1, maxLength: 256 },
    exclude: { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 200 } },
  },
} as const;

const discoverQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['capability'],
  properties: { capability: capabilityName, require: { type: 'string', maxLength: 1024 } },
} as const;

export function agentRoutes(http: FastifyInstance, gw: Gateway, guard: CredentialGuard, adminToken: string): void {
  const agent = (req: FastifyRequest) => guard.verify(bearer(req));
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
    const { record, credential, expiresAt, denied } = await gw.register(key, req.body);
    return reply.status(201).send({
      aic: record.aic,
      credential,
      expiresAt: new Date(expiresAt).toISOString(),
      acs: acsOf(record, undefined),
      denied,
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
    await gw.deregister(req.params.aic);
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
    const { candidates, path } = await gw.discover(claims, req.query.capability, require, { ttl: DEFAULT_TTL, path: [], credential: bearer(req) });
    return { capability: req.query.capability, candidates, path };
  });

  http.post<{ Body: { capability: string; require?: string[]; flow?: string; exclude?: string[] } }>('/v1/resolve', { schema: { body: resolveBody } }, async (req) => {
    const claims = await agent(req);
    checkName(req.body.capability, 'body.capability');
    const exclude = req.body.exclude ?? [];
    return gw.resolve(claims, req.body.capability, req.body.require ?? [], req.body.flow, { ttl: DEFAULT_TTL, path: [], credential: bearer(req), ...(exclude.length ? { exclude } : {}) });
  });
}
