// The operator console (`/console`): a page the node serves, with its scripts and the
// front-end libraries it uses (preact, htm, uPlot) from the package's own files, so it
// needs no network at run time. The page asks for the admin token or an observer
// credential, then reads `/v1/overview`, `/v1/events` and the latency figures.
//
// GET /metrics (Prometheus text) and GET /v1/overview take the admin token or an observer
// credential scoped to the node or the domain.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { DmscError } from '../errors.js';
import type { EventAccess } from './access.js';
import type { NodeMetrics } from './metrics.js';

const here = dirname(fileURLToPath(import.meta.url));
const pages = join(here, '..', '..', 'console');
const require = createRequire(import.meta.url);
/** Where a dependency's package is, wherever npm placed it. */
const pkg = (name: string): string => {
  const entry = require.resolve(name);
  const at = entry.lastIndexOf(`${sep}node_modules${sep}${name}${sep}`);
  return entry.slice(0, at + `${sep}node_modules${sep}${name}`.length);
};

// What the page may load, by name: its own files, and the libraries' ES module builds.
const FILES: Record<string, { path: string; type: string }> = {
  'app.js': { path: join(pages, 'app.js'), type: 'text/javascript' },
  'style.css': { path: join(pages, 'style.css'), type: 'text/css' },
  'vendor/preact.mjs': { path: join(pkg('preact'), 'dist', 'preact.mjs'), type: 'text/javascript' },
  'vendor/hooks.mjs': { path: join(pkg('preact'), 'hooks', 'dist', 'hooks.mjs'), type: 'text/javascript' },
  'vendor/htm.mjs': { path: join(pkg('htm'), 'dist', 'htm.mjs'), type: 'text/javascript' },
  'vendor/uPlot.esm.js': { path: join(pkg('uplot'), 'dist', 'uPlot.esm.js'), type: 'text/javascript' },
  'vendor/uPlot.min.css': { path: join(pkg('uplot'), 'dist', 'uPlot.min.css'), type: 'text/css' },
};

export function consoleRoutes(http: FastifyInstance, access: EventAccess, metrics: NodeMetrics, overview: () => Promise<Record<string, unknown>>): void {
  // Read once, on first use.
  const cache = new Map<string, Buffer>();
  const file = (name: string): Buffer => {
    let body = cache.get(name);
    if (!body) {
      body = readFileSync(FILES[name]!.path);
      cache.set(name, body);
    }
    return body;
  };
  const wholeNode = async (req: FastifyRequest) => {
    const viewer = await access.viewer(req);
    if (viewer.scope !== 'all' && viewer.scope !== 'node' && viewer.scope !== 'domain') {
      throw new DmscError('ERR_DMSC_FORBIDDEN', `${viewer.who} sees ${viewer.scope} only; this takes the admin token or a node or domain observer credential`);
    }
  };

  http.get('/console', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(PAGE));
  http.get<{ Params: { '*': string } }>('/console/*', async (req, reply) => {
    const name = req.params['*'];
    if (!Object.hasOwn(FILES, name)) throw new DmscError('ERR_DMSC_NOT_FOUND', `no console file ${name.slice(0, 100)}`);
    return reply.type(`${FILES[name]!.type}; charset=utf-8`).header('cache-control', 'no-cache').send(file(name));
  });
  http.get('/v1/overview', async (req) => {
    await wholeNode(req);
    return overview();
  });
  http.get('/metrics', async (req, reply) => {
    await wholeNode(req);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>dmsc console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/console/vendor/uPlot.min.css">
<link rel="stylesheet" href="/console/style.css">
<script type="importmap">
{ "imports": { "preact": "/console/vendor/preact.mjs", "preact/hooks": "/console/vendor/hooks.mjs", "htm": "/console/vendor/htm.mjs", "uplot": "/console/vendor/uPlot.esm.js" } }
</script>
</head>
<body>
<div id="app"></div>
<script type="module" src="/console/app.js"></script>
</body>
</html>
`;
