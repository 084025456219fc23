// The semantic layer in a real node: registration normalizes names against the node's
// taxonomy file (aliases replaced, unknown names rejected, attribute types checked);
// POST /v1/resolve takes an intent and resolves the capability it matches, or says
// "no match" or "ambiguous"; an edit of the taxonomy file is picked up without a
// restart; `dmsc intent` shows the candidates.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addProvider, api, cleanup, dmsc, register, start, tempDir, waitFor, type Proc } from './harness.js';

// A taxonomy this small scores lower than the built-in one: it says so (resolution.scale),
// without which the two translation entries would be "no match" rather than ambiguous.
const taxonomy = (version: string, extra: object[] = []) => JSON.stringify({
  version, unknownNames: 'reject', resolution: { scale: 6 },
  entries: [
    { name: '/capability/vision/ocr', label: 'Optical character recognition', synonyms: ['text recognition', 'read scanned text'], utterances: ['read the words in this scanned page'], aliases: ['/capability/ocr'], open: true, attributes: { dpi: { type: 'number', min: 72 } } },
    { name: '/capability/text/translate', label: 'Translation', synonyms: ['translate into another language'], utterances: ['translate this letter into french'] },
    { name: '/capability/text/interpret', label: 'Translation', synonyms: ['translate into another language'], utterances: ['translate this letter into french'] },
    ...extra,
  ],
  // Names of the taxonomy before this one, still declared by agents written for it.
  alignments: [{ source: 'version:v0', map: [{ from: '/capability/scan-to-text', to: '/capability/vision/ocr', confidence: 0.9 }] }],
});

