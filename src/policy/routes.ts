// The node's policy: versioned documents kept with their history in the store. A PUT is
// validated, stored durably, then swapped into the engine before it is answered, so the
// very next request is decided by the new version.
import type { FastifyInstance } from 'fastify';
import { DmscError } from '../errors.js';
import { adminOnly } from '../http/server.js';
import type { Store } from '../store/store.js';
import { validatePolicy, type PolicyDocument, type PolicyEngine } from './policy.js';

interface StoredPolicy {
  readonly version: number;
  readonly document: PolicyDocument;
  readonly setAt: number;
}

/** Loads the newest stored policy into the engine (a fresh node runs the empty allow-all one). */
export function loadPolicy<M>(store: Store, engine: PolicyEngine<M>, log: (event: Record<string, unknown>) => void = () => {}): void {
  const db = store.db<StoredPolicy>('policies');
  const latest = [...db.getRange({ reverse: true, limit: 1 })][0];
  if (!latest) return;
  try {
    engine.load(latest.value.document);
  } catch (e) {
    // Stored under rules that have since grown stricter (a capability name no longer
    // allowed, say). The node still starts, denying everything rather than guessing
    // which rules to keep, until an operator puts a corrected policy.
    const version = latest.value.document.version;
    engine.load({ version, default: 'deny', rules: [] });
    log({ msg: 'stored policy refused; denying everything until a newer one is put', code: (e as DmscError).code ?? 'ERR_DMSC_INVALID_POLICY', version, reason: (e as Error).message });
  }
}

/**
 * `prepare(next)` readies the rest of the node for a document before it is stored (the
 * node re-tags its FIB there, which can fail as a whole); it returns how to undo that if
 * the store then fails.
 */
export function policyRoutes<M>(http: FastifyInstance, store: Store, engine: PolicyEngine<M>, adminToken: string, prepare: (next: PolicyDocument) => (() => void) | undefined, loaded: () => void = () => {}): void {
  const db = store.db<StoredPolicy>('policies');
  const admin = adminOnly(adminToken);
  // One PUT at a time: the version check and the swap must not interleave.
  let writing: Promise<unknown> = Promise.resolve();

  http.put<{ Body: unknown }>('/v1/policies', { onRequest: admin, schema: { body: { type: 'object' } } }, async (req) => {
    const run = writing.then(async () => {
      const doc = validatePolicy(req.body);
      if (doc.version <= engine.version) {
        throw new DmscError('ERR_DMSC_CONFLICT', `policy version ${doc.version} is not newer than the current version ${engine.version}`);
      }
      const undo = prepare(doc);
      try {
        await store.durable(() => db.put(doc.version, { version: doc.version, document: doc, setAt: Date.now() }));
      } catch (e) {
        undo?.();
        throw e;
      }
      engine.load(doc);
      loaded();
      return { version: doc.version, rules: doc.rules.length };
    });
    writing = run.catch(() => {});
    return run;
  });

  http.get<{ Querystring: { version?: number } }>('/v1/policies', {
    onRequest: admin,
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { version: { type: 'integer', minimum: 1 } } } },
  }, async (req) => {
    if (req.query.version === undefined) return engine.document;
    const stored = db.get(req.query.version);
    if (!stored) throw new DmscError('ERR_DMSC_NOT_FOUND', `no policy version ${req.query.version}`);
    return stored.document;
  });

  http.get('/v1/policies/history', { onRequest: admin }, async () => ({
    versions: [...db.getRange({ reverse: true, limit: 1000 })].map(({ value }) => ({ version: value.version, rules: value.document.rules.length, setAt: new Date(value.setAt).toISOString() })),
  }));
}
