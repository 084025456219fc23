// The node's policy against a real `dmsc node` process: a PUT takes effect on the very
// next request (tag requirements and denials), stale and invalid documents are refused
// without disturbing the version in effect, the CLI sets and reads policies, register-time
// rules deny capabilities at registration, and the policy survives a restart.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, register, start, tempDir, type Proc, type Registered, type Reply } from './harness.js';

const CAP = '/capability/med/x';
const ARGS = ['--heartbeat-ms', '60000'];
const GDPR_TAGS = [{ tag: 'gdpr', attribute: 'compliance', values: ['gdpr'] }];
const EU = { id: 'eu', effect: 'require', capabilities: ['/capability/med/**'], tags: ['gdpr'] };
const DENY_CLIENT = { id: 'no-client', effect: 'deny', requesters: { providers: ['client'] }, capabilities: ['/capability/med/**'] };
const NO_MED_Y = { id: 'no-med-y', effect: 'deny', on: ['register'], capabilities: ['/capability/med/y'] };

function refused(r: Reply, status: number, code: string, text?: RegExp): void {
  expect({ status: r.status, code: r.body?.error?.code }, JSON.stringify(r.body)).toEqual({ status, code });
  if (text) expect(r.body.error.message).toMatch(text);
}

describe('policy on one node', () => {
  let node: Proc;
  let medKey: string;
  let A: Registered, B: Registered, R: Registered;
  const put = (doc: unknown) => api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: doc });
  const current = async () => (await api(node.url, 'GET', '/v1/policies', { auth: node.token })).body;
  const resolve = (who: Registered, flow?: string) => api(node.url, 'POST', '/v1/resolve', { auth: who.credential, body: { capability: CAP, ...(flow ? { flow } : {}) } });
  const discover = (who: Registered, require?: string) =>
    api(node.url, 'GET', `/v1/discover?capability=${encodeURIComponent(CAP)}${require ? `&require=${require}` : ''}`, { auth: who.credential });
  const beat = (r: Registered) => api(node.url, 'POST', `/v1/agents/${r.aic}/heartbeat`, { auth: r.credential });
  /** Targets of `n` resolves by R with distinct flows, in order; each must be a 200. */
  const targets = async (n: number, tag: string) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await resolve(R, `${tag}-${i}`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      out.push(r.body.target.aic);
    }
    return out;
  };

  beforeAll(async () => {
    node = await start('node', ARGS);
    medKey = await addProvider(node, 'med', ['/capability/med/**']);
    const clientKey = await addProvider(node, 'client', ['/capability/client/**']);
    A = await register(node, medKey, [{ name: CAP, attributes: { compliance: 'gdpr' } }], 'http://127.0.0.1:9401');
    B = await register(node, medKey, [{ name: CAP }], 'http://127.0.0.1:9402');
    R = await register(node, clientKey, [{ name: '/capability/client/r' }], 'http://127.0.0.1:9403');
    for (const x of [A, B, R]) expect((await beat(x)).status).toBe(200);
  });
  afterAll(cleanup);

  it('starts with the empty allow-all version 0; flows spread over both agents', async () => {
    expect(await current()).toEqual({ version: 0, default: 'allow', rules: [], tags: [] });
    const seen = await targets(40, 'before');
    expect(new Set(seen)).toEqual(new Set([A.aic, B.aic]));
  });

  it('a require rule takes effect on the very next resolve', async () => {
    // A flow that goes to B without the rule: the first resolve after the PUT uses it.
    let toB = '';
    for (let i = 0; !toB && i < 100; i++) if ((await resolve(R, `probe-${i}`)).body.target.aic === B.aic) toB = `probe-${i}`;
    expect(toB).not.toBe('');
    expect((await discover(R, 'gdpr')).body.candidates).toEqual([]);
    const r = await put({ version: 1, tags: GDPR_TAGS, rules: [EU] });
    expect(r).toEqual({ status: 200, body: { version: 1, rules: 1 } });
    expect((await resolve(R, toB)).body.target.aic).toBe(A.aic);
    expect(await targets(20, 'after')).toEqual(Array(20).fill(A.aic));
    expect((await discover(R, 'gdpr')).body.candidates.map((c: any) => c.aic)).toEqual([A.aic]);
    const d = await discover(R);
    expect(d.status).toBe(200);
    expect(d.body.candidates.map((c: any) => [c.aic, c.tags])).toEqual([[A.aic, ['gdpr']]]);
    const fib = await api(node.url, 'GET', `/v1/fib?prefix=${CAP}`, { auth: node.token });
    expect(fib.body.entries[0].nextHops.map((h: any) => [h.id, h.tags])).toEqual([[A.aic, ['gdpr']], [B.aic, []]]);
  });

  it("a deny rule for the requester's provider takes effect on the very next resolve and discover", async () => {
    expect((await put({ version: 2, tags: GDPR_TAGS, rules: [DENY_CLIENT, EU] })).status).toBe(200);
    refused(await resolve(R, 'f'), 403, 'ERR_DMSC_FORBIDDEN', /rule 'no-client'/);
    refused(await discover(R), 403, 'ERR_DMSC_FORBIDDEN', /rule 'no-client'/);
    // Other requesters are not affected, and the require rule still applies to them.
    const other = await resolve(B, 'g');
    expect(other.status).toBe(200);
    expect(other.body.target.aic).toBe(A.aic);
  });

  it('refuses a version that is not newer, and an invalid document, keeping version 2', async () => {
    refused(await put({ version: 2, rules: [] }), 409, 'ERR_DMSC_CONFLICT', /not newer than the current version 2/);
    refused(await put({ version: 1, rules: [] }), 409, 'ERR_DMSC_CONFLICT');
    const bad = await put({ version: 3, rules: [EU, { id: 'oops', effect: 'maybe', capabilities: ['/capability/med/**'] }] });
    refused(bad, 400, 'ERR_DMSC_INVALID_POLICY');
    expect(bad.body.error.message).toBe("rules[1] (id 'oops').effect: must be 'allow', 'deny' or 'require', got 'maybe'");
    refused(await put({ version: 3, rules: [{ ...EU, capabilities: ['/capability//med'] }] }), 400, 'ERR_DMSC_INVALID_POLICY', /^rules\[0\] \(id 'eu'\)\.capabilities\[0\]: /);
    refused(await put({ version: 3, rules: [{ ...DENY_CLIENT, colour: 'red' }] }), 400, 'ERR_DMSC_INVALID_POLICY', /rules\[0\] \(id 'no-client'\).*unknown field 'colour'/);
    refused(await put({ version: 3, rules: [EU, { ...EU }] }), 400, 'ERR_DMSC_INVALID_POLICY', /rules\[1\] \(id 'eu'\)\.id: duplicate of rules\[0\]/);
    refused(await put({ version: 3, rules: [{ ...DENY_CLIENT, tags: ['gdpr'] }] }), 400, 'ERR_DMSC_INVALID_POLICY', /\.tags: is only allowed on 'require' rules/);
    const doc = await current();
    expect(doc.version).toBe(2);
    expect(doc.rules.map((r: any) => r.id)).toEqual(['no-client', 'eu']);
    refused(await resolve(R), 403, 'ERR_DMSC_FORBIDDEN');
  });

  it('sets, gets and lists policies through the CLI', async () => {
    const file = join(await tempDir(), 'policy.json');
    await writeFile(file, JSON.stringify({ version: 3, tags: GDPR_TAGS, rules: [EU, NO_MED_Y] }));
    const where = ['--url', node.url, '--data', node.dataDir];
    const set = dmsc('policy', 'set', file, ...where);
    expect(set.status, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ version: 3, rules: 2 });
    // In effect at once: R may resolve again, and still only to A.
    expect(await targets(5, 'v3')).toEqual(Array(5).fill(A.aic));

    const get = dmsc('policy', 'get', ...where);
    expect(get.status, get.stderr).toBe(0);
    expect(JSON.parse(get.stdout)).toEqual({
      version: 3, default: 'allow', tags: GDPR_TAGS,
      rules: [{ ...EU, on: ['resolve'] }, NO_MED_Y],
    });
    const old = dmsc('policy', 'get', '--version', '1', ...where);
    expect(old.status, old.stderr).toBe(0);
    expect(JSON.parse(old.stdout).version).toBe(1);

    const history = dmsc('policy', 'history', ...where);
    expect(history.status, history.stderr).toBe(0);
    const versions = JSON.parse(history.stdout).versions;
    expect(versions.map((v: any) => [v.version, v.rules])).toEqual([[3, 2], [2, 2], [1, 1]]);
    for (const v of versions) expect(Number.isNaN(Date.parse(v.setAt))).toBe(false);

    const stale = dmsc('policy', 'set', file, ...where);
    expect(stale.status).toBe(1);
    expect(stale.stderr).toMatch(/ERR_DMSC_CONFLICT/);
  });

  it('a register-scoped deny rule denies that capability at registration, naming the rule', async () => {
    const r = await api(node.url, 'POST', '/v1/agents', {
      auth: medKey, body: { endpoint: 'http://127.0.0.1:9404', capabilities: [{ name: '/capability/med/y' }, { name: '/capability/med/z' }] },
    });
    expect(r.status).toBe(201);
    expect(r.body.denied).toEqual([{ capability: '/capability/med/y', reason: "denied by policy rule 'no-med-y'" }]);
    expect(r.body.acs.capabilities.map((c: any) => c.name)).toEqual(['/capability/med/z']);
    const fib = await api(node.url, 'GET', '/v1/fib?prefix=/capability/med', { auth: node.token });
    expect(fib.body.entries.map((e: any) => e.prefix)).toEqual([CAP, '/capability/med/z']);

    const only = await api(node.url, 'POST', '/v1/agents', { auth: medKey, body: { endpoint: 'http://127.0.0.1:9405', capabilities: [{ name: '/capability/med/y' }] } });
    refused(only, 403, 'ERR_DMSC_FORBIDDEN');
    expect(only.body.error.details.denied).toEqual([{ capability: '/capability/med/y', reason: "denied by policy rule 'no-med-y'" }]);
    // 'register' rules do not apply to resolution.
    refused(await api(node.url, 'POST', '/v1/resolve', { auth: R.credential, body: { capability: '/capability/med/y' } }), 404, 'ERR_DMSC_NO_ROUTE');
  });

  it('survives a restart with the same data directory', async () => {
    await node.stop();
    node = await start('node', ARGS, node.dataDir);
    const doc = await current();
    expect(doc.version).toBe(3);
    expect(doc.rules.map((r: any) => r.id)).toEqual(['eu', 'no-med-y']);
    expect(doc.tags).toEqual(GDPR_TAGS);
    // Agents are back down until they heartbeat; then the tag mapping and rule apply again.
    for (const x of [A, B]) expect((await beat(x)).status).toBe(200);
    expect(await targets(10, 'restart')).toEqual(Array(10).fill(A.aic));
    const again = await api(node.url, 'POST', '/v1/agents', { auth: medKey, body: { endpoint: 'http://127.0.0.1:9406', capabilities: [{ name: '/capability/med/y' }] } });
    refused(again, 403, 'ERR_DMSC_FORBIDDEN');
  });
});

