// Both implementations, for suites that check the same semantics on each.
import { ForwardingTable, ReferenceTable } from '../../src/index.js';

export type AnyTable = ForwardingTable | ReferenceTable;

export const IMPLEMENTATIONS: Array<[string, () => AnyTable]> = [
  ['ForwardingTable', () => new ForwardingTable()],
  ['ReferenceTable', () => new ReferenceTable()],
];

/** Runs fn on a fresh table and closes it afterwards. */
export function withTable<T>(make: () => AnyTable, fn: (t: AnyTable) => T): T {
  const t = make();
  try {
    return fn(t);
  } finally {
    t.close();
  }
}

/** Counts the next hop chosen over n lookups. */
export function shares(t: AnyTable, name: string, n: number, flowOf?: (i: number) => number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = t.lookup(name, flowOf ? { flow: flowOf(i) } : undefined);
    const k = r ? r.nextHop : '(none)';
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}
