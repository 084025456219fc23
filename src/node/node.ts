// One dmsc node. This release hosts the forwarding plane: the native table, loaded from a
// FIB file, with health, readiness and FIB inspection on the API listener. Registration,
// the mesh and the data plane attach here as they land.
import Fastify, { type FastifyInstance } from 'fastify';
import { DmscError } from '../errors.js';
import { ForwardingTable } from '../fastpath/forwarding-table.js';
import { bearerMatches, loadAdminToken } from './admin-token.js';
import { readFibFile, type Listen, type NodeConfig } from './config.js';

export class DmscNode {
  readonly config: NodeConfig;
  readonly fib: ForwardingTable;
  readonly #http: FastifyInstance;
  #ready = false;
  #address: Listen | undefined;

  private constructor(config: NodeConfig, fib: ForwardingTable, token: string) {
    this.config = config;
    this.fib = fib;
    // Unknown fields are rejected, not silently dropped (Fastify's default strips them).
    this.#http = Fastify({ logger: false, bodyLimit: 1 << 20, ajv: { customOptions: { removeAdditional: false } } });
    this.#routes(token);
  }

  /** Starts a node: data directory, admin token, FIB file, then the API listener. */
  static async start(config: NodeConfig): Promise<DmscNode> {
    const token = await loadAdminToken(config.dataDir);
    const fib = new ForwardingTable();
    const node = new DmscNode(config, fib, token);
    try {
      if (config.fibFile) fib.apply(await readFibFile(config.fibFile));
      await node.#http.listen({ host: config.api.host, port: config.api.port });
    } catch (e) {
      await node.stop();
      throw e;
    }
    const addr = node.#http.server.address();
    node.#address = typeof addr === 'object' && addr ? { host: addr.address, port: addr.port } : config.api;
    node.#ready = true;
    return node;
  }

  /** Where the API listens (the real port when 0 was asked for). */
  get apiAddress(): Listen {
    return this.#address ?? this.config.api;
  }

  async stop(): Promise<void> {
    this.#ready = false;
    await this.#http.close();
    this.fib.close();
  }

  #routes(token: string): void {
    const http = this.#http;
    http.setErrorHandler((err, _req, reply) => {
      const e = err as Error & { code?: string; statusCode?: number; validation?: unknown };
      if (e instanceof DmscError) {
        void reply.status((e as DmscError).status).send({ error: { code: e.code, message: e.message } });
      } else if (e.validation) {
        void reply.status(400).send({ error: { code: 'ERR_DMSC_INVALID_ARGUMENT', message: e.message } });
      } else {
        const status = e.statusCode && e.statusCode < 500 ? e.statusCode : 500;
        void reply.status(status).send({ error: { code: status < 500 ? 'ERR_DMSC_INVALID_ARGUMENT' : 'ERR_DMSC_INTERNAL', message: e.message } });
      }
    });
    http.setNotFoundHandler((req, reply) => {
      void reply.status(404).send({ error: { code: 'ERR_DMSC_NOT_FOUND', message: `no route ${req.method} ${req.url}` } });
    });
    const admin = async (req: { headers: { authorization?: string } }) => {
      if (!bearerMatches(req.headers.authorization, token)) {
        throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'this route needs the admin token as a Bearer credential');
      }
    };

    http.get('/healthz', async () => ({ status: 'ok', node: this.config.id }));
    http.get('/readyz', async (_req, reply) => {
      if (!this.#ready) return reply.status(503).send({ error: { code: 'ERR_DMSC_NOT_READY', message: 'starting' } });
      return { status: 'ready', node: this.config.id, generation: this.fib.generation, size: this.fib.size };
    });
    http.get<{ Querystring: { prefix?: string; limit?: number } }>('/v1/fib', {
      onRequest: admin,
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            prefix: { type: 'string', minLength: 1, maxLength: 1024 },
            limit: { type: 'integer', minimum: 1, maximum: 100000, default: 1000 },
          },
        },
      },
    }, async (req) => {
      const { prefix, limit = 1000 } = req.query;
      const under = prefix === undefined || prefix === '/' ? undefined : prefix;
      const all = this.fib.entries().filter((e) => under === undefined || e.prefix === under || e.prefix.startsWith(under + '/'));
      return { node: this.config.id, generation: this.fib.generation, size: this.fib.size, truncated: all.length > limit, entries: all.slice(0, limit) };
    });
  }
}
