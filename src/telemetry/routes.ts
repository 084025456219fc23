// GET /v1/events: the event stream (server-sent events). Each event is sent with its id;
// a client that reconnects with `Last-Event-ID` (or `?since=`) gets every kept event
// after it first, then the live ones: nothing is lost across a disconnect that the audit
// log's retention covers. The kept events are sent in steps, waiting for the client to
// take each, so a long replay neither blocks the node nor fills its memory; a client too
// slow for the live events is cut off (it resumes the same way). The credential is
// checked again every few seconds: a revoked or expired one ends the stream.
//
// GET /v1/audit?since=&kind=&aic=&limit=: pages of the audit log, oldest first.
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { setImmediate as turn } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { DmscError } from '../errors.js';
import type { EventAccess } from './access.js';
import { EVENT_KINDS, SCAN_STEP, type DmscEvent, type EventKind, type EventLog } from './events.js';

/** Bytes queued for one stream of live events before it is cut off. */
const MAX_QUEUED = 4 * 1024 * 1024;
const RECHECK_MS = 10_000;

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

/** Registers the routes; the function returned ends every open stream (the node is stopping). */
export function telemetryRoutes(http: FastifyInstance, log: EventLog, access: EventAccess): () => void {
  const streams = new Set<ServerResponse>();

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
    streams.add(res);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    // How long to wait before reconnecting, and where the live stream starts.
    res.write(`retry: 1000\n: next event id ${log.nextId}\n\n`);
    let stop = () => {};
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      stop();
      clearInterval(recheck);
      streams.delete(res);
      if (!res.destroyed) res.end();
    };
    const write = (e: DmscEvent) => {
      if (wanted(e)) res.write(`id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify(viewer.view(e))}\n\n`);
    };
    // Still allowed? (A keepalive line too, for proxies that close quiet connections.)
    const recheck = setInterval(() => {
      access.viewer(req).then(() => !ended && res.write(': keepalive\n\n'), end);
    }, RECHECK_MS);
    req.raw.on('close', end);
    res.on('error', end);

    // The kept events first, a step at a time, at the client's pace.
    let cursor = since;
    while (cursor !== undefined && !ended) {
      const step = log.range(cursor, SCAN_STEP);
      if (step.length === 0) break;
      for (const e of step) write(e);
      cursor = step.at(-1)!.id;
      if (res.writableNeedDrain) await Promise.race([once(res, 'drain'), once(res, 'close')]);
      else await turn();
    }
    if (ended) return;
    // Then live, from the next one: nothing is recorded between the last step read
    // (which reached the newest event) and this line.
    stop = log.follow((e) => {
      if (ended) return;
      write(e);
      if (res.writableLength > MAX_QUEUED) end();
    });
  });

  http.get<{ Querystring: Filter & { limit?: number } }>('/v1/audit', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { ...filterQuery, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } } },
  }, async (req) => {
    const viewer = await access.viewer(req);
    const { since, kind, aic, limit } = req.query;
    const page = log.page({ ...(since !== undefined ? { since } : {}), ...(kind ? { kind: kind as EventKind } : {}), ...(aic ? { aic } : {}), ...(limit ? { limit } : {}) }, viewer.sees);
    return { node: log.node, viewer: { who: viewer.who, scope: viewer.scope }, events: page.events.map(viewer.view), next: page.next };
  });

  return () => {
    for (const res of streams) res.end();
    streams.clear();
  };
}