describe('semantic layer in a node', () => {
  let node: Proc;
  let key: string;
  let file: string;
  let requester: { aic: string; credential: string };

  beforeAll(async () => {
    file = join(await tempDir(), 'taxonomy.json');
    await writeFile(file, taxonomy('v1'));
    node = await start('node', ['--taxonomy', file, '--heartbeat-ms', '60000']);
    key = await addProvider(node, 'acme', ['/capability/**']);
    requester = await register(node, key, [{ name: '/capability/text/translate' }], 'http://127.0.0.1:9001');
  });
  afterAll(cleanup);

  it('replaces an alias with its canonical name at registration, and routes by it', async () => {
    const r = await register(node, key, [{ name: '/capability/ocr/fast', attributes: { dpi: 300 } }], 'http://127.0.0.1:9002');
    expect(r.body.acs.capabilities.map((c: any) => c.name)).toEqual(['/capability/vision/ocr/fast']);
    expect(r.body.normalized).toEqual([{ declared: '/capability/ocr/fast', name: '/capability/vision/ocr/fast' }]);
    const fib = await api(node.url, 'GET', '/v1/fib?prefix=/capability/vision/ocr/fast', { auth: node.token });
    expect(fib.body.entries.map((e: any) => e.prefix)).toEqual(['/capability/vision/ocr/fast']);
    // During a rename an agent may declare both names: one capability, the first one's.
    const both = await register(node, key, [{ name: '/capability/ocr', attributes: { dpi: 600 } }, { name: '/capability/vision/ocr' }], 'http://127.0.0.1:9007');
    expect(both.body.acs.capabilities).toMatchObject([{ name: '/capability/vision/ocr', attributes: { dpi: 600 } }]);
  });

  it('maps a name of an earlier taxonomy version through its alignment, and says so', async () => {
    const r = await register(node, key, [{ name: '/capability/scan-to-text/fast' }], 'http://127.0.0.1:9008');
    expect(r.body.acs.capabilities.map((c: any) => c.name)).toEqual(['/capability/vision/ocr/fast']);
    expect(r.body.normalized).toEqual([{ declared: '/capability/scan-to-text/fast', name: '/capability/vision/ocr/fast', via: 'version:v0', confidence: 0.9 }]);
  });

  it('rejects unknown names (alone: 400; beside known ones: denied) and attributes of the wrong type', async () => {
    const alone = await api(node.url, 'POST', '/v1/agents', { auth: key, body: { endpoint: 'http://127.0.0.1:9003', capabilities: [{ name: '/capability/weather' }] } });
    expect(alone.status).toBe(400);
    expect(alone.body.error.code).toBe('ERR_DMSC_UNKNOWN_CAPABILITY');
    const mixed = await register(node, key, [{ name: '/capability/weather' }, { name: '/capability/vision/ocr' }], 'http://127.0.0.1:9004');
    expect(mixed.body.acs.capabilities.map((c: any) => c.name)).toEqual(['/capability/vision/ocr']);
    expect(mixed.body.denied).toEqual([{ capability: '/capability/weather', reason: expect.stringContaining('not in taxonomy v1') }]);
    const typed = await api(node.url, 'POST', '/v1/agents', { auth: key, body: { endpoint: 'http://127.0.0.1:9005', capabilities: [{ name: '/capability/vision/ocr', attributes: { dpi: 'high' } }] } });
    expect(typed.status).toBe(400);
    expect(typed.body.error).toMatchObject({ code: 'ERR_DMSC_INVALID_BODY', message: expect.stringContaining('dpi must be a number') });
  });

  it('resolves an intent to the capability it matches, and says so when nothing or two things match', async () => {
    const r = await api(node.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { intent: 'please read the text in this scanned page' } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.intent).toMatchObject({ status: 'match', taxonomy: 'v1' });
    expect(r.body.capability).toBe('/capability/vision/ocr');
    expect(typeof r.body.grant).toBe('string');
    const none = await api(node.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { intent: 'what is the weather like tomorrow' } });
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe('ERR_DMSC_NO_MATCH');
    const two = await api(node.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { intent: 'translate this letter into french' } });
    expect(two.status).toBe(409);
    expect(two.body.error.code).toBe('ERR_DMSC_AMBIGUOUS_INTENT');
    expect(two.body.error.details.intent.candidates.slice(0, 2).map((c: any) => c.capability).sort()).toEqual(['/capability/text/interpret', '/capability/text/translate']);
    const both = await api(node.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { intent: 'x', capability: '/capability/vision/ocr' } });
    expect(both.status).toBe(400);
  });

  it('picks up an edited taxonomy without a restart, and keeps the one before through a broken edit', async () => {
    await writeFile(file, taxonomy('v2', [{ name: '/capability/weather', label: 'Weather forecast', synonyms: ['weather', 'forecast'], utterances: ['what is the weather like tomorrow'] }]));
    await waitFor(async () => (await api(node.url, 'GET', '/v1/taxonomy')).body.version === 'v2');
    expect((await register(node, key, [{ name: '/capability/weather' }], 'http://127.0.0.1:9006')).body.acs.capabilities[0].name).toBe('/capability/weather');
    const r = await api(node.url, 'POST', '/v1/resolve', { auth: requester.credential, body: { intent: 'what is the weather like tomorrow' } });
    expect(r.body.capability).toBe('/capability/weather');
    // The file is looked at when the taxonomy is next used (at most once a second).
    await writeFile(file, '{ "version": ');
    await waitFor(async () => {
      expect((await api(node.url, 'GET', '/v1/taxonomy')).body.version).toBe('v2');
      return /taxonomy rejected; keeping the one loaded before/.test(node.stderr());
    });
  });

  it('shows the candidates with `dmsc intent`', () => {
    const out = dmsc('intent', 'read', 'the', 'scanned', 'page', '--url', node.url, '--data', node.dataDir);
    expect(out.status, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^match \/capability\/vision\/ocr/);
    expect(out.stdout).toMatch(/\d\.\d{3} {2}\/capability\/vision\/ocr/);
    expect(dmsc('intent', 'x', '--limit', '99', '--url', node.url, '--data', node.dataDir).status).toBe(1);
  });
});
