// HTTP routes of the AMC: administration (admin token), the gateway-facing API (gateway
// key) a standalone AMC serves to its nodes, and the published keys.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { JSONWebKeySet } from 'jose';
import { DmscError } from '../errors.js';
import { adminOnly, bearer } from '../http/server.js';
import { parseAic } from './aic.js';
import type { Amc, LocalAmc } from './amc.js';

const nameList = { type: 'array', minItems: 1, maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 1024 } } as const;
const aicBody = {
  type: 'object', additionalProperties: false, required: ['aic'],
  properties: { aic: { type: 'string', minLength: 1, maxLength: 200 }, reason: { type: 'string', maxLength: 256 } },
} as const;

/**
 * The public keys credentials (and, on a node, session grants) verify with; and at
 * `/v1/amc/jwks` the AMC's keys alone, which another domain configures to trust this one
 * (a gateway's grant keys must not be able to sign credentials there).
 */
export function jwksRoute(http: FastifyInstance, jwks: () => JSONWebKeySet, amcKeys: () => JSONWebKeySet = jwks): void {
  http.get('/.well-known/jwks.json', async (_req, reply) => reply.header('cache-control', 'max-age=60').send(jwks()));
  http.get('/v1/amc/jwks', async (_req, reply) => reply.header('cache-control', 'max-age=60').send(amcKeys()));
}

/** `POST /v1/revocations`: on an AMC, or on a node, which passes it to its AMC. */
export function revocationRoute(http: FastifyInstance, amc: Amc, adminToken: string): void {
  http.post<{ Body: { aic: string; reason?: string } }>('/v1/revocations', { onRequest: adminOnly(adminToken), schema: { body: aicBody } }, async (req) => {
    parseAic(req.body.aic);
    await amc.revoke(req.body.aic, req.body.reason ?? 'revoked by an operator');
    return { aic: req.body.aic, revoked: true };
  });
}

/** Administration of an AMC this process runs (embedded or standalone). */
export function amcAdminRoutes(http: FastifyInstance, amc: LocalAmc, adminToken: string): void {
  const admin = adminOnly(adminToken);
  http.post<{ Body: { name: string; scopes: string[] } }>('/v1/providers', {
    onRequest: admin,
    schema: { body: { type: 'object', additionalProperties: false, required: ['name', 'scopes'], properties: { name: { type: 'string', minLength: 1, maxLength: 63 }, scopes: nameList } } },
  }, async (req, reply) => reply.status(201).send(await amc.addProvider(req.body.name, req.body.scopes)));
  http.get('/v1/providers', { onRequest: admin }, async () => ({ providers: amc.providers() }));
  http.post('/v1/amc/rotate-key', { onRequest: admin }, async () => ({ kid: await amc.rotateKey(), keys: amc.jwks().keys.map((k) => k.kid) }));
  http.post<{ Body: { name: string; scope: 'agents' | 'node' | 'domain'; provider?: string; node?: string; ttlSeconds?: number } }>('/v1/observers', {
    onRequest: admin,
    schema: { body: { type: 'object', additionalProperties: false, required: ['name', 'scope'], properties: {
      name: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }, scope: { enum: ['agents', 'node', 'domain'] },
      provider: { type: 'string', minLength: 1, maxLength: 63 }, node: { type: 'string', minLength: 1, maxLength: 63 },
      ttlSeconds: { type: 'integer', minimum: 60, maximum: 366 * 86400 },
    } } },
  }, async (req, reply) => {
    const { name, scope, provider, node, ttlSeconds = 30 * 86400 } = req.body;
    const needs = scope === 'agents' ? 'provider' : scope === 'node' ? 'node' : undefined;
    for (const field of ['provider', 'node'] as const) {
      if (field === needs && req.body[field] === undefined) throw new DmscError('ERR_DMSC_INVALID_BODY', `body.${field} is needed with scope '${scope}'`);
      if (field !== needs && req.body[field] !== undefined) throw new DmscError('ERR_DMSC_INVALID_BODY', `body.${field} does not go with scope '${scope}'`);
    }
    const s = scope === 'agents' ? { scope, provider: provider! } : scope === 'node' ? { scope, node: node! } : { scope };
    const { credential, expiresAt } = await amc.issueObserver(name, s, ttlSeconds * 1000);
    return reply.status(201).send({ name, ...s, credential, expiresAt: new Date(expiresAt).toISOString() });
  });
}

/**
 * The API a standalone AMC offers its gateways, each authenticated by its gateway key,
 * and the admin route that adds them.
 */
export function amcGatewayRoutes(http: FastifyInstance, amc: LocalAmc, adminToken: string): void {
  const admin = adminOnly(adminToken);
  http.post<{ Body: { id: string } }>('/v1/gateways', {
    onRequest: admin,
    schema: { body: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 63 } } } },
  }, async (req, reply) => reply.status(201).send(await amc.addGateway(req.body.id)));

  const gatewayOf = (req: FastifyRequest): string => {
    const id = amc.gatewayFor(bearer(req));
    if (!id) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'unknown gateway key');
    return id;
  };
  http.post<{ Body: { providerKey: string; capabilities: string[] } }>('/v1/amc/authorize', {
    schema: { body: { type: 'object', additionalProperties: false, required: ['providerKey', 'capabilities'], properties: { providerKey: { type: 'string', minLength: 1, maxLength: 4096 }, capabilities: nameList } } },
  }, async (req) => amc.authorize(req.body.providerKey, gatewayOf(req), req.body.capabilities));
  http.post<{ Body: { aic: string; provider: string; scope: string[] } }>('/v1/amc/issue', {
    schema: { body: { type: 'object', additionalProperties: false, required: ['aic', 'provider', 'scope'], properties: { aic: { type: 'string', minLength: 1, maxLength: 200 }, provider: { type: 'string', minLength: 1, maxLength: 63 }, scope: nameList } } },
  }, async (req) => {
    const gateway = gatewayOf(req);
    parseAic(req.body.aic);
    // A gateway issues credentials only for AICs of its own registry.
    if (!req.body.aic.startsWith(`${gateway}:`)) throw new DmscError('ERR_DMSC_FORBIDDEN', `gateway '${gateway}' cannot issue for ${req.body.aic}`);
    return amc.issue(gateway, req.body.aic, req.body.provider, req.body.scope);
  });
  http.post<{ Body: { aic: string; reason?: string } }>('/v1/amc/revoke', { schema: { body: aicBody } }, async (req) => {
    gatewayOf(req);
    parseAic(req.body.aic);
    await amc.revoke(req.body.aic, req.body.reason ?? 'revoked by a gateway');
    return { aic: req.body.aic, revoked: true };
  });
  // The gateway's own key, certified: agents check grants with it, peers the handshake.
  http.post<{ Body: { jwk: Record<string, unknown> } }>('/v1/amc/grant-key', {
    schema: { body: { type: 'object', additionalProperties: false, required: ['jwk'], properties: { jwk: { type: 'object', maxProperties: 16 } } } },
  }, async (req) => amc.certifyGrantKey(gatewayOf(req), req.body.jwk));
  http.get<{ Querystring: { since?: number } }>('/v1/amc/updates', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { since: { type: 'integer', minimum: 0 } } } },
  }, async (req) => {
    return amc.updates(req.query.since ?? 0, gatewayOf(req));
  });
}
