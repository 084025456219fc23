// TIP (MACP §5.4): a task is a DAG of sub-tasks, each resolved under the task's
// constraints and the requester's policy (through the mesh when needed) and then invoked,
// the gateway acting for the requesting agent. A sub-task whose chosen agent fails falls
// back to the next candidate (the ones tried are excluded from the next resolution); when
// none is left the task is `escalated` and waits for an operator's decision (retry, skip,
// abort): the human in the loop of MACP §6. Tasks are kept in the store: one acknowledged
// is not lost, and one a crash interrupted comes back escalated, for a person to decide
// whether its running sub-tasks may run again.
import { randomBytes } from 'node:crypto';
import { DmscError, type DmscErrorCode } from '../errors.js';
import type { ResolveAnswer } from '../directory/gateway.js';
import type { AgentClaims } from '../identity/credentials.js';
import { nameProblem } from '../fastpath/validate.js';
import type { Store } from '../store/store.js';
import { checkSubtasks, decompose, fill, type RuleSet, type SubtaskSpec, type TaskConstraints, type TaskSpec } from './decompose.js';

export type SubtaskState = 'pending' | 'resolving' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'escalated' | 'skipped';
export type TaskState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'escalated';
export type Decision = 'retry' | 'skip' | 'abort';

export interface Attempt {
  readonly target: { readonly aic: string; readonly gateway: string };
  readonly via: 'request' | 'session';
  readonly startedAt: number;
  endedAt?: number;
  outcome: 'running' | 'succeeded' | 'failed' | 'cancelled';
  error?: { code: string; message: string };
}

export interface SubtaskRecord {
  readonly id: string;
  readonly spec: SubtaskSpec;
  capability: string;
  state: SubtaskState;
  attempts: Attempt[];
  /** AICs tried and failed in this round (cleared by a retry decision). */
  excluded: string[];
  output?: unknown;
  error?: { code: string; message: string };
  startedAt?: number;
  finishedAt?: number;
}

export interface TaskRecord {
  readonly id: string;
  readonly requester: { readonly aic: string; readonly provider: string; readonly domain: string };
  /** The requester's credential, with which each sub-task is resolved and invoked. */
  readonly credential: string;
  state: TaskState;
  readonly text?: string;
  readonly rule?: string;
  readonly match?: Record<string, string>;
  readonly input?: unknown;
  readonly constraints: TaskConstraints;
  readonly subtasks: SubtaskRecord[];
  readonly createdAt: number;
  updatedAt: number;
  finishedAt?: number;
  escalation?: { subtask: string; reason: string; at: number };
  decisions: { decision: Decision; subtask?: string; by: string; at: number }[];
  error?: { code: string; message: string };
}

/** How a sub-task's chosen agent is called; rejects with a DmscError on failure. */
export type Invoker = (call: {
  task: TaskRecord;
  subtask: SubtaskRecord;
  resolution: ResolveAnswer;
  input: unknown;
  via: 'request' | 'session';
  signal: AbortSignal;
}) => Promise<unknown>;

