// The sidecar's dashboard. It reads one event stream from its own origin (/api/events): the
// whole history first, then the newest points and the overview after every reading of the
// metrics. Everything shown comes from the sidecar and is written with textContent, never as
// HTML.
'use strict';

const MAX_POINTS = 150;
const FIELDS = ['rps', 'errors', 'p50', 'p99'];
const PALETTE = ['#2b6cb0', '#c05621', '#2f855a', '#805ad5', '#b83280', '#2c7a7b', '#975a16', '#4a5568'];
/// Lines per plot at most: the busiest keys of the last points.
const MAX_LINES = 8;
/// Rows of the denials table at most (the sidecar keeps the latest 64 denials).
const MAX_DENIAL_ROWS = 10;

const PLOTS = [
  { id: 'plot-routes-rps', groups: ['api', 'app'], field: 'rps', title: 'Requests / s' },
  { id: 'plot-routes-errors', groups: ['api', 'app'], field: 'errors', title: 'Errors / s' },
  { id: 'plot-routes-p99', groups: ['api', 'app'], field: 'p99', title: 'p99 latency (ms)' },
  { id: 'plot-targets-rps', groups: ['target'], field: 'rps', title: 'Requests / s' },
  { id: 'plot-targets-errors', groups: ['target'], field: 'errors', title: 'Errors / s' },
  { id: 'plot-targets-p99', groups: ['target'], field: 'p99', title: 'p99 latency (ms)' },
];

const history = { times: [], series: new Map() };
const plots = new Map();

function keyOf(s) { return s.group + '\u0000' + s.name; }

function onHistory(h) {
  history.times = h.times.map((t) => t / 1000);
  history.series.clear();
  for (const s of h.series) history.series.set(keyOf(s), s);
  drawPlots();
}

function onTick(t) {
  if (t.times.length === 0) return;
  const time = t.times[0] / 1000;
  const n = history.times.length;
  if (n > 0 && history.times[n - 1] >= time) return;
  history.times.push(time);
  const seen = new Set();
  for (const s of t.series) {
    const key = keyOf(s);
    seen.add(key);
    let cur = history.series.get(key);
    if (!cur) {
      cur = { group: s.group, name: s.name };
      for (const f of FIELDS) cur[f] = new Array(n).fill(null);
      history.series.set(key, cur);
    }
    for (const f of FIELDS) cur[f].push(s[f][0]);
  }
  for (const [key, cur] of history.series) {
    if (!seen.has(key)) for (const f of FIELDS) cur[f].push(null);
  }
  if (history.times.length > MAX_POINTS) {
    const cut = history.times.length - MAX_POINTS;
    history.times.splice(0, cut);
    for (const cur of history.series.values()) for (const f of FIELDS) cur[f].splice(0, cut);
  }
  drawPlots();
}

/// The busiest series of `groups`, by requests over the last ten points.
function busiest(groups) {
  const recent = (s) => s.rps.slice(-10).reduce((a, v) => a + (v || 0), 0);
  return [...history.series.values()]
    .filter((s) => groups.includes(s.group))
    .sort((a, b) => recent(b) - recent(a) || a.name.localeCompare(b.name))
    .slice(0, MAX_LINES);
}

function drawPlots() {
  for (const p of PLOTS) drawPlot(p);
}

function drawPlot(p) {
  const el = document.getElementById(p.id);
  const lines = busiest(p.groups);
  const names = lines.map((s) => s.name);
  const data = [history.times.slice(), ...lines.map((s) => s[p.field].slice())];
  const cur = plots.get(p.id);
  if (cur && cur.names.join('\u0000') === names.join('\u0000')) {
    cur.plot.setData(data);
    return;
  }
  if (cur) cur.plot.destroy();
  el.replaceChildren();
  el.dataset.lines = String(names.length);
  const opts = {
    title: p.title,
    width: Math.max(300, el.clientWidth - 12),
    height: 200,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] } },
    axes: [{}, { size: 56 }],
    legend: { live: true },
    series: [{}, ...names.map((name, i) => ({
      label: name,
      stroke: PALETTE[i % PALETTE.length],
      width: 1.5,
      spanGaps: false,
      value: (u, v) => (v == null ? '–' : fmtNum(v)),
    }))],
  };
  plots.set(p.id, { names, plot: new uPlot(opts, data, el) });
}

