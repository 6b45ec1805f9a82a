/**
 * The dashboard's single HTML page: inline CSS and an inline SVG plotter, no
 * external resources. Runs come from `/api/runs`, events from the
 * server-sent stream `/api/stream?run=<id>`.
 * @module
 */

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

// The client script, plain ES2020. Names from files are inserted with textContent only.
const SCRIPT = String.raw`
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const SVGNS = 'http://www.w3.org/2000/svg';
const SYSTEM = ['step time (s)', 'throughput (steps/s)'];
const state = { runs: [], current: null, es: null, series: {}, last: {}, auto: {}, events: 0, project: '', finished: false, dirty: false };
const el = (tag, attrs, text) => { const e = document.createElement(tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; return e; };
const svgEl = (tag, attrs) => { const e = document.createElementNS(SVGNS, tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v)); return e; };
const fmt = (x) => { if (!isFinite(x)) return String(x); const a = Math.abs(x); return a !== 0 && (a < 1e-3 || a >= 1e5) ? x.toExponential(2) : String(Number(x.toPrecision(4))); };

async function refreshRuns() {
  let runs;
  try { runs = await (await fetch('/api/runs', { cache: 'no-store' })).json(); } catch { return; }
  state.runs = runs;
  const ul = document.getElementById('runs');
  ul.replaceChildren(...runs.map((r) => {
    const li = el('li');
    const b = el('button', { 'data-run-id': r.id, class: r.id === state.current ? 'selected' : '' }, r.name);
    b.title = r.id + ' · ranks ' + r.ranks.join(', ');
    b.addEventListener('click', () => select(r.id));
    const meta = el('span', { class: 'meta' }, r.ranks.length > 1 ? r.ranks.length + ' ranks' : '');
    li.append(b, meta);
    return li;
  }));
  document.getElementById('empty').hidden = runs.length > 0;
  if (!state.current && runs.length) select(runs[0].id);
}

function select(id) {
  if (state.es) state.es.close();
  Object.assign(state, { current: id, series: {}, last: {}, auto: {}, events: 0, project: '', finished: false });
  document.getElementById('charts').replaceChildren();
  document.getElementById('system').replaceChildren();
  for (const b of document.querySelectorAll('#runs button')) b.classList.toggle('selected', b.getAttribute('data-run-id') === id);
  const run = state.runs.find((r) => r.id === id);
  document.getElementById('title').textContent = run ? run.name : id;
  const es = new EventSource('/api/stream?run=' + encodeURIComponent(id));
  es.addEventListener('events', (m) => { for (const e of JSON.parse(m.data)) ingest(e); schedule(); });
  es.addEventListener('ready', () => { document.body.setAttribute('data-ready', id); schedule(); });
  state.es = es;
}

function push(name, rank, step, value) {
  if (!isFinite(value)) return;
  const s = state.series[name] || (state.series[name] = {});
  (s[rank] || (s[rank] = [])).push([step, value]);
}

function ingest(e) {
  state.events++;
  if (e.k === 's') state.project = e.project;
  if (e.k === 'f') state.finished = true;
  if (e.k !== 'm') return;
  const rank = e.rank;
  const step = e.step !== undefined && e.step !== null ? e.step : (state.auto[rank] = (state.auto[rank] ?? -1) + 1);
  for (const [k, v] of Object.entries(e.v)) push(k, rank, step, v);
  const prev = state.last[rank];
  if (prev && step > prev.step && e.time > prev.time) {
    const dt = (e.time - prev.time) / (step - prev.step);
    push(SYSTEM[0], rank, step, dt);
    push(SYSTEM[1], rank, step, 1 / dt);
  }
  if (!prev || step > prev.step) state.last[rank] = { step, time: e.time };
}

function schedule() { if (!state.dirty) { state.dirty = true; requestAnimationFrame(render); } }

function chartFor(container, name) {
  let sec = container.querySelector('section[data-metric="' + CSS.escape(name) + '"]');
  if (!sec) {
    sec = el('section', { class: 'chart', 'data-metric': name });
    sec.append(el('h3', {}, name), svgEl('svg', { viewBox: '0 0 480 220', 'data-metric': name, role: 'img' }), el('div', { class: 'legend' }));
    const others = [...container.children];
    const next = others.find((o) => order(o.getAttribute('data-metric')) > order(name));
    container.insertBefore(sec, next || null);
  }
  return sec;
}

function order(name) { return (name === 'loss' ? '0' : /loss/.test(name) ? '1' : '2') + name; }

function draw(sec, byRank) {
  const svg = sec.querySelector('svg');
  const W = 480, H = 220, L = 56, R = 12, T = 10, B = 26;
  const ranks = Object.keys(byRank).map(Number).sort((a, b) => a - b);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const r of ranks) for (const [x, y] of byRank[r]) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const kids = [svgEl('rect', { x: L, y: T, width: W - L - R, height: H - T - B, class: 'frame' })];
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    kids.push(svgEl('line', { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: 'grid' }));
    const t = svgEl('text', { x: L - 6, y: sy(y) + 4, 'text-anchor': 'end', class: 'tick' }); t.textContent = fmt(y); kids.push(t);
  }
  for (const [x, anchor] of [[x0, 'start'], [x1, 'end']]) {
    const t = svgEl('text', { x: sx(x), y: H - 8, 'text-anchor': anchor, class: 'tick' }); t.textContent = 'step ' + fmt(x); kids.push(t);
  }
  for (const r of ranks) {
    const pts = byRank[r];
    const color = PALETTE[r % PALETTE.length];
    kids.push(svgEl('polyline', { points: pts.map(([x, y]) => sx(x).toFixed(2) + ',' + sy(y).toFixed(2)).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.6, 'data-rank': r, 'data-values': JSON.stringify(pts) }));
    if (pts.length === 1) kids.push(svgEl('circle', { cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 2.5, fill: color }));
  }
  svg.replaceChildren(...kids);
  const legend = sec.querySelector('.legend');
  legend.replaceChildren(...ranks.map((r) => {
    const pts = byRank[r];
    const s = el('span', { class: 'key' }, (ranks.length > 1 || r !== 0 ? 'rank ' + r + ': ' : 'last: ') + fmt(pts[pts.length - 1][1]));
    s.style.color = PALETTE[r % PALETTE.length];
    return s;
  }));
}

function render() {
  state.dirty = false;
  const charts = document.getElementById('charts');
  const system = document.getElementById('system');
  for (const [name, byRank] of Object.entries(state.series)) draw(chartFor(SYSTEM.includes(name) ? system : charts, name), byRank);
  const st = document.getElementById('status');
  st.setAttribute('data-events', String(state.events));
  st.textContent = (state.project ? state.project + ' · ' : '') + state.events + ' events' + (state.finished ? ' · finished' : ' · live');
}

refreshRuns();
setInterval(refreshRuns, 2000);
`;

