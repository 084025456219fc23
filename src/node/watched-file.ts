// A JSON file operators edit while the node runs (task rules, the taxonomy): read and
// checked at start, where a fault stops the start; read again when its modification time
// changes, where a fault is logged and the value before stays.
import { readFileSync, statSync } from 'node:fs';
import { DmscTypeError, type DmscError } from '../errors.js';

export class WatchedFile<T> {
  readonly file: string;
  readonly #what: string;
  readonly #parse: (doc: unknown, source: string) => T;
  readonly #log: (event: Record<string, unknown>) => void;
  readonly #checkEveryMs: number;
  #checkedAt = 0;
  #mtime = 0;
  #value: T;

  /**
   * `parse` checks the parsed JSON and throws a typed error naming the fault; `what`
   * names the file in messages ("task rules", "taxonomy"). With `checkEveryMs`, the file
   * is looked at no more often than that (for a value read on a hot path).
   * @throws ERR_DMSC_INVALID_CONFIG when the file cannot be read or checked now.
   */
  constructor(file: string, what: string, parse: (doc: unknown, source: string) => T, log: (event: Record<string, unknown>) => void = () => {}, checkEveryMs = 0) {
    this.file = file;
    this.#checkEveryMs = checkEveryMs;
    this.#what = what;
    this.#parse = parse;
    this.#log = log;
    const first = this.#read();
    if (first instanceof Error) throw first;
    this.#value = first;
  }

  /** The current value: the file's, read again if it changed and still good. */
  get value(): T {
    const now = Date.now();
    if (this.#checkEveryMs > 0 && now - this.#checkedAt < this.#checkEveryMs) return this.#value;
    this.#checkedAt = now;
    let mtime: number;
    try {
      mtime = statSync(this.file).mtimeMs;
    } catch (e) {
      this.#log({ msg: `${this.#what} unreadable; keeping the one loaded before`, file: this.file, error: (e as Error).message });
      return this.#value;
    }
    if (mtime === this.#mtime) return this.#value;
    const next = this.#read();
    if (next instanceof Error) {
      // Not read again until it changes once more.
      this.#mtime = mtime;
      this.#log({ msg: `${this.#what} rejected; keeping the one loaded before`, file: this.file, code: (next as DmscError).code, error: next.message });
    } else {
      this.#value = next;
      this.#log({ msg: `${this.#what} reloaded`, file: this.file });
    }
    return this.#value;
  }

  #read(): T | Error {
    const source = `${this.#what} ${this.file}`;
    try {
      const mtime = statSync(this.file).mtimeMs;
      const value = this.#parse(JSON.parse(readFileSync(this.file, 'utf8')), source);
      this.#mtime = mtime;
      return value;
    } catch (e) {
      return e instanceof DmscTypeError ? e : new DmscTypeError('ERR_DMSC_INVALID_CONFIG', `${source}: ${(e as Error).message}`);
    }
  }
}