export interface TaskEngineDeps {
  readonly store: Store;
  /** Checks the requester's credential again (revocation, expiry) before each resolution. */
  readonly verify: (credential: string) => Promise<AgentClaims>;
  readonly resolve: (requester: AgentClaims, credential: string, capability: string, require: readonly string[], exclude: readonly string[]) => Promise<ResolveAnswer>;
  readonly invoke: Invoker;
  readonly rules: () => RuleSet;
  readonly log?: (event: Record<string, unknown>) => void;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_ATTEMPTS = 3;
/** Active (unfinished) tasks a node runs at once, and of one requester. */
const MAX_ACTIVE = 1000;
const MAX_ACTIVE_PER_REQUESTER = 100;
/** Finished tasks are kept this long, and at most this many. */
const KEEP_MS = 24 * 3600_000;
const KEEP_MAX = 10_000;
const FINAL_TASK: ReadonlySet<TaskState> = new Set(['succeeded', 'failed', 'cancelled']);
const FINAL_SUB: ReadonlySet<SubtaskState> = new Set(['succeeded', 'failed', 'cancelled', 'skipped']);
/** Errors after which trying another candidate cannot help. */
const DEFINITE: ReadonlySet<string> = new Set(['ERR_DMSC_UNAUTHORIZED', 'ERR_DMSC_FORBIDDEN', 'ERR_DMSC_INVALID_NAME', 'ERR_DMSC_INVALID_BODY', 'ERR_DMSC_NO_ROUTE']);

const errorOf = (e: unknown): { code: string; message: string } => {
  const err = e as DmscError;
  return { code: typeof err?.code === 'string' && err.code.startsWith('ERR_') ? err.code : 'ERR_DMSC_INTERNAL', message: String(err?.message ?? e).slice(0, 500) };
};

export class TaskEngine {
  readonly #deps: TaskEngineDeps;
  readonly #db: ReturnType<Store['db']>;
  /** Unfinished tasks; finished ones are read from the store. */
  readonly #tasks = new Map<string, TaskRecord>();
  #lastPrune = 0;
  /** Per running task: aborts its running sub-tasks. */
  readonly #controllers = new Map<string, AbortController>();
  readonly #deadlines = new Map<string, NodeJS.Timeout>();
  readonly #running = new Set<Promise<void>>();
  #stopped = false;

  constructor(deps: TaskEngineDeps) {
    this.#deps = deps;
    this.#db = deps.store.db<TaskRecord>('tasks');
  }

  /**
   * Loads the stored tasks. One that was running when the node went down is escalated:
   * its running sub-tasks may or may not have had their effect, and a person decides.
   */
  async start(): Promise<void> {
    const interrupted: TaskRecord[] = [];
    for (const { value } of this.#db.getRange()) {
      const t = value as TaskRecord;
      if (FINAL_TASK.has(t.state)) continue;
      this.#tasks.set(t.id, t);
      for (const s of t.subtasks) {
        // Cancelled in an unfinished task: stopped with the node, not by a person.
        if (s.state === 'running' || s.state === 'resolving' || s.state === 'cancelled') {
          for (const a of s.attempts) if (a.outcome === 'running') Object.assign(a, { outcome: 'failed', endedAt: Date.now(), error: { code: 'ERR_DMSC_CANCELLED', message: 'the node stopped during this attempt' } });
          s.state = 'escalated';
          s.error = { code: 'ERR_DMSC_CANCELLED', message: 'the node stopped while this sub-task ran; it may or may not have taken effect' };
          t.escalation = { subtask: s.id, reason: s.error.message, at: Date.now() };
        }
      }
      if (t.escalation && t.subtasks.some((s) => s.state === 'escalated')) t.state = 'escalated';
      interrupted.push(t);
    }
    if (interrupted.length) await this.#deps.store.durable(() => interrupted.forEach((t) => this.#db.put(t.id, t)));
    // Tasks that were only waiting (pending sub-tasks, none escalated) carry on.
    for (const t of interrupted) if (t.state !== 'escalated') this.#drive(t);
  }

