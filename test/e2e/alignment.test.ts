// Vocabularies aligned across a domain boundary (real nodes of two trust domains): each
// domain names OCR its own way, and each taxonomy maps the other's names into its own
// with a confidence. Routes learned from the other domain, requests from it and answers
// from it are read in the receiver's words; a mapping below the minimum confidence is
// not used.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, freePort, register, start, tempDir, waitFor, type Proc } from './harness.js';

describe('capability names aligned across domains', () => {
  let alpha: Proc;
  let beta: Proc;
  let requester: { aic: string; credential: string };
  let ocrAgent: string;

  beforeAll(async () => {
    const dir = await tempDir();
    const [aApi, bApi, bPeering] = [await freePort(), await freePort(), await freePort()];
    const entry = (name: string) => ({ name, label: name.split('/').pop(), open: true });
    // Alpha says /capability/ocr; beta says /capability/vision/ocr.
    await writeFile(join(dir, 'alpha-tax.json'), JSON.stringify({
      version: 'alpha-1', unknownNames: 'allow', entries: [entry('/capability/ocr')],
      alignments: [{ source: 'domain:beta', map: [
        { from: '/capability/vision/ocr', to: '/capability/ocr', confidence: 0.95 },
        { from: '/capability/vision/caption', to: '/capability/alt-text', confidence: 0.3 },
      ] }],
    }));
    await writeFile(join(dir, 'beta-tax.json'), JSON.stringify({
      version: 'beta-7', unknownNames: 'allow', entries: [entry('/capability/vision/ocr')],
      alignments: [{ source: 'domain:alpha', map: [{ from: '/capability/ocr', to: '/capability/vision/ocr', confidence: 0.95 }] }],
    }));
    await writeFile(join(dir, 'beta-mesh.json'), JSON.stringify({
      domains: [{ domain: 'alpha', jwks: `http://127.0.0.1:${aApi}/v1/amc/jwks`, export: ['/capability/vision/**'] }],
    }));
    await writeFile(join(dir, 'alpha-mesh.json'), JSON.stringify({
      peers: [{ id: 'b1', address: `127.0.0.1:${bPeering}`, domain: 'beta' }],
      domains: [{ domain: 'beta', jwks: `http://127.0.0.1:${bApi}/v1/amc/jwks`, import: ['/capability/**'] }],
    }));
    beta = await start('node', ['--id', 'b1', '--domain', 'beta', '--api', `127.0.0.1:${bApi}`, '--peering', `127.0.0.1:${bPeering}`, '--heartbeat-ms', '60000', '--taxonomy', join(dir, 'beta-tax.json'), '--mesh-config', join(dir, 'beta-mesh.json')]);
    alpha = await start('node', ['--id', 'a1', '--domain', 'alpha', '--api', `127.0.0.1:${aApi}`, '--heartbeat-ms', '60000', '--taxonomy', join(dir, 'alpha-tax.json'), '--mesh-config', join(dir, 'alpha-mesh.json')]);
    const betaKey = await addProvider(beta, 'bcorp', ['/capability/**']);
    ocrAgent = (await register(beta, betaKey, [{ name: '/capability/vision/ocr/fast' }, { name: '/capability/vision/caption' }], 'http://127.0.0.1:9701')).aic;
    requester = await register(alpha, await addProvider(alpha, 'acorp', ['/capability/**']), [{ name: '/capability/requester' }]);
    await waitFor(async () => {
      const r = await api(alpha.url, 'GET', '/v1/fib', { auth: alpha.token });
      return r.body.entries.some((e: any) => e.prefix === '/capability/ocr/fast');
    }, 15_000);
  }, 60_000);
  afterAll(cleanup);

  it('learns the other domain\'s routes under its own names, and leaves a low-confidence mapping unused', async () => {
    const prefixes = (await api(alpha.url, 'GET', '/v1/fib', { auth: alpha.token })).body.entries.map((e: any) => e.prefix).sort();
    expect(prefixes).toContain('/capability/ocr/fast');
    expect(prefixes).not.toContain('/capability/vision/ocr/fast');
    // 0.3 is under the default minimum of 0.5: the name is taken as it is.
    expect(prefixes).toContain('/capability/vision/caption');
    expect(prefixes).not.toContain('/capability/alt-text');
  });

  it('resolves and discovers in its own words across the boundary; the other side reads the request in its own', async () => {
    const r = await api(alpha.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { capability: '/capability/ocr/fast' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ capability: '/capability/ocr/fast', target: { aic: ocrAgent, gateway: 'b1' }, path: ['a1', 'b1'] });
    // The grant is beta's, for the name beta resolved.
    const claims = JSON.parse(Buffer.from(r.body.grant.split('.')[1], 'base64url').toString());
    expect(claims.req).toBe('/capability/vision/ocr/fast');
    const d = await api(alpha.url, 'GET', '/v1/discover?capability=/capability/ocr/fast', { auth: requester.credential });
    expect(d.body.candidates.map((c: any) => c.capability)).toEqual(['/capability/ocr/fast']);
  });
});
