// The admin dashboard in Debian's Chromium, headless, driven by playwright-core. The e2e test
// (tests/e2e/tests/dashboard.rs) starts the sidecars and tells this script where they are:
//
//   CALLER_DASHBOARD  the admin origin of sidecar `a` (static resolver: `b` at two endpoints,
//                     one of which nothing listens on)
//   CALLER_API        a's Dapr HTTP API
//   CALLEE_DASHBOARD  the admin origin of sidecar `b`, whose access policy denies
//                     `/forbidden/**` to `a`
//   TARGET_APP        b's app id;  DEAD_ENDPOINT  the endpoint nothing listens on
//   EXPECT_COMPONENTS components a runs (comma-separated);  EXPECT_TOPIC  a's subscription as
//                     `pubsub/topic`
//   PEER_APP, PEER_ENDPOINT, PEER_DASHBOARD  a third sidecar that `b`'s discovery sees
//   ARTIFACTS         where the screenshots go
//   CHROMIUM          the browser (default /usr/bin/chromium)
//
// Prints one `ok - <check>` or `not ok - <check>: <why>` line per check and exits 1 if any
// failed.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const CALLER = env('CALLER_DASHBOARD');
const CALLEE = env('CALLEE_DASHBOARD');
const API = env('CALLER_API');
const TARGET = env('TARGET_APP');
const DEAD = env('DEAD_ENDPOINT');
const COMPONENTS = env('EXPECT_COMPONENTS').split(',');
const TOPIC = env('EXPECT_TOPIC');
const PEER_APP = env('PEER_APP');
const PEER_ENDPOINT = env('PEER_ENDPOINT');
const PEER_DASHBOARD = env('PEER_DASHBOARD');
const ARTIFACTS = env('ARTIFACTS');
mkdirSync(ARTIFACTS, { recursive: true });

let failed = 0;
async function check(name, f) {
  try {
    await f();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}

function assert(cond, why) {
  if (!cond) throw new Error(why);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // As root in a sandbox-less container; and nothing of Chromium's own may reach the network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

/// Opens `url` in a new page that records console errors and every request it makes.
async function open(url) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const watched = { page, errors: [], requests: [], origin: new URL(url).origin };
  page.on('console', (m) => { if (m.type() === 'error') watched.errors.push(m.text()); });
  page.on('pageerror', (e) => watched.errors.push(String(e)));
  page.on('request', (r) => watched.requests.push(r.url()));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('live').textContent === 'live', null, { timeout: 20000 });
  return watched;
}

/// Calls a's API in a loop until stopped: invocations of the target and state reads.
function load() {
  let running = true;
  const done = (async () => {
    let n = 0;
    while (running) {
      n += 1;
      const path = n % 3 === 0 ? '/v1.0/state/statestore/dashboard-key' : `/v1.0/invoke/${TARGET}/method/hello`;
      try { await (await fetch(API + path)).arrayBuffer(); } catch { /* counted by the sidecar */ }
      await new Promise((r) => setTimeout(r, 40));
    }
  })();
  return async () => { running = false; await done; };
}

const rowText = (page, table, key) => page.evaluate(([t, k]) => {
  const row = [...document.querySelectorAll(`#${t} tr`)].find((r) => r.dataset.key === k);
  return row ? row.textContent : null;
}, [table, key]);

const caller = await open(CALLER);

await check('the page loads with no console error', async () => {
  assert(caller.errors.length === 0, `console errors: ${caller.errors.join(' | ')}`);
});

await check('it lists the components of the sidecar', async () => {
  for (const c of COMPONENTS) {
    const row = await rowText(caller.page, 'components', c);
    assert(row !== null, `component ${c} is not listed`);
  }
});

await check('it lists the subscriptions with their status', async () => {
  const row = await rowText(caller.page, 'subscriptions', TOPIC);
  assert(row !== null, `subscription ${TOPIC} is not listed`);
  assert(row.includes('ACTIVE'), `subscription ${TOPIC} is not active: ${row}`);
});

const stop = load();

