#!/usr/bin/env node
// Makes sure the system tools the tests use are on the machine (run before `npm test`):
// openssl, which the peering TLS tests use to make a throwaway CA and certificates.
import { ensureTools } from './debian-tools.mjs';

ensureTools([{ command: 'openssl', pkg: 'openssl' }], 'dmsc tests');
