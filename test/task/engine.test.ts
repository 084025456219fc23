// The task engine with a real store and stand-in resolution and invocation: a cancel
// that lands while a sub-task is being resolved stops it before its agent is called; a
// node stopping mid-run leaves the task to come back escalated; one requester cannot take
// all the task slots; a capability filled in from an agent's output is checked.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DmscError } from '../../src/errors.js';
import type { ResolveAnswer } from '../../src/directory/gateway.js';
import { Store } from '../../src/store/store.js';
import { DEFAULT_RULES } from '../../src/task/default-rules.js';
import { TaskEngine, type TaskEngineDeps } from '../../src/task/engine.js';

const claims = { aic: 'n1:acme:1:aa', provider: 'acme', gateway: 'n1', domain: 'd', scope: [], expiresAt: Date.now() + 3600_000 };
const answer = (aic: string): ResolveAnswer => ({ capability: '/capability/x', target: { aic, endpoint: 'http://127.0.0.1:1', gateway: 'n1' }, path: ['n1'], failover: false, grant: 'g', grantExpiresAt: 0 });
const open: { store: Store; dir: string }[] = [];
afterEach(async () => {
  for (const { store, dir } of open.splice(0)) {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});

async function engine(over: Partial<TaskEngineDeps>, dir?: string) {
  const d = dir ?? (await mkdtemp(join(tmpdir(), 'dmsc-tasks-')));
  const store = Store.open(d);
  open.push({ store, dir: d });
  const e = new TaskEngine({
    store, verify: async () => claims, resolve: async () => answer('b'), invoke: async () => ({ ok: true }), rules: () => DEFAULT_RULES, ...over,
  });
  await e.start();
  return { e, dir: d, store };
}
const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(check()).toBe(true);
};

describe('TaskEngine', () => {
  it('does not call the agent of a sub-task whose task was cancelled while it was being resolved', async () => {
    let release!: () => void;
    const resolving = new Promise<void>((r) => (release = r));
    let asked = 0;
    let called = 0;
    const { e } = await engine({
      resolve: async () => {
        asked++;
        await resolving;
        return answer('b');
      },
      invoke: async () => void called++,
    });
    const t = await e.submit(claims, 'cred', { subtasks: [{ id: 'a', capability: '/capability/x' }] });
    await until(() => asked === 1);
    await e.cancel(t.id, 'test');
    release();
    await new Promise((r) => setTimeout(r, 50));
    expect(called).toBe(0);
    const after = e.get(t.id)!;
    expect(after.state).toBe('cancelled');
    expect(after.subtasks[0]).toMatchObject({ state: 'cancelled', attempts: [] });
    expect(after.escalation).toBeUndefined();
  });

  it('leaves a task a stopping node was running to come back escalated, not stuck', async () => {
    let started = 0;
    const hang: TaskEngineDeps['invoke'] = ({ signal }) => new Promise((_, reject) => {
      started++;
      signal.addEventListener('abort', () => reject(signal.reason));
    });
    const first = await engine({ invoke: hang });
    const t = await first.e.submit(claims, 'cred', { subtasks: [{ id: 'a', capability: '/capability/x' }, { id: 'b', capability: '/capability/x' }, { id: 'c', capability: '/capability/x', dependsOn: ['a', 'b'] }] });
    await until(() => started === 2);
    await first.e.stop();
    const second = new TaskEngine({ store: first.store, verify: async () => claims, resolve: async () => answer('b'), invoke: async () => 1, rules: () => DEFAULT_RULES });
    await second.start();
    const back = second.get(t.id)!;
    expect(back.state).toBe('escalated');
    expect(back.subtasks.map((s) => s.state)).toEqual(['escalated', 'escalated', 'pending']);
    await second.decide(t.id, 'retry', 'operator');
    await until(() => second.get(t.id)!.state === 'succeeded');
  });

  it('gives one requester at most 100 unfinished tasks, escalated ones included', async () => {
    const { e } = await engine({ resolve: async () => { throw new DmscError('ERR_DMSC_NO_ROUTE', 'none'); } });
    for (let i = 0; i < 100; i++) await e.submit(claims, 'cred', { subtasks: [{ id: 'a', capability: '/capability/none' }] });
    await expect(e.submit(claims, 'cred', { subtasks: [{ id: 'a', capability: '/capability/none' }] })).rejects.toMatchObject({ code: 'ERR_DMSC_BUSY' });
    await expect(e.submit({ ...claims, aic: 'n1:acme:2:bb' }, 'cred', { subtasks: [{ id: 'a', capability: '/capability/none' }] })).resolves.toBeDefined();
  });

  it('escalates a sub-task whose capability fills in to something that is not a name', async () => {
    const { e } = await engine({ invoke: async () => ({ next: { not: 'a name' } }) });
    const t = await e.submit(claims, 'cred', { subtasks: [{ id: 'a', capability: '/capability/x' }, { id: 'b', capability: '{{a.output.next}}', dependsOn: ['a'] }] });
    await until(() => e.get(t.id)!.state === 'escalated');
    expect(e.get(t.id)!.subtasks[1]).toMatchObject({ state: 'escalated', error: { code: 'ERR_DMSC_INVALID_NAME' } });
  });
});
