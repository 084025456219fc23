// Two names `/n<i>` with the same 32-bit hash, found by the birthday bound (about 2^16
// names): what a table compared by hash first must still tell apart.
export function collidingNames(hash: (name: string) => number, from = 0): [string, string] {
  const seen = new Map<number, string>();
  for (let i = from; ; i++) {
    const name = `/n${i}`;
    const h = hash(name);
    const other = seen.get(h);
    if (other !== undefined) return [other, name];
    seen.set(h, name);
  }
}
