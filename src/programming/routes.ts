// FIB programming over HTTP, for curl and scripts: one atomic batch at a time
// (`POST /v1/fib/batches`), the change stream as server-sent events (`GET /v1/fib/watch`),
// and the admin routes for controller keys.
import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DmscError } from '../errors.js';
import { adminOnly, bearer } from '../http/server.js';
import { immutableList } from '../fastpath/validate.js';
import { GroupWork } from './batch-codec.js';
import type { Caller, Programming } from './programming.js';
import type { ControllerHop, ControllerOp, OpError } from './rib.js';

const MAX_BATCH_BYTES = 16 << 20;
const name = { type: 'string', minLength: 1, maxLength: 1024 } as const;
const hop = {
  type: 'object', additionalProperties: false, required: ['id'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 256 }, weight: { type: 'integer' }, priority: { type: 'integer' },
    tags: { type: 'array', maxItems: 64, items: { type: 'string' } }, endpoint: { type: 'string', maxLength: 2048 },
  },
} as const;
const op = {
  type: 'object', required: ['op'],
  oneOf: [
    { type: 'object', additionalProperties: false, required: ['op', 'prefix', 'nextHops'], properties: { op: { const: 'upsert' }, prefix: name, nextHops: { type: 'array', maxItems: 1024, items: hop }, group: { type: 'integer', minimum: 0 } } },
    { type: 'object', additionalProperties: false, required: ['op', 'prefix', 'group'], properties: { op: { const: 'upsert' }, prefix: name, group: { type: 'integer', minimum: 0 } } },
    { type: 'object', additionalProperties: false, required: ['op', 'prefix'], properties: { op: { const: 'remove' }, prefix: name } },
    { type: 'object', additionalProperties: false, required: ['op', 'nextHopId', 'state'], properties: { op: { const: 'health' }, nextHopId: { type: 'string', minLength: 1, maxLength: 256 }, state: { enum: ['up', 'degraded', 'down'] }, load: { type: 'number' } } },
  ],
} as const;

/** An op as JSON: an upsert may name one of the batch's `groups` for its next hops. */
type JsonOp = ControllerOp | { readonly op: 'upsert'; readonly prefix: string; readonly group: number; readonly nextHops?: readonly ControllerHop[] };

// The batch's ops with each upsert of a group given that group's next hops (as the gRPC
// Batch.groups), and the upserts that cannot have them: a group the batch lacks, a group
// and next hops both, or more than the groups' bound of work. Each group's list is frozen
// (plain data from JSON), so that it is checked once for all its upserts.
function expandGroups(ops: readonly JsonOp[], groups: ControllerHop[][]): { ops: ControllerOp[]; errors: OpError[] } {
  for (const list of groups) {
    for (const h of list) {
      if (h.tags) Object.freeze(h.tags);
      Object.freeze(h);
    }
    immutableList(Object.freeze(list));
  }
  const work = new GroupWork(groups);
  const out: ControllerOp[] = new Array(ops.length);
  const errors: OpError[] = [];
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i]!;
    out[i] = o as ControllerOp;
    if (o.op !== 'upsert' || !('group' in o) || o.group === undefined) continue;
    const e = work.problem(i, o.group, (o.nextHops?.length ?? 0) > 0);
    if (e) errors.push(e);
    // A bad one keeps a list for the rib's checks of the batch, which name it no further.
    out[i] = { op: 'upsert', prefix: o.prefix, nextHops: e ? o.nextHops ?? [] : groups[o.group]! };
  }
  return { ops: out, errors };
}

