/* kpiflow login page: carries ?next= into the form (only a path on this
 * site, never another origin) and shows ?error= from a refused token. */
(function () {
  'use strict';
  const q = new URLSearchParams(location.search);
  const next = q.get('next');
  if (next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\')) {
    document.getElementById('next').value = next;
  }
  if (q.has('error')) document.getElementById('login-error').hidden = false;
})();
