// A hand-written SVG of latency CDFs (no plotting dependency): one panel per query
// distribution, x = latency in ns on a log scale, y = percentile on the 1/(1-p) scale of
// cdfPoints (so p99 and p99.9 are as far apart as p90 and p99), one line per series.

const W = 470; // one panel's plot area
const H = 330;
const M = { left: 64, right: 24, top: 72, bottom: 48 };
const GAP = 90;

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function nsLabel(v) {
  if (v >= 1e9) return `${v / 1e9} s`;
  if (v >= 1e6) return `${v / 1e6} ms`;
  if (v >= 1e3) return `${v / 1e3} µs`;
  return `${v} ns`;
}

const pctLabel = (y) => `${+(100 * (1 - 10 ** -y)).toFixed(Math.max(0, Math.round(y) - 2))}%`;

/**
 * panels: [{ title, series: [{ label, color, dash?, points: [[ns, y], ...] }] }]
 * Returns the SVG document as a string.
 */
export function latencySvg({ title, subtitle, panels }) {
  const all = panels.flatMap((p) => p.series.flatMap((s) => s.points));
  const xMin = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...all.map((q) => q[0])))));
  const xMax = 10 ** Math.ceil(Math.log10(Math.max(10, ...all.map((q) => q[0]))));
  const yMax = Math.max(3, Math.ceil(Math.max(...all.map((q) => q[1]))));
  const lx0 = Math.log10(xMin);
  const lxSpan = Math.log10(xMax) - lx0;
  const px = (v) => ((Math.log10(Math.max(v, xMin)) - lx0) / lxSpan) * W;
  const py = (y) => H - (y / yMax) * H;

  const legendSeries = panels[0].series;
  const legendRows = Math.ceil(legendSeries.length / 2);
  const width = M.left + panels.length * W + (panels.length - 1) * GAP + M.right;
  const height = M.top + H + M.bottom + legendRows * 20 + 12;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${M.left}" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`);
  if (subtitle) out.push(`<text x="${M.left}" y="38" fill="#444">${esc(subtitle)}</text>`);

  panels.forEach((panel, k) => {
    const ox = M.left + k * (W + GAP);
    out.push(`<g transform="translate(${ox},${M.top})">`);
    out.push(`<text x="${W / 2}" y="-6" text-anchor="middle" font-weight="bold">${esc(panel.title)}</text>`);
    // Grid: decades on x with 2 and 5 between them; percentiles on y.
    for (let d = lx0; d <= Math.log10(xMax) + 1e-9; d++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** d;
        if (v > xMax * 1.0001) continue;
        const x = px(v).toFixed(1);
        out.push(`<line x1="${x}" y1="0" x2="${x}" y2="${H}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`);
        if (m === 1) out.push(`<text x="${x}" y="${H + 16}" text-anchor="middle">${nsLabel(v)}</text>`);
      }
    }
    const ticks = [0, Math.log10(2)];
    for (let y = 1; y <= yMax; y++) ticks.push(y);
    for (const y of ticks) {
      const yy = py(y).toFixed(1);
      out.push(`<line x1="0" y1="${yy}" x2="${W}" y2="${yy}" stroke="#ddd"/>`);
      out.push(`<text x="-6" y="${yy}" dy="4" text-anchor="end">${pctLabel(y)}</text>`);
    }
    out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="none" stroke="#888"/>`);
    out.push(`<text x="${W / 2}" y="${H + 34}" text-anchor="middle">latency per call (ns, log scale)</text>`);
    if (k === 0) out.push(`<text transform="translate(-50,${H / 2}) rotate(-90)" text-anchor="middle">percentile of calls at or below</text>`);
    for (const s of panel.series) {
      const d = s.points.map(([v, y], i) => `${i ? 'L' : 'M'}${px(v).toFixed(1)},${py(y).toFixed(1)}`).join('');
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    }
    out.push('</g>');
  });

  const ly = M.top + H + M.bottom + 8;
  legendSeries.forEach((s, i) => {
    const x = M.left + (i % 2) * 420;
    const y = ly + Math.floor(i / 2) * 20;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 28}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<text x="${x + 36}" y="${y + 4}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