await check('the plots update while load runs', async () => {
  const plotted = () => caller.page.evaluate(() => {
    const p = window.dashboard.plots.get('plot-routes-rps');
    const t = window.dashboard.plots.get('plot-targets-rps');
    const last = (plot) => (plot ? plot.plot.data.map((col) => col[col.length - 1]) : []);
    return {
      points: p ? p.plot.data[0].length : 0,
      time: p ? p.plot.data[0][p.plot.data[0].length - 1] : null,
      routes: p ? p.names : [],
      routesLast: last(p),
      targets: t ? t.names : [],
      targetsLast: last(t),
    };
  });
  const before = await plotted();
  await caller.page.waitForFunction((t0) => {
    const p = window.dashboard.plots.get('plot-routes-rps');
    const t = window.dashboard.plots.get('plot-targets-rps');
    if (!p || !t) return false;
    const xs = p.plot.data[0];
    const newer = xs.filter((x) => t0 == null || x > t0).length;
    const busy = (plot) => plot.plot.data.slice(1).some((col) => (col[col.length - 1] || 0) > 1);
    return newer >= 2 && busy(p) && busy(t);
  }, before.time, { timeout: 30000 });
  const after = await plotted();
  assert(after.routes.some((n) => n.includes('/v1.0/invoke/')), `no invoke route plotted: ${after.routes}`);
  assert(after.targets.includes(TARGET), `target ${TARGET} not plotted: ${after.targets}`);
  assert(after.time > (before.time || 0), 'no new point');
});

await check('an ejected endpoint shows as ejected', async () => {
  await caller.page.waitForFunction(([target, dead]) => {
    const row = [...document.querySelectorAll('#targets tr')].find((r) => r.dataset.key === `${target}/${dead}`);
    return row && [...row.querySelectorAll('.badge')].some((b) => b.textContent === 'ejected');
  }, [TARGET, DEAD], { timeout: 45000 });
});

await check('the route and target tables show the load', async () => {
  const rows = await caller.page.evaluate(() => [...document.querySelectorAll('#routes tr')].map((r) => r.textContent));
  assert(rows.some((r) => r.includes('/v1.0/invoke/{id}/method/{method}') && r.includes('100%')),
    `routes: ${rows.join(' | ')}`);
});

await caller.page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
await stop();

const callee = await open(CALLEE);

await check('a denial appears in the denials list with its rule', async () => {
  const r = await fetch(`${API}/v1.0/invoke/${TARGET}/method/forbidden/thing`, { method: 'POST', body: 'x' });
  assert(r.status === 403, `the call was not denied: ${r.status}`);
  await callee.page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#denials tr')].map((t) => t.textContent);
    return rows.some((t) => t.includes('/forbidden/thing') && t.includes('/forbidden/**') && t.includes('/default/a'));
  }, null, { timeout: 20000 });
  await callee.page.screenshot({ path: join(ARTIFACTS, 'denials.png'), fullPage: true });
});

await check('the mesh view lists the other sidecars and links to their dashboards', async () => {
  const key = `${PEER_APP}/${PEER_ENDPOINT}`;
  await callee.page.waitForFunction((k) => [...document.querySelectorAll('#peers tr')].some((r) => r.dataset.key === k), key, { timeout: 20000 });
  const href = await callee.page.evaluate((k) => {
    const row = [...document.querySelectorAll('#peers tr')].find((r) => r.dataset.key === k);
    const a = row.querySelector('a');
    return a ? a.href : null;
  }, key);
  assert(href === PEER_DASHBOARD, `the link is ${href}, not ${PEER_DASHBOARD}`);
  const peer = await open(href);
  const shown = await peer.page.textContent('#app-id');
  assert(shown.startsWith(PEER_APP), `the linked dashboard shows ${shown}`);
  assert(peer.errors.length === 0, `console errors on the peer's page: ${peer.errors.join(' | ')}`);
  await peer.page.close();
});

await check('every request went to the admin origin', async () => {
  for (const w of [caller, callee]) {
    const foreign = w.requests.filter((u) => !u.startsWith('data:') && new URL(u).origin !== w.origin);
    assert(foreign.length === 0, `requests elsewhere: ${foreign.join(', ')}`);
    assert(w.requests.some((u) => u.endsWith('/api/events')), 'the page did not open its event stream');
  }
});

await check('no console error while it ran', async () => {
  const errors = [...caller.errors, ...callee.errors];
  assert(errors.length === 0, `console errors: ${errors.join(' | ')}`);
});

await browser.close();
console.log(`screenshots in ${ARTIFACTS}`);
process.exit(failed === 0 ? 0 : 1);
