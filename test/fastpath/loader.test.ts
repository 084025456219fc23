// Without the addon, ForwardingTable fails with one clear error and ReferenceTable works.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('native loader', () => {
  it('explains what it tried when the addon cannot load', () => {
    const script = `
      import { ForwardingTable, ReferenceTable, nativeAvailable } from ${JSON.stringify(new URL('../../dist/index.js', import.meta.url).href)};
      let err;
      try { new ForwardingTable(); } catch (e) { err = e; }
      const ref = new ReferenceTable();
      ref.upsert('/a', [{ id: 'x' }]);
      console.log(JSON.stringify({ code: err?.code, message: err?.message, available: nativeAvailable(), ref: ref.lookup('/a/b') }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, DMSC_NATIVE_PATH: '/nonexistent/dmsc_fastpath.node' },
      encoding: 'utf8',
    });
    const r = JSON.parse(out);
    expect(r.code).toBe('ERR_DMSC_NATIVE_UNAVAILABLE');
    expect(r.message).toContain('/nonexistent/dmsc_fastpath.node: not found');
    expect(r.message).toContain('npm run build');
    expect(r.available).toBe(false);
    expect(r.ref).toEqual({ prefix: '/a', nextHop: 'x', failover: false });
  });
});
