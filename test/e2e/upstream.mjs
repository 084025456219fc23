#!/usr/bin/env node
// An agent instance for data-plane tests, as its own process: answers every request with
// what it received (its name, method, path, body size and SHA-256, the requester the
// gateway named), after reading the body as a stream. `GET /__stats` (asked directly,
// not through a gateway) tells how many requests it has had, and how many of them were
// given up (the connection closed before the answer was sent). Modes: normal, slow
// (headers after --delay ms), reset (destroys the connection), 503 (answers 503),
// garbage (answers bytes that are not HTTP),
// and `GET .../big?mb=N` streams N MiB back.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({ options: { name: { type: 'string' }, mode: { type: 'string', default: 'normal' }, port: { type: 'string', default: '0' }, delay: { type: 'string', default: '3000' } } });
let hits = 0;
let abandoned = 0;
const server = createServer(async (req, res) => {
  if (req.url === '/__stats') return res.end(JSON.stringify({ hits, abandoned }));
  hits++;
  res.once('close', () => {
    if (!res.writableEnded) abandoned++;
  });
  if (o.mode === 'reset') return req.socket.destroy();
  if (o.mode === 'garbage') return req.socket.end('HTTP/1.1 200 OK\r\nx-bad\u0001: 1\r\n\r\n');
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of req) {
    bytes += chunk.length;
    hash.update(chunk);
  }
  if (o.mode === 'slow') await new Promise((r) => setTimeout(r, Number(o.delay)));
  if (o.mode === '503') {
    res.writeHead(503, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ name: o.name, busy: true }));
  }
  const big = /[?&]mb=(\d+)/.exec(req.url ?? '');
  if (big) {
    const chunk = Buffer.alloc(1 << 20, 7);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': Number(big[1]) << 20 });
    for (let i = 0; i < Number(big[1]); i++) if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
    return res.end();
  }
  res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': o.name });
  res.end(JSON.stringify({ name: o.name, method: req.method, path: req.url, bytes, sha256: hash.digest('hex'), requester: req.headers['x-dmsc-requester'] ?? null, capability: req.headers['x-dmsc-capability'] ?? null, authorization: req.headers.authorization ?? null }));
});
server.keepAliveTimeout = 60_000;
server.listen(Number(o.port), '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n'));
process.on('SIGTERM', () => process.exit(0));
