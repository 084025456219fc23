// The dmsc operator console: one page, preact + htm, no build step. It signs in with the
// admin token or an observer credential (kept in this tab only), then shows the node and
// its peers as a graph, the FIB with each entry's next hops and their health, the agents,
// the live event stream with filters, and latency charts.
import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';

const html = htm.bind(h);
const KINDS = ['registration', 'deregistration', 'health', 'discovery', 'resolution', 'invocation', 'policy', 'peer'];
const POLL_MS = 2000;
const KEEP_EVENTS = 500;

const auth = (token) => ({ authorization: `Bearer ${token}` });

async function getJson(path, token) {
  const res = await fetch(path, { headers: auth(token) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
  return body;
}

// Server-sent events over fetch (EventSource cannot send a Bearer token), from `after`
// on, and resumed from the last id seen after a disconnect.
function followEvents(token, after, onEvent, onState) {
  let last = after;
  let stopped = false;
  let controller;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const res = await fetch('/v1/events', { headers: { ...auth(token), ...(last !== undefined ? { 'last-event-id': String(last) } : {}) }, signal: controller.signal });
        if (res.status === 401 || res.status === 403) {
          onState(`refused (${res.status})`);
          return;
        }
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        onState('live');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (!data) continue;
            const event = JSON.parse(data);
            last = event.id;
            onEvent(event);
          }
        }
      } catch (e) {
        if (stopped) return;
        onState(`reconnecting (${e.message})`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  return () => {
    stopped = true;
    controller?.abort();
  };
}

function Login({ onToken, error }) {
  const [value, setValue] = useState('');
  return html`<form class="login" onSubmit=${(e) => { e.preventDefault(); onToken(value.trim()); }}>
    <h1>dmsc console</h1>
    <p>Sign in with the node's admin token, or an observer credential (scope node or domain).</p>
    <input id="token" type="password" placeholder="token or credential" value=${value} onInput=${(e) => setValue(e.target.value)} autocomplete="off" />
    <button type="submit">Sign in</button>
    ${error && html`<p class="error">${error}</p>`}
  </form>`;
}

// The node in the middle, its peers around it: configured ones grey until their session is up.
function Graph({ overview }) {
  const up = new Map(overview.peers.up.map((p) => [p.gateway, p]));
  const ids = [...new Set([...overview.peers.configured.map((p) => p.id), ...up.keys()])];
  const size = 260;
  const c = size / 2;
  const r = size / 2 - 40;
  return html`<svg class="graph" viewBox="0 0 ${size} ${size}" role="img" aria-label="node and peers">
    ${ids.map((id, i) => {
      const a = (2 * Math.PI * i) / Math.max(ids.length, 1) - Math.PI / 2;
      const x = c + r * Math.cos(a);
      const y = c + r * Math.sin(a);
      const p = up.get(id);
      return html`<g class=${p ? 'peer up' : 'peer down'} data-peer=${id}>
        <line x1=${c} y1=${c} x2=${x} y2=${y} />
        <circle cx=${x} cy=${y} r="18" />
        <text x=${x} y=${y + 32} text-anchor="middle">${id}${p ? ` (${p.routes})` : ''}</text>
      </g>`;
    })}
    <g class="self"><circle cx=${c} cy=${c} r="26" /><text x=${c} y=${c + 4} text-anchor="middle">${overview.node}</text></g>
  </svg>`;
}

function Fib({ fib }) {
  if (fib.truncated) return html`<p class="note">${fib.size} entries: too many to list here (\`dmsc fib show --prefix NAME\` lists a part).</p>`;
  return html`<table class="fib">
    <thead><tr><th>prefix</th><th>next hops</th></tr></thead>
    <tbody>${fib.entries.map((e) => html`<tr data-prefix=${e.prefix}>
      <td><code>${e.prefix}</code></td>
      <td>${e.nextHops.map((n) => html`<span class="hop ${n.state}" data-hop=${n.id} title=${`weight ${n.weight}, priority ${n.priority}, load ${n.load}`}>${n.id} <b>${n.state}</b></span>`)}</td>
    </tr>`)}</tbody>
  </table>`;
}

function Agents({ agents }) {
  return html`<table class="agents">
    <thead><tr><th>AIC</th><th>provider</th><th>state</th><th>capabilities</th></tr></thead>
    <tbody>${agents.map((a) => html`<tr data-aic=${a.aic}><td><code>${a.aic}</code></td><td>${a.provider}</td><td class="state ${a.state}">${a.state}</td><td>${a.capabilities.join(', ')}</td></tr>`)}</tbody>
  </table>`;
}

function Events({ events, state }) {
  const [kind, setKind] = useState('');
  const [text, setText] = useState('');
  const shown = events.filter((e) => (!kind || e.kind === kind) && (!text || JSON.stringify(e).includes(text)));
  return html`<div>
    <div class="filters">
      <select id="kind" onChange=${(e) => setKind(e.target.value)}><option value="">all kinds</option>${KINDS.map((k) => html`<option value=${k}>${k}</option>`)}</select>
      <input id="filter" placeholder="AIC, capability, reason…" value=${text} onInput=${(e) => setText(e.target.value)} />
      <span class="stream">${state}</span>
    </div>
    <table class="events">
      <thead><tr><th>id</th><th>time</th><th>kind</th><th>decision</th><th>capability</th><th>agents</th><th>reason</th></tr></thead>
      <tbody>${shown.slice(0, 200).map((e) => html`<tr class=${e.kind} data-event=${e.id}>
        <td>${e.id}</td><td>${e.time.slice(11, 23)}</td><td>${e.kind}</td><td>${e.decision}</td><td>${e.capability ?? ''}</td><td>${e.aics.join(' ')}</td><td>${e.reason ?? ''}</td>
      </tr>`)}</tbody>
    </table>
  </div>`;
}

// p50 and p99 of resolution and forwarding since the node started, sampled at each poll.
function Latency({ series }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const data = [series.t, series.resolveP50, series.resolveP99, series.forwardP50, series.forwardP99];
    if (!plot.current) {
      plot.current = new uPlot({
        width: 560, height: 200, scales: { x: { time: true } },
        series: [{}, { label: 'resolution p50 (ms)', stroke: '#2a7' }, { label: 'resolution p99 (ms)', stroke: '#174' }, { label: 'forwarding p50 (ms)', stroke: '#37c' }, { label: 'forwarding p99 (ms)', stroke: '#135' }],
      }, data, box.current);
    } else plot.current.setData(data);
  }, [series]);
  return html`<div class="latency" ref=${box}></div>`;
}

