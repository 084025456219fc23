// A gateway's own Ed25519 key, as its AMC certified it (`dmsc-grant-key+jwt`: claims
// `sub` = the gateway, `dom`, `cnf.jwk` = the public key). The key signs the session
// grants the gateway issues, which carry the certificate as `gwc`, and it proves the
// gateway's identity in the peering handshake. The two uses sign different things (a
// JWS signing input, a peering transcript that starts with its own context string), so
// a signature made for one is never valid for the other.
//
// The certificate is obtained at start and renewed at half its life; after a failed
// renewal it is tried again a minute later while the one held stays in use.
import { DmscError } from '../errors.js';
import type { Amc } from './amc.js';
import type { KeyRing } from './key-ring.js';
import type { SigningKey } from './jwt.js';

export interface CertifiedKey {
  readonly key: SigningKey;
  /** The AMC's certificate of `key` (a compact JWT). */
  readonly certificate: string;
  /** Epoch milliseconds. */
  readonly expiresAt: number;
}

export class GatewayKey {
  readonly #amc: Amc;
  readonly #ring: KeyRing;
  readonly #gateway: string;
  readonly #log: (event: Record<string, unknown>) => void;
  #held: { certificate: string; kid: string; expiresAt: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(amc: Amc, ring: KeyRing, gateway: string, log: (event: Record<string, unknown>) => void = () => {}) {
    this.#amc = amc;
    this.#ring = ring;
    this.#gateway = gateway;
    this.#log = log;
  }

  /** Has the active key certified; rejects if the AMC refuses or cannot be reached. */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#certify();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * The active key with its valid certificate.
   * @throws ERR_DMSC_NOT_READY when no valid certificate for the active key is held.
   */
  current(): CertifiedKey {
    const held = this.#held;
    const key = this.#ring.active;
    if (!held || held.kid !== key.kid || held.expiresAt <= Date.now()) {
      throw new DmscError('ERR_DMSC_NOT_READY', 'this gateway holds no valid AMC certificate for its key');
    }
    return { key, certificate: held.certificate, expiresAt: held.expiresAt };
  }

  async #certify(): Promise<void> {
    const key = this.#ring.active;
    const { credential, expiresAt } = await this.#amc.certifyGrantKey(this.#gateway, key.publicJwk);
    this.#held = { certificate: credential, kid: key.kid, expiresAt };
    this.#renew(Math.max(1000, (expiresAt - Date.now()) / 2));
  }

  #renew(inMs: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#certify().catch((e) => {
        this.#log({ msg: 'gateway key certificate renewal failed', code: (e as DmscError).code, error: (e as Error).message });
        this.#renew(60_000);
      });
    }, Math.min(inMs, 2 ** 31 - 1));
    this.#timer.unref();
  }
}
