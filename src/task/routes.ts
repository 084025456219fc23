// TIP over HTTP: `POST /v1/tasks`, `GET /v1/tasks[/:id]`, `DELETE /v1/tasks/:id` and
// `POST /v1/tasks/:id/decision`; and the invoker that calls a sub-task's chosen agent,
// by a data-plane request (as the data plane forwards one, to the agent's endpoint) or
// over an A2ASP session opened with the grant of the resolution.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Agent as Dispatcher } from 'undici';
import { DmscError } from '../errors.js';
import type { AgentClaims, CredentialGuard } from '../identity/credentials.js';
import { bearer } from '../http/server.js';
import { bearerMatches } from '../node/admin-token.js';
import { endpointPath, parseEndpoint } from '../dataplane/endpoint.js';
import { namePath, pathBelow } from '../names.js';
import { openSession } from '../session/session.js';
import { MAX_SUBTASKS, type TaskSpec } from './decompose.js';
import { taskView, type Decision, type Invoker, type TaskEngine, type TaskRecord } from './engine.js';

const MAX_OUTPUT = 1 << 20;
const name = { type: 'string', minLength: 1, maxLength: 1024 } as const;
const tags = { type: 'array', maxItems: 64, items: { type: 'string', minLength: 1, maxLength: 64 } } as const;
const via = { enum: ['request', 'session'] } as const;
const timeout = { type: 'integer', minimum: 10, maximum: 3_600_000 } as const;
const attempts = { type: 'integer', minimum: 1, maximum: 64 } as const;

const taskBody = {
  type: 'object', additionalProperties: false, required: ['task'],
  properties: {
    task: {
      type: 'object', additionalProperties: false,
      properties: {
        text: { type: 'string', minLength: 1, maxLength: 4096 },
        input: {},
        subtasks: {
          type: 'array', minItems: 1, maxItems: MAX_SUBTASKS,
          items: {
            type: 'object', additionalProperties: false, required: ['id', 'capability'],
            properties: {
              id: { type: 'string', minLength: 1, maxLength: 63 }, capability: name, input: {},
              dependsOn: { type: 'array', maxItems: MAX_SUBTASKS, items: { type: 'string', maxLength: 63 } },
              timeoutMs: timeout, require: tags, via, maxAttempts: attempts,
            },
          },
        },
        constraints: {
          type: 'object', additionalProperties: false,
          properties: { require: tags, timeoutMs: timeout, maxAttempts: attempts, via, deadlineMs: { type: 'integer', minimum: 10, maximum: 86_400_000 } },
        },
      },
      oneOf: [{ required: ['subtasks'], not: { required: ['text'] } }, { required: ['text'], not: { required: ['subtasks'] } }],
    },
  },
} as const;

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64 } } } as const;
const decisionBody = {
  type: 'object', additionalProperties: false, required: ['decision'],
  properties: { decision: { enum: ['retry', 'skip', 'abort'] }, subtask: { type: 'string', minLength: 1, maxLength: 63 } },
} as const;

