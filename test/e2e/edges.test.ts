// A node at its edges, against a real process and raw sockets: names the data plane could
// never serve are refused at registration (naming the place) and never reach the
// directory or the audit log, while every name the grammar accepts reaches its agent
// through the data plane; requests that are not HTTP/1.1 the data plane can take get an
// answer (4xx/5xx with the JSON error body) before the close, on the native relay and on
// the Node listener alike; idle connections close when the README says; a port in use
// names its listener and flag.
import { createServer, connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nameFromPath, namePath, nameProblem } from '../../src/names.js';
import { Store } from '../../src/store/store.js';
import { addProvider, api, cleanup, dmsc, register, start, startScript, tempDir, type Proc } from './harness.js';

const UPSTREAM = new URL('./upstream.mjs', import.meta.url).pathname;

interface Exchange {
  /** The status of the first answer, or 0 for none. */
  status: number;
  code: string | undefined;
  /** The connection closed (within the wait). */
  closed: boolean;
  /** When it closed, ms after the bytes were sent. */
  closedAfter: number;
}

/** Sends `bytes` on a fresh connection to HOST:PORT and reads until it closes (or `waitMs`). */
function exchange(hostPort: string, bytes: string | Buffer, waitMs = 3000, sockets?: Socket[]): Promise<Exchange> {
  const [host, port] = hostPort.replace(/^https?:\/\//, '').split(':');
  return new Promise((resolve) => {
    const s = connect(Number(port), host!);
    sockets?.push(s);
    let out = '';
    const t0 = Date.now();
    const done = (closed: boolean) => {
      clearTimeout(timer);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(out);
      const body = out.indexOf('\r\n\r\n');
      let code: string | undefined;
      try {
        code = body >= 0 ? JSON.parse(out.slice(body + 4)).error?.code : undefined;
      } catch {
        code = undefined;
      }
      resolve({ status: status ? Number(status[1]) : 0, code, closed, closedAfter: Date.now() - t0 });
      s.destroy();
    };
    const timer = setTimeout(() => done(false), waitMs);
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => done(true));
    s.on('connect', () => s.write(bytes));
  });
}