describe('policy tag mappings the fast path cannot hold', () => {
  afterAll(cleanup);

  it('refuses a document that would take the FIB past 64 tags, and changes nothing', async () => {
    const node = await start('node', ARGS);
    const key = await addProvider(node, 'many', ['/capability/many/**']);
    const attributes = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`a${i}`, 'x']));
    await register(node, key, [{ name: '/capability/many/x', attributes }]);
    const mapping = (prefix: string) => Array.from({ length: 64 }, (_, i) => ({ tag: `${prefix}${i}`, attribute: `a${i % 32}`, values: ['x'] }));
    const put = (doc: unknown) => api(node.url, 'PUT', '/v1/policies', { auth: node.token, body: doc });
    const fibTags = async () => (await api(node.url, 'GET', '/v1/fib?prefix=/capability/many', { auth: node.token })).body.entries[0].nextHops[0].tags;

    expect((await put({ version: 1, rules: [], tags: mapping('t') })).status).toBe(200);
    expect(await fibTags()).toHaveLength(64);
    refused(await put({ version: 2, rules: [], tags: mapping('u') }), 413, 'ERR_DMSC_LIMIT_EXCEEDED');
    expect((await api(node.url, 'GET', '/v1/policies', { auth: node.token })).body.version).toBe(1);
    expect((await fibTags()).sort()).toEqual(mapping('t').map((m) => m.tag).sort());
    expect((await api(node.url, 'GET', '/v1/policies/history', { auth: node.token })).body.versions.map((v: any) => v.version)).toEqual([1]);
    // The refused mapping is not half in force: new registrations get v1's tags.
    const other = await register(node, key, [{ name: '/capability/many/y', attributes }]);
    const seen = await api(node.url, 'GET', '/v1/discover?capability=/capability/many/y', { auth: other.credential });
    expect(seen.body.candidates[0].tags.sort()).toEqual(mapping('t').map((m) => m.tag).sort());
  });
});
