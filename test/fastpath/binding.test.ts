// The native binding itself (below ForwardingTable's checks) must not crash on what a
// caller of the addon could pass: mistyped arrays, aliased buffers, bad numbers.
import { describe, expect, it } from 'vitest';
import { loadNative } from '../../src/fastpath/native.js';
import { ForwardingTable } from '../../src/index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('native binding', () => {
  it('rejects typed arrays of the wrong element type', () => {
    const t = new (loadNative().NativeTable)();
    const bytes = new Uint8Array(16);
    const offsets = new Uint32Array([0, 2]);
    const out = new Int32Array(1);
    expect(codeOf(() => t.lookupPacked(bytes, offsets, 1, new Uint8Array(4) as never, 0, 0, 0))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => t.lookupPacked(bytes, new Uint8Array(8) as never, 1, out, 0, 0, 0))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => t.lookupPacked(new Uint32Array(4) as never, offsets, 1, out, 0, 0, 0))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => t.lookupPacked(bytes, offsets, 1, out, 0, 0, 0, new Int32Array(1) as never))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => t.stage(bytes, new Uint8Array(12) as never))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => t.stage({} as never, new Uint32Array(3)))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    const lookup = t.lookupFunction();
    expect(codeOf(() => lookup(5 as never, 0, 0, 0, 0))).toBe('ERR_DMSC_INVALID_NAME');
    expect(codeOf(() => lookup(undefined as never))).toBe('ERR_DMSC_INVALID_NAME');
    expect(codeOf(() => lookup('/a', 'x' as never, 0, 0, 0))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => lookup('/a', 0, 0, 2, {} as never))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => lookup('//'))).toBe('ERR_DMSC_INVALID_NAME');
    expect(lookup('/a')).toBe(-1);
    expect(codeOf(() => t.setHealth('x', 7, -1))).toBe('ERR_DMSC_OUT_OF_RANGE');
    expect(codeOf(() => t.nextHopId('x' as never, -1))).toBe('ERR_DMSC_INVALID_ARGUMENT');
    expect(codeOf(() => t.lookupPacked(bytes, offsets, 5, out, 0, 0, 0))).toBe('ERR_DMSC_INVALID_OFFSETS');
    t.close();
    // The bound function outlives close() in JavaScript, and refuses to read.
    expect(codeOf(() => lookup('/a'))).toBe('ERR_DMSC_CLOSED');
  });

  it('survives out aliasing offsets: every result is a handle, -1 or -2', () => {
    const fib = new ForwardingTable();
    fib.upsert('/a', [{ id: 'x' }]);
    const names = fib.pack(['/a', '/a/b', '/b', '/a']);
    const n = names.offsets.length - 1;
    const shared = new ArrayBuffer(4 * (n + 1));
    const offsets = new Uint32Array(shared);
    offsets.set(names.offsets);
    const out = new Int32Array(shared, 0, n); // writing out rewrites the offsets under the lookup
    fib.lookupPacked(names.bytes, offsets, out);
    for (const h of out) expect(h === -1 || h === -2 || fib.nextHopId(h) === 'x').toBe(true);
    fib.close();
  });

  it('drops a staged batch when one chunk is bad, leaving the table as it was', () => {
    const t = new (loadNative().NativeTable)();
    const enc = new TextEncoder();
    const good = enc.encode('/ax');
    // one upsert of /a to id x: header, id table, op
    t.stage(good, new Uint32Array([1, 1, 0, 2, 1, 0, 0, 2, 1, 0, 100, 0, 0]));
    // A chunk after the first is decoded in the background: its error comes from the
    // next stage() or from commit(), once.
    const errors = [codeOf(() => t.stage(good, new Uint32Array([1, 0, 0, 9, 9, 9]))), codeOf(() => t.commit())];
    expect(errors.filter((e) => e !== undefined)).toEqual(['ERR_DMSC_MALFORMED_BATCH']);
    expect(t.commit()).toBe(0);
    expect(t.size()).toBe(0);
    t.close();
  });
});