/** The page's HTML, with `nonce` on its inline script (the server's CSP allows only that script). */
export function dashboardPage(nonce: string, logdir: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>accelerate-ts dashboard</title>
<style>
:root { color-scheme: light; font: 14px/1.4 system-ui, sans-serif; }
body { margin: 0; display: grid; grid-template-columns: 240px 1fr; min-height: 100vh; color: #222; }
aside { background: #f4f5f7; border-right: 1px solid #ddd; padding: 12px; overflow: auto; }
aside h1 { font-size: 15px; margin: 0 0 4px; }
aside .dir { font-size: 11px; color: #666; word-break: break-all; margin-bottom: 10px; }
ul#runs { list-style: none; padding: 0; margin: 0; }
ul#runs li { margin: 2px 0; display: flex; align-items: center; gap: 6px; }
ul#runs button { flex: 1; text-align: left; border: 1px solid transparent; background: none; padding: 4px 6px; border-radius: 4px; cursor: pointer; font: inherit; }
ul#runs button:hover { background: #e8eaee; }
ul#runs button.selected { background: #dfe8f6; border-color: #9db7e0; }
.meta { font-size: 11px; color: #777; }
main { padding: 12px 18px; overflow: auto; }
header { display: flex; align-items: baseline; gap: 12px; }
header h2 { margin: 0; font-size: 17px; }
#status { color: #555; font-size: 12px; }
h4 { margin: 16px 0 6px; color: #444; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }
section.chart { border: 1px solid #e2e2e2; border-radius: 6px; padding: 8px 10px; background: #fff; }
section.chart h3 { margin: 0 0 4px; font-size: 13px; font-weight: 600; }
svg { width: 100%; height: auto; display: block; }
svg .frame { fill: none; stroke: #ccc; }
svg line.grid { stroke: #eee; }
svg .tick { font-size: 10px; fill: #666; }
.legend { font-size: 12px; display: flex; gap: 12px; flex-wrap: wrap; }
#empty { color: #777; }
</style></head>
<body>
<aside><h1>accelerate-ts</h1><div class="dir">${escapeHtml(logdir)}</div><ul id="runs"></ul><p id="empty">No runs yet: JSONL event streams (<code>events.jsonl</code>) under this folder appear here.</p></aside>
<main>
<header><h2 id="title">no run selected</h2><span id="status" data-events="0"></span></header>
<h4>Metrics</h4><div id="charts" class="grid"></div>
<h4>Step time and throughput</h4><div id="system" class="grid"></div>
</main>
<script nonce="${nonce}">${SCRIPT}</script>
</body></html>`;
}
