// The HTTP conventions every dmsc listener shares: JSON bodies with a size limit, strict
// schemas (unknown fields are errors, not silently dropped), and one error shape,
// `{ error: { code, message } }`, whose code is the same ERR_DMSC_* the CLI and logs show.
import type { IncomingHttpHeaders } from 'node:http';
import { Ajv } from 'ajv';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { DmscError } from '../errors.js';
import { AuthThrottle } from './auth-throttle.js';
import { bearerMatches } from '../node/admin-token.js';

export const BODY_LIMIT = 64 * 1024;

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** `body.capabilities[0].weight` from `/capabilities/0/weight`. */
function fieldOf(context: string, instancePath: string): string {
  return context + instancePath.split('/').slice(1).map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('');
}

function describe(context: string, e: AjvError): string {
  const at = fieldOf(context, e.instancePath);
  if (e.keyword === 'additionalProperties') return `${at} has an unknown field '${String(e.params['additionalProperty'])}'`;
  if (e.keyword === 'required') return `${at} is missing the field '${String(e.params['missingProperty'])}'`;
  return `${at} ${e.message ?? 'is invalid'}`;
}

export interface ServerOptions {
  bodyLimit?: number;
  log?: (event: Record<string, unknown>) => void;
  /**
   * Failed authentication by source (every 401 counts): a throttled source is answered
   * 429 (held first, see AuthThrottle) unless `trusted` says its credential is known good.
   */
  throttle?: AuthThrottle;
  trusted?: (req: FastifyRequest) => boolean;
}

export function createServer(options: ServerOptions = {}): FastifyInstance {
  const http = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? BODY_LIMIT,
    // AICs travel in paths and may be 160 characters long.
    routerOptions: { maxParamLength: 256 },
    // Malformed URLs, over-long path parameters: the same error shape as everything else.
    frameworkErrors: (err, _req, reply) => {
      const status = (err as { statusCode?: number }).statusCode ?? 400;
      void (reply as FastifyReply).status(status).send({ error: { code: status === 414 ? 'ERR_DMSC_LIMIT_EXCEEDED' : 'ERR_DMSC_INVALID_ARGUMENT', message: err.message } });
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    schemaErrorFormatter: (errors, context) =>
      new DmscError(context === 'body' ? 'ERR_DMSC_INVALID_BODY' : 'ERR_DMSC_INVALID_ARGUMENT', (errors as AjvError[]).map((e) => describe(context, e)).join('; ')),
  });
  // An empty JSON body (what many clients send with a body-less POST) is no body at all.
  const json = http.getDefaultJsonParser('error', 'error');
  http.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '') done(null, null);
    else json(req, body as string, done);
  });
  // Query strings are text: let their schemas coerce numbers there, and only there.
  http.setValidatorCompiler(({ schema, httpPart }) => {
    const ajv = httpPart === 'querystring' || httpPart === 'params' ? coercing : strict;
    return ajv.compile(schema);
  });
  http.setErrorHandler((err: FastifyError | DmscError, _req, reply) => {
    const e = err as Error & { code?: string; statusCode?: number; validation?: unknown; details?: unknown };
    if (e instanceof DmscError) {
      return reply.status((e as DmscError).status).send({ error: { code: e.code, message: e.message, ...((e as DmscError).details !== undefined ? { details: (e as DmscError).details } : {}) } });
    }
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.status(413).send({ error: { code: 'ERR_DMSC_PAYLOAD_TOO_LARGE', message: `the body is larger than ${options.bodyLimit ?? BODY_LIMIT} bytes` } });
    }
    const status = e.statusCode && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
    const code = status === 415 || status === 400 ? 'ERR_DMSC_INVALID_BODY' : status < 500 ? 'ERR_DMSC_INVALID_ARGUMENT' : 'ERR_DMSC_INTERNAL';
    if (status >= 500) {
      const event = { msg: 'internal error', error: 'ERR_DMSC_INTERNAL', stack: e.stack ?? e.message };
      if (options.log) options.log(event);
      else console.error(JSON.stringify(event));
    }
    return reply.status(status).send({ error: { code, message: status >= 500 ? 'internal error' : e.message } });
  });
  const throttle = options.throttle;
  if (throttle) {
    const sourceOf = (req: FastifyRequest) => AuthThrottle.sourceOf(req.socket.remoteAddress);
    http.addHook('onRequest', async (req, reply) => {
      // Only requests that try a credential: a public route stays public.
      if (req.headers.authorization === undefined) return;
      const source = sourceOf(req);
      const t = throttle.check(source);
      if (!t || options.trusted?.(req)) return;
      if (t.holdMs > 0) {
        const release = throttle.hold(source);
        await new Promise((r) => setTimeout(r, t.holdMs)).finally(release);
      } else {
        void reply.header('connection', 'close');
      }
      void reply.header('retry-after', String(t.retryAfterS));
      throw new DmscError('ERR_DMSC_RATE_LIMITED', `too many failed authentications from this address; try again in ${t.retryAfterS} s`);
    });
    http.addHook('onResponse', async (req, reply) => {
      if (reply.statusCode === 401) throttle.failed(sourceOf(req));
    });
  }
  http.setNotFoundHandler((req, reply) => {
    void reply.status(404).send({ error: { code: 'ERR_DMSC_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });
  return http;
}

const strict = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: true, allErrors: false });
const coercing = new Ajv({ removeAdditional: false, coerceTypes: true, useDefaults: true, allErrors: false });

/** A hook that admits only the admin token as Bearer. */
export function adminOnly(token: string) {
  return async (req: FastifyRequest): Promise<void> => {
    if (!bearerMatches(req.headers.authorization, token)) {
      throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'this route needs the admin token as a Bearer credential');
    }
  };
}

/** The Bearer value of a request, or an ERR_DMSC_UNAUTHORIZED. */
export function bearer(req: { readonly headers: IncomingHttpHeaders }): string {
  const h = req.headers.authorization;
  if (!h || !/^bearer [^\s]/i.test(h)) throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'missing Bearer credential');
  return h.slice(7);
}

/** The real address a listening server is bound to. */
export function boundAddress(http: FastifyInstance, fallback: { host: string; port: number }): { host: string; port: number } {
  const addr = http.server.address();
  return typeof addr === 'object' && addr ? { host: addr.address, port: addr.port } : fallback;
}