  /** Stops every running sub-task (the tasks stay as they are in the store). */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const c of this.#controllers.values()) c.abort(new DmscError('ERR_DMSC_CANCELLED', 'the node is stopping'));
    for (const t of this.#deadlines.values()) clearTimeout(t);
    await Promise.allSettled([...this.#running]);
  }

  /**
   * Accepts a task (stored durably before it is acknowledged) and starts it.
   * @throws ERR_DMSC_INVALID_BODY, ERR_DMSC_NO_ROUTE (no rule for a text task), ERR_DMSC_BUSY
   */
  async submit(requester: AgentClaims, credential: string, spec: TaskSpec): Promise<TaskRecord> {
    if (this.#stopped) throw new DmscError('ERR_DMSC_NOT_READY', 'the node is stopping');
    let subtasks: readonly SubtaskSpec[];
    let rule: { rule: string; match: Record<string, string> } | undefined;
    if (spec.subtasks !== undefined) subtasks = spec.subtasks;
    else if (typeof spec.text === 'string') {
      const d = decompose(this.#deps.rules(), spec.text);
      subtasks = d.subtasks;
      rule = { rule: d.rule, match: d.match };
    } else throw new DmscError('ERR_DMSC_INVALID_BODY', 'a task has subtasks or text');
    checkSubtasks(subtasks);
    if (this.#tasks.size >= MAX_ACTIVE) throw new DmscError('ERR_DMSC_BUSY', `${MAX_ACTIVE} tasks are active on this node; try again later`);
    const own = [...this.#tasks.values()].filter((t) => t.requester.aic === requester.aic).length;
    if (own >= MAX_ACTIVE_PER_REQUESTER) {
      throw new DmscError('ERR_DMSC_BUSY', `${requester.aic} has ${MAX_ACTIVE_PER_REQUESTER} unfinished tasks (escalated ones count); cancel or decide on some first`);
    }
    const now = Date.now();
    const task: TaskRecord = {
      id: `t-${now.toString(36)}-${randomBytes(6).toString('base64url')}`,
      requester: { aic: requester.aic, provider: requester.provider, domain: requester.domain },
      credential, state: 'pending',
      ...(spec.text !== undefined ? { text: spec.text } : {}),
      ...(rule ? { rule: rule.rule, match: rule.match } : {}),
      ...(spec.input !== undefined ? { input: spec.input } : {}),
      constraints: spec.constraints ?? {},
      subtasks: subtasks.map((s) => ({ id: s.id, spec: s, capability: s.capability, state: 'pending', attempts: [], excluded: [] })),
      createdAt: now, updatedAt: now, decisions: [],
    };
    await this.#deps.store.durable(() => {
      this.#db.put(task.id, task);
      if (now - this.#lastPrune > 60_000) {
        this.#lastPrune = now;
        this.#prune(now);
      }
    });
    this.#tasks.set(task.id, task);
    this.#drive(task);
    return task;
  }

  get(id: string): TaskRecord | undefined {
    return this.#tasks.get(id) ?? (this.#db.get(id) as TaskRecord | undefined);
  }

  /** Tasks, newest first (ids begin with their creation time); of one requester when given. */
  list(requester?: string, limit = 100): TaskRecord[] {
    const out: TaskRecord[] = [];
    for (const { key } of this.#db.getRange({ reverse: true })) {
      const t = this.get(String(key));
      if (t && (requester === undefined || t.requester.aic === requester)) out.push(t);
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Cancels a task: its running sub-tasks are stopped, its pending ones never start. */
  async cancel(id: string, by: string): Promise<TaskRecord> {
    const task = this.#need(id);
    if (FINAL_TASK.has(task.state) || !this.#tasks.has(id)) throw new DmscError('ERR_DMSC_CONFLICT', `task ${id} is already ${task.state}`);
    await this.#finish(task, 'cancelled', { code: 'ERR_DMSC_CANCELLED', message: `cancelled by ${by}` });
    return task;
  }

  /**
   * An operator's decision on an escalated task: `retry` the escalated sub-tasks with
   * every candidate again, `skip` them (their dependents run, reading null for their
   * output), or `abort` the task.
   */
  async decide(id: string, decision: Decision, by: string, subtask?: string): Promise<TaskRecord> {
    const task = this.#need(id);
    if (task.state !== 'escalated' || !this.#tasks.has(id)) throw new DmscError('ERR_DMSC_CONFLICT', `task ${id} is ${task.state}; only an escalated task takes a decision`);
    const escalated = task.subtasks.filter((s) => s.state === 'escalated' && (subtask === undefined || s.id === subtask));
    if (subtask !== undefined && escalated.length === 0) throw new DmscError('ERR_DMSC_NOT_FOUND', `task ${id} has no escalated sub-task ${subtask}`);
    task.decisions.push({ decision, ...(subtask !== undefined ? { subtask } : {}), by, at: Date.now() });
    if (decision === 'abort') {
      await this.#finish(task, 'failed', { code: 'ERR_DMSC_CANCELLED', message: `aborted by ${by}` });
      return task;
    }
    for (const s of escalated) {
      delete s.error;
      if (decision === 'retry') {
        s.state = 'pending';
        s.excluded = [];
      } else {
        s.state = 'skipped';
        s.output = null;
        s.finishedAt = Date.now();
      }
    }
    if (!task.subtasks.some((s) => s.state === 'escalated')) {
      delete task.escalation;
      task.state = 'running';
    }
    await this.#save(task, true);
    this.#drive(task);
    return task;
  }

  #need(id: string): TaskRecord {
    const t = this.get(id);
    if (!t) throw new DmscError('ERR_DMSC_NOT_FOUND', `no task ${id}`);
    return t;
  }

  // Starts every sub-task whose dependencies are done, and settles the task when nothing
  // is left to run.
  #drive(task: TaskRecord): void {
    if (this.#stopped || FINAL_TASK.has(task.state)) return;
    if (!this.#controllers.has(task.id)) {
      this.#controllers.set(task.id, new AbortController());
      const deadline = task.constraints.deadlineMs;
      if (deadline !== undefined && !this.#deadlines.has(task.id)) {
        const left = task.createdAt + deadline - Date.now();
        const timer = setTimeout(() => {
          void this.#finish(task, 'failed', { code: 'ERR_DMSC_TIMEOUT', message: `the task was not done within its ${deadline} ms deadline` }).catch(() => {});
        }, Math.max(0, left));
        timer.unref();
        this.#deadlines.set(task.id, timer);
      }
    }
    if (task.state === 'pending') task.state = 'running';
    const done = (id: string) => {
      const s = task.subtasks.find((x) => x.id === id)!;
      return s.state === 'succeeded' || s.state === 'skipped';
    };
    for (const s of task.subtasks) {
      if (s.state !== 'pending' || !(s.spec.dependsOn ?? []).every(done)) continue;
      const run = this.#run(task, s).finally(() => {
        this.#running.delete(run);
        this.#drive(task);
      });
      this.#running.add(run);
    }
    if (task.subtasks.every((s) => s.state === 'succeeded' || s.state === 'skipped')) {
      void this.#finish(task, 'succeeded').catch(() => {});
    } else if (task.subtasks.some((s) => s.state === 'escalated') && task.state !== 'escalated') {
      // Sub-tasks already running go on; nothing depending on the escalated one starts
      // until someone decides.
      task.state = 'escalated';
      void this.#save(task, true).catch(() => {});
    }
  }

  async #run(task: TaskRecord, s: SubtaskRecord): Promise<void> {
    const controller = this.#controllers.get(task.id)!;
    // After every wait: a task cancelled, finished or stopped meanwhile goes no further.
    const over = () => controller.signal.aborted || FINAL_TASK.has(task.state) || this.#stopped;
    const live = () => {
      if (over()) throw controller.signal.reason ?? new DmscError('ERR_DMSC_CANCELLED', 'stopped');
    };
    const c = task.constraints;
    const timeoutMs = s.spec.timeoutMs ?? c.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxAttempts = s.spec.maxAttempts ?? c.maxAttempts ?? DEFAULT_ATTEMPTS;
    const via = s.spec.via ?? c.via ?? 'request';
    const require = [...new Set([...(c.require ?? []), ...(s.spec.require ?? [])])];
    s.startedAt ??= Date.now();
    let last: { code: string; message: string } | undefined;
    let tries = 0;
    try {
      const context: Record<string, unknown> = { input: task.input ?? null, text: task.text ?? '', match: task.match ?? {} };
      for (const d of s.spec.dependsOn ?? []) context[d] = { output: task.subtasks.find((x) => x.id === d)!.output ?? null };
      const capability = fill(s.spec.capability, context);
      // A template may have put anything there (an upstream agent's output).
      const problem = typeof capability === 'string' ? nameProblem(capability) : 'not a string';
      if (problem) throw new DmscError('ERR_DMSC_INVALID_NAME', `the capability of sub-task ${s.id} filled in to ${JSON.stringify(capability).slice(0, 200)}: ${problem}`);
      s.capability = capability as string;
      const input = fill(s.spec.input ?? null, context);
      while (tries < maxAttempts) {
        live();
        s.state = 'resolving';
        this.#touch(task);
        const claims = await this.#deps.verify(task.credential);
        live();
        let resolution: ResolveAnswer;
        try {
          resolution = await this.#deps.resolve(claims, task.credential, s.capability, require, s.excluded);
        } catch (e) {
          live();
          last = errorOf(e);
          // No candidate left (or none at all): the fallback is over.
          break;
        }
        live();
        tries++;
        const attempt: Attempt = { target: { aic: resolution.target.aic, gateway: resolution.target.gateway }, via, startedAt: Date.now(), outcome: 'running' };
        s.attempts.push(attempt);
        s.state = 'running';
        // On disk before the agent is called: after a crash the record tells a person
        // this attempt may have had its effect.
        await this.#save(task, true);
        try {
          live();
        } catch (e) {
          Object.assign(attempt, { outcome: 'cancelled', endedAt: Date.now() });
          throw e;
        }
        const timeout = AbortSignal.timeout(timeoutMs);
        const signal = AbortSignal.any([controller.signal, timeout]);
        try {
          const output = await this.#deps.invoke({ task, subtask: s, resolution, input, via, signal });
          live();
          Object.assign(attempt, { outcome: 'succeeded', endedAt: Date.now() });
          s.output = output;
          s.state = 'succeeded';
          s.finishedAt = Date.now();
          delete s.error;
          await this.#save(task, false);
          return;
        } catch (e) {
          if (over()) {
            Object.assign(attempt, { outcome: 'cancelled', endedAt: Date.now() });
            throw e;
          }
          last = timeout.aborted ? { code: 'ERR_DMSC_TIMEOUT', message: `${resolution.target.aic} did not answer within ${timeoutMs} ms` } : errorOf(e);
          Object.assign(attempt, { outcome: 'failed', endedAt: Date.now(), error: last });
          s.excluded.push(resolution.target.aic);
          this.#deps.log?.({ msg: 'sub-task attempt failed', task: task.id, subtask: s.id, target: resolution.target.aic, code: last.code, fallback: tries < maxAttempts });
          if (DEFINITE.has(last.code) && last.code !== 'ERR_DMSC_NO_ROUTE') break;
        }
      }
      live();
      const reason = last
        ? `${tries} candidate(s) tried; the last error: ${last.code}: ${last.message}`
        : `no candidate was tried`;
      s.state = 'escalated';
      s.error = last ?? { code: 'ERR_DMSC_NO_ROUTE', message: reason };
      task.escalation = { subtask: s.id, reason, at: Date.now() };
      this.#deps.log?.({ msg: 'task escalated', task: task.id, subtask: s.id, reason });
      await this.#save(task, true);
    } catch (e) {
      // The node is stopping: the sub-task stays as it is on disk, and comes back
      // escalated at the next start.
      if (this.#stopped) return;
      if (over()) {
        if (!FINAL_SUB.has(s.state)) {
          s.state = 'cancelled';
          s.finishedAt = Date.now();
        }
        return;
      }
      // A template that names nothing, a revoked credential: no candidate can help.
      s.state = 'escalated';
      s.error = errorOf(e);
      task.escalation = { subtask: s.id, reason: `${s.error.code}: ${s.error.message}`, at: Date.now() };
      await this.#save(task, true);
    }
  }

  async #finish(task: TaskRecord, state: 'succeeded' | 'failed' | 'cancelled', error?: { code: DmscErrorCode | string; message: string }): Promise<void> {
    if (FINAL_TASK.has(task.state)) return;
    task.state = state;
    task.finishedAt = Date.now();
    if (error) task.error = { code: error.code, message: error.message };
    if (state !== 'succeeded') delete task.escalation;
    const controller = this.#controllers.get(task.id);
    controller?.abort(new DmscError('ERR_DMSC_CANCELLED', error?.message ?? state));
    this.#controllers.delete(task.id);
    clearTimeout(this.#deadlines.get(task.id));
    this.#deadlines.delete(task.id);
    for (const s of task.subtasks) {
      if (FINAL_SUB.has(s.state)) continue;
      for (const a of s.attempts) if (a.outcome === 'running') Object.assign(a, { outcome: 'cancelled', endedAt: Date.now() });
      s.state = 'cancelled';
      s.finishedAt = Date.now();
    }
    await this.#save(task, true);
    this.#tasks.delete(task.id);
    this.#deps.log?.({ msg: 'task finished', task: task.id, state, ...(error ? { code: error.code } : {}) });
  }

  #touch(task: TaskRecord): void {
    void this.#save(task, false).catch(() => {});
  }

  // Progress is written as it happens; what changes the task's course (escalation, a
  // decision, the end) is durable before it is reported.
  async #save(task: TaskRecord, durable: boolean): Promise<void> {
    // Once stopping, what is on disk stays: the next start judges it.
    if (this.#stopped) return;
    task.updatedAt = Date.now();
    if (durable) await this.#deps.store.durable(() => this.#db.put(task.id, task));
    else await this.#db.put(task.id, task);
  }

  // Drops finished tasks past their keeping time, and the oldest past the count (called
  // inside a write transaction, at most once a minute).
  #prune(now: number): void {
    const finished: { id: string; at: number }[] = [];
    for (const { key, value } of this.#db.getRange()) {
      const t = value as TaskRecord;
      if (FINAL_TASK.has(t.state)) finished.push({ id: String(key), at: t.finishedAt ?? t.updatedAt });
    }
    finished.sort((a, b) => a.at - b.at);
    const over = Math.max(0, finished.length - KEEP_MAX);
    for (const [i, t] of finished.entries()) if (i < over || t.at < now - KEEP_MS) this.#db.remove(t.id);
  }
}

/** A task as the API shows it: no credential, times as ISO strings, durations in ms. */
export function taskView(t: TaskRecord): Record<string, unknown> {
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  return {
    id: t.id, state: t.state, requester: t.requester.aic,
    ...(t.text !== undefined ? { text: t.text } : {}), ...(t.rule !== undefined ? { rule: t.rule } : {}),
    createdAt: iso(t.createdAt), updatedAt: iso(t.updatedAt), ...(t.finishedAt !== undefined ? { finishedAt: iso(t.finishedAt), durationMs: t.finishedAt - t.createdAt } : {}),
    ...(t.escalation ? { escalation: { ...t.escalation, at: iso(t.escalation.at) } } : {}),
    ...(t.error ? { error: t.error } : {}),
    decisions: t.decisions.map((d) => ({ ...d, at: iso(d.at) })),
    subtasks: t.subtasks.map((s) => ({
      id: s.id, capability: s.capability, state: s.state, dependsOn: s.spec.dependsOn ?? [],
      ...(s.startedAt !== undefined ? { startedAt: iso(s.startedAt) } : {}),
      ...(s.finishedAt !== undefined ? { finishedAt: iso(s.finishedAt) } : {}),
      ...(s.startedAt !== undefined && s.finishedAt !== undefined ? { durationMs: s.finishedAt - s.startedAt } : {}),
      attempts: s.attempts.map((a) => ({
        target: a.target, via: a.via, outcome: a.outcome, startedAt: iso(a.startedAt),
        ...(a.endedAt !== undefined ? { endedAt: iso(a.endedAt), durationMs: a.endedAt - a.startedAt } : {}),
        ...(a.error ? { error: a.error } : {}),
      })),
      ...(s.state === 'succeeded' || s.state === 'skipped' ? { output: s.output ?? null } : {}),
      ...(s.error ? { error: s.error } : {}),
    })),
  };
}
