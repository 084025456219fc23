// The mesh config file: a good one is read whole (paths from the file's directory, peers
// merged with --peer), and every kind of mistake is ERR_DMSC_INVALID_CONFIG naming the
// field, before anything starts.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeConfig } from '../../src/node/config.js';
import { makeCerts } from '../e2e/harness.js';

describe('mesh config file', () => {
  let dir: string;
  let pem: { cert: string; key: string };
  const file = async (body: unknown, name = 'mesh.json') => {
    const path = join(dir, name);
    await writeFile(path, typeof body === 'string' ? body : JSON.stringify(body));
    return path;
  };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmsc-mesh-config-'));
    await writeFile(join(dir, 'beta.json'), JSON.stringify({ keys: [] }));
    await writeFile(join(dir, 'not-jwks.json'), JSON.stringify({ keys: 'none' }));
    await writeFile(join(dir, 'cert.pem'), 'CERT');
    await writeFile(join(dir, 'key.pem'), 'KEY');
    const certs = await makeCerts(dir);
    pem = { cert: await readFile(certs.cert, 'utf8'), key: await readFile(certs.key, 'utf8') };
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads peers, domains, limits and TLS, with paths relative to the file', async () => {
    const config = nodeConfig({
      peer: ['a1@127.0.0.1:7101'],
      meshConfig: await file({
        peers: [{ id: 'b1', address: '127.0.0.1:7201', domain: 'beta', maxRoutes: 500 }],
        upstream: 'b1', maxRoutesPerPeer: 1000, holdMs: 3000,
        domains: [{ domain: 'beta', jwks: 'beta.json', export: ['/capability/ocr/**'], exportTags: ['gdpr'], import: ['/capability/**'], tags: { 'eu-privacy': 'gdpr' } }],
        tls: { cert: 'node.pem', key: 'node.key' }, peerDataplane: '0.0.0.0:7443',
      }),
    });
    expect(config.peers).toEqual([
      { id: 'a1', host: '127.0.0.1', port: 7101 },
      { id: 'b1', host: '127.0.0.1', port: 7201, domain: 'beta', maxRoutes: 500 },
    ]);
    expect(config.upstream).toBe('b1');
    expect(config.domains).toEqual([{ domain: 'beta', jwks: join(dir, 'beta.json'), export: ['/capability/ocr/**'], exportTags: ['gdpr'], import: ['/capability/**'], tags: { 'eu-privacy': 'gdpr' } }]);
    expect([config.maxRoutes, config.holdMs]).toEqual([1000, 3000]);
    expect(config.tls).toEqual(pem);
    expect(config.peerDataplane).toEqual({ host: '0.0.0.0', port: 7443 });
    // A URL is kept as it is, to be fetched when needed; nothing is exported, shown or imported unless listed.
    for (const url of ['https://keys.beta.example/v1/amc/jwks', 'http://127.0.0.1:7270/v1/amc/jwks']) {
      const byUrl = nodeConfig({ meshConfig: await file({ domains: [{ domain: 'beta', jwks: url }] }) });
      expect(byUrl.domains[0]).toEqual({ domain: 'beta', jwks: url, export: [], exportTags: [], import: [], tags: {} });
    }
  });

  it('refuses each kind of mistake with ERR_DMSC_INVALID_CONFIG naming the field', async () => {
    const cases: [unknown, RegExp, string[]?][] = [
      ['{not json', /mesh\.json: .*JSON/],
      [{ peer: [] }, /additional properties \('peer'\)/],
      [{ peers: [{ id: 'b1', address: 'nowhere' }] }, /\/peers\/0\/address must be HOST:PORT/],
      [{ peers: [{ id: 'b1', address: '127.0.0.1:0' }] }, /\/peers\/0\/address needs a real port/],
      [{ peers: [{ id: '-bad', address: '127.0.0.1:1' }] }, /\/peers\/0\/id must match pattern/],
      [{ peers: [{ id: 'b1', address: '127.0.0.1:1' }] }, /peer b1 is named twice/, ['b1@127.0.0.1:2']],
      [{ upstream: 'zz' }, /upstream zz must be one of the peers/],
      [{ domains: [{ domain: 'beta', jwks: 'missing.json' }] }, /\/domains\/0\/jwks: cannot read/],
      [{ domains: [{ domain: 'beta', jwks: 'not-jwks.json' }] }, /\/domains\/0\/jwks: .*not-jwks\.json: not a JWK set/],
      [{ domains: [{ domain: 'beta', jwks: 'http://keys.beta.example/jwks' }] }, /keys must come from a file or an https URL \(http only on loopback\)/],
      [{ domains: [{ domain: 'beta', jwks: 'beta.json', import: ['nope'] }] }, /\/domains\/0\/import\/0: /],
      [{ tls: { cert: 'cert.pem', key: 'key.pem' } }, /\/tls: the certificate, key or CA cannot be used/],
      [{ domains: [{ domain: 'beta', jwks: 'beta.json' }, { domain: 'beta', jwks: 'beta.json' }] }, /domain beta is listed twice/],
      [{ domains: [{ domain: 'beta', jwks: 'beta.json', export: ['/capability/**/x'] }] }, /\/domains\/0\/export\/0: '\*\*' may only be the last component/],
      [{ domains: [{ domain: 'beta', jwks: 'beta.json', tags: { '': 'gdpr' } }] }, /\/domains\/0: their tag/],
      [{ tls: { cert: 'cert.pem' } }, /\/tls must have required property 'key'/],
      [{ tls: { cert: 'cert.pem', key: 'key.pem', requireClientCert: true } }, /requireClientCert needs a ca/],
      [{ holdMs: 10 }, /\/holdMs must be >= 300/],
      [{ peerDataplane: '127.0.0.1:7443' }, /\/peerDataplane needs \/tls/],
      [{ peerDataplane: 'nowhere', tls: { cert: 'node.pem', key: 'node.key' } }, /\/peerDataplane must be HOST:PORT/],
    ];
    for (const [body, message, peer] of cases) {
      const path = await file(body);
      expect(() => nodeConfig({ meshConfig: path, ...(peer ? { peer } : {}) }), JSON.stringify(body)).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG', message: expect.stringMatching(message) }));
    }
    expect(() => nodeConfig({ meshConfig: join(dir, 'absent.json') })).toThrow(expect.objectContaining({ code: 'ERR_DMSC_INVALID_CONFIG', message: expect.stringContaining('absent.json') }));
  });
});
