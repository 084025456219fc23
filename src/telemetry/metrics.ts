// GET /metrics: the node in the Prometheus text format (prom-client), on a registry of
// its own. What the node already counts (the fast path's counters, the directory, the
// mesh's sessions) is read at scrape time; latencies are histograms observed as requests
// end.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DmscEvent, EventLog } from './events.js';

export interface MetricSources {
  readonly fib: () => { size: number; generation: number; lookups: number; misses: number; failovers: number };
  readonly agents: () => Iterable<{ state: string }>;
  readonly peers: () => { gateway: string; routes: number; csp: { ours: number; theirs: number } }[];
  readonly dataPlane: () => { requests: number; forwarded: number; retries: number; markedDown: number; refused: number; failed: number };
  readonly events: EventLog;
}

/**
 * `read`, remembered until the current turn of the event loop ends: a scrape collects
 * every metric in one turn.
 */
function once<T>(read: () => T): () => T {
  let held: { value: T } | undefined;
  return () => {
    if (!held) {
      held = { value: read() };
      setImmediate(() => {
        held = undefined;
      });
    }
    return held.value;
  };
}

/** Seconds: from 50 µs to 10 s. */
const BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export class NodeMetrics {
  readonly registry = new Registry();
  readonly #resolution: Histogram<'kind' | 'outcome'>;
  readonly #forwarding: Histogram<'outcome'>;

  constructor(node: string, sources: MetricSources) {
    const r = this.registry;
    // Each source is read once a scrape, however many series come from it.
    const s: MetricSources = { ...sources, fib: once(sources.fib), peers: once(sources.peers), dataPlane: once(sources.dataPlane) };
    r.setDefaultLabels({ node });
    // A counter read from a running total kept elsewhere.
    const total = (name: string, help: string, read: () => number) =>
      new Counter({ name, help, registers: [r], collect() { this.reset(); this.inc(read()); } });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({ name, help, registers: [r], collect() { this.set(read()); } });

    gauge('dmsc_fib_entries', 'Entries in the forwarding table', () => s.fib().size);
    gauge('dmsc_fib_generation', 'Generation of the forwarding table (one per applied batch)', () => s.fib().generation);
    total('dmsc_fastpath_lookups_total', 'Lookups in the forwarding table', () => s.fib().lookups);
    total('dmsc_fastpath_misses_total', 'Lookups that found no usable next hop', () => s.fib().misses);
    total('dmsc_fastpath_failovers_total', 'Lookups answered by a backup next hop', () => s.fib().failovers);
    new Gauge({
      name: 'dmsc_agents', help: 'Registered agents by health state', labelNames: ['state'], registers: [r],
      collect() {
        const by: Record<string, number> = { up: 0, degraded: 0, down: 0 };
        for (const a of s.agents()) by[a.state] = (by[a.state] ?? 0) + 1;
        for (const [state, n] of Object.entries(by)) this.set({ state }, n);
      },
    });
    new Counter({
      name: 'dmsc_events_total', help: 'Events recorded since start, by kind', labelNames: ['kind'], registers: [r],
      collect() {
        this.reset();
        for (const [kind, n] of s.events.counts) this.inc({ kind }, n);
      },
    });
    const registrations = new Counter({ name: 'dmsc_registrations_total', help: 'Registrations asked for, by decision', labelNames: ['decision'], registers: [r] });
    s.events.follow((e: DmscEvent) => {
      if (e.kind === 'registration') registrations.inc({ decision: e.decision });
    });
    gauge('dmsc_audit_events', 'Events kept in the audit log', () => s.events.stored);
    gauge('dmsc_peer_sessions', 'Peering sessions up', () => s.peers().length);
    new Gauge({
      name: 'dmsc_peer_routes', help: 'Routes learned from each peer', labelNames: ['peer'], registers: [r],
      collect() {
        this.reset();
        for (const p of s.peers()) this.set({ peer: p.gateway }, p.routes);
      },
    });
    new Gauge({
      name: 'dmsc_digest_version', help: 'Capability digest versions per peer session: ours as sent, theirs as held', labelNames: ['peer', 'side'], registers: [r],
      collect() {
        this.reset();
        for (const p of s.peers()) {
          this.set({ peer: p.gateway, side: 'ours' }, p.csp.ours);
          this.set({ peer: p.gateway, side: 'theirs' }, p.csp.theirs);
        }
      },
    });
    total('dmsc_dataplane_requests_total', 'Data-plane requests received (the native relay\'s included)', () => s.dataPlane().requests);
    new Counter({
      name: 'dmsc_dataplane_outcomes_total', help: 'Data-plane requests by how they ended: answered by an instance, refused (credential or policy), every instance failed', labelNames: ['outcome'], registers: [r],
      collect() {
        this.reset();
        const d = s.dataPlane();
        this.inc({ outcome: 'forwarded' }, d.forwarded);
        this.inc({ outcome: 'refused' }, d.refused);
        this.inc({ outcome: 'failed' }, d.failed);
      },
    });
    total('dmsc_dataplane_retries_total', 'Data-plane attempts past the first (failover to the next instance)', () => s.dataPlane().retries);
    total('dmsc_dataplane_marked_down_total', 'Instances marked down by a failed data-plane request', () => s.dataPlane().markedDown);
    this.#resolution = new Histogram({ name: 'dmsc_resolution_seconds', help: 'Time to answer a resolution or discovery', labelNames: ['kind', 'outcome'], buckets: BUCKETS, registers: [r] });
    this.#forwarding = new Histogram({ name: 'dmsc_forwarding_seconds', help: 'Time to forward a data-plane request, to the end of its answer (requests this process forwarded)', labelNames: ['outcome'], buckets: BUCKETS, registers: [r] });
  }

  resolution(kind: 'resolve' | 'discover' | 'intent', outcome: string, ms: number): void {
    this.#resolution.observe({ kind, outcome }, ms / 1000);
  }

  forwarding(outcome: string, ms: number): void {
    this.#forwarding.observe({ outcome }, ms / 1000);
  }

  /** Quantiles of the latency histograms, for the console (ms). */
  async latencies(): Promise<Record<string, { count: number; p50: number; p99: number }>> {
    const out: Record<string, { count: number; p50: number; p99: number }> = {};
    for (const h of [this.#resolution, this.#forwarding]) {
      const m = await h.get();
      const buckets = new Map<number, number>();
      let count = 0;
      for (const v of m.values) {
        if (v.metricName?.endsWith('_bucket')) {
          const bound = (v.labels as Record<string, string | number | undefined>)['le'];
          const le = bound === '+Inf' ? Infinity : Number(bound);
          buckets.set(le, (buckets.get(le) ?? 0) + v.value);
        } else if (v.metricName?.endsWith('_count')) count += v.value;
      }
      const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
      const q = (p: number) => {
        const want = count * p;
        const hit = sorted.find(([, n]) => n >= want);
        return hit && Number.isFinite(hit[0]) ? hit[0] * 1000 : (sorted.at(-2)?.[0] ?? 0) * 1000;
      };
      out[m.name.replace(/^dmsc_|_seconds$/g, '')] = { count, p50: count ? q(0.5) : 0, p99: count ? q(0.99) : 0 };
    }
    return out;
  }
}
