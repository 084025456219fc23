// Who may see which events: the admin token sees everything at this node; an observer
// credential (signed by the domain's AMC) sees within its scope, the agents of one
// provider, one node, or the whole domain; an agent's own credential sees only events
// about itself.
import type { FastifyRequest } from 'fastify';
import { decodeProtectedHeader } from 'jose';
import { DmscError } from '../errors.js';
import { bearer } from '../http/server.js';
import { OBSERVER_TYP, type Amc } from '../identity/amc.js';
import { AmcTokenVerifier, type CredentialGuard } from '../identity/credentials.js';
import { bearerMatches } from '../node/admin-token.js';
import type { DmscEvent } from './events.js';

export interface Viewer {
  /** `admin`, `observer:<name>` or `agent:<aic>`. */
  readonly who: string;
  /** `all`, `agents:<provider>`, `node`, `domain` or `self`. */
  readonly scope: string;
  readonly sees: (e: DmscEvent) => boolean;
  /** The event as this viewer may read it: other providers' candidates left out. */
  readonly view: (e: DmscEvent) => DmscEvent;
}

const whole = (e: DmscEvent) => e;
/** The provider part of an AIC (`<registry>:<provider>:<serial>:<check>`). */
const providerOf = (aic: string) => aic.split(':')[1];

// A resolution's candidates name the node's agents for the prefix, whoever they belong
// to: a viewer short of the whole node sees only its own among them.
function onlyOwn(keep: (aic: string) => boolean): (e: DmscEvent) => DmscEvent {
  return (e) => {
    const candidates = e.detail?.['candidates'];
    if (!Array.isArray(candidates)) return e;
    return { ...e, detail: { ...e.detail, candidates: candidates.filter((c: { aic?: unknown }) => typeof c.aic === 'string' && keep(c.aic)) } };
  };
}

export class EventAccess {
  readonly #node: string;
  readonly #adminToken: string;
  readonly #guard: CredentialGuard;
  readonly #observers: AmcTokenVerifier;

  constructor(node: string, adminToken: string, amc: Amc, guard: CredentialGuard) {
    this.#node = node;
    this.#adminToken = adminToken;
    this.#guard = guard;
    this.#observers = new AmcTokenVerifier(amc);
  }

  /** The viewer a request's Bearer token makes. @throws ERR_DMSC_UNAUTHORIZED, ERR_DMSC_FORBIDDEN. */
  async viewer(req: FastifyRequest): Promise<Viewer> {
    if (bearerMatches(req.headers.authorization, this.#adminToken)) return { who: 'admin', scope: 'all', sees: () => true, view: whole };
    const token = bearer(req);
    let typ: unknown;
    try {
      typ = decodeProtectedHeader(token).typ;
    } catch {
      throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'the Bearer token is neither the admin token nor a credential');
    }
    if (typ !== OBSERVER_TYP) {
      const agent = await this.#guard.verify(token);
      return { who: `agent:${agent.aic}`, scope: 'self', sees: (e) => e.aics.includes(agent.aic), view: onlyOwn((aic) => aic === agent.aic) };
    }
    const claims = await this.#observers.verify(token, OBSERVER_TYP);
    const who = `observer:${String(claims['sub'])}`;
    switch (claims['obs']) {
      case 'agents': {
        const provider = String(claims['prv']);
        return { who, scope: `agents:${provider}`, sees: (e) => e.providers.includes(provider), view: onlyOwn((aic) => providerOf(aic) === provider) };
      }
      case 'node':
        if (claims['gw'] !== this.#node) throw new DmscError('ERR_DMSC_FORBIDDEN', `this observer credential is for node ${String(claims['gw'])}, not ${this.#node}`);
        return { who, scope: 'node', sees: () => true, view: whole };
      case 'domain':
        return { who, scope: 'domain', sees: () => true, view: whole };
      default:
        throw new DmscError('ERR_DMSC_UNAUTHORIZED', 'credential rejected: an observer credential with no known scope');
    }
  }
}
