// A standalone AMC reached over HTTP. The gateway authenticates with its gateway key and
// polls for revocations and key changes, so a revocation reaches every gateway of the
// domain within one poll interval (200 ms by default).
import type { JSONWebKeySet, JWK } from 'jose';
import { Pool } from 'undici';
import { DmscError } from '../errors.js';
import { callJson } from '../http/client.js';
import type { Amc, AmcUpdates, Authorization, Issued } from './amc.js';

export interface RemoteAmcOptions {
  readonly url: string;
  /** This node's id: the AMC must know the gateway key under the same id. */
  readonly gatewayId: string;
  readonly gatewayKey: string;
  readonly pollMs?: number;
  readonly timeoutMs?: number;
}

export class RemoteAmc implements Amc {
  domain = '';
  issuer = '';
  readonly #pool: Pool;
  readonly #url: string;
  readonly #key: string;
  readonly #pollMs: number;
  readonly #timeoutMs: number;
  readonly #revoked = new Map<string, number>();
  readonly #listeners: ((c: { revoked: string[]; keys: boolean }) => void)[] = [];
  #jwks: JSONWebKeySet = { keys: [] };
  #jwksText = '';
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;
  #closed = false;

  private constructor(options: RemoteAmcOptions) {
    this.#url = options.url.replace(/\/+$/, '');
    this.#pool = new Pool(this.#url, { connections: 8, pipelining: 1 });
    this.#key = options.gatewayKey;
    this.#pollMs = options.pollMs ?? 200;
    this.#timeoutMs = options.timeoutMs ?? 5000;
  }

  /** Connects: the first poll must succeed, so a wrong URL or key fails the start. */
  static async connect(options: RemoteAmcOptions): Promise<RemoteAmc> {
    const amc = new RemoteAmc(options);
    try {
      const gateway = await amc.#poll();
      if (gateway !== options.gatewayId) {
        throw new DmscError('ERR_DMSC_INVALID_CONFIG', `the AMC knows this gateway key as '${gateway}', but this node's --id is '${options.gatewayId}'`);
      }
    } catch (e) {
      await amc.close();
      throw e;
    }
    amc.#schedule();
    return amc;
  }

  authorize(providerKey: string, _gateway: string, capabilities: readonly string[]): Promise<Authorization> {
    return this.#call<Authorization>('POST', '/v1/amc/authorize', { providerKey, capabilities });
  }

  issue(_gateway: string, aic: string, provider: string, scope: readonly string[]): Promise<Issued> {
    return this.#call<Issued>('POST', '/v1/amc/issue', { aic, provider, scope });
  }

  async revoke(aic: string, reason: string): Promise<void> {
    await this.#call('POST', '/v1/amc/revoke', { aic, reason });
    await this.refresh();
  }

  certifyGrantKey(_gateway: string, jwk: JWK): Promise<Issued> {
    return this.#call<Issued>('POST', '/v1/amc/grant-key', { jwk });
  }

  isRevoked(aic: string): boolean {
    return this.#revoked.has(aic);
  }

  jwks(): JSONWebKeySet {
    return this.#jwks;
  }

  refresh(): Promise<void> {
    this.#inflight ??= this.#poll().then(() => undefined).finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  onChange(listener: (change: { revoked: string[]; keys: boolean }) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#pool.close();
  }

  /** One poll; returns the gateway id the AMC knows our key by. */
  async #poll(): Promise<string> {
    const u = await this.#call<AmcUpdates>('GET', `/v1/amc/updates?since=${this.#seq}`);
    this.domain = u.domain;
    this.issuer = `dmsc-amc:${u.domain}`;
    const now = Date.now();
    const fresh: string[] = [];
    for (const r of u.revoked) {
      if (!this.#revoked.has(r.aic)) fresh.push(r.aic);
      this.#revoked.set(r.aic, r.until);
    }
    for (const [aic, until] of this.#revoked) if (until < now) this.#revoked.delete(aic);
    this.#seq = u.seq;
    const text = JSON.stringify(u.jwks);
    const keys = text !== this.#jwksText;
    if (keys) {
      this.#jwks = u.jwks;
      this.#jwksText = text;
    }
    if (fresh.length || keys) for (const l of this.#listeners) l({ revoked: fresh, keys });
    return u.gateway;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      // A failed poll is retried at the next tick; credentials keep verifying with the
      // keys already known.
      this.refresh().catch(() => {}).finally(() => this.#schedule());
    }, this.#pollMs);
    this.#timer.unref();
  }

  #call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    return callJson<T>(this.#url, { method, path, bearer: this.#key, body, timeoutMs: this.#timeoutMs }, 'AMC', 'ERR_DMSC_AMC_UNAVAILABLE', this.#pool);
  }
}