/** Adds the routes; returns what ends the open watch streams (the node is stopping). */
export function programmingRoutes(http: FastifyInstance, programming: Programming, adminToken: string): () => void {
  const admin = adminOnly(adminToken);
  const caller = (req: FastifyRequest): Caller => {
    let c: Caller | undefined;
    try {
      c = programming.authenticate(bearer(req));
    } catch {
      c = undefined;
    }
    if (!c) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'a controller key (or the admin token) is needed as `Authorization: Bearer <key>`');
    return c;
  };

  http.post<{ Body: { name: string; scopes: string[] } }>('/v1/controllers', {
    onRequest: admin,
    schema: { body: { type: 'object', additionalProperties: false, required: ['name', 'scopes'], properties: { name: { type: 'string', minLength: 1, maxLength: 63 }, scopes: { type: 'array', minItems: 1, maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 1024 } } } } },
  }, async (req, reply) => reply.status(201).send(await programming.keys.add(req.body.name, req.body.scopes)));
  http.get('/v1/controllers', { onRequest: admin }, async () => ({
    controllers: programming.keys.list().map((c) => ({ ...c, generation: programming.rib.generation(c.name) })),
    primary: programming.primary ? { controller: programming.primary.controller, electionId: String(programming.primary.electionId) } : null,
    sessions: programming.sessions,
  }));
  http.delete<{ Params: { name: string } }>('/v1/controllers/:name', { onRequest: admin }, async (req, reply) => {
    await programming.keys.revoke(req.params.name);
    return reply.status(204).send();
  });

  http.post<{ Body: { controller?: string; ifGeneration?: number; ops: JsonOp[]; groups?: ControllerHop[][] } }>('/v1/fib/batches', {
    bodyLimit: MAX_BATCH_BYTES,
    schema: { body: { type: 'object', additionalProperties: false, required: ['ops'], properties: {
      controller: { type: 'string', minLength: 1, maxLength: 63 }, ifGeneration: { type: 'integer', minimum: 0 }, ops: { type: 'array', items: op },
      groups: { type: 'array', maxItems: 10_000, items: { type: 'array', maxItems: 1024, items: hop } },
    } } },
  }, async (req) => {
    const { ops, errors } = expandGroups(req.body.ops, req.body.groups ?? []);
    const r = await programming.batch(caller(req), req.body.controller, ops, req.body.ifGeneration, errors);
    if (r.status === 'VISIBLE') return { status: r.status, generation: r.generation, fibGeneration: r.fibGeneration };
    if (r.status === 'REJECTED') throw new DmscError('ERR_DMSC_BATCH_REJECTED', r.message, { errors: r.errors, generation: r.generation });
    if (r.status === 'GENERATION_MISMATCH') throw new DmscError('ERR_DMSC_GENERATION_MISMATCH', r.message, { generation: r.generation });
    throw new DmscError('ERR_DMSC_NOT_PRIMARY', r.message);
  });

  const streams = new Set<ServerResponse>();
  http.get<{ Querystring: { since?: number } }>('/v1/fib/watch', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { since: { type: 'integer', minimum: 0 } } } },
  }, async (req, reply) => {
    const who = caller(req);
    // Ids are EPOCH.GENERATION: a generation of an earlier start of the node gets a snapshot.
    const [epoch, generation] = String(req.headers['last-event-id'] ?? '').split('.').map(Number);
    const resumed = Number.isSafeInteger(epoch) && Number.isSafeInteger(generation) && generation! >= 0 ? { since: generation!, epoch: epoch! } : { since: 0, epoch: undefined };
    const since = req.query.since ?? resumed.since;
    reply.hijack();
    const res = reply.raw;
    streams.add(res);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write('retry: 1000\n\n');
    let stop = () => {};
    let untrack = () => {};
    const end = () => {
      stop();
      untrack();
      streams.delete(res);
      if (!res.destroyed) res.end();
    };
    // A revoked key's stream ends (the client's reconnect is then refused).
    untrack = programming.watching(who, end);
    req.raw.on('close', end);
    res.on('error', end);
    stop = programming.history.stream(since, (e) => {
      if (res.destroyed) return true;
      // The id is where to resume: only once a generation is whole (its last change, or
      // the end of the snapshot); health changes move no generation.
      const { type, ...data } = e;
      const resume = e.type === 'end_of_snapshot' || (e.type === 'entry' && e.last);
      return res.write(`${resume ? `id: ${programming.history.epoch}.${e.generation}\n` : ''}event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    }, (resume) => res.once('drain', resume), end, req.query.since === undefined ? resumed.epoch : undefined);
  });
  return () => {
    for (const res of streams) res.end();
    streams.clear();
  };
}
