// Controller keys: who may program this node's FIB, and which prefixes. A key is shown
// once when it is made; the store keeps only its SHA-256, so a copy of the data directory
// does not give the keys away.
import { createHash, randomBytes } from 'node:crypto';
import { DmscError, DmscTypeError } from '../errors.js';
import { checkProvider } from '../identity/amc.js';
import { PatternSet } from '../policy/pattern.js';
import type { Store } from '../store/store.js';

export interface ControllerRecord {
  readonly name: string;
  readonly scopes: readonly string[];
  readonly keyHash: string;
  readonly createdAt: number;
}

export interface ControllerKey {
  readonly name: string;
  readonly scopes: readonly string[];
  readonly patterns: PatternSet;
}

const DB = 'fib-controller-keys';
const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

export class ControllerKeys {
  readonly #store: Store;
  readonly #byHash = new Map<string, ControllerKey>();
  readonly #records = new Map<string, ControllerRecord>();
  readonly #revokeListeners: ((name: string) => void)[] = [];

  constructor(store: Store) {
    this.#store = store;
    for (const { value } of store.db<ControllerRecord>(DB).getRange()) this.#add(value);
  }

  /** Makes a controller key; returns it once. Names and scopes follow the providers' rules. */
  async add(name: string, scopes: readonly string[]): Promise<{ name: string; scopes: string[]; key: string; createdAt: string }> {
    // A controller name and its scopes read like a provider's.
    let checked: string[];
    try {
      checked = checkProvider(name, scopes);
    } catch (e) {
      throw new DmscTypeError((e as DmscError).code, (e as Error).message.replace(/provider/g, 'controller'));
    }
    if (name === 'admin') throw new DmscTypeError('ERR_DMSC_INVALID_ARGUMENT', 'the controller name admin is reserved for the admin token');
    if (this.#records.has(name)) throw new DmscError('ERR_DMSC_CONFLICT', `controller '${name}' exists; revoke it first to issue a new key`);
    const key = `dmsc_ck_${randomBytes(32).toString('base64url')}`;
    const record: ControllerRecord = { name, scopes: checked, keyHash: hashKey(key), createdAt: Date.now() };
    await this.#store.durable(() => void this.#store.db<ControllerRecord>(DB).put(name, record));
    this.#add(record);
    return { name, scopes: checked, key, createdAt: new Date(record.createdAt).toISOString() };
  }

  list(): { name: string; scopes: readonly string[]; createdAt: string }[] {
    return [...this.#records.values()].map((r) => ({ name: r.name, scopes: r.scopes, createdAt: new Date(r.createdAt).toISOString() }));
  }

  /** Revokes a key: its calls are refused from now on, and its open sessions end. */
  async revoke(name: string): Promise<void> {
    const r = this.#records.get(name);
    if (!r) throw new DmscError('ERR_DMSC_NOT_FOUND', `no controller '${name}'`);
    await this.#store.durable(() => void this.#store.db<ControllerRecord>(DB).remove(name));
    this.#records.delete(name);
    this.#byHash.delete(r.keyHash);
    for (const l of this.#revokeListeners) l(name);
  }

  onRevoke(listener: (name: string) => void): void {
    this.#revokeListeners.push(listener);
  }

  /** The controller a key belongs to, or undefined. */
  verify(key: string): ControllerKey | undefined {
    return this.#byHash.get(hashKey(key));
  }

  #add(r: ControllerRecord): void {
    this.#records.set(r.name, r);
    this.#byHash.set(r.keyHash, { name: r.name, scopes: r.scopes, patterns: new PatternSet(r.scopes) });
  }
}
