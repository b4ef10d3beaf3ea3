#!/usr/bin/env node
// Every live dashboard in headless Chromium (crates/cli/tests/browser.rs runs
// this against `kpiflow demo`; scripts/test installs what it needs).
//
//   node tests/browser/dashboards.js <base-url> <screenshot-dir>
//
// For each dashboard of GET /api/dashboards, at 1280×800 and at 390×844:
// opens /dashboards/<name>, waits for body[data-state="live"], then requires
//   - no console error, no page error, an empty body[data-errors];
//   - every chart panel (line, bar) drawn: data-drawn="true" and its uPlot
//     canvas holding ink inside the plot area: pixels that are neither
//     transparent nor the grid's or the card's colour (a canvas with only
//     axes and grid does not count; a series of zeros, drawn as flat bars
//     or a line on the axis, does);
//   - a KPI tile's data-value changing within 5 s (without tiles: the
//     body's data-updates);
// and saves <screenshot-dir>/<name>-<width>x<height>.png (the whole page).
// One line per page on stdout; the first failure names the dashboard, the
// size and the problem on stderr and exits 1. Every wait is bounded.
//
// Environment: KPIFLOW_CHROMIUM (default /usr/bin/chromium).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const puppeteer = require('puppeteer-core');

const SIZES = [
  { width: 1280, height: 800 },
  { width: 390, height: 844 },
];
const LOAD_TIMEOUT_MS = 30000; // navigation, the first snapshot
// Every chart panel drawn. The demo's first deliveries come about 1.5
// simulated hours in (some 30 s at --rate 3000): until then the on-time
// rate has no point to draw.
const DRAW_TIMEOUT_MS = 60000;
const CHANGE_WITHIN_MS = 5000; // a tile (or data-updates) must change
const TOTAL_TIMEOUT_MS = 7 * 60 * 1000; // the whole run, whatever hangs (browser.rs allows 8 min)
const MIN_INK_PIXELS = 10; // pixels of ink a drawn chart has at least (one hollow point has ~25)

class Failure extends Error {}

function usage() {
  console.error('usage: node tests/browser/dashboards.js <base-url> <screenshot-dir>');
  process.exit(2);
}

async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(what + ' (no answer within ' + ms / 1000 + ' s)')), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function listDashboards(base) {
  const url = new URL('/api/dashboards', base).href;
  const res = await withTimeout(fetch(url, { headers: { Accept: 'application/json' } }), 15000, 'GET ' + url);
  if (!res.ok) throw new Failure('GET ' + url + ': HTTP ' + res.status);
  const list = await withTimeout(res.json(), 15000, 'GET ' + url + ' body');
  if (!Array.isArray(list) || list.length === 0) throw new Failure('GET ' + url + ': no dashboards (' + JSON.stringify(list) + ')');
  return list.map((d) => d.name);
}

// In the page: each chart panel's canvas, counted inside uPlot's plot area
// (the .u-over box): pixels not transparent at all (painted), those that
// are neither the grid's nor the card's colour (ink: series, points, bars,
// antialiased edges), and those close to one of the theme's series colours.
function inspectCharts() {
  const hex = (h) => {
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(h.trim());
    return m ? [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)] : null;
  };
  const style = getComputedStyle(document.documentElement);
  const grid = hex(style.getPropertyValue('--grid')) || [227, 231, 237];
  const surface = hex(style.getPropertyValue('--surface')) || [255, 255, 255];
  const near = (px, i, c, tol) => Math.abs(px[i] - c[0]) + Math.abs(px[i + 1] - c[1]) + Math.abs(px[i + 2] - c[2]) <= tol;
  const colors = [];
  for (let i = 0; i < 12; i++) {
    const c = hex(style.getPropertyValue('--series-' + i));
    if (c) colors.push(c);
  }
  const out = [];
  for (const card of document.querySelectorAll('[data-panel]')) {
    const kind = card.dataset.kind;
    if (kind !== 'line' && kind !== 'bar') continue;
    const r = { id: card.dataset.panel, kind, drawn: card.dataset.drawn === 'true', canvas: false, painted: 0, ink: 0, series: 0, error: null };
    out.push(r);
    const canvas = card.querySelector('.plot canvas');
    const over = card.querySelector('.plot .u-over');
    if (!canvas || !over) continue;
    r.canvas = true;
    try {
      const cr = canvas.getBoundingClientRect();
      const or = over.getBoundingClientRect();
      if (cr.width < 1 || cr.height < 1) { r.error = 'canvas has no size'; continue; }
      const sx = canvas.width / cr.width;
      const sy = canvas.height / cr.height;
      // 4 px beyond the plot area: a bar of zeros is drawn on its bottom edge
      // (tick labels stay further out; the ticks have the grid's colour)
      const m = 4;
      const x0 = Math.max(0, Math.floor((or.left - cr.left) * sx) - m);
      const y0 = Math.max(0, Math.floor((or.top - cr.top) * sy) - m);
      const w = Math.min(canvas.width - x0, Math.ceil(or.width * sx) + 2 * m);
      const h = Math.min(canvas.height - y0, Math.ceil(or.height * sy) + 2 * m);
      if (w < 1 || h < 1) { r.error = 'plot area has no size'; continue; }
      const px = canvas.getContext('2d').getImageData(x0, y0, w, h).data;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] === 0) continue;
        r.painted += 1;
        // the canvas is transparent: an antialiased grid line keeps the
        // grid's colour at a lower alpha, so colours are compared as they are
        if (px[i + 3] < 16 || near(px, i, grid, 48) || near(px, i, surface, 48)) continue;
        r.ink += 1;
        if (colors.some((c) => near(px, i, c, 48))) r.series += 1;
      }
    } catch (e) {
      r.error = String(e && e.message ? e.message : e);
    }
  }
  return out;
}

