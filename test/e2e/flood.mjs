#!/usr/bin/env node
// A flood of requests with bad bearer tokens, as its own process, for the tests of what
// failed authentication costs a node: --url ORIGIN --path PATH [--method GET] [--from
// ADDRESS] [--connections N] [--kind garbage|forged]. `forged` tokens are well formed
// EdDSA JWTs under a key id the node knows, with a signature that does not verify (the
// costly kind to refuse); `garbage` ones are not JWTs at all. Every token is new. Runs
// until killed; prints `{ ready: true }`, then on SIGTERM the count of answers by status.
import { request, Agent } from 'node:http';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string' }, path: { type: 'string', default: '/' }, method: { type: 'string', default: 'GET' },
    from: { type: 'string' }, connections: { type: 'string', default: '16' }, kind: { type: 'string', default: 'forged' }, kid: { type: 'string', default: 'unknown' },
  },
});
const u = new URL(o.url);
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
const token = () => (o.kind === 'garbage'
  ? randomBytes(24).toString('base64url')
  : `${b64({ alg: 'EdDSA', kid: o.kid, typ: 'dmsc-credential+jwt' })}.${b64({ sub: `x:${randomBytes(6).toString('hex')}`, exp: Math.floor(Date.now() / 1000) + 600 })}.${randomBytes(64).toString('base64url')}`);
const agent = new Agent({ keepAlive: true, maxSockets: Number(o.connections), ...(o.from ? { localAddress: o.from } : {}) });
const counts = {};
let stopping = false;
function one() {
  if (stopping) return;
  const req = request({ host: u.hostname, port: u.port, path: o.path, method: o.method, agent, headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' } }, (res) => {
    counts[res.statusCode] = (counts[res.statusCode] ?? 0) + 1;
    res.resume();
    res.on('end', one);
  });
  req.on('error', () => {
    counts.error = (counts.error ?? 0) + 1;
    setTimeout(one, 5);
  });
  req.end(o.method === 'GET' ? undefined : '{}');
}
for (let i = 0; i < Number(o.connections); i++) one();
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
process.on('SIGTERM', () => {
  stopping = true;
  process.stdout.write(JSON.stringify(counts) + '\n');
  process.exit(0);
});
