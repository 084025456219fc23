// GET /v1/events: the event stream (server-sent events). Each event is sent with its id;
// a client that reconnects with `Last-Event-ID` (or `?since=`) gets every kept event
// after it first, then the live ones: nothing is lost across a disconnect that the audit
// log's retention covers. A client too slow to keep up is cut off (it resumes the same
// way) rather than held in memory without bound.
//
// GET /v1/audit?since=&kind=&aic=&limit=: pages of the audit log, oldest first.
import type { FastifyInstance } from 'fastify';
import { DmscError } from '../errors.js';
import type { EventAccess } from './access.js';
import { EVENT_KINDS, type DmscEvent, type EventKind, type EventLog } from './events.js';

/** Bytes queued for one slow stream before it is cut off. */
const MAX_QUEUED = 4 * 1024 * 1024;
const KEEPALIVE_MS = 15_000;

interface Filter {
  since?: number;
  kind?: string;
  aic?: string;
}

const filterQuery = {
  since: { type: 'integer', minimum: 0 },
  kind: { type: 'string', enum: [...EVENT_KINDS] },
  aic: { type: 'string', minLength: 1, maxLength: 256 },
};

export function telemetryRoutes(http: FastifyInstance, log: EventLog, access: EventAccess): void {
  http.get<{ Querystring: Filter }>('/v1/events', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: filterQuery } },
  }, async (req, reply) => {
    const viewer = await access.viewer(req);
    const last = req.headers['last-event-id'];
    let since = req.query.since;
    if (typeof last === 'string' && last !== '') {
      if (!/^\d{1,15}$/.test(last)) throw new DmscError('ERR_DMSC_INVALID_ARGUMENT', 'Last-Event-ID must be an event id');
      since = Number(last);
    }
    const { kind, aic } = req.query;
    const wanted = (e: DmscEvent) => (!kind || e.kind === kind) && (!aic || e.aics.includes(aic)) && viewer.sees(e);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // How long to wait before reconnecting, and where the live stream starts.
    res.write(`retry: 1000\n: ${viewer.who} sees ${viewer.scope}; next event id ${log.nextId}\n\n`);
    let stop = () => {};
    const end = () => {
      stop();
      clearInterval(keepalive);
      if (!res.destroyed) res.end();
    };
    const send = (e: DmscEvent) => {
      if (!wanted(e) || res.destroyed) return;
      res.write(`id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`);
      if (res.writableLength > MAX_QUEUED) end();
    };
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    stop = log.follow(since, send);
    req.raw.on('close', end);
    res.on('error', end);
  });

  http.get<{ Querystring: Filter & { limit?: number } }>('/v1/audit', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { ...filterQuery, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } } },
  }, async (req) => {
    const viewer = await access.viewer(req);
    const { since, kind, aic, limit } = req.query;
    const page = log.page({ ...(since !== undefined ? { since } : {}), ...(kind ? { kind: kind as EventKind } : {}), ...(aic ? { aic } : {}), ...(limit ? { limit } : {}) }, viewer.sees);
    return { node: log.node, viewer: { who: viewer.who, scope: viewer.scope }, ...page };
  });
}
