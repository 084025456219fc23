#!/usr/bin/env node
// A reference for the data-plane benchmark: the least a proxy on Node can do per
// request with the same two libraries dmsc's data plane stands on (node:http to take the
// request, undici's dispatch to send it on): round robin over the upstreams, no
// credential, no policy, no lookup, no failover. Its figures are what this runtime
// allows on this machine before any dmsc code runs. Prints {"port": N} once listening.
//   node bench/node-proxy.mjs UPSTREAM_PORT...
import { createServer } from 'node:http';
import { Agent } from 'undici';

const origins = process.argv.slice(2).map((p) => `http://127.0.0.1:${p}`);
const agent = new Agent({ connections: 256 });
let next = 0;
const server = createServer((req, res) => {
  agent.dispatch({ origin: origins[next++ % origins.length], path: '/', method: req.method, headers: [], body: null }, {
    onRequestStart() {},
    onResponseStart(controller, statusCode, headers) {
      res.writeHead(statusCode, { 'content-type': headers['content-type'], 'content-length': headers['content-length'] });
      res.on('drain', () => controller.resume());
    },
    onResponseData(controller, chunk) {
      if (!res.write(chunk)) controller.pause();
    },
    onResponseEnd() {
      res.end();
    },
    onResponseError() {
      res.destroy();
    },
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n'));
