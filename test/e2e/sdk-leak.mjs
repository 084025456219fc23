// Child process of sdk.test.ts: runs an agent through its whole life against a node
// (register, heartbeats, a request served through the data plane, a session each way,
// close) and then reports what keeps the event loop alive. It never calls
// process.exit: the test also checks that it ends by itself.
import { readdirSync, readlinkSync } from 'node:fs';
import { Agent } from '../../dist/index.js';

// Sockets this process holds open, unref'd ones included (which the list of active
// resources leaves out).
const sockets = () => readdirSync('/proc/self/fd').filter((fd) => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
  } catch {
    return false;
  }
}).length;

const [node, dataplane, providerKey] = process.argv.slice(2);
const before = new Set(process.getActiveResourcesInfo());
const socketsBefore = sockets();
const agent = new Agent({ node, dataplane, providerKey, name: 'leak-check', heartbeatMs: 20 });
agent.serve('/capability/leak/echo', {
  request: (call) => ({ echo: call.json() }),
  session: (s) => s.on('message', (m) => void s.send(m)),
});
await agent.start();
const answer = await agent.invoke('/capability/leak/echo', { hello: 1 });
const session = await agent.openSession(await agent.resolve('/capability/leak/echo'));
const back = new Promise((resolve) => session.once('message', resolve));
await session.send({ ping: 1 });
const echoed = await back;
await new Promise((resolve) => setTimeout(resolve, 100));
await agent.close();
// Timers and sockets that closing released may take a tick to go.
await new Promise((resolve) => setImmediate(resolve));
const left = process.getActiveResourcesInfo().filter((r) => !before.has(r) && r !== 'TTYWrap');
process.stdout.write(JSON.stringify({ answer: answer.body, echoed, state: agent.state, left, sockets: sockets() - socketsBefore }) + '\n');
