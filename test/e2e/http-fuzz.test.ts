// Bad input never crashes the node or gets a 5xx: fast-check throws random JSON, random
// text and random credentials at every route of a real node process. Every answer is
// JSON; every refusal is a 4xx with an ERR_DMSC_* code; the node stays healthy.
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, register, start, type Proc, type Registered } from './harness.js';

const ROUTES: [string, string][] = [
  ['POST', '/v1/agents'], ['GET', '/v1/agents/:aic'], ['DELETE', '/v1/agents/:aic'], ['POST', '/v1/agents/:aic/heartbeat'],
  ['POST', '/v1/agents/:aic/renew'], ['GET', '/v1/discover'], ['POST', '/v1/resolve'], ['PUT', '/v1/policies'],
  ['GET', '/v1/policies'], ['POST', '/v1/providers'], ['POST', '/v1/revocations'], ['POST', '/v1/gateways'], ['GET', '/v1/fib'],
  ['POST', '/v1/tasks'], ['GET', '/v1/tasks'], ['GET', '/v1/tasks/:aic'], ['DELETE', '/v1/tasks/:aic'], ['POST', '/v1/tasks/:aic/decision'],
  ['POST', '/v1/intents'], ['GET', '/v1/taxonomy'],
  ['GET', '/v1/audit'], ['POST', '/v1/observers'], ['GET', '/v1/overview'], ['GET', '/metrics'], ['GET', '/console/:aic'],
];

describe('random input against every route', () => {
  let node: Proc;
  let agent: Registered;
  let providerKey: string;
  beforeAll(async () => {
    // Random credentials by the hundred from one address: not throttled here (the
    // throttle's own test is auth-flood.test.ts).
    node = await start('node', ['--heartbeat-ms', '60000', '--auth-fail-burst', '100000']);
    providerKey = await addProvider(node, 'fz', ['/capability/fz/**']);
    agent = await register(node, providerKey, [{ name: '/capability/fz/a' }]);
  });
  afterAll(cleanup);

  it('answers every request with JSON, never a 5xx, and refusals carry an ERR_DMSC_* code', async () => {
    const text = fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom('', '/', '//', '/capability/fz/a', '%', '%00', '..', 'a'.repeat(300)));
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc.record({ endpoint: text, capabilities: fc.array(fc.record({ name: text, weight: fc.jsonValue(), attributes: fc.jsonValue() }, { requiredKeys: [] }), { maxLength: 3 }) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.record({ capability: text, require: fc.jsonValue(), flow: fc.jsonValue(), version: fc.jsonValue(), rules: fc.jsonValue() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.record({ intent: fc.oneof(text, fc.jsonValue()), capability: text, limit: fc.jsonValue(), exclude: fc.jsonValue() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.record({
        task: fc.record({
          text,
          input: fc.jsonValue({ maxDepth: 2 }),
          subtasks: fc.array(fc.record({ id: fc.constantFrom('a', 'b', 'input', '', text), capability: fc.oneof(text, fc.constant('{{a.output.x}}')), dependsOn: fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 3 }), input: fc.jsonValue({ maxDepth: 2 }), via: fc.jsonValue() }, { requiredKeys: [] }), { maxLength: 3 }),
          constraints: fc.jsonValue({ maxDepth: 2 }),
        }, { requiredKeys: [] }),
        decision: fc.constantFrom('retry', 'skip', 'abort', 'x'),
      }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.string({ maxLength: 60 }),
    );
    const auth = fc.constantFrom<'none' | 'admin' | 'agent' | 'provider' | 'junk'>('none', 'admin', 'agent', 'provider', 'junk');
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ROUTES), text, body, auth, fc.boolean(), text, async ([method, route], param, payload, who, json, query) => {
        const path = route.replace(':aic', encodeURIComponent(param)) + (route.includes('discover') || route.includes('fib') ? `?capability=${encodeURIComponent(query)}&prefix=${encodeURIComponent(query)}` : '')
          + (route.includes('audit') ? `?since=${encodeURIComponent(query)}&aic=${encodeURIComponent(param)}&kind=${encodeURIComponent(query)}` : '');
        const token = { none: undefined, admin: node.token, agent: agent.credential, provider: providerKey, junk: 'eyJ' + param }[who];
        const res = await request(node.url + path, {
          method: method as 'GET',
          headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(method !== 'GET' ? { 'content-type': json ? 'application/json' : 'text/plain' } : {}) },
          ...(method !== 'GET' ? { body: payload } : {}),
        });
        const raw = await res.body.text();
        expect(res.statusCode, `${method} ${path} -> ${raw}`).toBeLessThan(500);
        // No body, or not JSON (the metrics text, the console's files).
        if (res.statusCode === 204 || (res.statusCode < 400 && (route === '/metrics' || route.startsWith('/console')))) return;
        const parsed = JSON.parse(raw);
        if (res.statusCode >= 400) expect(parsed.error.code, raw).toMatch(/^ERR_DMSC_[A-Z_]+$/);
      }),
      { numRuns: 400, seed: 424242 },
    );
    expect((await api(node.url, 'GET', '/healthz')).status).toBe(200);
    // Still fully working: the agent registered before the storm resolves (if the storm
    // did not deregister it with the admin token, register a fresh one).
    const still = (await api(node.url, 'GET', `/v1/agents/${agent.aic}`, { auth: node.token })).status === 200 ? agent : await register(node, providerKey, [{ name: '/capability/fz/a' }]);
    await api(node.url, 'POST', `/v1/agents/${still.aic}/heartbeat`, { auth: still.credential });
    const r = await api(node.url, 'POST', '/v1/resolve', { auth: still.credential, body: { capability: '/capability/fz/a' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  });
});
