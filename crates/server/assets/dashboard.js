/* kpiflow dashboard page: /dashboards/<name>.
 * Loads the dashboard's definition from /api/dashboards/<name>, draws one card
 * per panel and keeps them current from the Server-Sent Events of
 * /api/dashboards/<name>/stream (a snapshot, then updates that each replace
 * whole panels). Charts are uPlot, created once and fed with setData.
 *
 * For automated browser tests: body[data-state] = loading | live | reconnecting,
 * body[data-updates] = events applied, [data-panel][data-drawn="true"] once a
 * panel shows data, tiles' [data-value] = the raw value. */
(function () {
  'use strict';

  const K = window.kpiflow;
  const { el } = K;
  const STALE_AFTER_MS = 60000;
  const body = document.body;
  const root = document.documentElement;

  const parts = location.pathname.split('/').filter(Boolean);
  const name = decodeURIComponent(parts[parts.indexOf('dashboards') + 1] || parts[parts.length - 1] || '');

  const grid = document.getElementById('panels');
  const nav = document.querySelector('nav[data-nav]');
  if (nav) nav.dataset.current = name;
  const connEl = document.getElementById('conn');
  const panels = new Map();
  let skewMs = 0; // server wall clock minus ours, from the events' now_ms
  let updates = 0;
  let lastSeq = -1;
  let haveSnapshot = false;

  body.dataset.state = 'loading';
  body.dataset.updates = '0';

  // ---- connection state shown in the header
  // Offline: the browser says so, or the stream has been down for 10 s
  // (EventSource itself retries a refused connection for ever).
  const OFFLINE_AFTER_MS = 10000;
  let downSince = null;
  const CONN_LABEL = { live: 'live', reconnecting: 'reconnecting…', offline: 'offline' };
  function setConn(state) {
    if (state === 'live') downSince = null;
    else if (downSince === null) downSince = Date.now();
    if (state === 'reconnecting' && Date.now() - downSince > OFFLINE_AFTER_MS) state = 'offline';
    if (state !== 'offline') body.dataset.state = state;
    else if (body.dataset.state === 'live') body.dataset.state = 'reconnecting';
    connEl.dataset.conn = state;
    connEl.querySelector('.conn-label').textContent = CONN_LABEL[state] || state;
  }

  // ---- cards
  function buildCard(def) {
    const card = el('article', {
      class: 'card panel kind-' + def.kind,
      'data-panel': def.id,
      'data-kind': def.kind,
      'data-span': String(Math.max(1, Math.min(4, def.span || 1))),
      'data-drawn': 'false',
      'aria-labelledby': 'title-' + def.id,
    });
    const stale = el('span', { class: 'badge badge-stale', hidden: true, title: 'This panel\u2019s data has not changed for a while' }, 'Stale');
    const title = el('h2', { id: 'title-' + def.id }, def.title || def.id);
    const head = el('header', { class: 'panel-head' }, title, stale);
    const error = el('p', { class: 'panel-error', role: 'alert', hidden: true });
    const content = el('div', { class: 'panel-body' });
    const fresh = el('p', { class: 'fresh' }, 'waiting for data…');
    card.append(head, error, content, fresh);
    // A run of consecutive tiles shares a strip across the whole grid, so
    // tiles keep their own size whatever the column count.
    if (def.kind === 'tile') {
      let strip = grid.lastElementChild;
      if (!strip || !strip.classList.contains('tiles')) {
        strip = el('div', { class: 'tiles' });
        grid.append(strip);
      }
      strip.append(card);
    } else {
      grid.append(card);
    }
    const p = { def, card, stale, error, content, fresh, data: null, view: null };
    p.view = (def.kind === 'tile' ? tileView : def.kind === 'table' ? tableView : chartView)(p);
    panels.set(def.id, p);
    return p;
  }

  function setDrawn(p, drawn) {
    p.card.dataset.drawn = drawn ? 'true' : 'false';
  }

  function emptyNote(p) {
    const r = p.def.range_ms;
    return r ? 'No data in the last ' + describeRange(r) + '.' : 'No data yet.';
  }
  function describeRange(ms) {
    if (ms <= 0) return 'window';
    if (ms % 86400000 === 0) return ms / 86400000 + ' d';
    if (ms % 3600000 === 0) return ms / 3600000 + ' h';
    if (ms % 60000 === 0) return ms / 60000 + ' min';
    return ms / 1000 + ' s';
  }

  // ---- tile: a big number, its unit, the trend against the previous window
  function tileView(p) {
    const value = el('span', { class: 'tile-value' }, '–');
    const badge = el('span', { class: 'badge badge-running', hidden: true, title: 'The window is still open: this value is still growing' }, 'Running');
    const trend = el('p', { class: 'tile-trend' }, '\u00a0');
    p.content.append(el('p', { class: 'tile-line' }, value, badge), trend);
    return {
      update(d) {
        const { format, unit } = p.def;
        const v = typeof d.value === 'number' ? d.value : null;
        value.textContent = K.formatValue(v, format, unit);
        badge.hidden = d.final !== false || v === null;
        p.card.classList.toggle('is-running', d.final === false);
        if (v === null) p.card.removeAttribute('data-value');
        else p.card.dataset.value = String(v);
        const prev = typeof d.previous === 'number' ? d.previous : null;
        trend.className = 'tile-trend';
        if (v === null) {
          trend.textContent = emptyNote(p);
        } else if (prev === null) {
          trend.textContent = 'no previous window to compare';
        } else if (d.final === false && prev > 0 && v >= 0) {
          // a window still open is compared as a share of the previous one
          const share = (v / prev) * 100;
          trend.replaceChildren(
            el('span', { class: 'share' }, (share >= 10 || share === 0 ? Math.round(share) : share.toFixed(1)) + '%'),
            ' of the previous window so far (' + K.formatValue(prev, format, unit) + ')');
          trend.classList.add('so-far');
        } else {
          const delta = v - prev;
          const arrow = delta > 0 ? '▲' : delta < 0 ? '▼' : '=';
          // a percentage of a negative or zero value (a gap) says nothing: the difference then
          const pctText = prev > 0 && v >= 0
            ? ' ' + (Math.abs(delta / prev) * 100 >= 10 ? Math.round(Math.abs(delta / prev) * 100) : (Math.abs(delta / prev) * 100).toFixed(1)) + '%'
            : ' ' + K.formatValue(Math.abs(delta), format, unit);
          trend.replaceChildren(
            el('span', { class: 'arrow', 'aria-hidden': 'true' }, arrow),
            el('span', { class: 'sr-only' }, delta > 0 ? 'up' : delta < 0 ? 'down' : 'unchanged'),
            pctText + ' vs previous window (' + K.formatValue(prev, format, unit) + ')');
          trend.classList.add(delta > 0 ? 'up' : delta < 0 ? 'down' : 'flat');
        }
        setDrawn(p, v !== null);
        fit();
      },
      resize: fit,
    };
    // Shrinks the number until it fits its card (long money values on narrow tiles).
    function fit() {
      value.style.fontSize = '';
      const avail = p.content.clientWidth;
      let size = parseFloat(getComputedStyle(value).fontSize);
      for (let i = 0; i < 8 && value.scrollWidth > avail && size > 18; i++) {
        size *= 0.9;
        value.style.fontSize = size + 'px';
      }
    }
  }

  // ---- table: formatted cells, running rows muted
  const TIME_TYPES = /^(timestamp|time|datetime|date)/i;
  const RATE_COLUMN = /(_rate|_used|_share|_pct)$|^availability$/;
  // One format per column, so its figures line up: time, percent (a table
  // with format = "percent" shows its rate columns as %), integer, or a fixed
  // number of decimals from the column's largest value.
  function cellFormat(def, col, rows, i) {
    if (TIME_TYPES.test(col.type || '')) return 'time';
    if (def.format === 'percent' && RATE_COLUMN.test(col.name)) return 'percent';
    if (def.format === 'integer') return 'integer';
    let max = 0;
    let whole = true;
    for (const r of rows) {
      const v = r[i];
      if (typeof v !== 'number') continue;
      max = Math.max(max, Math.abs(v));
      if (!Number.isInteger(v)) whole = false;
    }
    if (whole) return 'integer';
    return max >= 1000 ? 'fixed0' : max >= 10 ? 'fixed1' : 'fixed2';
  }
  // Column names as headers: words, with the units their suffixes name.
  const UNIT_SUFFIX = [[/_c$/, ' (°C)'], [/_mm_s$/, ' (mm/s)'], [/_ms$/, ' (ms)'], [/_hours$/, ' (h)']];
  function header(name) {
    let h = name;
    for (const [re, unit] of UNIT_SUFFIX) if (re.test(h)) { h = h.replace(re, '') + unit; break; }
    return h.replace(/_/g, ' ');
  }
  function tableView(p) {
    const table = el('table');
    const caption = el('caption', { class: 'sr-only' }, p.def.title || p.def.id);
    const thead = el('thead');
    const tbody = el('tbody');
    table.append(caption, thead, tbody);
    const wrap = el('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': (p.def.title || p.def.id) + ' (scrolls)' }, table);
    const note = el('p', { class: 'empty', hidden: true });
    const legend = el('p', { class: 'legend-running', hidden: true },
      el('span', { class: 'swatch-running', 'aria-hidden': 'true' }, 'Aa'), ' running: window still open');
    p.content.append(wrap, note, legend);
    let headKey = '';
    return {
      update(d) {
        const cols = d.columns || [];
        const rows = d.rows || [];
        const fin = d.row_final || [];
        const sortCol = (p.def.sort || '').replace(/^-/, '');
        const desc = (p.def.sort || '').startsWith('-');
        const key = cols.map((c) => c.name + ':' + c.type).join(',');
        const fmts = cols.map((c, i) => cellFormat(p.def, c, rows, i));
        const numeric = cols.map((c, i) => fmts[i] !== 'time' && isNumeric(c, rows, i));
        if (key !== headKey) {
          headKey = key;
          thead.replaceChildren(el('tr', null, ...cols.map((c, i) => el('th', {
            scope: 'col',
            class: numeric[i] ? 'num' : null,
            'aria-sort': c.name === sortCol ? (desc ? 'descending' : 'ascending') : null,
          }, header(c.name), c.name === sortCol ? el('span', { 'aria-hidden': 'true', class: 'sort' }, desc ? ' ↓' : ' ↑') : null))));
        }
        const unitCol = p.def.unit ? moneyColumn(cols) : -1;
        tbody.replaceChildren(...rows.map((r, ri) => el('tr', { class: fin[ri] === false ? 'running' : null },
          ...cols.map((c, i) => {
            const v = r[i];
            let text;
            if (fmts[i] === 'time') text = K.formatTime(v, true);
            else if (typeof v === 'number') text = K.formatValue(v, fmts[i], i === unitCol ? p.def.unit : null);
            else text = v === null || v === undefined ? '–' : String(v);
            return el(i === 0 ? 'th' : 'td', { class: numeric[i] ? 'num' : null, scope: i === 0 ? 'row' : null }, text);
          }))));
        note.hidden = rows.length > 0;
        note.textContent = emptyNote(p);
        legend.hidden = !fin.some((f) => f === false);
        setDrawn(p, rows.length > 0);
      },
    };
  }
  // Numeric by its type (number, or an Arrow name: Int64, UInt32, Float64,
  // Decimal128…) or, with no type, by its values.
  function isNumeric(col, rows, i) {
    if (col.type) return /^(number|numeric|u?int|integer|float|double|decimal)/i.test(col.type);
    return rows.length > 0 && rows.every((r) => r[i] === null || typeof r[i] === 'number');
  }
  // A table's unit goes on the column holding money (revenue/amount), if any.
  function moneyColumn(cols) {
    return cols.findIndex((c) => /revenue|amount|price|value/.test(c.name));
  }

  // ---- line and bar charts (uPlot)
  function cssVar(name) {
    return getComputedStyle(root).getPropertyValue(name).trim();
  }
  function palette() {
    const out = [];
    for (let i = 0; i < 12; i++) {
      const c = cssVar('--series-' + i);
      if (c) out.push(c);
    }
    return out.length ? out : ['#2563eb'];
  }
  const measureCtx = document.createElement('canvas').getContext('2d');
  function axisFont() {
    const size = Math.round(parseFloat(getComputedStyle(root).fontSize) * 0.8);
    return size + 'px ' + (cssVar('--font-ui') || 'system-ui, sans-serif');
  }

  // Time ticks in local time, 24 h: HH:MM, the date at midnight or when
  // ticks are days apart.
  const tickFmt = {};
  function tickFormat(key, opts) {
    return tickFmt[key] || (tickFmt[key] = new Intl.DateTimeFormat(undefined, opts));
  }
  function timeTicks(u, splits, axisIdx, space, incr) {
    return splits.map((s) => {
      const d = new Date(s * 1000);
      if (incr >= 86400 || (d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0)) {
        return tickFormat('day', { day: 'numeric', month: 'short' }).format(d);
      }
      const opts = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
      if (incr < 60) opts.second = '2-digit';
      return tickFormat('t' + (incr < 60), opts).format(d);
    });
  }

  // Dots on final values only when there are few (hourly windows), so a
  // minute-by-minute line stays a line.
  function fewPoints(u, sidx, i0, i1) {
    return i1 - i0 <= 24 && u.bbox.width / Math.max(1, i1 - i0) > 12;
  }

  // The smallest distance between two x values (seconds): a window's length.
  function dataStep(xs) {
    let s = Infinity;
    for (let i = 1; i < xs.length; i++) s = Math.min(s, xs[i] - xs[i - 1]);
    return Number.isFinite(s) && s > 0 ? s : 60;
  }

  // Grouped bars: series k of n takes the k-th slot around each x.
  function barPaths(slot, slots) {
    return (u, sidx, i0, i1) => {
      const xs = u.data[0];
      const ys = u.data[sidx];
      const path = new Path2D();
      const step = xs.length ? Math.abs(u.valToPos(xs[0] + dataStep(xs), 'x', true) - u.valToPos(xs[0], 'x', true)) : 20;
      const groupW = step * 0.8;
      const w = Math.max(1, groupW / slots);
      const y0 = u.valToPos(0, 'y', true);
      for (let i = i0; i <= i1; i++) {
        const v = ys[i];
        if (v === null || v === undefined) continue;
        const cx = u.valToPos(xs[i], 'x', true);
        const left = cx - groupW / 2 + slot * w;
        const top = u.valToPos(v, 'y', true);
        path.rect(Math.round(left), Math.min(top, y0), Math.max(1, Math.round(w - Math.max(1, w * 0.12))), Math.abs(y0 - top) || 1);
      }
      return { stroke: path, fill: path, clip: null, band: null, gaps: null, flags: 0 };
    };
  }

  function chartView(p) {
    p.card.querySelector('.panel-head').insertBefore(el('span', { class: 'legend-key', title: 'Solid: final windows; dashed: windows still open (running)' },
      el('span', { class: 'key-final', 'aria-hidden': 'true' }), 'final',
      el('span', { class: 'key-running', 'aria-hidden': 'true' }), 'running'), p.stale);
    const box = el('div', {
      class: 'plot', role: 'img',
      'aria-label': (p.def.kind === 'bar' ? 'Bar chart: ' : 'Line chart: ') + (p.def.title || p.def.id) + '. The legend below lists each series and its latest value.',
    });
    const legend = el('ul', { class: 'legend', 'aria-label': 'Series' });
    const note = el('p', { class: 'empty', hidden: true });
    p.content.append(box, note, legend);
    const isBar = p.def.kind === 'bar';
    let u = null;
    let key = '';
    let names = [];
    const hidden = new Set();
    let latest = [];
    let legendItems = [];
    let last = null;

    // Each series becomes two uPlot series: its final values (solid) and its
    // running ones (dashed, hollow points), the running line starting at the
    // last final point so the two join.
    function toData(d) {
      const xs = (d.x || []).map((t) => t / 1000);
      const cols = [xs];
      latest = [];
      for (const s of d.series || []) {
        const vals = s.values || [];
        const fin = s.final || [];
        const f = new Array(xs.length).fill(null);
        const r = new Array(xs.length).fill(null);
        let lastVal = null;
        for (let i = 0; i < xs.length; i++) {
          const v = vals[i] === undefined ? null : vals[i];
          if (v !== null) lastVal = { v, final: fin[i] !== false };
          if (fin[i] === false) r[i] = v;
          else {
            f[i] = v;
            if (!isBar && i + 1 < xs.length && fin[i + 1] === false) r[i] = v;
          }
        }
        cols.push(f, r);
        latest.push(lastVal);
      }
      return cols;
    }

    // Bars start at zero; a line whose values sit high above zero (on-time
    // rates, availability) gets an axis around its values instead.
    function yRange(u, min, max) {
      if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
      // Nothing but zeros (no faults, no delays): a plain 0 to 1 axis.
      if (min === 0 && max === 0) return [0, 1];
      const span = max - min || Math.abs(max) || 1;
      let lo = !isBar && min > 0 && min > max * 0.5 ? Math.max(0, min - span * 0.2) : Math.min(0, min - (min < 0 ? span * 0.08 : 0));
      let hi = max < 0 && isBar ? 0 : max + span * 0.08;
      if (p.def.format === 'percent' && max <= 1 && min >= 0) hi = Math.min(hi, 1);
      if (hi <= lo) hi = lo + 1;
      return [lo, hi];
    }

    function create(d, width, height) {
      const colors = palette();
      const text = cssVar('--muted');
      const gridC = cssVar('--grid');
      const surface = cssVar('--surface');
      const font = axisFont();
      const { format, unit } = p.def;
      const n = names.length;
      const series = [{}];
      names.forEach((nm, k) => {
        const c = colors[k % colors.length];
        const show = !hidden.has(nm);
        if (isBar) {
          series.push({ label: nm, stroke: c, fill: c, width: 0, show, paths: barPaths(k, n), points: { show: false } });
          series.push({ label: nm + ' (running)', stroke: c, fill: c + '40', width: 1.5, dash: [4, 3], show, paths: barPaths(k, n), points: { show: false } });
        } else {
          series.push({ label: nm, stroke: c, width: 2, show, points: { size: 5, fill: c, show: fewPoints } });
          series.push({
            label: nm + ' (running)', stroke: c, width: 2, dash: [6, 4], show,
            points: { show: true, size: 7, width: 2, stroke: c, fill: surface },
          });
        }
      });
      const opts = {
        width, height,
        legend: { show: false },
        cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 8 } },
        focus: { alpha: 1 },
        scales: {
          x: {
            time: true,
            // From the data itself: with one window only (an hourly view's
            // first hour) uPlot hands a time scale min and min + 1 day; the
            // lone window is centred in the panel's time range instead.
            range: (u, min, max) => {
              const xs = u.data[0];
              if (!xs || !xs.length) return [min, max];
              const lo = xs[0];
              const hi = xs[xs.length - 1];
              const s = dataStep(xs);
              if (lo === hi) {
                const pad = Math.max(s, (p.def.range_ms || 0) / 2000);
                return [lo - pad, hi + pad];
              }
              if (isBar) return [lo - s * 0.6, hi + s * 0.6];
              // A little room so the first and newest points are not cut in half.
              const edge = (hi - lo) * 0.015;
              return [lo - edge, hi + edge];
            },
          },
          y: { range: yRange },
        },
        axes: [
          { stroke: text, font, grid: { stroke: gridC, width: 1 }, ticks: { stroke: gridC, width: 1 }, values: timeTicks },
          {
            stroke: text, font, grid: { stroke: gridC, width: 1 }, ticks: { show: false },
            values: (u, vals) => vals.map((v) => K.formatAxis(v, format, unit)),
            size(u, values) {
              if (!values) return 48;
              measureCtx.font = font;
              let w = 0;
              for (const v of values) w = Math.max(w, measureCtx.measureText(v).width);
              return Math.ceil(w) + 16;
            },
          },
        ],
        series,
        hooks: {
          setCursor: [(u) => showLegendValues(u.cursor.idx)],
        },
      };
      u = new uPlot(opts, d, box);
      buildLegend(colors);
    }

    function buildLegend(colors) {
      legendItems = names.map((nm, k) => {
        const value = el('span', { class: 'legend-value' });
        const btn = el('button', {
          type: 'button', class: 'legend-item', 'aria-pressed': String(!hidden.has(nm)),
          title: 'Show or hide ' + nm,
        }, el('span', { class: 'swatch', 'aria-hidden': 'true' }), el('span', { class: 'legend-name' }, nm), value);
        btn.querySelector('.swatch').style.background = colors[k % colors.length];
        btn.addEventListener('click', () => {
          const show = hidden.has(nm);
          if (show) hidden.delete(nm); else hidden.add(nm);
          btn.setAttribute('aria-pressed', String(show));
          u.setSeries(1 + 2 * k, { show });
          u.setSeries(2 + 2 * k, { show });
        });
        return { li: el('li', null, btn), value };
      });
      legend.replaceChildren(...legendItems.map((i) => i.li));
      showLegendValues(null);
    }

    function showLegendValues(idx) {
      if (!u) return;
      const { format, unit } = p.def;
      legendItems.forEach((item, k) => {
        let v = null;
        let running = false;
        if (idx !== null && idx !== undefined) {
          const f = u.data[1 + 2 * k][idx];
          const r = u.data[2 + 2 * k][idx];
          running = r !== null && r !== undefined && (f === null || f === undefined);
          v = running ? r : f;
        } else if (latest[k]) {
          v = latest[k].v;
          running = !latest[k].final;
        }
        item.value.classList.toggle('is-running', running);
        item.value.title = running ? 'running: the window is still open' : '';
        item.value.textContent = v === null || v === undefined ? '' : K.formatValue(v, format, unit);
      });
    }

    function size() {
      const w = Math.max(120, Math.floor(box.clientWidth));
      const h = Math.max(120, Math.floor(box.clientHeight));
      return [w, h];
    }

    new ResizeObserver(() => {
      if (!u) return;
      const [w, h] = size();
      if (w !== u.width || h !== u.height) u.setSize({ width: w, height: h });
    }).observe(box);

    function render(d, force) {
      last = d;
      const newNames = (d.series || []).map((s) => s.name === null || s.name === undefined ? '' : String(s.name));
      const newKey = newNames.join('\u0000');
      const data = toData(d);
      const points = data[0].length;
      note.hidden = points > 0;
      note.textContent = emptyNote(p);
      box.hidden = points === 0;
      if (!u || force || newKey !== key) {
        if (u) u.destroy();
        u = null;
        key = newKey;
        names = newNames;
        if (points === 0 && newNames.length === 0) { legend.replaceChildren(); setDrawn(p, false); return; }
        const [w, h] = size();
        create(data, w, h);
      } else {
        u.setData(data);
        showLegendValues(u.cursor.idx);
      }
      setDrawn(p, points > 0 && data.slice(1).some((col) => col.some((v) => v !== null)));
    }

    window.addEventListener('kpiflow:theme', () => { if (last) render(last, true); });
    return { update: (d) => render(d, false) };
  }

  // ---- freshness: "events to 10:32:05 · final to 10:31 · updated 3 s ago"
  function freshText(f, now) {
    const parts = [];
    parts.push(f.newest_event_ms ? 'events to ' + K.formatTime(f.newest_event_ms, true) : 'no events yet');
    if (f.watermark_ms) parts.push('final to ' + K.formatTime(f.watermark_ms, new Date(f.watermark_ms).getSeconds() !== 0));
    if (f.changed_ms) parts.push('updated ' + K.formatAge(now - f.changed_ms));
    const out = [];
    parts.forEach((t, i) => { if (i) out.push(' · '); out.push(el('span', null, t)); });
    return out;
  }
  // Stale: the server says so, or for a minute neither the data changed nor
  // the view's events or watermark moved (a value that holds still while
  // events flow, like zero faults, is current, not stale).
  function tick() {
    const now = Date.now() + skewMs;
    for (const p of panels.values()) {
      const f = p.data && p.data.freshness;
      if (!f) continue;
      p.fresh.replaceChildren(...freshText(f, now));
      const moved = Math.max(f.changed_ms || 0, p.movedMs || 0);
      const stale = f.stale === true || (moved > 0 && now - moved > STALE_AFTER_MS);
      p.stale.hidden = !stale;
      p.card.classList.toggle('is-stale', !!stale);
      if (stale) p.card.dataset.stale = 'true'; else delete p.card.dataset.stale;
    }
    if (downSince !== null && connEl.dataset.conn === 'reconnecting' && Date.now() - downSince > OFFLINE_AFTER_MS) setConn('offline');
    const clock = document.getElementById('clock');
    if (clock) clock.textContent = K.formatTime(Date.now(), true);
  }

  function renderPanel(p, d) {
    const f = d.freshness || {};
    const before = p.data && p.data.freshness;
    if (before && (f.newest_event_ms > before.newest_event_ms || f.watermark_ms > before.watermark_ms)) {
      p.movedMs = Date.now() + skewMs;
    }
    p.data = d;
    const err = d.error === null || d.error === undefined ? null
      : typeof d.error === 'string' ? d.error : (d.error.message || JSON.stringify(d.error));
    p.error.hidden = err === null;
    p.error.textContent = err === null ? '' : 'Could not compute this panel: ' + err;
    p.card.classList.toggle('has-error', err !== null);
    try {
      p.view.update(d);
    } catch (e) {
      K.recordError('panel ' + p.def.id + ': ' + (e && e.stack ? e.stack : e));
    }
  }

  // ---- the event stream
  let source = null;
  let retries = 0;
  let retryTimer = null;

  function onEvent(e, snapshot) {
    let msg;
    try { msg = JSON.parse(e.data); } catch (err) {
      K.recordError('unreadable ' + e.type + ' event: ' + err.message);
      return;
    }
    const seq = typeof msg.seq === 'number' ? msg.seq : Number(e.lastEventId);
    if (!snapshot && haveSnapshot && Number.isFinite(seq) && seq <= lastSeq) return; // seen already
    if (Number.isFinite(seq)) lastSeq = seq;
    if (snapshot) haveSnapshot = true;
    if (typeof msg.now_ms === 'number') skewMs = msg.now_ms - Date.now();
    for (const [id, d] of Object.entries(msg.panels || {})) {
      const p = panels.get(id);
      if (p && d) renderPanel(p, d);
    }
    updates += 1;
    body.dataset.updates = String(updates);
    retries = 0;
    if (haveSnapshot) setConn('live');
    tick();
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = new EventSource('/api/dashboards/' + encodeURIComponent(name) + '/stream');
    source.addEventListener('snapshot', (e) => onEvent(e, true));
    source.addEventListener('update', (e) => onEvent(e, false));
    source.addEventListener('open', () => { if (haveSnapshot) setConn('live'); });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CONNECTING) {
        // the browser retries by itself, sending Last-Event-ID
        setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
        return;
      }
      // CLOSED: the server refused the stream (401, 404, 5xx). Ask the API
      // why (a 401 there sends us to the login page), then try again later.
      source.close();
      retries += 1;
      body.dataset.state = 'reconnecting';
      setConn(retries >= 3 || navigator.onLine === false ? 'offline' : 'reconnecting');
      K.api('/api/dashboards/' + encodeURIComponent(name)).catch(() => {}).finally(() => {
        const delay = Math.min(30000, 1000 * 2 ** Math.min(retries, 5));
        retryTimer = setTimeout(connect, delay);
      });
    });
  }
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const p of panels.values()) if (p.view.resize) p.view.resize();
    }, 100);
  });
  window.addEventListener('online', () => { if (!source || source.readyState === EventSource.CLOSED) connect(); });
  window.addEventListener('offline', () => setConn('offline'));

  // ---- start
  async function start() {
    let def;
    try {
      def = await K.getJson('/api/dashboards/' + encodeURIComponent(name));
    } catch (e) {
      const msg = e.status === 404 ? 'There is no dashboard named “' + name + '”.' : 'Could not load this dashboard: ' + e.message;
      grid.replaceChildren(el('p', { class: 'notice error', role: 'alert' }, msg, ' ', el('a', { href: '/' }, 'All dashboards')));
      if (e.status !== 404) setTimeout(start, 5000);
      return;
    }
    document.title = (def.title || name) + ' · kpiflow';
    document.getElementById('dash-title').textContent = def.title || name;
    const desc = document.getElementById('dash-desc');
    if (desc) desc.textContent = def.description || '';
    grid.replaceChildren();
    for (const pd of def.panels || []) buildCard(pd);
    connect();
  }

  setInterval(tick, 1000);
  tick();
  start();
})();
