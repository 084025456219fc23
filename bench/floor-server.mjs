// The floor of the node benchmark: a bare fastify server whose routes do nothing, in its
// own process like the node, answering the same requests with a fixed small body.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.post('/v1/agents', async (_req, reply) => reply.status(201).send({ ok: true }));
app.post('/v1/resolve', async () => ({ ok: true }));
await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(JSON.stringify({ msg: 'listening', api: `127.0.0.1:${app.server.address().port}` }) + '\n');
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
