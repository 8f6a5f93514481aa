/* homeostat on-call dashboard, plain JS. Pages render from the JSON API, refresh
 * in place (?refresh=SECONDS, 0 = off) and keep their state in the query string.
 * Every API string goes through esc() before innerHTML. */
(() => {
'use strict';
/* Script errors are kept for the browser tests (and anyone with devtools). */
const jsErrors = window.__homeostatErrors = [];
window.addEventListener('error', e => jsErrors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', e => jsErrors.push(String(e.reason)));
/* Main-thread tasks over 50 ms (what makes a page feel stuck), for the same tests. */
const longTasks = window.__homeostatLongTasks = [];
try { new PerformanceObserver(l => { for (const e of l.getEntries()) longTasks.push(Math.round(e.duration)); }).observe({ type: 'longtask', buffered: true }); } catch (_) { /* not supported */ }
const D = document, $ = (s, r) => (r || D).querySelector(s), $$ = (s, r) => Array.from((r || D).querySelectorAll(s));
const app = $('#app');
if (!app) return;
const PAGE = app.dataset.page || 'overview', ROLE = D.body.dataset.role || 'anonymous', USER = D.body.dataset.user || '';
const CAN = ROLE !== 'viewer'; // anonymous: the server decides (loopback may be allowed)
const TITLE = D.title, enc = encodeURIComponent;
const Q = () => new URLSearchParams(location.search);
function setQ(k, v) {
  const q = Q();
  if (v == null || v === '') q.delete(k); else q.set(k, v);
  const s = q.toString();
  history.replaceState(null, '', location.pathname + (s ? '?' + s : '') + location.hash);
}
let REFRESH = parseFloat(Q().get('refresh'));
REFRESH = !(REFRESH >= 0) ? 5 : REFRESH && Math.max(REFRESH, 1);

/* ---------- formatting ---------- */
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = v => v == null ? '' : String(v).replace(/[&<>"']/g, c => ESC[c]);
function safeUrl(u) { // runbook links: http(s) only
  if (u == null || u === '') return '';
  try { const x = new URL(String(u), location.href); return /^https?:$/.test(x.protocol) ? x.href : ''; } catch (_) { return ''; }
}
const pad = n => String(n).padStart(2, '0');
const hms = d => pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
const fmtAbs = ms => { if (ms == null) return ''; const d = new Date(ms); return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + hms(d); };
function fmtShort(ms) {
  if (ms == null) return '–';
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString() ? hms(d) : pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
}
function dur(ms) {
  ms = Math.abs(ms);
  if (ms < 1000) return Math.round(ms) + 'ms';
  if (ms < 10000) return (ms / 1000).toFixed(1) + 's';
  const s = Math.floor(ms / 1000), m = Math.floor(s / 60), h = Math.floor(m / 60);
  return s < 60 ? s + 's' : m < 60 ? m + 'm' + (s % 60 ? ' ' + s % 60 + 's' : '') : h < 48 ? h + 'h' + (m % 60 ? ' ' + m % 60 + 'm' : '') : Math.floor(h / 24) + 'd' + (h % 24 ? ' ' + h % 24 + 'h' : '');
}
// Relative time, coarse unless `fine`, so re-rendered HTML changes about once a minute.
function rel(ms, fine) {
  if (ms == null) return '–';
  const d = Date.now() - ms, a = Math.abs(d), M = 60000, H = 3600000;
  if (a < M && !fine) return 'just now';
  const t = a < M ? Math.round(a / 1000) + 's' : a < H ? Math.floor(a / M) + 'm' : a < 48 * H ? Math.floor(a / H) + 'h ' + Math.floor(a % H / M) + 'm' : Math.floor(a / 24 / H) + 'd ' + Math.floor(a % (24 * H) / H) + 'h';
  return d >= 0 ? t + ' ago' : 'in ' + t;
}
const relT = (ms, fine) => ms == null ? '<span class="muted">–</span>' : `<time title="${fmtAbs(ms)}">${rel(ms, fine)}</time>`;
function ts(v) { // RFC 3339 / unix seconds / ms -> ms; Go's zero time -> null
  if (v == null || v === '') return null;
  if (typeof v === 'number') return v > 1e11 ? v : v * 1000;
  const t = Date.parse(v);
  return isNaN(t) || t <= 0 ? null : t;
}
function num(v) {
  v = +v;
  if (!isFinite(v)) return String(v);
  let a = Math.abs(v), i = 0;
  if (a >= 1e4) { while (a >= 1000 && i < 5) { a /= 1000; v /= 1000; i++; } return +v.toPrecision(3) + ' kMGTP'[i]; }
  return a && a < 1e-3 ? v.toExponential(2) : String(+v.toPrecision(4));
}
const pairs = x => Array.isArray(x) ? x : Object.entries(x || {});
const lkey = l => Object.keys(l || {}).sort().map(k => k + '\u0001' + l[k]).join('\u0002');
const hash = s => { let h = 0x811c9dc5; for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619); return (h >>> 0).toString(36); };
const SEV = { critical: 0, page: 0, error: 1, high: 1, warning: 2, warn: 2, info: 3, low: 3 };
const sevRank = s => s in SEV ? SEV[s] : 3.5;
const sevCls = s => ['critical', 'critical', 'warning', 'info'][sevRank(s)] || 'none';
const badge = (t, c) => `<span class="b b-${esc(c)}">${esc(t)}</span>`;
const RUN_CLS = { awaiting_approval: 'warn', approved: 'run', pending: 'run', running: 'run', verifying: 'run', rolling_back: 'bad', succeeded: 'ok', ok: 'ok', dry_run: 'ok', failed: 'bad', refused: 'bad', escalated: 'bad', interrupted: 'bad' };
const ACTIVE = ['awaiting_approval', 'approved', 'pending', 'running', 'verifying', 'rolling_back'];
const stBadge = s => badge(String(s).replace(/_/g, ' '), RUN_CLS[s] || 'mute');
const json = v => { let s = typeof v === 'string' ? v : JSON.stringify(v, null, 2); if (s && s.length > 20000) s = s.slice(0, 20000) + '\n… (truncated)'; return esc(s); };
const lbl = (k, v, f) => `<span class="lbl"${f ? ` data-f="${esc(k + '=' + v)}"` : ''}>${esc(k)}<i>=</i>${esc(v)}</span>`;
const chips = (l, skip, f) => pairs(l).filter(([k]) => !(skip || []).includes(k)).map(([k, v]) => lbl(k, v, f)).join(' ');
const btn = (cls, act, attrs, text) => CAN ? `<button type="button" class="${cls}" data-act="${act}" ${attrs}>${text}</button>` : '';
const td = (l, h, c) => `<td data-l="${l}"${c ? ` class="${c}"` : ''}>${h}</td>`;
const emptyRow = (n, t) => `<tr class="empty"><td colspan="${n}">${t}</td></tr>`;
const table = (id, cls, head, body) => `<div class="tw"><table${id ? ` id="${id}"` : ''} class="grid ${cls}"><thead><tr>${head.map(h => `<th${h[0] === '#' ? ' class="num">' + h.slice(1) : '>' + h}</th>`).join('')}</tr></thead><tbody${id ? ` id="${id}-rows"` : ''}>${body || emptyRow(head.length, 'Loading…')}</tbody></table></div>`;

/* ---------- API ---------- */
class ApiErr extends Error { constructor(s, m) { super(m); this.status = s; } }
async function call(method, path, body) {
  const h = { Accept: 'application/json' }, o = { method, credentials: 'same-origin', headers: h };
  if (method !== 'GET') {
    const m = $('meta[name="csrf-token"]');
    h['Content-Type'] = 'application/json';
    h['X-CSRF-Token'] = m ? m.content : '';
    if (method !== 'DELETE') o.body = JSON.stringify(body || {});
  }
  let r;
  try { r = await fetch(path, o); } catch (e) { throw new ApiErr(0, 'network error (' + e.message + ')'); }
  const text = await r.text();
  let j = null;
  try { j = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok || (j && j.status === 'error')) { // Prometheus envelope, or Alertmanager's bare string
    throw new ApiErr(r.status, (typeof j === 'string' ? j : j && (j.error || j.message)) || text.trim().slice(0, 300) || r.status + ' ' + r.statusText);
  }
  return j && j.status === 'success' && 'data' in j ? j.data : j;
}
const get = p => call('GET', p);
let errs = [];
// GETs of a refresh: a failure goes to the banner and yields undefined, so the last good data stays.
const load = p => get(p).catch(e => { errs.push(e); });
const qrange = (q, s, e, step) => get(`/api/v1/query_range?query=${enc(q)}&start=${s.toFixed(3)}&end=${e.toFixed(3)}&step=${step}`);
const loginLink = () => `<a href="/ui/login?next=${esc(enc(location.pathname + location.search))}">Log in</a>`;
let flashT = 0;
function flash(cls, html) {
  const f = $('#flash');
  if (!f) return;
  clearTimeout(flashT);
  f.className = cls;
  f.innerHTML = html ? `<span>${html}</span><button type="button" class="icon" data-act="flash-close" aria-label="Dismiss">×</button>` : '';
  if (cls === 'ok') flashT = setTimeout(() => flash('', ''), 8000);
}
const failed = e => flash('error', esc(e.message) + (e.status === 401 || e.status === 403 ? ' — ' + loginLink() : ''));
async function act(method, path, body, ok, b) {
  if (b) b.disabled = true;
  try {
    const r = await call(method, path, body);
    flash('ok', esc(typeof ok === 'function' ? ok(r) : ok));
    refresh();
    return r == null ? true : r;
  } catch (e) { failed(e); return null; } finally { if (b) b.disabled = false; }
}

/* ---------- rendering ---------- */
const typing = el => { const a = D.activeElement; return a && el.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName); };
// Replaces a container's HTML only if it changed and nobody types in it; keeps <details data-k> open.
function put(el, html) {
  if (typeof el === 'string') el = $(el);
  if (!el || el._h === html || typing(el)) return;
  const open = $$('details[data-k][open]', el).map(d => d.dataset.k);
  el.innerHTML = el._h = html;
  for (const d of $$('details[data-k]', el)) if (open.includes(d.dataset.k)) d.open = true;
  Spark.scan();
}
const css = v => getComputedStyle(D.body).getPropertyValue(v).trim();
const PAL = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#ea580c', '#4f46e5'];
const hasPlot = () => typeof window.uPlot === 'function';
function axes(y2) {
  const g = css('--grid'), a = () => ({ stroke: css('--muted'), grid: { stroke: g, width: 1 }, ticks: { stroke: g, width: 1 }, font: '11px system-ui,sans-serif' });
  const r = [a(), Object.assign(a(), { size: 52, values: (u, v) => v.map(x => x == null ? '' : num(x)) })];
  if (y2) r.push(Object.assign(a(), y2));
  return r;
}
const nowLine = u => { // dashed "now" marker
  const x = u.valToPos(Date.now() / 1000, 'x', true), c = u.ctx, b = u.bbox;
  if (x < b.left || x > b.left + b.width) return;
  c.save(); c.strokeStyle = css('--muted'); c.setLineDash([3, 3]); c.beginPath(); c.moveTo(x, b.top); c.lineTo(x, b.top + b.height); c.stroke(); c.restore();
};
const charts = new Set(); // full-width charts, resized with the window
function chart(el, o, data, h) {
  if (!hasPlot()) return put(el, '<p class="empty">chart library not loaded</p>');
  if (el._u && el._u.series.length === data.length) return el._u.setData(data);
  unchart(el);
  el.innerHTML = el._h = '';
  el._u = new uPlot(Object.assign({ width: Math.max(el.clientWidth, 200), height: el._ht = h, cursor: { drag: { x: true, y: false } } }, o), data, el);
  charts.add(el);
}
function unchart(root) { for (const el of charts) if (root.contains(el)) { el._u.destroy(); el._u = null; charts.delete(el); } }
let rsz = 0;
window.addEventListener('resize', () => { clearTimeout(rsz); rsz = setTimeout(() => { for (const el of charts) el._u.setSize({ width: Math.max(el.clientWidth, 200), height: el._ht }); }, 150); });
// Series of [tSeconds, value] onto one x axis (nulls where a series has no point).
function align(list) {
  const x = Array.from(new Set(list.flatMap(s => s.map(p => p[0])))).sort((a, b) => a - b), ix = new Map(x.map((t, i) => [t, i]));
  return [x].concat(list.map(s => { const y = new Array(x.length).fill(null); for (const p of s) y[ix.get(p[0])] = p[1]; return y; }));
}
const fv = v => { const n = parseFloat(v); return isFinite(n) ? n : null; };
const pts = vals => (vals || []).map(p => [+p[0], fv(p[1])]);
function sumSeries(res) { // demand over several series: their sum per timestamp
  if (res.length < 2) return res.length ? pts(res[0].values) : [];
  const m = new Map();
  for (const s of res) for (const [t, v] of pts(s.values)) if (v != null) m.set(t, (m.get(t) || 0) + v);
  return Array.from(m).sort((a, b) => a[0] - b[0]);
}

/* ---------- sparklines: lazy (visible or expanded), at most ~30, moved across re-renders ---------- */
const Spark = {
  live: new Map(), reg: new Map(), seen: new Set(), busy: new Set(), cache: new Map(),
  io: window.IntersectionObserver && new IntersectionObserver(es => {
    for (const e of es) {
      const k = e.target.dataset.spark;
      if (e.isIntersecting) { Spark.seen.add(k); Spark.draw(e.target); } else Spark.seen.delete(k);
    }
  }, { rootMargin: '100px' }),
  scan() {
    if (!this.io) return;
    this.io.disconnect();
    for (const el of $$('[data-spark]')) {
      const i = this.live.get(el.dataset.spark);
      if (i && i.el !== el) { el.appendChild(i.u.root); i.el = el; }
      this.io.observe(el);
    }
    for (const [k, i] of this.live) if (!i.el.isConnected) { i.u.destroy(); this.live.delete(k); }
  },
  async draw(el) {
    const k = el.dataset.spark, a = this.reg.get(el.dataset.a), i = this.live.get(k);
    if (!a || !hasPlot() || this.busy.has(k) || (i && Date.now() - i.at < 60000)) return;
    this.busy.add(k);
    try { await this.paint(k, a, el); } finally { this.busy.delete(k); }
  },
  async paint(k, a, el) {
    const rule = await ruleFor(a), q = rule && rule.query;
    let i = this.live.get(k), c = q && this.cache.get(q);
    if (q && !(c && Date.now() - c.at < 60000)) { const e = Date.now() / 1000; this.cache.set(q, c = { at: Date.now(), p: qrange(q, e - 3600, e, 30).catch(() => null) }); }
    const r = c && await c.p, res = r && r.result || [];
    // The alert's own series: its labels are the series' labels plus the rule's.
    const s = res.find(s => Object.entries(s.metric || {}).every(([n, v]) => n === '__name__' || a.labels[n] === v)) || (res.length === 1 && res[0]);
    if ((i = this.live.get(k))) { if (s) i.u.setData(align([pts(s.values)])); i.at = Date.now(); return; }
    const big = !!el.dataset.size;
    if (!el.isConnected || !(big || this.seen.has(k))) return;
    if (!s) { el.innerHTML = `<span class="ms">${q ? 'no data' : '–'}</span>`; return; }
    const col = { critical: '#dc2626', warning: '#d97706', info: '#2563eb' }[sevCls(a.sev)] || '#6b7280';
    el.innerHTML = '';
    this.live.set(k, { el, at: Date.now(), u: new uPlot({
      width: big ? Math.min(Math.max(el.clientWidth, 240), 640) : 120, height: big ? 140 : 28, legend: { show: false }, select: { show: false },
      cursor: { show: big, drag: { x: false, y: false } }, axes: big ? axes() : [{ show: false }, { show: false }], scales: { x: { time: true } },
      series: [{}, { stroke: col, width: 1.25, fill: col + '22', spanGaps: true, points: { show: false } }],
    }, align([pts(s.values)]), el) });
    if (this.live.size > 30) for (const [j, x] of Array.from(this.live).sort((p, q) => p[1].at - q[1].at)) {
      if (this.live.size <= 30) break;
      if (!this.seen.has(j) && !x.el.dataset.size) { x.u.destroy(); this.live.delete(j); }
    }
  },
  tick() { for (const [k, i] of this.live) if (this.seen.has(k) && Date.now() - i.at > 60000) this.draw(i.el); },
};
let rulesP = null, rulesAt = 0;
async function ruleFor(a) { // the alerting rule by alertname + its static labels
  if (Date.now() - rulesAt > 60000) { rulesAt = Date.now(); rulesP = get('/api/v1/rules?type=alert').catch(() => null); }
  const r = await rulesP, rules = [];
  for (const g of r && r.groups || []) for (const x of g.rules || []) if (x.name === a.name) rules.push(x);
  return rules.find(x => Object.entries(x.labels || {}).every(([k, v]) => a.labels[k] === v)) || rules[0];
}

/* ---------- alerts ---------- */
const S = {}; // last good data
function normAlerts(v1, v2) {
  const sup = new Map();
  for (const a of v2 || []) if (a.status && a.status.state === 'suppressed') sup.set(lkey(a.labels), a.status);
  return (v1 || []).map(a => {
    const l = a.labels || {}, k = lkey(l), s = sup.get(k), ann = a.annotations || {};
    return { labels: l, ann, name: l.alertname || '', sev: l.severity || '', state: s ? 'suppressed' : a.state, firing: a.state === 'firing', sup: s, at: ts(a.activeAt), value: a.value, h: hash(k),
      text: (pairs(l).map(p => p.join('=')).join(' ') + ' ' + (s ? 'suppressed ' : '') + a.state + ' ' + (ann.summary || '')).toLowerCase() };
  // Silenced and inhibited ones go last: they are handled, the rest are not.
  }).sort((x, y) => (x.state === 'suppressed') - (y.state === 'suppressed') || sevRank(x.sev) - sevRank(y.sev) || y.firing - x.firing || (y.at || 0) - (x.at || 0));
}
const ALERT_HEAD = ['Alert', 'Summary', '#Value', 'Since', 'Last hour', ''];
const expanded = new Set();
function alertRows(list, silence) {
  Spark.reg.clear();
  if (!list.length) return emptyRow(6, 'No active alerts.');
  return list.map(a => {
    Spark.reg.set(a.h, a);
    const sc = sevCls(a.sev), rb = safeUrl(a.ann.runbook_url), sp = a.state === 'suppressed';
    const st = sp ? badge(a.sup.silencedBy && a.sup.silencedBy.length ? 'silenced' : 'inhibited', 'mute') : a.state === 'pending' ? badge('pending', 'warn') : '';
    return `<tr data-alert="${esc(a.name)}" data-state="${esc(a.state)}" data-k="${a.h}" class="sev-${sc}${sp ? ' dim' : ''}" tabindex="0">
${td('Alert', `${badge(a.sev || 'none', sc)} <b>${esc(a.name)}</b> ${st}<div class="lbls">${chips(a.labels, ['alertname', 'severity'], 1)}</div>`)}
${td('Summary', esc(a.ann.summary || a.ann.description || '') + (rb ? ` <a href="${esc(rb)}" target="_blank" rel="noopener noreferrer" class="rb">runbook ↗</a>` : ''), 'sum')}
${td('Value', num(a.value), 'num')}${td('Since', relT(a.at), 'nw')}${td('Last hour', `<div class="spark" data-spark="${a.h}" data-a="${a.h}"></div>`)}
<td class="act">${silence ? btn('silence-btn', 'silence', `data-alertname="${esc(a.name)}" data-k="${a.h}"`, 'Silence') : ''}</td></tr>` + (expanded.has(a.h) ? `<tr class="detail"><td colspan="6"><dl class="kv">${pairs(a.ann).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}
<dt>active since</dt><dd>${fmtAbs(a.at)}</dd><dt>labels</dt><dd>${chips(a.labels, [], 1)}</dd></dl><div class="spark big" data-spark="${a.h}:big" data-a="${a.h}" data-size="big"></div></td></tr>` : '');
  }).join('');
}
const setTitle = n => { D.title = (n ? '(' + n + ') ' : '') + TITLE; };
const sum = o => Object.values(o || {}).reduce((x, y) => x + y, 0);

/* ---------- pages ---------- */
const pages = {};
pages.overview = {
  init() {
    app.innerHTML = `<section id="ov-summary" class="summary"></section><div class="ov">
<section class="card"><div class="card-h"><h2>Active alerts</h2><a href="/ui/alerts">All alerts →</a></div>${table('alert-list', 'alerts rt', ALERT_HEAD)}<div id="ov-more"></div></section>
<div><section class="card"><div class="card-h"><h2>Runs in progress</h2><a href="/ui/runs">All runs →</a></div>${table('ov-runs', 'rt', ['Run', 'State'])}</section>
<section class="card"><div class="card-h"><h2>Targets</h2><a href="/ui/targets">Targets →</a></div><div id="ov-groups" class="tiles"></div></section></div></div>`;
  },
  async load() {
    const [ov, a1, a2, runs] = await Promise.all(['/api/v1/ui/overview', '/api/v1/alerts', '/api/v2/alerts', '/api/v1/runs?limit=20'].map(load));
    if (a2) S.a2 = a2;
    if (a1) S.alerts = normAlerts(a1.alerts, S.a2);
    if (ov) S.ov = ov;
    if (runs) S.runs = runs;
    const o = S.ov;
    if (o) {
      const f = o.alerts && o.alerts.firing || {}, r = o.runs || {}, br = o.breakers_not_closed || [];
      const stat = (n, label, href, cls) => `<a class="stat${cls ? ' s-' + cls + (n ? ' on' : '') : ''}" href="${href}"><b>${esc(n || 0)}</b><span>${esc(label)}</span></a>`;
      setTitle(sum(f));
      put('#ov-summary', `<div class="stats">${['critical', 'warning', 'info'].concat(Object.keys(f).filter(s => !['critical', 'warning', 'info'].includes(s)).sort((x, y) => sevRank(x) - sevRank(y)))
        .map(s => stat(f[s], s, '/ui/alerts?filter=' + enc('severity=' + s), sevCls(s))).join('')}${stat(sum(o.alerts && o.alerts.pending), 'pending', '/ui/alerts?filter=pending')}
${stat(o.alerts && o.alerts.suppressed, 'silenced', '/ui/alerts?filter=suppressed')}${stat(r.awaiting_approval, 'awaiting approval', '/ui/runs', 'warning')}${stat(r.active, 'runs active', '/ui/runs')}${stat(o.silences_active, 'silences', '/ui/alerts')}${stat(br.length, 'breakers not closed', '/ui/breakers', 'critical')}</div>
<div class="pause">${br.map(b => `<a class="b b-${b.state === 'open' ? 'bad' : 'warn'}" href="/ui/breakers?breaker=${enc(b.name)}">${esc(b.name)}: ${esc(String(b.state).replace('_', '-'))}</a>`).join(' ')}
<button type="button" id="pause-toggle" data-act="pause" data-paused="${!!o.paused}" role="switch" aria-checked="${!o.paused}"${o.paused ? ' class="paused"' : ''}${CAN ? '' : ' disabled title="read-only (viewer)"'}><span class="dot"></span>${o.paused ? 'Playbooks paused — resume' : 'Playbooks active — pause all'}</button></div>`);
      put('#ov-groups', (o.groups || []).map(g => `<a class="tile t-${g.down ? 'bad' : g.up ? 'ok' : 'unk'}" href="/ui/targets" data-group="${esc(g.group)}"><b>${esc(g.group)}</b><span>${esc(g.up || 0)} up${g.down ? ` · <em>${esc(g.down)} down</em>` : ''}${g.unknown ? ` · ${esc(g.unknown)} unknown` : ''}</span>${g.firing ? badge(g.firing + ' firing', 'critical') : ''}</a>`).join('') || '<p class="empty">No targets.</p>');
    }
    if (S.alerts) {
      put('#alert-list-rows', alertRows(S.alerts.slice(0, 50)));
      put('#ov-more', S.alerts.length > 50 ? `<a class="more" id="alert-more" href="/ui/alerts">${S.alerts.length - 50} more → Alerts</a>` : '');
    }
    if (S.runs) {
      const l = S.runs.filter(r => ACTIVE.includes(r.state));
      put('#ov-runs-rows', l.length ? l.map(r => `<tr data-run="${esc(r.id)}" data-state="${esc(r.state)}" tabindex="0">${td('Run', `<b class="nw">${esc(r.playbook)}</b>${r.dry_run ? ' ' + badge('dry run', 'mute') : ''}<div class="ms mono">${esc(r.target)}</div>`)}
${td('State', stBadge(r.state) + `<div class="ms">${r.state === 'awaiting_approval' ? `expires ${rel(r.expires_ms)}</div><div class="act">${approveBtns(r)}` : 'created ' + relT(r.created_ms)}</div>`)}</tr>`).join('') : emptyRow(2, 'No runs in progress.'));
    }
  },
};

pages.alerts = {
  limit: 100,
  init() {
    app.innerHTML = `<section id="silence-panel" class="card" hidden></section>
<section class="card"><div class="toolbar"><input type="search" id="alert-filter" placeholder="Filter by label, e.g. severity=critical instance=db1" aria-label="Filter alerts" value="${esc(Q().get('filter') || '')}" autocomplete="off"><span id="alert-counts" class="ms"></span></div>
${table('alert-list', 'alerts rt', ALERT_HEAD)}<div id="alert-more"></div></section>
<section class="card"><div class="card-h"><h2>Silences</h2><label class="chk"><input type="checkbox" id="show-expired"> show expired</label></div>
${table('silence-list', 'rt', ['State', 'Matchers', 'Comment', 'Created by', 'Starts', 'Ends', ''])}</section>`;
  },
  async load() {
    const [a1, a2, sil] = await Promise.all(['/api/v1/alerts', '/api/v2/alerts', '/api/v2/silences'].map(load));
    if (a2) S.a2 = a2;
    if (a1) S.alerts = normAlerts(a1.alerts, S.a2);
    if (Array.isArray(sil)) S.sil = sil;
    this.render();
    const want = Q().get('silence');
    if (want && S.alerts && $('#silence-panel').hidden) openSilence(want, S.alerts.find(a => a.name === want));
    silencePreview();
  },
  render() {
    const all = S.alerts, sil = S.sil;
    if (all) {
      const toks = $('#alert-filter').value.toLowerCase().replace(/"/g, '').split(/\s+/).filter(Boolean);
      const list = all.filter(a => toks.every(t => a.text.includes(t))), c = {};
      for (const a of all) if (a.state !== 'suppressed') { const k = a.firing ? sevCls(a.sev) : 'pending'; c[k] = (c[k] || 0) + 1; }
      setTitle(all.filter(a => a.firing && a.state !== 'suppressed').length);
      put('#alert-counts', `${list.length < all.length ? list.length + ' of ' : ''}${all.length} alerts · ` + ['critical', 'warning', 'info', 'none', 'pending'].filter(k => c[k])
        .map(k => `<span class="lbl" data-f="${k === 'pending' ? k : 'severity=' + k}">${c[k]} ${k}</span>`).join(' ') + ` · <span class="lbl" data-f="suppressed">${all.filter(a => a.state === 'suppressed').length} suppressed</span>`);
      put('#alert-list-rows', list.length || !all.length ? alertRows(list.slice(0, this.limit), 1) : emptyRow(6, 'No alert matches the filter.'));
      put('#alert-more', list.length > this.limit ? `<button type="button" class="more" data-act="more-alerts">Show more (${list.length - this.limit} not shown)</button>` : '');
    }
    if (sil) {
      const exp = $('#show-expired').checked, rows = sil.filter(s => exp || (s.status || {}).state !== 'expired');
      put('#silence-list-rows', rows.map(s => {
        const st = (s.status || {}).state || 'unknown';
        return `<tr data-silence="${esc(s.id)}" data-state="${esc(st)}"${st === 'expired' ? ' class="dim"' : ''}>${td('State', badge(st, { active: 'ok', pending: 'warn' }[st] || 'mute'))}
${td('Matchers', (s.matchers || []).map(m => `<span class="lbl">${esc(m.name)}<i>${m.isEqual === false ? '!' : '='}${m.isRegex ? '~' : ''}</i>${esc(m.value)}</span>`).join(' '))}
${td('Comment', esc(s.comment), 'sum')}${td('Created by', esc(s.createdBy))}${td('Starts', relT(ts(s.startsAt)), 'nw')}${td('Ends', relT(ts(s.endsAt)), 'nw')}
<td class="act">${st === 'active' || st === 'pending' ? btn('expire-btn', 'expire', `data-silence="${esc(s.id)}"`, 'Expire') : ''}</td></tr>`;
      }).join('') || emptyRow(7, `No ${exp ? '' : 'active or pending '}silences.`));
    }
  },
};

/* silence form */
const matcherRow = (n, v) => `<div class="matcher"><input class="matcher-name" aria-label="label name" value="${esc(n)}" placeholder="name"><i>=</i><input class="matcher-value" aria-label="label value" value="${esc(v)}" placeholder="value"><button type="button" class="icon" data-act="rm-matcher" aria-label="Remove matcher" title="Remove">×</button></div>`;
function openSilence(name, a) {
  const p = $('#silence-panel');
  p.innerHTML = `<form id="silence-form" class="form" autocomplete="off"><div class="card-h"><h2>New silence</h2><button type="button" class="icon" data-act="silence-cancel" aria-label="Close">×</button></div>
<div id="silence-matchers">${pairs(a ? a.labels : { alertname: name }).map(([k, v]) => matcherRow(k, v)).join('')}</div><button type="button" id="silence-add-matcher" data-act="add-matcher">+ add matcher</button>
<div class="row"><label>Duration <input id="silence-duration" value="2h" size="6" required title="Prometheus duration: 30m, 2h, 1d"></label><span id="silence-ends" class="muted"></span>
<label>Created by <input id="silence-createdby" value="${ROLE === 'anonymous' ? '' : esc(USER)}" required></label></div>
<label class="blk">Comment <textarea id="silence-comment" rows="2" required placeholder="Why? Link the incident or ticket."></textarea></label>
<div class="row"><button type="submit" id="silence-submit" class="primary"${CAN ? '' : ' disabled title="read-only (viewer)"'}>Create silence</button><button type="button" data-act="silence-cancel">Cancel</button><span id="silence-preview" class="muted"></span></div></form>`;
  p.hidden = false;
  setQ('silence', name);
  silencePreview();
  p.scrollIntoView({ block: 'nearest' });
  $('#silence-comment').focus({ preventScroll: true });
}
function parseDur(s) { // Prometheus duration -> ms
  const m = /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(String(s).trim());
  const t = m ? [31536e6, 6048e5, 864e5, 36e5, 6e4, 1e3, 1].reduce((acc, x, i) => acc + (m[i + 1] || 0) * x, 0) : 0;
  return t > 0 ? t : null;
}
const formMatchers = () => $$('#silence-matchers .matcher').map(r => ({ name: $('.matcher-name', r).value.trim(), value: $('.matcher-value', r).value })).filter(m => m.name || m.value);
function silencePreview() {
  if (!$('#silence-form')) return;
  const d = parseDur($('#silence-duration').value), e = $('#silence-ends'), ms = formMatchers();
  e.textContent = d ? 'until ' + fmtAbs(Date.now() + d) : 'invalid duration: use e.g. 30m, 2h, 1d';
  e.classList.toggle('err', !d);
  const n = S.alerts && ms.length ? S.alerts.filter(a => ms.every(m => (a.labels[m.name] || '') === m.value)).length : null;
  $('#silence-preview').textContent = n == null ? '' : `matches ${n} active alert${n === 1 ? '' : 's'}`;
}
async function submitSilence() {
  const ms = formMatchers(), d = parseDur($('#silence-duration').value), by = $('#silence-createdby').value.trim(), comment = $('#silence-comment').value.trim();
  const bad = !ms.length ? 'add at least one matcher' : ms.some(m => !m.name) ? 'every matcher needs a label name' : !d ? 'duration must be like 30m, 2h or 1d' : !by ? 'created by is required' : !comment ? 'a comment is required' : '';
  if (bad) { flash('error', esc('Silence not created: ' + bad)); ($(!comment ? '#silence-comment' : !by ? '#silence-createdby' : '#silence-duration')).focus(); return; }
  const now = Date.now();
  const r = await act('POST', '/api/v2/silences', { matchers: ms.map(m => ({ name: m.name, value: m.value, isRegex: false, isEqual: true })),
    startsAt: new Date(now).toISOString(), endsAt: new Date(now + d).toISOString(), createdBy: by, comment },
  r => `Silence ${r && r.silenceID || ''} created, until ${fmtAbs(now + d)}`, $('#silence-submit'));
  if (r) closeSilence();
}
function closeSilence() { const p = $('#silence-panel'); p.hidden = true; p.innerHTML = ''; setQ('silence', null); }

/* runs */
const approveBtns = r => r.state === 'awaiting_approval' ? btn('approve-btn', 'approve', `data-run="${esc(r.id)}"`, 'Approve') + btn('deny-btn', 'deny', `data-run="${esc(r.id)}"`, 'Deny') : '';
function runRow(r) {
  const st = r.started_ms, fin = r.finished_ms;
  return `<tr data-run="${esc(r.id)}" data-state="${esc(r.state)}" tabindex="0"${Q().get('run') === r.id ? ' class="sel"' : ''}>${td('Created', relT(r.created_ms), 'nw')}
${td('Playbook', `<b class="nw">${esc(r.playbook)}</b>${r.dry_run ? ' ' + badge('dry run', 'mute') : ''}<div class="ms mono">${esc(r.id)}</div>`)}${td('Target', esc(r.target), 'mono nw')}
${td('Trigger', esc(r.trigger) + `<div class="ms">${esc(r.requested_by)}</div>`)}${td('State', stBadge(r.state) + (r.state === 'awaiting_approval' ? `<div class="ms">expires ${rel(r.expires_ms)}</div><div class="act">${approveBtns(r)}</div>` : ''))}
<td data-l="Duration" class="num"${fin ? ` title="finished ${fmtAbs(fin)}"` : ''}>${st ? fin ? dur(fin - st) : 'running' : '–'}</td></tr>`;
}
function runDetail(r) {
  const audit = r.audit || [], dec = audit.filter(a => /^run\.(approve|deny)/.test(a.action)), v = r.verify, steps = r.steps || [];
  const kv = (k, h) => `<dt>${k}</dt><dd>${h}</dd>`, when = ms => ms ? fmtAbs(ms) : '–';
  const val = x => { // an output object's multi-line strings (logs) shown raw, the rest as JSON
    if (x == null) return '';
    const o = x.constructor === Object ? x : { '': x }, rest = {}, logs = [];
    for (const [k, v] of Object.entries(o)) typeof v === 'string' && /\n/.test(v) ? logs.push(`${k ? `<div class="ms">${esc(k)}</div>` : ''}<pre>${json(v)}</pre>`) : rest[k] = v;
    const n = Object.keys(rest).length;
    return (n ? `<pre>${json(x === o ? rest : x)}</pre>` : '') + logs.join('');
  };
  return `<div class="card-h"><h2>${esc(r.playbook)} ${stBadge(r.state)}${r.dry_run ? ' ' + badge('dry run', 'mute') : ''}</h2><button type="button" class="icon" data-act="run-close" aria-label="Close">×</button></div>
<div class="mono muted sm">${esc(r.id)}</div>${r.state === 'awaiting_approval' && CAN ? `<div class="row">${approveBtns(r)}<span class="muted">expires ${rel(r.expires_ms)}</span></div>` : ''}
<dl class="kv">${kv('Target', `<span class="mono">${esc(r.target)}</span>`)}${kv('Trigger', `${esc(r.trigger)} <span class="ms mono">${esc(JSON.stringify(r.trigger_detail || {}))}</span>`)}${kv('Requested by', esc(r.requested_by))}
${kv('Approval', dec.length ? dec.map(a => `${a.action === 'run.deny' ? 'denied' : 'approved'} by <b>${esc(a.actor)}</b> ${relT(a.at_ms)}`).join('<br>') : r.decided_by ? `${esc(r.decided_by)} ${relT(r.decided_at_ms)}` : '–')}
${kv('Created', when(r.created_ms))}${kv('Started', when(r.started_ms))}${kv('Finished', when(r.finished_ms) + (r.finished_ms && r.started_ms ? ` (${dur(r.finished_ms - r.started_ms)})` : ''))}${r.reason ? kv('Reason', esc(r.reason)) : ''}
${kv('Inputs', (chips(r.labels) || '<span class="muted">no labels</span>') + ` <span class="muted">value</span> ${num(r.value)}`)}
${v ? kv('Verification', `${badge(v.held ? 'held' : 'not held', v.held ? 'ok' : 'bad')} <code>${esc(v.expr)}</code>${v.after_ms != null ? ' after ' + dur(v.after_ms) : ''}${v.checks ? `, ${esc(v.checks)} checks` : ''}${v.error ? `<div class="err">${esc(v.error)}</div>` : ''}`) : ''}${r.outputs != null ? kv('Outputs', val(r.outputs)) : ''}</dl>
<h3>Steps</h3>${steps.length ? `<ol class="steps">${steps.map((s, i) => `<li class="step" data-step-state="${esc(s.state)}"><div class="step-h"><b>${esc(s.name)}</b> <code>${esc(s.action)}</code>${s.phase && s.phase !== 'main' ? badge(s.phase, 'warn') : ''}${stBadge(s.state)}
<span class="ms">${fmtShort(s.started_ms)}${s.finished_ms ? ' · ' + dur(s.finished_ms - s.started_ms) : ''}</span></div>${s.error ? `<pre class="err">${esc(s.error)}</pre>` : ''}${val(s.output)}
${s.inputs && Object.keys(s.inputs).length ? `<details data-k="in${i}"><summary>inputs</summary><pre>${json(s.inputs)}</pre></details>` : ''}</li>`).join('')}</ol>` : '<p class="muted">No steps recorded yet.</p>'}
<h3>Audit</h3>${audit.length ? `<table class="grid sm"><tbody>${audit.map(a => `<tr><td class="nw">${fmtShort(a.at_ms)}</td><td>${esc(a.actor)}</td><td><code>${esc(a.action)}</code></td><td>${esc(a.detail)}</td></tr>`).join('')}</tbody></table>` : '<p class="muted">No audit entries.</p>'}`;
}
pages.runs = {
  init() {
    app.innerHTML = `<section class="card"><form id="run-form" class="form row" autocomplete="off"><h2>Run a playbook</h2>
<label>Playbook <select id="run-playbook" required><option value="">loading…</option></select></label><label>Target <input id="run-target" placeholder="target"></label>
<label class="chk"><input type="checkbox" id="run-dry" checked> dry run</label>
<button type="submit" id="run-submit" class="primary"${CAN ? '' : ' disabled title="read-only (viewer)"'}>Dry run</button><span id="run-pb-desc" class="ms"></span></form></section>
<div class="split"><section id="run-detail" class="card detail" hidden></section>
<section class="card"><div class="card-h"><h2>Runs</h2><span id="run-counts" class="muted"></span></div>${table('run-list', 'rt', ['Created', 'Playbook', 'Target', 'Trigger', 'State', '#Duration'])}</section></div>`;
  },
  async load() {
    const id = Q().get('run');
    const [runs, pbs, det] = await Promise.all([load('/api/v1/runs?limit=100'), Date.now() - (S.pbAt || 0) > 60000 && load('/api/v1/playbooks'), id && load('/api/v1/runs/' + enc(id))]);
    if (runs) S.runs = runs;
    if (pbs) { S.pb = pbs.playbooks || []; S.pbAt = Date.now(); this.playbooks(); }
    if (S.runs) {
      const w = S.runs.filter(r => r.state === 'awaiting_approval').length;
      put('#run-counts', `${S.runs.length} runs · ${S.runs.filter(r => ACTIVE.includes(r.state)).length} active${w ? ` · <b class="warn">${w} awaiting approval</b>` : ''}`);
      put('#run-list-rows', S.runs.map(runRow).join('') || emptyRow(6, 'No runs yet.'));
    }
    const p = $('#run-detail');
    p.hidden = !id;
    if (det && det.id === Q().get('run')) put(p, runDetail(det));
  },
  playbooks() {
    const s = $('#run-playbook'), cur = s.value || Q().get('playbook') || '';
    if (!typing(s.form)) put(s, '<option value="">choose…</option>' + S.pb.map(p => `<option value="${esc(p.name)}"${p.name === cur ? ' selected' : ''}>${esc(p.name)}${p.paused ? ' (paused)' : ''}</option>`).join(''));
    this.desc();
  },
  desc() {
    const p = (S.pb || []).find(x => x.name === $('#run-playbook').value), dry = $('#run-dry').checked, b = $('#run-submit');
    $('#run-pb-desc').textContent = p ? [p.description, p.trigger && 'trigger: ' + p.trigger.kind, p.guards && p.guards.approval && 'needs approval'].filter(Boolean).join(' · ') : '';
    $('#run-target').placeholder = p && p.target || 'target';
    b.textContent = dry ? 'Dry run' : 'Run for real';
    b.className = dry ? 'primary' : 'danger';
  },
};
function selectRun(id) {
  setQ('run', id);
  for (const r of $$('#run-list-rows tr')) r.classList.toggle('sel', r.dataset.run === id);
  const p = $('#run-detail');
  p.hidden = false;
  put(p, '<p class="muted">Loading run…</p>');
  refresh();
  if (innerWidth < 1100) p.scrollIntoView();
}
async function submitRun() {
  const name = $('#run-playbook').value, t = $('#run-target').value.trim();
  if (!name) { flash('error', 'Choose a playbook first.'); return $('#run-playbook').focus(); }
  const body = { dry_run: $('#run-dry').checked };
  if (t) body.target = t;
  const r = await act('POST', `/api/v1/playbooks/${enc(name)}/run`, body, r => `${body.dry_run ? 'Dry run' : 'Run'} of ${name}: ${r && r.id || ''} ${r && r.state ? r.state.replace(/_/g, ' ') : 'started'}`, $('#run-submit'));
  if (r && r.id) selectRun(r.id);
}

pages.breakers = {
  init() {
    app.innerHTML = `<div class="split"><section id="breaker-detail" class="card detail" hidden></section>
<section class="card"><div class="card-h"><h2>Circuit breakers</h2></div>${table('breaker-list', 'rt', ['Breaker', 'State', 'Since', '#Failures', 'Next', ''])}</section></div>`;
  },
  async load() {
    const sel = Q().get('breaker'), [list, tr] = await Promise.all([load('/api/v1/breakers'), sel && load(`/api/v1/breakers/${enc(sel)}/transitions`)]);
    const cls = s => ({ closed: 'ok', open: 'bad' }[s] || 'warn'), B = s => badge(String(s).replace('_', '-'), cls(s));
    if (Array.isArray(list)) S.br = list;
    if (S.br) put('#breaker-list-rows', S.br.map(b => {
      const due = b.since_ms + b.recovery_timeout_seconds * 1000;
      return `<tr data-breaker="${esc(b.name)}" data-state="${esc(b.state)}" tabindex="0"${b.name === sel ? ' class="sel"' : ''}>${td('Breaker', `<b>${esc(b.name)}</b>`)}${td('State', B(b.state))}${td('Since', relT(b.since_ms), 'nw')}
${td('Failures', `${esc(b.failures)} / ${esc(b.failure_threshold)}`, 'num')}${td('Next', esc(b.state === 'open' ? (due > Date.now() ? 'half-open ' + rel(due, 1) : 'half-open on next call') : b.state === 'half_open' ? b.trials_left + ' of ' + b.half_open_trials + ' trials left' : 'trips at ' + b.failure_threshold), 'sm')}
<td class="act">${['open', 'half_open', 'closed'].filter(s => s !== b.state).map(s => btn('breaker-btn', 'breaker-set', `data-breaker="${esc(b.name)}" data-to="${s}"`, { open: 'Open', half_open: 'Half-open', closed: 'Close' }[s])).join('')}</td></tr>`;
    }).join('') || emptyRow(6, 'No breakers configured.'));
    const p = $('#breaker-detail');
    p.hidden = !sel;
    if (sel && Array.isArray(tr)) put(p, `<div class="card-h"><h2>${esc(sel)}: transitions</h2><button type="button" class="icon" data-act="breaker-close" aria-label="Close">×</button></div>
${tr.length ? table('', 'rt', ['When', 'Change', 'Reason'], tr.map(t => `<tr>${td('When', `${fmtShort(t.at_ms)} <span class="ms">${rel(t.at_ms)}</span>`, 'nw')}${td('Change', `${esc(t.from)} → ${B(t.to)}`)}${td('Reason', esc(t.reason))}</tr>`).join('')) : '<p class="muted">No transitions recorded.</p>'}`);
  },
};

pages.scaling = {
  init() { app.innerHTML = '<h2 class="sec">Autoscalers</h2><div id="scalers" class="cards"><p class="empty">Loading…</p></div><h2 class="sec">Forecasts</h2><div id="forecasts" class="cards"></div>'; },
  async load() {
    const [as, fc] = await Promise.all(['/api/v1/autoscalers', '/api/v1/forecasts'].map(load));
    if (as) S.as = as.autoscalers || [];
    if (fc) S.fc = fc.forecasts || [];
    // ?range=DURATION (default 3h) sets the window shown; about 240 points per line.
    const e = Date.now() / 1000, sel = Q().get('autoscaler'), span = Math.min(Math.max((parseDur(Q().get('range') || '') || 3 * 3600e3) / 1000, 60), 7 * 86400);
    const qd = (q, soft) => qrange(q, e - span, e, Math.max(1, Math.round(span / 240))).then(r => sumSeries(r && r.result || []), x => { if (!soft) errs.push(x); });
    const lit = s => '"' + String(s).replace(/[\\"]/g, '\\$&') + '"';
    // The replica floor series carries an `autoscale` label (the runner's metric family).
    const [obs, reps, fobs] = await Promise.all([Promise.all((S.as || []).map(a => qd(a.demand))),
      Promise.all((S.as || []).map(a => qd(`homeostat_autoscale_desired_replicas{autoscale=${lit(a.name)}}`, 1))), Promise.all((S.fc || []).map(f => qd(f.expr)))]);
    const fact = (v, l) => `<div><b>${v}</b><span>${l}</span></div>`, dash = v => v == null ? '–' : esc(v);
    if (S.as) keyed($('#scalers'), S.as, '<p class="empty">No autoscale entries in the config.</p>', (el, a, i) => {
      const m = a.model || {}, dec = (a.decisions || []).slice().sort((x, y) => y.t - x.t), all = a.name === sel;
      el.classList.toggle('sel', all);
      put($('.stats', el), `<div class="card-h"><h3><a href="?autoscaler=${enc(a.name)}" data-act="sel-scaler" data-name="${esc(a.name)}">${esc(a.name)}</a> ${badge(a.mode, a.mode === 'predictive' ? 'run' : 'mute')}</h3><span class="ms mono">${esc(a.target)}</span></div>
<div class="facts">${fact(dash(a.current_replicas) + ' → ' + dash(a.desired_replicas), 'replicas now → desired')}${fact(esc(a.min) + '–' + esc(a.max), 'min–max')}${fact(num(a.capacity_per_replica), 'per replica @ ' + esc(Math.round(a.target_utilization * 100)) + '%')}
${fact(dur((a.lead_time_seconds || 0) * 1000), 'lead time')}${fact(m.mase == null ? '–' : num(m.mase), 'MASE')}${fact(m.period_seconds ? dur(m.period_seconds * 1000) : '–', 'season')}${fact(m.trained_at ? relT(ts(m.trained_at)) : '–', 'trained')}</div>
<p class="sm"><span class="muted">demand</span> <code>${esc(a.demand)}</code>${a.reason ? `<br><span class="muted">reason</span> ${esc(a.reason)}` : ''}${m.error ? `<br><span class="err">model: ${esc(m.error)}</span>` : ''}</p>`);
      const r = reps[i] && reps[i].length ? reps[i] : dec.map(d => [d.t, d.desired]).reverse(); // fall back to the API's decisions
      fcChart($('.chart', el), obs[i] && obs[i].length ? obs[i] : dec.filter(d => d.demand != null).map(d => [d.t, d.demand]).reverse(), a.forecast, r);
      put($('.dec', el), dec.length ? table('', 'sm rt', ['When', '#Desired', '#Reactive', '#Predictive', 'Mode', 'Reason'], dec.slice(0, all ? 100 : 6).map(d => `<tr>${td('When', fmtShort(ts(d.t)), 'nw')}${td('Desired', `<b>${esc(d.desired)}</b>`, 'num')}
${td('Reactive', esc(d.reactive), 'num')}${td('Predictive', dash(d.predictive), 'num')}${td('Mode', esc(d.mode))}${td('Reason', esc(d.reason))}</tr>`).join('')) + (dec.length > 6 && !all ? `<a class="more" href="?autoscaler=${enc(a.name)}" data-act="sel-scaler" data-name="${esc(a.name)}">all ${dec.length} decisions →</a>` : '') : '<p class="ms">No decisions yet.</p>');
    });
    if (S.fc) keyed($('#forecasts'), S.fc, '<p class="empty">No forecasts configured.</p>', (el, f, i) => {
      const m = f.model || {};
      put($('.stats', el), `<div class="card-h"><h3>${esc(f.name)}</h3><span class="ms">${m.mase == null ? '' : 'MASE ' + num(m.mase) + ' · '}${m.trained_at ? 'trained ' + rel(ts(m.trained_at)) : 'not trained yet'}</span></div><p class="sm"><code>${esc(f.expr)}</code></p>`);
      fcChart($('.chart', el), fobs[i], f.forecast);
    });
    const c = sel && !this.done && $$('#scalers > [data-key]').find(x => x.dataset.key === sel);
    if (c) { this.done = 1; c.scrollIntoView(); }
  },
};
// One card per name, created once and updated in place so its chart survives refreshes.
function keyed(box, items, empty, update) {
  if (!items.length) { unchart(box); return put(box, empty); }
  for (const c of Array.from(box.children)) if (!c.dataset.key) c.remove();
  box._h = null;
  const seen = new Set();
  let prev = null;
  items.forEach((it, i) => {
    const k = String(it.name);
    let el = $$(':scope > [data-key]', box).find(e => e.dataset.key === k);
    seen.add(k);
    if (!el) {
      el = D.createElement('section');
      el.className = 'card';
      el.dataset.key = k;
      el.innerHTML = '<div class="stats"></div><div class="chart"></div><div class="dec"></div>';
    }
    if (el !== (prev ? prev.nextSibling : box.firstChild)) box.insertBefore(el, prev ? prev.nextSibling : box.firstChild);
    update(el, it, i);
    prev = el;
  });
  for (const el of Array.from(box.children)) if (!seen.has(el.dataset.key)) { unchart(el); el.remove(); }
}
// Observed demand, forecast (dashed) with its lo–hi band, and optionally the replica floor (stepped, right axis).
function fcChart(el, obs, fc, reps) {
  fc = (fc || []).map(p => [ts(p.t) / 1000, p.yhat, p.lo, p.hi]);
  if (!(obs && obs.length) && !fc.length) return el._u || put(el, '<p class="empty sm">No demand data or forecast yet.</p>');
  const lists = [obs || []].concat([1, 2, 3].map(j => fc.map(p => [p[0], p[j]])));
  const line = (label, stroke, w, more) => Object.assign({ label, stroke, width: w, spanGaps: true, points: { show: false } }, more);
  const series = [{}, line('demand', PAL[0], 1.5), line('forecast', PAL[4], 1.5, { dash: [6, 4] }), line('lo', PAL[4] + '66', 1), line('hi', PAL[4] + '66', 1)];
  if (reps) {
    lists.push(reps.map(p => [ts(p[0]) / 1000, p[1]]));
    series.push(line('replicas', PAL[2], 2, { scale: 'r', paths: hasPlot() ? uPlot.paths.stepped({ align: 1 }) : null }));
  }
  chart(el, { series, bands: [{ series: [4, 3], fill: PAL[4] + '22' }], hooks: { draw: [nowLine] },
    scales: { x: { time: true }, r: { range: (u, lo, hi) => [0, Math.max(1, Math.ceil((hi || 1) * 1.2))] } },
    axes: axes(reps && { side: 1, scale: 'r', size: 36, grid: { show: false }, values: (u, v) => v.map(x => Number.isInteger(x) ? x : '') }) }, align(lists), 220);
}

pages.targets = {
  tog: new Set(),
  init() {
    app.innerHTML = `<section class="card"><form id="query-form" class="form" autocomplete="off"><div class="row">
<textarea id="query-expr" rows="1" spellcheck="false" placeholder="PromQL, e.g. up == 0 or rate(http_requests_total[5m])" aria-label="PromQL expression">${esc(Q().get('expr') || '')}</textarea>
<select id="query-range" aria-label="Range">${Object.keys(RANGES).map(r => `<option${r === (Q().get('range') || '1h') ? ' selected' : ''}>${r}</option>`).join('')}</select>
<button type="submit" id="query-run" class="primary">Run query</button></div></form>
<div id="query-error" class="err" hidden></div><div id="query-info" class="ms"></div><div id="query-graph"></div><div id="query-table"></div></section>
<section class="card"><div class="card-h"><h2>Targets</h2><span id="target-counts" class="ms"></span></div><div id="target-groups"><p class="empty">Loading…</p></div></section>`;
    if (Q().get('expr')) runQuery();
  },
  async load() {
    const [t] = await Promise.all([load('/api/v1/targets'), this.expr && Date.now() - this.at > 2000 && runQuery(1)]);
    if (t) S.tg = t.activeTargets || [];
    if (S.tg) this.render();
  },
  render() {
    const g = new Map(), cnt = l => l.reduce((c, x) => (c[x.health] = (c[x.health] || 0) + 1, c), {}), all = cnt(S.tg);
    for (const x of S.tg) { const j = (x.labels || {}).job || x.scrapePool || '(no job)'; g.has(j) || g.set(j, []); g.get(j).push(x); }
    const H = (c, n) => `<span class="${c.down ? 'bad' : 'ok'}">${c.up || 0}/${n} up</span>${c.down ? ` · <span class="bad">${c.down} down</span>` : ''}${c.unknown ? ` · ${c.unknown} unknown` : ''}`;
    put('#target-counts', H(all, S.tg.length));
    const bad = l => l.filter(x => x.health !== 'up').length; // groups with trouble first
    put('#target-groups', Array.from(g).sort((a, b) => (bad(b[1]) > 0) - (bad(a[1]) > 0) || a[0].localeCompare(b[0])).map(([j, l]) => {
      const c = cnt(l), open = !!(S.tg.length <= 100 || c.down || c.unknown) !== this.tog.has(j); // big fleets: only groups with trouble start open
      l.sort((a, b) => (a.health === 'up') - (b.health === 'up') || String(a.scrapeUrl).localeCompare(b.scrapeUrl));
      return `<div class="tgroup" data-job="${esc(j)}"><button type="button" class="tg-h" data-act="toggle-job" data-job="${esc(j)}" aria-expanded="${open}"><span class="caret">${open ? '▾' : '▸'}</span><b>${esc(j)}</b> ${H(c, l.length)}</button>
${open ? table('', 'rt', ['Endpoint', 'State', 'Labels', 'Last scrape', '#Duration', 'Error'], l.map(x => {
        const u = safeUrl(x.scrapeUrl);
        return `<tr data-target="${esc(x.scrapeUrl)}" data-state="${esc(x.health)}">${td('Endpoint', u ? `<a href="${esc(u)}" target="_blank" rel="noopener noreferrer">${esc(x.scrapeUrl)}</a>` : esc(x.scrapeUrl), 'mono')}
${td('State', badge(x.health, { up: 'ok', down: 'bad' }[x.health] || 'mute'))}${td('Labels', chips(x.labels, ['job']))}${td('Last scrape', relT(ts(x.lastScrape), 1), 'nw')}
${td('Duration', x.lastScrapeDuration != null ? dur(x.lastScrapeDuration * 1000) : '', 'num')}${td('Error', esc(x.lastError), 'err sm')}</tr>`;
      }).join('')) : ''}</div>`;
    }).join('') || '<p class="empty">No targets.</p>');
  },
};
const RANGES = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400 };
async function runQuery(quiet) {
  const P = pages.targets, e = $('#query-error'), g = $('#query-graph');
  if (!quiet) { P.expr = $('#query-expr').value.trim(); P.range = $('#query-range').value; setQ('expr', P.expr); setQ('range', P.range === '1h' ? null : P.range); }
  const expr = P.expr, rs = RANGES[P.range] || 3600, end = Date.now() / 1000, step = Math.max(1, Math.round(rs / 250));
  P.at = Date.now();
  if (!expr) { e.hidden = true; unchart(g); ['#query-graph', '#query-table', '#query-info'].forEach(s => put(s, '')); return; }
  const [r, i] = await Promise.all([qrange(expr, end - rs, end, step), get(`/api/v1/query?query=${enc(expr)}&time=${end.toFixed(3)}`)].map(p => p.catch(x => x)));
  if (expr !== P.expr) return;
  const bad = [r, i].find(x => x instanceof Error);
  e.hidden = !bad;
  e.textContent = bad ? 'Error: ' + bad.message : '';
  if (!(r instanceof Error)) {
    const res = r && r.result || [], shown = res.slice(0, 50), m0 = (shown[0] || {}).metric || {};
    const common = shown.length > 1 ? Object.keys(m0).filter(k => shown.every(s => (s.metric || {})[k] === m0[k])) : [];
    const name = m => { const l = Object.entries(m || {}).filter(([k]) => k !== '__name__' && !common.includes(k)).map(([k, v]) => `${k}="${v}"`).join(', '); return ((m.__name__ && !common.includes('__name__') ? m.__name__ : '') + (l ? '{' + l + '}' : '')) || expr; };
    put('#query-info', `${res.length} series${res.length > 50 ? ', graphing the first 50' : ''} · step ${step}s${common.length ? ' · common labels: ' + esc(common.map(k => k + '=' + m0[k]).join(', ')) : ''}`);
    const sig = shown.map(s => lkey(s.metric)).join('|');
    if (g._sig !== sig) unchart(g);
    g._sig = sig;
    if (!shown.length) put(g, '<p class="empty">No data in range.</p>');
    else chart(g, { series: [{}].concat(shown.map((s, j) => ({ label: name(s.metric || {}), stroke: PAL[j % 10], width: 1.25, points: { show: false } }))), scales: { x: { time: true } }, axes: axes() }, align(shown.map(s => pts(s.values))), 280);
  }
  if (i && !(i instanceof Error)) {
    const rt = i.resultType, res = i.result || [], many = /^(vector|matrix)$/.test(rt) && res;
    put('#query-table', table('', 'sm', [`Result (${esc(rt)}${many && res.length > 200 ? ', first 200 of ' + res.length : ''})`, '#Value'], !many ? `<tr><td>${esc(rt)}</td><td class="num">${esc(res[1])}</td></tr>`
      : many.slice(0, 200).map(s => `<tr><td>${chips(s.metric) || '{}'}</td><td class="num">${esc(s.value ? s.value[1] : (s.values || []).length + ' points')}</td></tr>`).join('') || emptyRow(2, 'Empty result.')));
  }
}

/* ---------- events: one delegated listener per event type ---------- */
const ACTS = {
  'flash-close': () => flash('', ''),
  refresh: () => refresh(),
  pause: b => { const p = b.dataset.paused === 'true'; act('POST', p ? '/api/v1/resume' : '/api/v1/pause', {}, p ? 'Playbooks resumed' : 'All playbooks paused', b); },
  approve: b => act('POST', `/api/v1/runs/${enc(b.dataset.run)}/approve`, {}, `Run ${b.dataset.run} approved`, b),
  deny: b => act('POST', `/api/v1/runs/${enc(b.dataset.run)}/deny`, {}, `Run ${b.dataset.run} denied`, b),
  silence: b => openSilence(b.dataset.alertname, Spark.reg.get(b.dataset.k)),
  'silence-cancel': closeSilence,
  'add-matcher': () => { $('#silence-matchers').insertAdjacentHTML('beforeend', matcherRow('', '')); $('#silence-matchers .matcher:last-child input').focus(); },
  'rm-matcher': b => { b.parentNode.remove(); silencePreview(); },
  expire: b => act('DELETE', `/api/v2/silence/${enc(b.dataset.silence)}`, null, `Silence ${b.dataset.silence} expired`, b),
  'breaker-set': b => act('POST', `/api/v1/breakers/${enc(b.dataset.breaker)}/state`, { state: b.dataset.to }, `Breaker ${b.dataset.breaker} set to ${b.dataset.to.replace('_', '-')}`, b),
  'breaker-close': () => { setQ('breaker', null); refresh(); },
  'run-close': () => { setQ('run', null); $('#run-detail').hidden = true; $$('#run-list-rows tr.sel').forEach(r => r.classList.remove('sel')); },
  'more-alerts': () => { pages.alerts.limit += 200; pages.alerts.render(); },
  'toggle-job': b => { const t = pages.targets.tog, j = b.dataset.job; t.has(j) ? t.delete(j) : t.add(j); pages.targets.render(); },
  'sel-scaler': b => { setQ('autoscaler', Q().get('autoscaler') === b.dataset.name ? null : b.dataset.name); refresh(); },
};
function rowClick(row) {
  const d = row.dataset;
  if (d.run) PAGE === 'runs' ? selectRun(d.run) : location.assign('/ui/runs?run=' + enc(d.run));
  else if (d.breaker) { setQ('breaker', d.breaker); refresh(); }
  else if (d.k) {
    expanded.has(d.k) ? expanded.delete(d.k) : expanded.add(d.k);
    PAGE === 'alerts' ? pages.alerts.render() : put('#alert-list-rows', alertRows(S.alerts.slice(0, 50)));
  }
}
function filterBy(tok) {
  if (PAGE !== 'alerts') return location.assign('/ui/alerts?filter=' + enc(tok));
  const i = $('#alert-filter'), v = i.value.trim();
  i.value = v.split(/\s+/).includes(tok) ? v : (v ? v + ' ' : '') + tok;
  setQ('filter', i.value.trim());
  pages.alerts.render();
}
D.addEventListener('click', e => {
  const t = e.target.closest ? e.target : e.target.parentNode, b = t.closest('[data-act]'), f = t.closest('[data-f]');
  if (b) { if (!b.disabled && ACTS[b.dataset.act]) { e.preventDefault(); ACTS[b.dataset.act](b); } return; }
  if (f) return filterBy(f.dataset.f);
  if (t.closest('a,button,input,select,textarea,label,summary,pre') || String(getSelection()).length) return;
  const row = t.closest('tr[data-run],tr[data-breaker],tr[data-k]');
  if (row) rowClick(row);
});
D.addEventListener('keydown', e => {
  const t = e.target;
  if (e.key === 'Enter' && t.matches('tr[tabindex]')) { e.preventDefault(); rowClick(t); }
  if (e.key === 'Enter' && !e.shiftKey && t.id === 'query-expr') { e.preventDefault(); runQuery(); }
});
let ft = 0;
D.addEventListener('input', e => {
  const t = e.target;
  if (t.id === 'alert-filter') { clearTimeout(ft); ft = setTimeout(() => { setQ('filter', t.value.trim()); pages.alerts.render(); }, 120); }
  else if (t.closest('#silence-form')) silencePreview();
});
D.addEventListener('change', e => {
  const id = e.target.id;
  if (id === 'show-expired') pages.alerts.render();
  if (id === 'run-playbook' || id === 'run-dry') pages.runs.desc();
});
D.addEventListener('submit', e => {
  const id = e.target.id;
  if (!/^(silence|run|query)-form$/.test(id)) return;
  e.preventDefault();
  (id === 'silence-form' ? submitSilence : id === 'run-form' ? submitRun : runQuery)();
});

/* ---------- refresh loop ---------- */
const P = pages[PAGE];
let timer = 0, busy = false, again = false, lastGood = 0;
function banner() {
  const b = $('#fetch-error'), u = $('#updated');
  if (u) u.textContent = (lastGood ? 'updated ' + hms(new Date(lastGood)) : 'not loaded') + (REFRESH ? '' : ' · auto-refresh off');
  if (!b) return;
  b.hidden = !errs.length;
  b.innerHTML = errs.length ? `<b>Could not refresh:</b> ${esc(Array.from(new Set(errs.map(e => e.message))).slice(0, 3).join('; '))}${lastGood ? ' — showing data from ' + hms(new Date(lastGood)) : ''}${errs.some(e => e.status === 401 || e.status === 403) ? ' — ' + loginLink() : ''}` : '';
}
async function refresh() {
  clearTimeout(timer);
  if (busy) { again = true; return; }
  busy = true;
  errs = [];
  const t0 = performance.now();
  try { await P.load(); } catch (e) { errs.push(e); console.error(e); }
  busy = false;
  /* Timings for the README's figures: when data first reached the screen, and
   * what each refresh (fetch + render) costs. */
  if (!errs.length) {
    if (!lastGood) performance.mark('homeostat-rendered');
    performance.measure('homeostat-refresh', { start: t0, end: performance.now() });
    lastGood = Date.now();
  }
  banner();
  Spark.tick();
  if (again) { again = false; return refresh(); }
  if (REFRESH) timer = setTimeout(function tick() { if (D.hidden) timer = setTimeout(tick, REFRESH * 1000); else refresh(); }, REFRESH * 1000);
}
D.addEventListener('visibilitychange', () => { if (!D.hidden && REFRESH && Date.now() - lastGood > REFRESH * 1000) refresh(); });
for (const a of $$('#nav a')) if (a.dataset.page === PAGE) { a.setAttribute('aria-current', 'page'); a.parentNode.scrollLeft = a.offsetLeft - 40; }
if (!P) { app.innerHTML = `<p class="empty">Unknown page ${esc(PAGE)}.</p>`; return; }
P.init();
refresh();
})();