function App() {
  const [token, setToken] = useState(sessionStorage.getItem('dmsc-token') ?? '');
  const [overview, setOverview] = useState(null);
  const [error, setError] = useState('');
  const [events, setEvents] = useState([]);
  const [stream, setStream] = useState('connecting');
  const [series, setSeries] = useState({ t: [], resolveP50: [], resolveP99: [], forwardP50: [], forwardP99: [] });

  useEffect(() => {
    if (!token) return undefined;
    let live = true;
    const poll = async () => {
      try {
        const o = await getJson('/v1/overview', token);
        if (!live) return;
        sessionStorage.setItem('dmsc-token', token);
        setOverview(o);
        setError('');
        setSeries((s) => {
          const keep = (a, v) => [...a, v].slice(-150);
          return {
            t: keep(s.t, Date.now() / 1000),
            resolveP50: keep(s.resolveP50, o.latency.resolution?.p50 ?? 0), resolveP99: keep(s.resolveP99, o.latency.resolution?.p99 ?? 0),
            forwardP50: keep(s.forwardP50, o.latency.forwarding?.p50 ?? 0), forwardP99: keep(s.forwardP99, o.latency.forwarding?.p99 ?? 0),
          };
        });
        return o.events.next;
      } catch (e) {
        if (!live) return;
        setError(e.message);
        if (/UNAUTHORIZED|FORBIDDEN/.test(e.message)) {
          sessionStorage.removeItem('dmsc-token');
          setToken('');
        }
      }
    };
    let stop;
    setEvents([]);
    // The stream starts, once the node has answered, with the last few hundred events it kept.
    const tick = () => poll().then((next) => {
      if (live && !stop && next !== undefined) stop = followEvents(token, Math.max(0, next - 1 - KEEP_EVENTS), (e) => setEvents((list) => [e, ...list].slice(0, KEEP_EVENTS)), setStream);
    });
    tick();
    const timer = setInterval(tick, POLL_MS);
    return () => {
      live = false;
      clearInterval(timer);
      stop?.();
    };
  }, [token]);

  if (!token || !overview) return html`<${Login} onToken=${setToken} error=${error} />`;
  return html`<main>
    <header><h1>dmsc · ${overview.node}</h1><span>domain ${overview.domain}</span><span>FIB ${overview.fib.size} entries, generation ${overview.fib.generation}</span>
      <button onClick=${() => { sessionStorage.removeItem('dmsc-token'); setOverview(null); setToken(''); }}>Sign out</button></header>
    ${error && html`<p class="error">${error}</p>`}
    <section class="top">
      <div><h2>Node and peers</h2><${Graph} overview=${overview} /></div>
      <div><h2>Latency</h2><${Latency} series=${series} /></div>
    </section>
    <section><h2>Agents</h2><${Agents} agents=${overview.agents} /></section>
    <section><h2>Forwarding table</h2><${Fib} fib=${overview.fib} /></section>
    <section><h2>Events</h2><${Events} events=${events} state=${stream} /></section>
  </main>`;
}

render(html`<${App} />`, document.getElementById('app'));