describe('a node at its edges', () => {
  let node: Proc;
  let plain: Proc;
  let key: string;
  let requester: { aic: string; credential: string };
  let upstream: { url: string };
  const sockets: Socket[] = [];

  beforeAll(async () => {
    node = await start('node', ['--heartbeat-ms', '600000']);
    // The Node listener alone: a host name takes no native relay.
    plain = await start('node', ['--heartbeat-ms', '600000', '--dataplane', 'localhost:0']);
    key = await addProvider(node, 'acme', ['/capability/**']);
    requester = await register(node, key, [{ name: '/capability/requester' }]);
    const s = await startScript<{ port: number }>(UPSTREAM, ['--name', 'echo']);
    upstream = { url: `http://127.0.0.1:${s.info.port}` };
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await cleanup();
  });

  it('refuses at registration names the data plane could never serve, naming the place; none reaches the directory or the audit log', async () => {
    for (const [name, why] of [
      ['/capability/a\nb', /control character \(U\+000A\) at character 14/],
      ['/capability/x\r\nx-evil: 1', /control character \(U\+000D\)/],
      ['/capability/a b', /white space \(U\+0020\) at character 14/],
      ['/capability/../admin', /'\.\.' component/],
      ['/capability/pay\u202egnp.exe', /bidirectional control \(U\+202E\) at character 16/],
    ] as const) {
      const r = await api(node.url, 'POST', '/v1/agents', { auth: key, body: { endpoint: upstream.url, capabilities: [{ name }] } });
      expect({ status: r.status, code: r.body.error?.code }, name).toEqual({ status: 400, code: 'ERR_DMSC_INVALID_NAME' });
      expect(r.body.error.message).toMatch(/body\.capabilities\[0\]\.name/);
      expect(r.body.error.message).toMatch(why);
      // The message itself holds no raw control or bidirectional character.
      expect(r.body.error.message).not.toMatch(/[\n\r\u202e]/);
    }
    const agents = await api(node.url, 'GET', '/v1/agents', { auth: node.token });
    const audit = await api(node.url, 'GET', '/v1/audit?limit=1000', { auth: node.token });
    for (const text of [JSON.stringify(agents.body), JSON.stringify(audit.body)]) {
      expect(text).not.toMatch(/evil|pay.gnp|\.\.\/admin|a b|\\n|\\u202e/);
    }
    // A name that is one in its URI form only: the data plane decodes, and refuses.
    const r = await request(`${node.dataplane}/capability/a%0D%0Ax-evil:%201`, { headers: { authorization: `Bearer ${requester.credential}` } });
    expect(r.statusCode).toBe(400);
    expect(((await r.body.json()) as any).error.code).toBe('ERR_DMSC_INVALID_NAME');
  });

  it('carries every name the grammar accepts through the data plane to its agent, in URI form', async () => {
    const chars = ['a', 'Z', '0', '-', '.', '_', '~', '!', '$', '&', "'", '(', ')', '*', '+', ',', ';', '=', ':', '@', '%', '?', '#', '[', ']', '"', '<', '>', '^', '`', '{', '|', '}', 'é', '翻', 'ع', '😀', '\u200d'];
    const component = fc.array(fc.constantFrom(...chars), { minLength: 1, maxLength: 5 }).map((cs) => cs.join(''));
    const name = fc.array(component, { minLength: 1, maxLength: 3 }).map((cs) => `/capability/${cs.join('/')}`).filter((n) => nameProblem(n) === null);
    let seen = 0;
    await fc.assert(fc.asyncProperty(name, fc.constantFrom('', '/', '/v1/jobs', '/%C3%A9t%C3%A9/100%25'), async (capability, below) => {
      const r = await api(node.url, 'POST', '/v1/agents', { auth: key, body: { endpoint: `${upstream.url}/base`, capabilities: [{ name: capability }] } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      // Twice: the second may be the native relay's, once the node has taught it.
      for (let i = 0; i < 2; i++) {
        const res = await request(`${node.dataplane}${namePath(capability)}${below}?q=1`, { headers: { authorization: `Bearer ${requester.credential}` } });
        const text = await res.body.text();
        expect(res.statusCode, `${capability} ${text}`).toBe(200);
        const got = JSON.parse(text);
        expect(got.path).toBe(`/base${below}?q=1`);
        expect(nameFromPath(got.capability)).toEqual({ name: capability });
        expect(nameFromPath(res.headers['x-dmsc-capability'] as string)).toEqual({ name: capability });
      }
      await api(node.url, 'DELETE', `/v1/agents/${r.body.aic}`, { auth: node.token });
      seen++;
    }), { numRuns: 40 });
    expect(seen).toBe(40);
  }, 120_000);

  it('answers what it cannot serve, then closes: unknown methods 501, CONNECT 405, HTTP/2 505, smuggling 400, oversized heads 431', async () => {
    const auth = `authorization: Bearer ${requester.credential}\r\n`;
    const cases: [string, string | Buffer, number, string][] = [
      ['unknown method', `FOO /capability/requester HTTP/1.1\r\nhost: x\r\n${auth}\r\n`, 501, 'ERR_DMSC_NOT_IMPLEMENTED'],
      ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n', 405, 'ERR_DMSC_METHOD_NOT_ALLOWED'],
      ['HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505, 'ERR_DMSC_HTTP_VERSION'],
      ['content-length with transfer-encoding', `POST /capability/requester HTTP/1.1\r\nhost: x\r\n${auth}content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'ERR_DMSC_MALFORMED_REQUEST'],
      ['two content-lengths', `POST /capability/requester HTTP/1.1\r\nhost: x\r\n${auth}content-length: 1\r\ncontent-length: 2\r\n\r\nab`, 400, 'ERR_DMSC_MALFORMED_REQUEST'],
      ['a 1 MB header', `GET /capability/requester HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(1 << 20)}\r\n\r\n`, 431, 'ERR_DMSC_HEADERS_TOO_LARGE'],
      ['10,000 headers', `GET /capability/requester HTTP/1.1\r\nhost: x\r\n${'x-h: 1\r\n'.repeat(10_000)}\r\n`, 431, 'ERR_DMSC_HEADERS_TOO_LARGE'],
    ];
    for (const [listener, p] of [['native relay', node], ['Node listener', plain]] as const) {
      for (const [what, bytes, status, code] of cases) {
        const r = await exchange(p.dataplane!, bytes, 5000, sockets);
        expect({ status: r.status, code: r.code, closed: r.closed }, `${what} on the ${listener}`).toEqual({ status, code, closed: true });
      }
    }
  }, 60_000);

  it('closes a connection idle for 30 s, and one whose request head stops coming, on both listeners', async () => {
    // One request, answered, then nothing.
    const idle = (p: Proc) => exchange(p.dataplane!, `GET /capability/none HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${requester.credential}\r\n\r\n`, 40_000, sockets);
    const stalled = (p: Proc) => exchange(p.dataplane!, 'GET /capability/none HTTP/1.1\r\nhost: x\r\n', 40_000, sockets);
    const [a, b, c, d] = await Promise.all([idle(node), idle(plain), stalled(node), stalled(plain)]);
    for (const [what, r] of [['idle, relay', a], ['idle, Node', b]] as const) {
      // Answered (404 there, 401 here: the credential is the other node's), kept alive, then closed.
      expect([401, 404], what).toContain(r.status);
      expect(r.closed, what).toBe(true);
      expect(r.closedAfter, what).toBeGreaterThanOrEqual(29_000);
      expect(r.closedAfter, what).toBeLessThan(35_000);
    }
    for (const [what, r] of [['head, relay', c], ['head, Node', d]] as const) {
      expect({ status: r.status, code: r.code, closed: r.closed }, what).toEqual({ status: 408, code: 'ERR_DMSC_REQUEST_TIMEOUT', closed: true });
      expect(r.closedAfter, what).toBeGreaterThanOrEqual(29_000);
      expect(r.closedAfter, what).toBeLessThan(35_000);
    }
  }, 60_000);

  it('starts on a store that holds names and a policy from before the grammar grew stricter, dropping what it now refuses', async () => {
    const old = await start('node', ['--heartbeat-ms', '600000']);
    const k = await addProvider(old, 'acme', ['/capability/**']);
    const agent = await register(old, k, [{ name: '/capability/keep' }, { name: '/capability/also' }]);
    const lonely = await register(old, k, [{ name: '/capability/lonely' }]);
    expect((await api(old.url, 'PUT', '/v1/policies', { auth: old.token, body: { version: 3, rules: [] } })).status).toBe(200);
    await old.stop();
    // What an earlier version stored: a space in one capability, a '..' in another agent's
    // only one, a backslash in a policy pattern.
    const store = Store.open(old.dataDir);
    const agents = store.db<any>('agents');
    const policies = store.db<any>('policies');
    await store.durable(() => {
      const a = agents.get(agent.aic);
      agents.put(agent.aic, { ...a, capabilities: [...a.capabilities, { ...a.capabilities[0], name: '/capability/a b' }] });
      const l = agents.get(lonely.aic);
      agents.put(lonely.aic, { ...l, capabilities: [{ ...l.capabilities[0], name: '/capability/../x' }] });
      policies.put(4, { version: 4, document: { version: 4, rules: [{ id: 'r1', effect: 'deny', capabilities: ['/capability/a\\b/**'] }] }, setAt: Date.now() });
    });
    await store.close();
    const again = await start('node', ['--heartbeat-ms', '600000'], old.dataDir);
    const kept = await api(again.url, 'GET', `/v1/agents/${agent.aic}`, { auth: again.token });
    expect(kept.body.acs.capabilities.map((c: { name: string }) => c.name).sort()).toEqual(['/capability/also', '/capability/keep']);
    expect((await api(again.url, 'GET', `/v1/agents/${lonely.aic}`, { auth: again.token })).status).toBe(404);
    expect(again.stderr()).toMatch(/stored capabilities no longer valid names, dropped/);
    expect(again.stderr()).toMatch(/stored policy refused; denying everything until a newer one is put/);
    // Denying everything until an operator puts a newer policy, which then holds.
    await api(again.url, 'POST', `/v1/agents/${agent.aic}/heartbeat`, { auth: agent.credential });
    const denied = await api(again.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/keep' } });
    expect(denied.body.error?.code).toBe('ERR_DMSC_FORBIDDEN');
    expect((await api(again.url, 'PUT', '/v1/policies', { auth: again.token, body: { version: 5, rules: [] } })).status).toBe(200);
    expect((await api(again.url, 'POST', '/v1/resolve', { auth: agent.credential, body: { capability: '/capability/keep' } })).status).toBe(200);
    await again.stop();
  });

  it('names the listener and its flag when a port is in use', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      for (const [flag, name] of [['--api', 'API'], ['--dataplane', 'data-plane'], ['--peering', 'peering']] as const) {
        const r = dmsc('node', '--data', await tempDir(), '--api', '127.0.0.1:0', '--dataplane', '127.0.0.1:0', '--peering', '127.0.0.1:0', flag, `127.0.0.1:${port}`);
        expect(r.status, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/ERR_DMSC_LISTEN/);
        expect(r.stderr).toContain(`the ${name} listener cannot listen on 127.0.0.1:${port}: the address is in use (another process listens there); choose another address with ${flag}`);
      }
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});