window.addEventListener('resize', () => {
  for (const [id, cur] of plots) {
    const el = document.getElementById(id);
    cur.plot.setSize({ width: Math.max(300, el.clientWidth - 12), height: 200 });
  }
});

// ---- formatting ----

function fmtNum(v) {
  if (v == null) return '–';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function fmtPct(v) { return v == null ? '–' : (v * 100).toFixed(v === 1 ? 0 : 1) + '%'; }

function fmtMs(v) { return v == null ? '–' : fmtNum(v) + ' ms'; }

function fmtDuration(secs) {
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s}s`;
  return `${s}s`;
}

function fmtTime(unix) { return new Date(unix * 1000).toLocaleTimeString(); }

// ---- DOM helpers: text only ----

function badge(text, kind) {
  const b = document.createElement('span');
  b.className = 'badge ' + kind;
  b.textContent = text;
  return b;
}

function cell(v) {
  const td = document.createElement('td');
  if (v instanceof Node) td.append(v);
  else if (v && typeof v === 'object') {
    td.textContent = v.text;
    if (v.cls) td.className = v.cls;
  } else td.textContent = v == null ? '' : String(v);
  return td;
}

function num(text) { return { text, cls: 'num' }; }

function fillTable(id, headers, rows, empty) {
  const table = document.getElementById(id);
  const head = document.createElement('tr');
  for (const h of headers) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const body = rows.map((r) => {
    const tr = document.createElement('tr');
    if (r.key) tr.dataset.key = r.key;
    for (const v of r.cells) tr.append(cell(v));
    return tr;
  });
  if (body.length === 0) {
    const tr = document.createElement('tr');
    const td = cell({ text: empty, cls: 'none' });
    td.colSpan = headers.length;
    tr.append(td);
    body.push(tr);
  }
  table.replaceChildren(head, ...body);
}

function fillList(id, pairs) {
  const dl = document.getElementById(id);
  const items = [];
  for (const [k, v] of pairs) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    if (v instanceof Node) dd.append(v);
    else dd.textContent = v == null ? '–' : String(v);
    items.push(dt, dd);
  }
  dl.replaceChildren(...items);
}

function rateCells(m) {
  return m
    ? [num(fmtNum(m.rps)), num(fmtPct(m.success)), num(fmtMs(m.p50)), num(fmtMs(m.p99))]
    : [num('–'), num('–'), num('–'), num('–')];
}

function stateKind(state) {
  if (state === 'up' || state === 'closed' || state === 'ACTIVE') return 'ok';
  if (state === 'ejected' || state === 'open' || state === 'FAILED') return 'bad';
  return 'warn';
}

// ---- the overview ----

function onOverview(o) {
  document.getElementById('app-id').textContent = `${o.appId} · ${o.namespace}`;
  document.title = `Outrider · ${o.appId}`;
  fillList('sidecar', [
    ['ready', badge(o.ready ? 'ready' : 'not ready', o.ready ? 'ok' : 'bad')],
    ['app', badge(o.appHealthy ? 'healthy' : 'unhealthy', o.appHealthy ? 'ok' : 'bad')],
    ['version', o.version],
    ['pid', o.pid],
    ['uptime', fmtDuration(o.uptimeSecs)],
    ['actors', `${o.actors.status}, ${o.actors.placement}`],
  ]);
  const id = o.identity;
  fillList('identity', [
    ['identity', id.id],
    ['certificate', `serial ${id.serial}, generation ${id.generation}`],
    ['expires in', badge(fmtDuration(id.expiresInSecs), id.expiresInSecs > 3600 ? 'ok' : 'warn')],
    ['trust roots', id.trustRoots],
    ['files', id.files],
  ]);
  const d = o.discovery;
  fillList('mesh', [
    ['resolver', d.resolver],
    ['balancing', d.balancing],
    ['transport', `${d.meshTransport} (mesh port offers ${d.offers.join(', ')})`],
    ['interception', o.interception || 'off'],
  ]);
  fillRoutes(o.routes);
  fillTargets(o.targets);
  fillComponents(o.components);
  fillSubscriptions(o.subscriptions);
  fillDenials(o.denials);
  fillPeers(o.peers || []);
}

function fillRoutes(routes) {
  fillTable('routes', ['route', 'side', 'req/s', 'success', 'p50', 'p99'],
    routes.map((r) => ({
      key: r.name,
      cells: [{ text: r.name }, r.group === 'api' ? 'app → sidecar' : 'sidecar → app', ...rateCells(r.minute)],
    })), 'no requests in the last minute');
}

function fillTargets(targets) {
  const rows = [];
  for (const t of targets) {
    const eps = t.endpoints.length === 0 ? [{ address: '(none)', state: 'no endpoints', transport: '' }] : t.endpoints;
    eps.forEach((e, i) => rows.push({
      key: `${t.appId}/${e.address}`,
      cells: [
        i === 0 ? `${t.appId}.${t.namespace}` : '',
        i === 0 ? (t.breaker ? badge(t.breaker, stateKind(t.breaker)) : 'no breaker') : '',
        e.address,
        badge(e.state, stateKind(e.state)),
        e.transport,
        ...(i === 0 ? rateCells(t.minute) : ['', '', '', '']),
      ],
    }));
  }
  fillTable('targets', ['target', 'breaker', 'endpoint', 'state', 'transport', 'req/s', 'success', 'p50', 'p99'],
    rows, 'no app invoked yet');
}

function fillComponents(components) {
  fillTable('components', ['name', 'type', 'version', 'health', 'ops/s', 'success', 'p50', 'p99'],
    components.map((c) => {
      const m = c.minute;
      let health = badge('idle', 'wait');
      if (m && m.success != null) health = m.success >= 0.99 ? badge('ok', 'ok') : badge('failing', 'bad');
      return { key: c.name, cells: [c.name, c.type, c.version, health, ...rateCells(m)] };
    }), 'no components');
}

function fillSubscriptions(subs) {
  fillTable('subscriptions', ['pubsub', 'topic', 'route', 'kind', 'status', 'delivered/s', 'success', 'in flight', 'dead-lettered', 'dead-letter topic'],
    subs.map((s) => {
      const routes = (s.rules || []).map((r) => (r.match ? `${r.path} (if ${r.match})` : r.path)).join(', ');
      const m = s.minute;
      const status = badge(s.status, stateKind(s.status));
      if (s.error) status.title = s.error;
      return {
        key: `${s.pubsubname}/${s.topic}`,
        cells: [s.pubsubname, s.topic, routes, s.type, status,
          num(m ? fmtNum(m.rps) : '–'), num(m ? fmtPct(m.success) : '–'),
          num(String(s.inFlight)), num(String(s.deadLettered)), s.deadLetterTopic || '–'],
      };
    }), 'no subscriptions');
}

/// Denials grouped by caller, verb, operation and rule, newest first: one row each, counted.
function fillDenials(denials) {
  document.getElementById('denials-total').textContent = `${denials.total} since start`;
  const groups = new Map();
  for (const d of denials.latest) {
    const key = [d.caller, d.verb, d.operation, d.rule].join('\u0000');
    const g = groups.get(key);
    if (g) g.count += 1;
    else groups.set(key, { ...d, count: 1 });
  }
  const rows = [...groups.values()].slice(0, MAX_DENIAL_ROWS).map((d) => ({
    cells: [fmtTime(d.at), num(String(d.count)), d.caller || '(no identity)', d.verb, { text: d.operation }, d.rule],
  }));
  fillTable('denials', ['latest', 'times', 'caller', 'verb', 'operation', 'rule'], rows, 'no request denied');
}

function fillPeers(peers) {
  fillTable('peers', ['app id', 'namespace', 'address', 'transports', 'dashboard'],
    peers.map((p) => {
      let link = '–';
      if (p.dashboard) {
        link = document.createElement('a');
        link.href = p.dashboard;
        link.textContent = 'open';
      }
      return { key: `${p.appId}/${p.address}`, cells: [p.appId, p.namespace, p.address, p.transports.join(', '), link] };
    }), 'no other sidecar seen');
}

// ---- the stream ----

function connect() {
  const live = document.getElementById('live');
  const events = new EventSource('/api/events');
  const on = (name, f) => events.addEventListener(name, (e) => f(JSON.parse(e.data)));
  on('history', onHistory);
  on('tick', onTick);
  on('overview', (o) => {
    onOverview(o);
    live.textContent = 'live';
    live.className = 'badge ok';
  });
  events.onerror = () => {
    live.textContent = 'reconnecting…';
    live.className = 'badge wait';
    // The browser retries a dropped stream by itself, but not one refused (too many open).
    if (events.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
}

// A read-only handle for the browser tests: the plotted data.
window.dashboard = { history, plots };

connect();
