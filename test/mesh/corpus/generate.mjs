#!/usr/bin/env node
// Writes the seed corpus of the peering fuzz target (test/mesh/peering-fuzz.test.ts): byte
// streams a peer may send before it has authenticated. Run from the repository root after
// a build: `node test/mesh/corpus/generate.mjs`. The files are committed; the fuzz test
// replays each one, then mutations of them.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { GRANT_KEY_TYP } from '../../../dist/identity/amc.js';
import { newSigningKey, signingKey, signJwt } from '../../../dist/identity/jwt.js';
import { encodeFrame } from '../../../dist/mesh/frames.js';
import { Handshake } from '../../../dist/mesh/handshake.js';

const here = dirname(fileURLToPath(import.meta.url));
const amc = signingKey(newSigningKey('corpus-amc'));
const key = signingKey(newSigningKey('gw-c1'));
const certificate = await signJwt(amc, GRANT_KEY_TYP, { sub: 'c1', dom: 'd1', cnf: { jwk: key.publicJwk }, exp: 4_000_000_000 });
const credentials = () => ({ certificate, privateKey: key.privateKey });
const frames = (...ms) => Buffer.concat(ms.map((m) => encodeFrame(m)));

// A genuine exchange, as each side wrote it.
const dialler = new Handshake({ role: 'dialler', local: { gateway: 'c1', domain: 'd1' }, holdMs: 9000 });
const listener = new Handshake({ role: 'listener', local: { gateway: 'c2', domain: 'd1' }, holdMs: 9000 });
const dOpen = dialler.receive(listener.hello(), credentials).messages[0];
listener.receive(dialler.hello(), credentials);
listener.receive(dOpen, credentials);
const lOpen = listener.proofChecked(key.publicJwk, credentials).messages[0];

const raw = (length, body) => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(length, 0);
  return Buffer.concat([head, body]);
};
const rich = new Packr({ moreTypes: true, useRecords: false });
let deep = 'leaf';
for (let i = 0; i < 20; i++) deep = [deep];

const corpus = {
  'dialler-genuine': frames(dialler.hello(), dOpen, { type: 'OPEN_OK' }, { type: 'CSP_SNAPSHOT' }),
  'listener-genuine': frames(listener.hello(), lOpen),
  'hello-only': frames(dialler.hello()),
  'open-before-hello': frames(dOpen, dialler.hello()),
  'version-1-open': frames({ type: 'OPEN', version: 1, gateway: 'c1', domain: 'd1', credential: certificate, holdMs: 9000 }, { type: 'OPEN_OK' }),
  'hello-version-3': frames({ ...dialler.hello(), version: 3 }),
  'proof-truncated': frames(dialler.hello(), { ...dOpen, proof: dOpen.proof.slice(0, 40) }),
  'proof-of-listener': frames(dialler.hello(), lOpen),
  'notify': frames({ type: 'NOTIFY', code: 'ERR_DMSC_BAD_HANDSHAKE', message: 'no' }),
  'oversized-header': raw(0x7fffffff, Buffer.alloc(64, 0x41)),
  'handshake-limit-partial': raw(8000, Buffer.alloc(7000, 0x41)),
  'not-msgpack': raw(3, Buffer.from([0xc1, 0xc1, 0xc1])),
  'http-request': Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n'),
  'tls-client-hello-ish': Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]),
  'extension-types': (() => {
    const body = rich.pack({ type: 'HELLO', version: 2, gateway: 'c1', domain: 'd1', nonce: new Date(0) });
    return raw(body.length, body);
  })(),
  'deep-nesting': (() => {
    const body = rich.pack({ type: 'HELLO', extra: deep });
    return raw(body.length, body);
  })(),
  'many-small-frames': frames(...Array.from({ length: 40 }, () => ({ type: 'KEEPALIVE' }))),
  'fields-of-wrong-type': frames({ type: 'HELLO', version: '2', gateway: ['c1'], domain: { d: 1 }, nonce: 42 }),
};
for (const [name, bytes] of Object.entries(corpus)) writeFileSync(join(here, `${name}.bin`), bytes);
console.log(`wrote ${Object.keys(corpus).length} corpus files to ${here}`);
