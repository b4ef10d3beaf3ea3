/* kpiflow SQL page: POST /api/sql, the result as a table, errors with their
 * line and column, and the same query downloaded as CSV.
 * body[data-state] = idle | running | done | error, for automated tests. */
(function () {
  'use strict';

  const K = window.kpiflow;
  const { el } = K;
  const editor = document.getElementById('sql');
  const limitEl = document.getElementById('limit');
  const runBtn = document.getElementById('run');
  const csvBtn = document.getElementById('csv');
  const statusEl = document.getElementById('status');
  const errorEl = document.getElementById('error');
  const table = document.getElementById('result');
  const body = document.body;
  const DRAFT_KEY = 'kpiflow.sql.draft';

  try {
    const draft = localStorage.getItem(DRAFT_KEY);
    if (draft) editor.value = draft;
  } catch (_) { /* private mode */ }
  editor.addEventListener('input', () => {
    try { localStorage.setItem(DRAFT_KEY, editor.value); } catch (_) { /* private mode */ }
  });

  function request(format) {
    const limit = parseInt(limitEl.value, 10);
    const payload = { sql: editor.value, format };
    if (Number.isFinite(limit) && limit > 0) payload.limit = limit;
    return K.api('/api/sql', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: format === 'csv' ? 'text/csv' : 'application/json' },
      body: JSON.stringify(payload),
    });
  }

  function busy(on) {
    runBtn.disabled = on;
    csvBtn.disabled = on;
    body.dataset.state = on ? 'running' : body.dataset.state;
  }

  function showError(e) {
    body.dataset.state = 'error';
    const pos = e.position;
    const children = [el('strong', null, (e.code ? e.code.replace(/_/g, ' ') + ': ' : '') + e.message)];
    if (pos && pos.line) {
      children.push(el('span', null, 'at line ' + pos.line + (pos.column ? ', column ' + pos.column : '')));
      const line = editor.value.split('\n')[pos.line - 1];
      if (line !== undefined) {
        const col = Math.max(1, pos.column || 1);
        children.push(el('pre', { 'aria-hidden': 'true' }, line + '\n' + ' '.repeat(col - 1) + '^'));
        selectPosition(pos.line, col);
      }
    }
    errorEl.replaceChildren(...children);
    errorEl.hidden = false;
    table.replaceChildren(); // an older result under a new error would read as this query's
    statusEl.textContent = 'The query failed.';
  }

  // Puts the caret on the error's position in the editor.
  function selectPosition(line, col) {
    const lines = editor.value.split('\n');
    let offset = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += col - 1;
    editor.setSelectionRange(offset, Math.min(editor.value.length, offset + 1));
  }

  function cellText(v, type) {
    if (v === null || v === undefined) return null;
    if (typeof v === 'number') {
      if (/^(timestamp|time|date)/i.test(type || '')) return new Date(v).toISOString();
      return String(v);
    }
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function showResult(r) {
    const cols = r.columns || [];
    const numeric = cols.map((c) => /^(number|numeric|u?int|integer|float|double|decimal)/i.test(c.type || ''));
    const head = el('thead', null, el('tr', null, ...cols.map((c, i) => el('th', {
      scope: 'col', class: numeric[i] ? 'num' : null, title: c.type || null,
    }, c.name))));
    const rows = (r.rows || []).map((row) => el('tr', null, ...cols.map((c, i) => {
      const t = cellText(row[i], c.type);
      return el('td', { class: numeric[i] ? 'num' : null }, t === null ? el('span', { class: 'null' }, 'null') : t);
    })));
    table.replaceChildren(head, el('tbody', null, ...rows));
    const n = typeof r.row_count === 'number' ? r.row_count : rows.length;
    let text = n.toLocaleString() + (n === 1 ? ' row' : ' rows');
    if (r.truncated) text += ' (cut at the limit: raise it or narrow the query)';
    if (typeof r.elapsed_ms === 'number') text += ' · ' + r.elapsed_ms.toLocaleString() + ' ms';
    statusEl.textContent = text;
    body.dataset.state = 'done';
  }

  async function run() {
    if (!editor.value.trim()) { editor.focus(); return; }
    errorEl.hidden = true;
    statusEl.textContent = 'Running…';
    busy(true);
    try {
      const res = await request('json');
      if (!res.ok) throw await K.errorOf(res);
      showResult(await res.json());
    } catch (e) {
      showError(e instanceof K.ApiError ? e : { message: 'Could not reach the server (' + e.message + ')' });
    } finally {
      busy(false);
    }
  }

  async function downloadCsv() {
    if (!editor.value.trim()) { editor.focus(); return; }
    errorEl.hidden = true;
    statusEl.textContent = 'Preparing the CSV…';
    busy(true);
    try {
      const res = await request('csv');
      if (!res.ok) throw await K.errorOf(res);
      const blob = await res.blob();
      const a = el('a', { href: URL.createObjectURL(blob), download: fileName() });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
      statusEl.textContent = 'CSV downloaded (' + blob.size.toLocaleString() + ' bytes).';
      body.dataset.state = 'done';
    } catch (e) {
      showError(e instanceof K.ApiError ? e : { message: 'Could not reach the server (' + e.message + ')' });
    } finally {
      busy(false);
    }
  }

  function fileName() {
    const d = new Date();
    const p = (n) => String(n).padStart(2, '0');
    return 'kpiflow-query-' + d.getFullYear() + p(d.getMonth() + 1) + p(d.getDate()) + '-' + p(d.getHours()) + p(d.getMinutes()) + p(d.getSeconds()) + '.csv';
  }

  runBtn.addEventListener('click', run);
  csvBtn.addEventListener('click', downloadCsv);
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  document.querySelectorAll('.snippet').forEach((b) => {
    b.title = b.dataset.sql;
    b.addEventListener('click', () => {
      editor.value = b.dataset.sql;
      editor.dispatchEvent(new Event('input'));
      editor.focus();
      run();
    });
  });
})();
