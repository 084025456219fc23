#!/usr/bin/env node
// Makes sure the system tools the tests use are on the machine (run before `npm test`):
// openssl, which the peering TLS tests use to make a throwaway CA and certificates;
// promtool (Debian's prometheus package), which checks /metrics; chromium, in which
// the console test drives the operator page (through playwright-core); and protoc with
// its gRPC Python plugin and Debian's Python grpcio and protobuf, with which the FIB
// programming tests drive the node from stubs generated from the shipped .proto. The
// Python modules are checked with Debian's own interpreter, /usr/bin/python3, the one
// the tests run (the `python3` on PATH may be another, without them).
import { ensureTools } from './debian-tools.mjs';

ensureTools([
  { command: 'openssl', pkg: 'openssl' },
  { command: 'promtool', pkg: 'prometheus' },
  { command: 'chromium', pkg: 'chromium' },
  { command: 'protoc', pkg: 'protobuf-compiler' },
  { command: 'grpc_python_plugin', pkg: 'protobuf-compiler-grpc' },
  { check: "/usr/bin/python3 -c 'import grpc, google.protobuf'", pkg: ['python3-grpcio', 'python3-protobuf'] },
], 'dmsc tests');
