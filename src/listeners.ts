// Telling listeners of a change that has been made. A listener that throws has a bug of
// its own: the change stands, the listeners after it still hear of it, and the error
// becomes a process warning (code ERR_DMSC_INTERNAL) instead of reaching the caller, which
// would take a change already made for one that failed and undo only its own half of it.

/** Calls each listener with `args`; one that throws is reported and passed over. */
export function notifyAll<A extends unknown[]>(listeners: readonly ((...args: A) => void)[], ...args: A): void {
  for (const l of listeners) {
    try {
      l(...args);
    } catch (e) {
      process.emitWarning(`a listener of a change failed: ${e instanceof Error ? e.message : String(e)}`, { code: 'ERR_DMSC_INTERNAL', detail: e instanceof Error ? e.stack : undefined });
    }
  }
}
