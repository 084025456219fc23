// TIP with real node processes (two gateways of one domain) and SDK agents: a task of
// three sub-tasks with dependencies, where the first chosen agent fails and the next
// candidate takes over, one sub-task resolved through the mesh and one run over a
// session; a task cancelled mid-run; a task that escalates and is retried by an
// operator's decision; text decomposed by an editable rules file; and a task interrupted
// by a crash that comes back escalated.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, AgentReply } from '../../src/index.js';
import { api, cleanup, dmsc, start, tempDir, waitFor, type Proc } from './harness.js';

describe('tasks (TIP) across two gateways', () => {
  let amc: Proc;
  const gw: Record<string, Proc> = {};
  let key: string;
  let keys: string;
  let rulesFile: string;
  const agents: Agent[] = [];
  let alice: Agent;
  const seen = { bad: 0, good: 0, slowStarted: 0, slowAborted: 0, flaky: 0 };
  let flakyFails = true;

  const gatewayArgs = async (id: string) => {
    const r = dmsc('amc', 'gateway', 'add', id, '--url', amc.url, '--data', amc.dataDir);
    if (r.status === 0) await writeFile(join(keys, id), r.stdout);
    return ['--id', id, '--amc', amc.url, '--amc-key-file', join(keys, id), '--task-rules', rulesFile];
  };
  const agent = async (node: Proc, name: string, capabilities: { name: string; priority?: number }[], serve: (a: Agent) => void) => {
    const a = new Agent({ node: node.url, providerKey: key, name, capabilities });
    serve(a);
    agents.push(a);
    await a.start();
    return a;
  };
  const task = (body: unknown, auth = alice.credential!) => api(gw['A']!.url, 'POST', '/v1/tasks', { auth, body });
  const get = (id: string, auth = alice.credential!) => api(gw['A']!.url, 'GET', `/v1/tasks/${id}`, { auth });
  const settled = async (id: string, states: string[]) => {
    let last: any;
    await waitFor(async () => states.includes((last = (await get(id)).body).state), 20_000);
    return last;
  };

  beforeAll(async () => {
    amc = await start('amc', ['--domain', 'metro']);
    keys = await tempDir();
    rulesFile = join(keys, 'rules.json');
    await writeFile(rulesFile, JSON.stringify({
      version: 1,
      rules: [{ name: 'shout', patterns: ['\\bshout (?<word>\\w+)'], subtasks: [{ id: 'up', capability: '/capability/text/translate', input: { text: '{{match.word}}', to: 'caps' } }] }],
    }));
    key = JSON.parse(dmsc('provider', 'add', 'acme', '--scope', '/capability/**', '--url', amc.url, '--data', amc.dataDir).stdout).key;
    gw['A'] = await start('node', await gatewayArgs('A'));
    gw['B'] = await start('node', [...(await gatewayArgs('B')), '--peer', `A@${gw['A'].peering}`]);
    alice = await agent(gw['A'], 'alice', [{ name: '/capability/notes' }], (a) => a.serve('/capability/notes', { request: () => ({}) }));
    // The preferred OCR agent fails; the standby answers.
    await agent(gw['A'], 'ocr-bad', [{ name: '/capability/vision/ocr', priority: 0 }], (a) => a.serve('/capability/vision/ocr', {
      request: () => {
        seen.bad++;
        return new AgentReply(500, { error: 'scanner jammed' });
      },
    }));
    await agent(gw['A'], 'ocr-good', [{ name: '/capability/vision/ocr', priority: 1 }], (a) => a.serve('/capability/vision/ocr', {
      request: (call) => {
        seen.good++;
        return { text: `text of ${call.json<{ document: string }>().document}` };
      },
    }));
    // Behind gateway B: reached through the mesh.
    await agent(gw['B'], 'translator', [{ name: '/capability/text/translate' }], (a) => a.serve('/capability/text/translate', {
      request: (call) => {
        const { text, to } = call.json<{ text: string; to: string }>();
        return { text: `${text.toUpperCase()} (${to})`, by: 'B' };
      },
    }));
    // Takes its work over a session.
    await agent(gw['A'], 'summarizer', [{ name: '/capability/text/summarize' }], (a) => a.serve('/capability/text/summarize', {
      session: (s) => s.once('message', (m: any) => void s.send({ summary: String(m.input.text).split(' ').slice(0, 2).join(' ') })),
    }));
    await agent(gw['A'], 'slow', [{ name: '/capability/slow' }], (a) => a.serve('/capability/slow', {
      request: (call) => new Promise((resolve) => {
        seen.slowStarted++;
        const done = setTimeout(() => resolve({ late: true }), 30_000);
        call.signal.addEventListener('abort', () => {
          clearTimeout(done);
          seen.slowAborted++;
          resolve(undefined);
        });
      }),
    }));
    await agent(gw['A'], 'flaky', [{ name: '/capability/flaky' }], (a) => a.serve('/capability/flaky', {
      request: () => {
        seen.flaky++;
        return flakyFails ? new AgentReply(503, { error: 'not today' }) : { ok: true };
      },
    }));
    await waitFor(async () => {
      const r = await api(gw['A']!.url, 'GET', '/v1/fib?prefix=/capability/text/translate', { auth: gw['A']!.token });
      return r.body.entries.length > 0;
    });
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await cleanup();
  });

  it('runs three sub-tasks in dependency order; a failed agent falls back to the next candidate; one goes through the mesh and one over a session', async () => {
    const r = await task({
      task: {
        input: { document: 'invoice-7.png' },
        subtasks: [
          { id: 'ocr', capability: '/capability/vision/ocr', input: { document: '{{input.document}}' } },
          { id: 'translate', capability: '/capability/text/translate', dependsOn: ['ocr'], input: { text: '{{ocr.output.text}}', to: 'fr' } },
          { id: 'summary', capability: '/capability/text/summarize', dependsOn: ['ocr'], via: 'session', input: { text: '{{ocr.output.text}}' } },
        ],
      },
    });
    expect(r.status).toBe(202);
    expect(r.body.state).toMatch(/pending|running/);
    const t = await settled(r.body.id, ['succeeded', 'failed', 'escalated']);
    expect(t.state).toBe('succeeded');
    const [ocr, translate, summary] = t.subtasks;
    expect(ocr.attempts.map((a: any) => a.outcome)).toEqual(['failed', 'succeeded']);
    expect(ocr.attempts[0].error.code).toBe('ERR_DMSC_UPSTREAM_FAILED');
    expect(ocr.attempts[0].target.aic).not.toBe(ocr.attempts[1].target.aic);
    expect(seen.bad).toBe(1);
    expect(seen.good).toBe(1);
    expect(ocr.output).toEqual({ text: 'text of invoice-7.png' });
    expect(translate.output).toEqual({ text: 'TEXT OF INVOICE-7.PNG (fr)', by: 'B' });
    expect(translate.attempts[0].target.gateway).toBe('B');
    expect(summary.output).toEqual({ summary: 'text of' });
    expect(summary.attempts[0].via).toBe('session');
    for (const s of [translate, summary]) expect(Date.parse(s.startedAt)).toBeGreaterThanOrEqual(Date.parse(ocr.finishedAt));
    expect(t.durationMs).toBeGreaterThanOrEqual(0);
    // Another agent does not see it.
    const other = agents.find((a) => a.options.name === 'flaky')!;
    expect((await get(r.body.id, other.credential)).status).toBe(404);
  });

  it('cancels a task mid-run: the running sub-task is stopped and the pending one never starts', async () => {
    const r = await task({ task: { subtasks: [{ id: 'slow', capability: '/capability/slow' }, { id: 'after', capability: '/capability/flaky', dependsOn: ['slow'] }] } });
    // Running, and the agent has the request.
    await waitFor(() => seen.slowStarted === 1);
    expect((await get(r.body.id)).body.subtasks.map((s: any) => s.state)).toEqual(['running', 'pending']);
    const flakyBefore = seen.flaky;
    const c = await api(gw['A']!.url, 'DELETE', `/v1/tasks/${r.body.id}`, { auth: alice.credential! });
    expect(c.status).toBe(200);
    expect(c.body.state).toBe('cancelled');
    expect(c.body.subtasks.map((s: any) => s.state)).toEqual(['cancelled', 'cancelled']);
    await waitFor(() => seen.slowAborted === 1);
    expect(seen.flaky).toBe(flakyBefore);
    expect((await api(gw['A']!.url, 'DELETE', `/v1/tasks/${r.body.id}`, { auth: alice.credential! })).body.error.code).toBe('ERR_DMSC_CONFLICT');
  });

  it('escalates when every candidate failed, and runs again on an operator decision to retry', async () => {
    flakyFails = true;
    const r = await task({ task: { subtasks: [{ id: 'f', capability: '/capability/flaky' }, { id: 'next', capability: '/capability/text/translate', dependsOn: ['f'], input: { text: 'ok', to: 'x' } }] } });
    const t = await settled(r.body.id, ['escalated', 'succeeded', 'failed']);
    expect(t.state).toBe('escalated');
    expect(t.subtasks.map((s: any) => s.state)).toEqual(['escalated', 'pending']);
    expect(t.escalation).toMatchObject({ subtask: 'f' });
    expect(t.subtasks[0].attempts).toHaveLength(1);
    // Only the owner or an operator decides; a stranger does not even see the task.
    const stranger = agents.find((a) => a.options.name === 'slow')!;
    expect((await api(gw['A']!.url, 'POST', `/v1/tasks/${r.body.id}/decision`, { auth: stranger.credential!, body: { decision: 'retry' } })).status).toBe(404);
    flakyFails = false;
    const d = await api(gw['A']!.url, 'POST', `/v1/tasks/${r.body.id}/decision`, { auth: gw['A']!.token, body: { decision: 'retry' } });
    expect(d.status).toBe(200);
    const done = await settled(r.body.id, ['succeeded', 'failed', 'escalated']);
    expect(done.state).toBe('succeeded');
    expect(done.subtasks[0].attempts.map((a: any) => a.outcome)).toEqual(['failed', 'succeeded']);
    expect(done.decisions).toMatchObject([{ decision: 'retry', by: 'operator' }]);
  });

  it('skips or aborts on decision, and refuses a decision on a task that is not escalated', async () => {
    flakyFails = true;
    const skip = await task({ task: { subtasks: [{ id: 'f', capability: '/capability/flaky' }, { id: 'next', capability: '/capability/text/translate', dependsOn: ['f'], input: { text: 'after skip', to: 'x' } }] } });
    await settled(skip.body.id, ['escalated']);
    await api(gw['A']!.url, 'POST', `/v1/tasks/${skip.body.id}/decision`, { auth: alice.credential!, body: { decision: 'skip' } });
    const skipped = await settled(skip.body.id, ['succeeded', 'failed']);
    expect(skipped.subtasks.map((s: any) => s.state)).toEqual(['skipped', 'succeeded']);
    const abort = await task({ task: { subtasks: [{ id: 'f', capability: '/capability/flaky' }] } });
    await settled(abort.body.id, ['escalated']);
    // The operator's way: the CLI, with the node's admin token.
    const cli = (...args: string[]) => dmsc('task', ...args, '--url', gw['A']!.url, '--data', gw['A']!.dataDir);
    expect(JSON.parse(cli('show', abort.body.id).stdout)).toMatchObject({ state: 'escalated' });
    const a = cli('decide', abort.body.id, 'abort');
    expect(JSON.parse(a.stdout)).toMatchObject({ state: 'failed', error: { code: 'ERR_DMSC_CANCELLED' } });
    const again = cli('decide', abort.body.id, 'retry');
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('ERR_DMSC_CONFLICT');
    expect(cli('decide', abort.body.id, 'maybe').status).toBe(2);
  });

  it('decomposes a text task by the rules file, and picks up an edit to it without a restart', async () => {
    // The test before ran the CLI synchronously: on a loaded machine that held this
    // process (and the agents' heartbeats in it) long enough for B to mark its
    // translator down. Its next heartbeat brings it back.
    await waitFor(async () => {
      const r = await api(gw['B']!.url, 'GET', '/v1/fib?prefix=/capability/text/translate', { auth: gw['B']!.token });
      return r.body.entries.some((e: any) => e.nextHops.some((h: any) => h.state === 'up'));
    }, 10_000);
    const r = await task({ task: { text: 'please shout hello' } });
    expect(r.body.rule).toBe('shout');
    const t = await settled(r.body.id, ['succeeded', 'failed', 'escalated']);
    expect(t.subtasks[0].output).toMatchObject({ text: 'HELLO (caps)' });
    const none = await task({ task: { text: 'whisper hello' } });
    expect(none.body.error.code).toBe('ERR_DMSC_NO_ROUTE');
    await writeFile(rulesFile, JSON.stringify({
      version: 1,
      rules: [{ name: 'whisper', keywords: { all: ['whisper'] }, subtasks: [{ id: 'w', capability: '/capability/text/translate', input: { text: '{{text}}', to: 'low' } }] }],
    }));
    await waitFor(async () => (await task({ task: { text: 'whisper hello' } })).status === 202);
    // A broken edit keeps the rules before it.
    await writeFile(rulesFile, '{ not json');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await task({ task: { text: 'whisper again' } })).status).toBe(202);
    await waitFor(() => /task rules rejected; keeping the one loaded before/.test(gw['A']!.stderr()));
    // A node does not start on a broken rules file (the restart below needs a good one).
    await writeFile(rulesFile, JSON.stringify({ version: 1, rules: [] }));
  });

  it('refuses bad tasks with typed errors', async () => {
    const bad = async (body: unknown) => (await task(body)).body.error?.code;
    expect(await bad({ task: { subtasks: [{ id: 'a', capability: '/x', dependsOn: ['b'] }, { id: 'b', capability: '/y', dependsOn: ['a'] }] } })).toBe('ERR_DMSC_INVALID_BODY');
    expect(await bad({ task: { subtasks: [{ id: 'a', capability: '/x', input: '{{b.output}}' }, { id: 'b', capability: '/y' }] } })).toBe('ERR_DMSC_INVALID_BODY');
    expect(await bad({ task: { subtasks: [{ id: 'a', capability: 'no-slash' }] } })).toBe('ERR_DMSC_INVALID_BODY');
    expect(await bad({ task: { text: 'x', subtasks: [{ id: 'a', capability: '/x' }] } })).toBe('ERR_DMSC_INVALID_BODY');
    expect(await bad({ task: {} })).toBe('ERR_DMSC_INVALID_BODY');
    expect((await api(gw['A']!.url, 'POST', '/v1/tasks', { body: { task: { text: 'shout x' } } })).status).toBe(401);
  });

  it('brings a task a crash interrupted back escalated, for a person to decide', async () => {
    const started = seen.slowStarted;
    const r = await task({ task: { subtasks: [{ id: 'slow', capability: '/capability/slow', timeoutMs: 2000, maxAttempts: 1 }] } });
    // The agent has the request: the attempt was on disk before it was sent.
    await waitFor(() => seen.slowStarted === started + 1);
    await gw['A']!.kill9();
    gw['A'] = await start('node', await gatewayArgs('A'), gw['A']!.dataDir);
    const t = (await get(r.body.id)).body;
    expect(t.state).toBe('escalated');
    expect(t.subtasks[0]).toMatchObject({ state: 'escalated', error: { code: 'ERR_DMSC_CANCELLED' } });
    expect(t.subtasks[0].attempts[0].outcome).toBe('failed');
  });
});
