#!/usr/bin/env node
// Makes sure the system tools the tests use are on the machine (run before `npm test`):
// openssl, which the peering TLS tests use to make a throwaway CA and certificates;
// promtool (Debian's prometheus package), which checks /metrics; and chromium, in which
// the console test drives the operator page (through playwright-core).
import { ensureTools } from './debian-tools.mjs';

ensureTools([
  { command: 'openssl', pkg: 'openssl' },
  { command: 'promtool', pkg: 'prometheus' },
  { command: 'chromium', pkg: 'chromium' },
], 'dmsc tests');