export function taskRoutes(http: FastifyInstance, engine: TaskEngine, guard: CredentialGuard, adminToken: string): void {
  // The owning agent, or an operator with the admin token; answers as the other would
  // not tell a stranger the task exists.
  const owned = async (req: FastifyRequest, id: string): Promise<{ task: TaskRecord; by: string }> => {
    const admin = bearerMatches(req.headers.authorization, adminToken);
    const claims = admin ? undefined : await guard.verify(bearer(req));
    const task = engine.get(id);
    if (!task || (claims && task.requester.aic !== claims.aic)) throw new DmscError('ERR_DMSC_NOT_FOUND', `no task ${id}`);
    return { task, by: admin ? 'operator' : claims!.aic };
  };

  http.post<{ Body: { task: TaskSpec } }>('/v1/tasks', { schema: { body: taskBody } }, async (req, reply) => {
    const token = bearer(req);
    const claims = await guard.verify(token);
    const task = await engine.submit(claims, token, req.body.task);
    return reply.status(202).header('location', `/v1/tasks/${task.id}`).send(taskView(task));
  });

  http.get<{ Querystring: { limit?: number } }>('/v1/tasks', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } } } },
  }, async (req) => {
    const admin = bearerMatches(req.headers.authorization, adminToken);
    const claims: AgentClaims | undefined = admin ? undefined : await guard.verify(bearer(req));
    return { tasks: engine.list(claims?.aic, req.query.limit ?? 100).map(taskView) };
  });

  http.get<{ Params: { id: string } }>('/v1/tasks/:id', { schema: { params: idParams } }, async (req) => taskView((await owned(req, req.params.id)).task));

  http.delete<{ Params: { id: string } }>('/v1/tasks/:id', { schema: { params: idParams } }, async (req) => {
    const { task, by } = await owned(req, req.params.id);
    return taskView(await engine.cancel(task.id, by));
  });

  http.post<{ Params: { id: string }; Body: { decision: Decision; subtask?: string } }>('/v1/tasks/:id/decision', { schema: { params: idParams, body: decisionBody } }, async (req) => {
    const { task, by } = await owned(req, req.params.id);
    return taskView(await engine.decide(task.id, req.body.decision, by, req.body.subtask));
  });
}

/** Calls the chosen agents of sub-tasks; `close` releases its connections. */
export function taskInvoker(options: { self: string; connectTimeoutMs?: number }): { invoke: Invoker; close: () => Promise<void> } {
  const dispatcher = new Dispatcher({ connect: { timeout: options.connectTimeoutMs ?? 5000 }, keepAliveTimeout: 10_000 });
  const invoke: Invoker = async ({ task, subtask, resolution, input, via, signal }) => {
    const target = resolution.target;
    if (via === 'session') {
      const session = await openSession({ target, grant: resolution.grant, credential: task.credential, capability: subtask.capability, signal });
      try {
        const answer = new Promise<unknown>((resolve, reject) => {
          session.once('message', resolve);
          session.once('close', (c: { reason: string }) => reject(new DmscError('ERR_DMSC_SESSION_CLOSED', `${target.aic} closed the session without an answer: ${c.reason}`)));
          if (signal.aborted) reject(signal.reason);
          else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        });
        await session.send({ task: task.id, subtask: subtask.id, input });
        return await answer;
      } finally {
        void session.close('sub-task done');
      }
    }
    const endpoint = parseEndpoint(target.endpoint);
    if (!endpoint) throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `${target.aic} has an endpoint that is not a URL`);
    // As the data plane sends it: the path below the prefix that matched.
    const rest = pathBelow(namePath(subtask.capability), resolution.capability);
    let res;
    try {
      res = await dispatcher.request({
        origin: endpoint.origin, path: endpointPath(endpoint, rest, ''), method: 'POST', signal,
        headers: {
          'content-type': 'application/json',
          'x-dmsc-requester': task.requester.aic,
          'x-dmsc-capability': namePath(resolution.capability), 'x-dmsc-task': `${task.id}/${subtask.id}`, 'x-dmsc-grant': resolution.grant,
          'x-dmsc-path': resolution.path.join(','), 'x-dmsc-via': options.self,
        },
        body: JSON.stringify(input ?? null),
      });
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `cannot reach ${target.aic} at ${target.endpoint}: ${(e as Error).message}`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      size += (c as Buffer).length;
      if (size > MAX_OUTPUT) {
        res.body.destroy();
        throw new DmscError('ERR_DMSC_PAYLOAD_TOO_LARGE', `${target.aic} answered with more than ${MAX_OUTPUT} bytes; a task keeps outputs up to that size`);
      }
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString();
    if (res.statusCode < 200 || res.statusCode >= 300) {
      throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `${target.aic} answered ${res.statusCode}: ${text.slice(0, 200)}`);
    }
    if (String(res.headers['content-type'] ?? '').startsWith('application/json')) {
      try {
        return text ? JSON.parse(text) : null;
      } catch {
        throw new DmscError('ERR_DMSC_UPSTREAM_FAILED', `${target.aic} answered JSON that does not parse`);
      }
    }
    return text;
  };
  return { invoke, close: () => dispatcher.close() };
}
