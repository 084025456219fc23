// `dmsc amc`: the AMC as its own process, serving several gateways of one domain.
import type { FastifyInstance } from 'fastify';
import { boundAddress, createServer } from '../http/server.js';
import { loadAdminToken } from '../node/admin-token.js';
import { listenError, type Listen } from '../net/listen.js';
import { Store } from '../store/store.js';
import { LocalAmc } from './amc.js';
import { amcAdminRoutes, amcGatewayRoutes, jwksRoute, revocationRoute } from './routes.js';

export interface AmcConfig {
  readonly id: string;
  readonly dataDir: string;
  readonly api: Listen;
  readonly domain: string;
  readonly credentialTtlMs: number;
}

export const DEFAULT_AMC_API: Listen = { host: '127.0.0.1', port: 7060 };

export class AmcServer {
  readonly amc: LocalAmc;
  readonly #http: FastifyInstance;
  readonly #store: Store;
  #address: Listen;

  private constructor(amc: LocalAmc, store: Store, http: FastifyInstance, address: Listen) {
    this.amc = amc;
    this.#store = store;
    this.#http = http;
    this.#address = address;
  }

  static async start(config: AmcConfig): Promise<AmcServer> {
    const token = await loadAdminToken(config.dataDir);
    const store = Store.open(config.dataDir);
    const http = createServer();
    try {
      const amc = await LocalAmc.open(store, { domain: config.domain, credentialTtlMs: config.credentialTtlMs });
      http.get('/healthz', async () => ({ status: 'ok', amc: config.id, domain: config.domain }));
      jwksRoute(http, () => amc.jwks());
      amcAdminRoutes(http, amc, token);
      revocationRoute(http, amc, token);
      amcGatewayRoutes(http, amc, token);
      await http.listen({ host: config.api.host, port: config.api.port }).catch((e: unknown) => {
        throw listenError({ name: 'AMC API', flag: '--api' }, config.api, e);
      });
      return new AmcServer(amc, store, http, boundAddress(http, config.api));
    } catch (e) {
      await http.close();
      await store.close();
      throw e;
    }
  }

  get apiAddress(): Listen {
    return this.#address;
  }

  async stop(): Promise<void> {
    await this.#http.close();
    await this.amc.close();
    await this.#store.close();
  }
}
