/* kpiflow: what every page shares. Loaded in <head> without defer, so the
 * theme is set before the first paint and errors are caught from the start.
 * Plain ES2020, no dependencies. Exposes window.kpiflow. */
(function () {
  'use strict';

  const root = document.documentElement;

  // ---- errors: recorded on <body data-errors> for automated browser tests
  const early = [];
  function recordError(message) {
    const text = String(message).replace(/\s+/g, ' ').trim();
    console.error('kpiflow: ' + text);
    if (!document.body) { early.push(text); return; }
    const prev = document.body.dataset.errors;
    document.body.dataset.errors = prev ? prev + '\n' + text : text;
  }
  window.addEventListener('error', (e) => {
    if (e.error || e.message) recordError(e.message || e.error);
  });
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    recordError('unhandled rejection: ' + (r && r.message ? r.message : r));
  });

  // ---- theme: ?theme= forces (wall screens), else the remembered choice,
  // else the system's preference
  const THEME_KEY = 'kpiflow.theme';
  function storedTheme() {
    try { return localStorage.getItem(THEME_KEY); } catch (_) { return null; }
  }
  function initialTheme() {
    const q = new URLSearchParams(location.search).get('theme');
    if (q === 'dark' || q === 'light') return q;
    const s = storedTheme();
    if (s === 'dark' || s === 'light') return s;
    return window.matchMedia && matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  function setTheme(theme, remember) {
    root.dataset.theme = theme;
    if (remember) { try { localStorage.setItem(THEME_KEY, theme); } catch (_) { /* private mode */ } }
    document.querySelectorAll('[data-theme-toggle]').forEach(labelToggle);
    window.dispatchEvent(new CustomEvent('kpiflow:theme', { detail: theme }));
  }
  function labelToggle(btn) {
    const dark = root.dataset.theme === 'dark';
    btn.textContent = dark ? '☀ Light' : '☾ Dark';
    btn.setAttribute('aria-label', dark ? 'Switch to the light theme' : 'Switch to the dark theme');
    btn.setAttribute('aria-pressed', String(dark));
  }
  root.dataset.theme = initialTheme();

  // ---- API calls: a 401 anywhere sends the browser to the login page
  function toLogin() {
    const next = location.pathname + location.search;
    location.assign('/login?next=' + encodeURIComponent(next));
  }
  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || 'HTTP ' + status);
      this.status = status;
      this.code = err.code || 'http_' + status;
      this.position = err.position || null;
    }
  }
  /** fetch() that redirects to the login page on 401 (its promise then never settles). */
  async function api(path, options) {
    const opts = Object.assign({ credentials: 'same-origin' }, options || {});
    opts.headers = Object.assign({ Accept: 'application/json' }, opts.headers || {});
    const res = await fetch(path, opts);
    if (res.status === 401) {
      toLogin();
      return new Promise(() => {});
    }
    return res;
  }
  async function errorOf(res) {
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    return new ApiError(res.status, body);
  }
  async function getJson(path) {
    const res = await api(path);
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  // ---- formatting (browser locale, local time)
  const nf = {};
  function numFmt(key, opts) {
    return nf[key] || (nf[key] = new Intl.NumberFormat(undefined, opts));
  }
  const MONEY = /^[¥$€£₩₹]$/;
  function withUnit(text, unit) {
    if (!unit) return text;
    // a narrow no-break space: the unit never wraps away from its number
    return MONEY.test(unit) ? unit + '\u202f' + text : text + '\u202f' + unit;
  }
  /** A value for reading: format is number | percent | integer (or fixedN: N decimals). */
  function formatValue(v, format, unit) {
    if (v === null || v === undefined || v === '') return '–';
    if (typeof v !== 'number') return String(v);
    if (!Number.isFinite(v)) return String(v);
    if (format === 'percent') {
      return numFmt('pct', { minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(v * 100) + '%';
    }
    let text;
    const fixed = /^fixed(\d)$/.exec(format || '');
    if (format === 'integer') text = numFmt('int', { maximumFractionDigits: 0 }).format(v);
    else if (fixed) {
      const d = +fixed[1];
      text = numFmt('f' + d, { minimumFractionDigits: d, maximumFractionDigits: d }).format(v);
    } else {
      const a = Math.abs(v);
      const d = a >= 1000 || Number.isInteger(v) ? 0 : a >= 10 ? 1 : 2;
      text = numFmt('n' + d, { maximumFractionDigits: d }).format(v);
    }
    return withUnit(text, unit);
  }
  /** A short value for an axis tick. */
  function formatAxis(v, format, unit) {
    if (v === null || v === undefined) return '';
    if (format === 'percent') return numFmt('pctAxis', { maximumFractionDigits: 1 }).format(v * 100) + '%';
    const text = Math.abs(v) >= 10000
      ? numFmt('compact', { notation: 'compact', maximumFractionDigits: 1 }).format(v)
      : numFmt('axis', { maximumFractionDigits: 2 }).format(v);
    return withUnit(text, unit);
  }
  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }
  const tf = {};
  function timeFmt(key, opts) {
    return tf[key] || (tf[key] = new Intl.DateTimeFormat(undefined, opts));
  }
  /** A point in time (Unix ms or ISO text), local: the date only when not today. */
  function formatTime(ms, withSeconds) {
    if (ms === null || ms === undefined) return '–';
    const d = new Date(typeof ms === 'number' ? ms : Date.parse(ms));
    if (Number.isNaN(d.getTime())) return String(ms);
    const t = { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
    if (withSeconds) t.second = '2-digit';
    if (sameDay(d, new Date())) return timeFmt('t' + !!withSeconds, t).format(d);
    return timeFmt('dt' + !!withSeconds, Object.assign({ day: 'numeric', month: 'short' }, t)).format(d);
  }
  function formatAge(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + ' s ago';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ago';
    const h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m % 60) + ' min ago';
    return Math.floor(h / 24) + ' days ago';
  }

  /** Creates an element: el('p', {class: 'x'}, 'text', child). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else e.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  // ---- navigation between dashboards, and the index page's list
  let dashboardsPromise = null;
  function dashboards() {
    return dashboardsPromise || (dashboardsPromise = getJson('/api/dashboards'));
  }
  async function fillNav(nav) {
    const current = nav.dataset.current || '';
    const list = await dashboards();
    const links = list.map((d) => el('a', {
      href: '/dashboards/' + encodeURIComponent(d.name),
      'aria-current': d.name === current ? 'page' : null,
      title: d.description || null,
    }, d.title || d.name));
    links.push(el('a', { href: '/sql', 'aria-current': current === 'sql' ? 'page' : null }, 'SQL'));
    nav.replaceChildren(...links);
    // a nav narrower than its links scrolls: keep the current one in view
    const here = nav.querySelector('[aria-current="page"]');
    if (here && nav.scrollWidth > nav.clientWidth) {
      nav.scrollLeft = Math.max(0, here.offsetLeft - (nav.clientWidth - here.offsetWidth) / 2);
    }
  }
  async function fillIndex(ul) {
    let list;
    try {
      list = await dashboards();
    } catch (e) {
      ul.replaceChildren(el('li', { class: 'notice error', role: 'alert' }, 'Could not load the dashboards: ' + e.message));
      return;
    }
    if (!list.length) {
      ul.replaceChildren(el('li', { class: 'notice' }, 'No dashboards are defined (dashboards/*.toml).'));
      return;
    }
    ul.replaceChildren(...list.map((d) => {
      const href = '/dashboards/' + encodeURIComponent(d.name);
      return el('li', { class: 'card dash-link' },
        el('h2', null, el('a', { href }, d.title || d.name)),
        d.description ? el('p', null, d.description) : null,
        el('p', { class: 'wall' }, el('a', { href: href + '?theme=dark' }, 'Wall screen (dark)')));
    }));
    document.body.dataset.state = 'live';
  }

  document.addEventListener('DOMContentLoaded', () => {
    for (const text of early.splice(0)) recordError(text);
    document.querySelectorAll('[data-theme-toggle]').forEach((btn) => {
      labelToggle(btn);
      btn.addEventListener('click', () => setTheme(root.dataset.theme === 'dark' ? 'light' : 'dark', true));
    });
    document.querySelectorAll('nav[data-nav]').forEach((nav) => {
      fillNav(nav).catch((e) => { nav.dataset.error = e.message; });
    });
    const list = document.getElementById('dashboard-list');
    if (list) fillIndex(list);
  });

  window.kpiflow = {
    api, getJson, errorOf, ApiError, recordError, el, dashboards,
    formatValue, formatAxis, formatTime, formatAge,
  };
})();