function pageState() {
  const b = document.body;
  const tiles = {};
  for (const t of document.querySelectorAll('[data-panel][data-kind="tile"]')) {
    tiles[t.dataset.panel] = t.hasAttribute('data-value') ? t.dataset.value : null;
  }
  return {
    state: b.dataset.state || '',
    updates: Number(b.dataset.updates || 0),
    errors: b.dataset.errors || '',
    tiles,
    panels: document.querySelectorAll('[data-panel]').length,
  };
}

async function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function checkPage(browser, base, name, size, outDir) {
  const where = name + ' at ' + size.width + 'x' + size.height;
  const problems = []; // console errors and page errors, as they come
  for (const suffix of ['', '-failed']) {
    fs.rmSync(path.join(outDir, name + '-' + size.width + 'x' + size.height + suffix + '.png'), { force: true });
  }
  const page = await browser.newPage();
  try {
    page.setDefaultTimeout(LOAD_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(LOAD_TIMEOUT_MS);
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        const loc = msg.location();
        problems.push('console error: ' + msg.text() + (loc && loc.url ? ' (' + loc.url + (loc.lineNumber !== undefined ? ':' + loc.lineNumber : '') + ')' : ''));
      }
    });
    page.on('pageerror', (err) => problems.push('page error: ' + (err && err.stack ? err.stack : err)));
    page.on('requestfailed', (req) => {
      // the event stream is cut when the page closes; anything else counts
      const f = req.failure();
      if (!/\/stream$/.test(new URL(req.url()).pathname)) problems.push('request failed: ' + req.url() + ' (' + (f ? f.errorText : '?') + ')');
    });
    page.on('response', (res) => {
      if (res.status() >= 400) problems.push('HTTP ' + res.status() + ' for ' + res.url());
    });
    await page.setViewport({ width: size.width, height: size.height, deviceScaleFactor: 1 });

    const url = new URL('/dashboards/' + encodeURIComponent(name), base).href;
    const started = Date.now();
    const res = await withTimeout(page.goto(url, { waitUntil: 'domcontentloaded' }), LOAD_TIMEOUT_MS, 'opening ' + url);
    if (!res || !res.ok()) throw new Failure('opening ' + url + ': HTTP ' + (res ? res.status() : 'no response'));

    const fail = (msg) => { throw new Failure(msg); };
    const checkErrors = async () => {
      const s = await page.evaluate(pageState);
      if (problems.length) fail(problems.join('; '));
      if (s.errors) fail('data-errors: ' + s.errors.replace(/\n/g, ' | '));
      return s;
    };

    try {
      await page.waitForFunction(() => document.body && document.body.dataset.state === 'live', { timeout: LOAD_TIMEOUT_MS, polling: 100 });
    } catch (e) {
      const s = await page.evaluate(pageState).catch(() => ({}));
      fail('not live within ' + LOAD_TIMEOUT_MS / 1000 + ' s (data-state=' + s.state + ', data-updates=' + s.updates + (s.errors ? ', data-errors: ' + s.errors : '') + (problems.length ? '; ' + problems.join('; ') : '') + ')');
    }
    const liveMs = Date.now() - started;
    await checkErrors();

    // Every chart drawn, and drawn for real (ink in its plot area).
    const drawStarted = Date.now();
    const drawDeadline = drawStarted + DRAW_TIMEOUT_MS;
    let charts;
    for (;;) {
      charts = await page.evaluate(inspectCharts);
      const bad = charts.filter((c) => !c.drawn || !c.canvas || c.error || c.ink < MIN_INK_PIXELS);
      if (bad.length === 0) break;
      if (Date.now() > drawDeadline) {
        fail('chart panels not drawn within ' + DRAW_TIMEOUT_MS / 1000 + ' s: ' + bad.map((c) => c.id + ' (' + (
          !c.canvas ? 'no uPlot canvas' : c.error ? c.error
            : 'data-drawn=' + c.drawn + ', ' + c.ink + ' ink pixels of ' + c.painted + ' painted in the plot area, at least ' + MIN_INK_PIXELS + ' needed'
        ) + ')').join(', '));
      }
      await sleep(250);
    }
    const drawnMs = Date.now() - drawStarted;
    await checkErrors();

    // Something moves within 5 s: a tile's value, else the update count.
    const before = await checkErrors();
    const tileIds = Object.keys(before.tiles);
    const changeDeadline = Date.now() + CHANGE_WITHIN_MS;
    let changed = null;
    let after = before;
    while (!changed && Date.now() < changeDeadline) {
      await sleep(200);
      after = await page.evaluate(pageState);
      if (tileIds.length) {
        const id = tileIds.find((t) => after.tiles[t] !== null && after.tiles[t] !== before.tiles[t]);
        if (id) changed = 'tile ' + id + ' ' + before.tiles[id] + ' → ' + after.tiles[id];
      } else if (after.updates !== before.updates) {
        changed = 'data-updates ' + before.updates + ' → ' + after.updates;
      }
    }
    if (!changed) {
      fail(tileIds.length
        ? 'no KPI tile changed its data-value within ' + CHANGE_WITHIN_MS / 1000 + ' s (' + tileIds.map((t) => t + '=' + before.tiles[t]).join(', ') + '; data-updates ' + before.updates + ' → ' + after.updates + ')'
        : 'data-updates did not change within ' + CHANGE_WITHIN_MS / 1000 + ' s (stayed ' + before.updates + ')');
    }
    const final = await checkErrors();
    if (final.state !== 'live') fail('data-state went from live to ' + final.state);

    const file = path.join(outDir, name + '-' + size.width + 'x' + size.height + '.png');
    await withTimeout(page.screenshot({ path: file, fullPage: true }), 30000, 'screenshot ' + file);
    await checkErrors();

    const chartText = charts.length
      ? charts.map((c) => c.id + ' ' + c.ink + 'px').join(', ')
      : 'none';
    console.log(where + ': live after ' + liveMs + ' ms, ' + final.panels + ' panels, '
      + tileIds.length + ' tiles, charts drawn ' + drawnMs + ' ms later (ink pixels): ' + chartText + '; ' + changed
      + '; ' + final.updates + ' updates; ' + path.relative(process.cwd(), file));
  } catch (e) {
    // What the page showed when it failed, for whoever reads the message.
    const shot = path.join(outDir, name + '-' + size.width + 'x' + size.height + '-failed.png');
    const saved = await withTimeout(page.screenshot({ path: shot, fullPage: true }), 15000, 'screenshot')
      .then(() => ' (screenshot: ' + shot + ')', () => '');
    if (e instanceof Failure) throw new Failure(where + ': ' + e.message + saved);
    throw new Failure(where + ': ' + (e && e.stack ? e.stack : e) + (problems.length ? ' (also: ' + problems.join('; ') + ')' : '') + saved);
  } finally {
    await withTimeout(page.close(), 10000, 'closing the page').catch(() => {});
  }
}

