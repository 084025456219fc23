// The FIB programming listener over the mesh's TLS: with the mesh CA, only controllers
// presenting a certificate that CA signed get through (and they still need a key).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fibService } from '../../src/programming/proto.js';
import { cleanup, makeCerts, start, tempDir, type Proc } from '../e2e/harness.js';

describe('FIB programming over mutual TLS', () => {
  let node: Proc;
  let pem: { ca: Buffer; cert: Buffer; key: Buffer; otherCa: Buffer };
  const Client = fibService();

  // One Get of the admin's entries: resolves with the status code it ended with.
  const get = (creds: grpc.ChannelCredentials, token = node.token) => new Promise<grpc.status>((resolve) => {
    const c = new Client(node.fibApi!, creds, { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const call = c.Get({}, md, { deadline: Date.now() + 5000 });
    call.on('data', () => {});
    call.on('error', (e: grpc.ServiceError) => {
      c.close();
      resolve(e.code);
    });
    call.on('end', () => {
      c.close();
      resolve(grpc.status.OK);
    });
  });

  beforeAll(async () => {
    const dir = await tempDir();
    const certs = await makeCerts(dir);
    pem = { ca: await readFile(certs.ca), cert: await readFile(certs.cert), key: await readFile(certs.key), otherCa: await readFile(certs.otherCa) };
    const mesh = join(dir, 'mesh.json');
    await writeFile(mesh, JSON.stringify({ tls: { cert: certs.cert, key: certs.key, ca: certs.ca } }));
    node = await start('node', ['--mesh-config', mesh, '--fib-api-tls']);
  });
  afterAll(cleanup);

  it('serves a controller with a certificate the mesh CA signed, and its key', async () => {
    expect(await get(grpc.credentials.createSsl(pem.ca, pem.key, pem.cert))).toBe(grpc.status.OK);
    expect(await get(grpc.credentials.createSsl(pem.ca, pem.key, pem.cert), 'not-a-key')).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses a client without a certificate, in plain text, or trusting another CA', async () => {
    expect(await get(grpc.credentials.createSsl(pem.ca))).toBe(grpc.status.UNAVAILABLE);
    expect(await get(grpc.credentials.createInsecure())).toBe(grpc.status.UNAVAILABLE);
    expect(await get(grpc.credentials.createSsl(pem.otherCa, pem.key, pem.cert))).toBe(grpc.status.UNAVAILABLE);
  });
});