async function main() {
  const [base, outDir] = process.argv.slice(2);
  if (!base || !outDir) usage();
  const chromium = process.env.KPIFLOW_CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(chromium)) {
    throw new Failure('no Chromium at ' + chromium + ' (apt-get install chromium, or set KPIFLOW_CHROMIUM; scripts/test installs it)');
  }
  fs.mkdirSync(outDir, { recursive: true });
  const names = await listDashboards(base);
  console.log('dashboards: ' + names.join(', '));

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'kpiflow-chromium-'));
  let browser = null;
  try {
    browser = await withTimeout(puppeteer.launch({
      executablePath: chromium,
      headless: true,
      userDataDir: profile,
      timeout: 30000,
      protocolTimeout: 60000,
      // Root needs --no-sandbox; the rest keeps Chromium off the (closed) network.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--disable-default-apps', '--disable-extensions', '--lang=en-US'],
    }), 45000, 'starting ' + chromium);
    const version = await browser.version();
    console.log('browser: ' + version + ' (' + chromium + ')');
    for (const name of names) {
      for (const size of SIZES) {
        await checkPage(browser, base, name, size, outDir);
      }
    }
  } finally {
    if (browser) {
      const proc = browser.process();
      await withTimeout(browser.close(), 15000, 'closing Chromium').catch(() => { if (proc) proc.kill('SIGKILL'); });
    }
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log('all ' + names.length * SIZES.length + ' pages passed');
}

const guard = setTimeout(() => {
  console.error('dashboards.js: FAILED: the run did not finish within ' + TOTAL_TIMEOUT_MS / 60000 + ' min');
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
guard.unref();

main().then(() => process.exit(0), (e) => {
  console.error('dashboards.js: FAILED: ' + (e instanceof Failure ? e.message : (e && e.stack ? e.stack : e)));
  process.exit(1);
});
