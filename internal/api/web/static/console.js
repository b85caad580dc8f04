// Herald analyst console. Plain script, no dependencies. Every value from
// the API or the analyst is put on the page with textContent or as an
// attribute value set through the DOM: never as HTML.
'use strict';

(function () {
  const TOKEN_KEY = 'herald.token';
  const TITLES_KEY = 'herald.titles'; // titles of alerts published from this tab, by id
  const POLL_MS = 3000;

  // ---- DOM helpers --------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  // el builds an element; children are nodes or strings (made text nodes).
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function say(node, text, cls) {
    if (!node) return;
    node.textContent = text || '';
    node.className = 'msg' + (cls ? ' ' + cls : '');
  }

  // ---- API ----------------------------------------------------------------

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

  async function api(method, path, body) {
    const headers = { 'Accept': 'application/json' };
    const t = token();
    if (t) headers['Authorization'] = 'Bearer ' + t;
    const opts = { method: method, headers: headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = body;
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      return { status: 0, data: { error: 'cannot reach the Herald API: ' + e.message } };
    }
    let data = null;
    if ((res.headers.get('Content-Type') || '').startsWith('application/json')) {
      try { data = await res.json(); } catch (e) { data = null; }
    }
    if (!data) data = { error: 'HTTP ' + res.status };
    return { status: res.status, data: data };
  }

  function authProblem(r) {
    if (r.status === 401) return 'Sign in with your API token first (top right).';
    if (r.status === 403) return 'Your token may not do this: ' + r.data.error;
    return '';
  }

  // ---- sign-in --------------------------------------------------------------

  async function showWho() {
    const who = $('whoami');
    const out = $('signout-btn');
    const input = $('token');
    if (!token()) {
      who.textContent = 'Not signed in';
      out.hidden = true;
      input.hidden = false;
      $('signin-btn').hidden = false;
      return;
    }
    const r = await api('GET', '/v1/whoami');
    if (r.status === 200) {
      who.textContent = 'Signed in as ' + r.data.name + ' (' + r.data.role + ')';
      out.hidden = false;
      input.hidden = true;
      $('signin-btn').hidden = true;
      document.dispatchEvent(new CustomEvent('herald:signedin'));
    } else {
      sessionStorage.removeItem(TOKEN_KEY);
      who.textContent = r.status === 401 ? 'Token not accepted' : 'Cannot check the token: ' + r.data.error;
      out.hidden = true;
      input.hidden = false;
      $('signin-btn').hidden = false;
    }
  }

  function setupSignIn() {
    $('signin').addEventListener('submit', function (ev) {
      ev.preventDefault();
      const v = $('token').value.trim();
      $('token').value = '';
      if (v) sessionStorage.setItem(TOKEN_KEY, v);
      showWho();
    });
    $('signout-btn').addEventListener('click', function () {
      sessionStorage.removeItem(TOKEN_KEY);
      showWho();
    });
    showWho();
  }

  // ---- compose, preview, publish -------------------------------------------

  function list(s) {
    return (s || '').split(/[,\s]+/).map(function (x) { return x.trim(); }).filter(Boolean);
  }

  function lines(s) {
    return (s || '').split('\n').map(function (x) { return x.trim(); }).filter(Boolean);
  }

  // utc turns a datetime-local value, read as UTC, into RFC 3339.
  function utc(v) { return v ? v + (v.length === 16 ? ':00Z' : 'Z') : undefined; }

  function alertFromForm(f) {
    const v = function (n) { return f.elements[n].value.trim(); };
    const a = {
      type: v('type'),
      status: v('status'),
      title: v('title'),
      severity: v('severity'),
      tlp: v('tlp'),
      marking: v('marking'),
      handling: { code: v('handling_code') },
      audience: {}
    };
    const refs = list(v('references'));
    if (refs.length) a.references = refs;
    if (v('handling_conditions')) a.handling.conditions = v('handling_conditions');
    const sectors = list(v('sectors')), regions = list(v('regions')), subs = list(v('subscribers'));
    if (sectors.length) a.audience.sectors = sectors;
    if (regions.length) a.audience.regions = regions;
    if (subs.length) a.audience.subscribers = subs;
    if (f.elements['summary'].value.trim()) a.summary = f.elements['summary'].value.trim();
    if (f.elements['body'].value.trim()) a.body = f.elements['body'].value;
    const inds = lines(f.elements['indicators'].value).map(function (l) {
      const p = l.split('|').map(function (x) { return x.trim(); });
      const ind = { type: p[0] || '', value: p[1] || '' };
      if (p[2]) ind.context = p.slice(2).join(' | ');
      return ind;
    });
    if (inds.length) a.indicators = inds;
    const acts = lines(f.elements['actions'].value);
    if (acts.length) a.actions = acts;
    if (v('reporting')) a.reporting = v('reporting');
    if (v('contact')) a.contact = v('contact');
    if (v('not_before')) a.not_before = utc(v('not_before'));
    if (v('expires_at')) a.expires_at = utc(v('expires_at'));
    return a;
  }

  const MODE_TEXT = {
    'signed': 'signed',
    'encrypted': 'signed and encrypted to the address\u2019s key',
    'key-notice': 'content-free notice: the address\u2019s key needs attention',
    'cancel-notice': 'content-free notice that an alert it had was withdrawn'
  };

  function how(d) {
    const m = MODE_TEXT[d.mode] || d.mode || '';
    if (d.mode === 'signed' && d.channel === 'email') return 'email, PGP/MIME signed';
    if (d.mode === 'signed' && d.channel === 'webhook') return 'webhook, Standard Webhooks + OpenPGP signed';
    if (d.mode === 'encrypted') return 'email, PGP/MIME ' + m;
    return (d.channel ? d.channel + ', ' : '') + m;
  }

  const GROUPS = [
    { key: 'deliver', title: 'Will receive the alert', cls: 'good',
      cols: ['Partner', 'Target', 'How', 'Rule', 'Why'] },
    { key: 'notice', title: 'Notice only \u2014 no alert content', cls: 'warn',
      cols: ['Partner', 'Target', 'What goes', 'Rule', 'Why'] },
    { key: 'withhold', title: 'Will not get it', cls: 'bad',
      cols: ['Partner', 'Target', 'Channel', 'Rule', 'Why not'] }
  ];

  function renderCounts(node, counts, labels) {
    clear(node);
    for (const l of labels) {
      node.append(el('div', 'count ' + l.cls, el('strong', null, String(counts[l.key] || 0)), ' ' + l.text));
    }
  }

  function renderPreview(r) {
    const a = r.alert;
    const head = $('preview-head');
    clear(head);
    head.append(
      el('span', 'tlp tlp-' + String(a.tlp).replace('+', '-').toLowerCase(), 'TLP:' + a.tlp),
      ' ', el('span', 'marking', a.marking), ' ',
      el('span', null, a.severity + ' ' + a.type + ' '), el('code', null, a.id), ': ',
      el('strong', null, a.title));
    renderCounts($('preview-counts'), r.counts, [
      { key: 'deliver', cls: 'good', text: 'targets get the alert' },
      { key: 'notice', cls: 'warn', text: 'get a content-free notice' },
      { key: 'withhold', cls: 'bad', text: 'withheld' }
    ]);
    const box = $('preview-tables');
    clear(box);
    if (!r.decisions.length) {
      box.append(el('p', 'banner bad', 'No partner is registered: nobody would get this alert.'));
    }
    for (const g of GROUPS) {
      const ds = r.decisions.filter(function (d) { return d.decision === g.key; });
      if (!ds.length) continue;
      const tbody = el('tbody');
      for (const d of ds) {
        const third = g.key === 'withhold' ? (d.channel || '\u2014') : how(d);
        tbody.append(el('tr', null,
          el('td', null, d.subscriber), el('td', 'target', d.target || '\u2014'), el('td', null, third),
          el('td', null, el('code', null, d.rule)), el('td', null, d.reason)));
      }
      const headRow = el('tr');
      for (const c of g.cols) headRow.append(el('th', null, c));
      box.append(el('h3', g.cls, g.title + ' (' + ds.length + ')'),
        el('table', 'table', el('thead', null, headRow), tbody));
    }
    $('preview').hidden = false;
  }

  function renderErrors(data) {
    const list = $('error-list');
    clear(list);
    const errs = data.errors || [];
    if (!errs.length) list.append(el('li', null, data.error || 'The alert was rejected.'));
    for (const e of errs) list.append(el('li', null, el('code', null, e.field), ' ', e.message));
    $('errors').hidden = false;
  }

  function setupCompose() {
    const form = $('alert-form');
    const jsonBox = $('alert-json');
    const publishBtn = $('publish-btn');
    const msg = $('compose-msg');
    let previewed = null; // the normalised alert the last successful preview returned

    function mode() { return form.ownerDocument.querySelector('input[name=mode]:checked').value; }

    function stale() {
      if (previewed) say(msg, 'Changed since the preview: preview again before publishing.', 'warn');
      previewed = null;
      publishBtn.disabled = true;
    }

    for (const r of document.querySelectorAll('input[name=mode]')) {
      r.addEventListener('change', function () {
        const json = mode() === 'json';
        if (json && !jsonBox.value.trim()) jsonBox.value = JSON.stringify(alertFromForm(form), null, 2);
        $('form-fields').hidden = json;
        $('json-fields').hidden = !json;
        stale();
      });
    }
    form.addEventListener('input', stale);
    form.addEventListener('change', stale);

    form.addEventListener('submit', async function (ev) {
      ev.preventDefault();
      stale();
      $('errors').hidden = true;
      $('preview').hidden = true;
      let body;
      if (mode() === 'json') {
        body = jsonBox.value;
        try { JSON.parse(body); } catch (e) {
          renderErrors({ error: 'The JSON does not parse: ' + e.message });
          return;
        }
      } else {
        body = JSON.stringify(alertFromForm(form));
      }
      say(msg, 'Checking\u2026');
      const r = await api('POST', '/v1/alerts/preview', body);
      if (r.status === 200) {
        previewed = r.data.alert;
        renderPreview(r.data);
        publishBtn.disabled = false;
        say(msg, 'Preview ready. Publish sends exactly this alert.', 'good');
        return;
      }
      say(msg, authProblem(r) || 'Not valid yet.', 'bad');
      if (r.status !== 401 && r.status !== 403) renderErrors(r.data);
    });

    publishBtn.addEventListener('click', async function () {
      if (!previewed) return;
      const a = Object.assign({}, previewed);
      delete a.issued_by;
      delete a.issued_at;
      const n = Number(($('preview-counts').querySelector('.good strong') || {}).textContent || 0);
      if (!window.confirm('Publish ' + a.id + ' (TLP:' + a.tlp + ', ' + a.marking + ') to ' + n + ' target(s)?')) return;
      publishBtn.disabled = true;
      say(msg, 'Publishing\u2026');
      const r = await api('POST', '/v1/alerts', JSON.stringify(a));
      if (r.status === 202) {
        try {
          const titles = JSON.parse(sessionStorage.getItem(TITLES_KEY) || '{}');
          titles[r.data.id] = a.title;
          sessionStorage.setItem(TITLES_KEY, JSON.stringify(titles));
        } catch (e) { /* a title is a nicety */ }
        window.location.assign('/status/' + encodeURIComponent(r.data.id));
        return;
      }
      previewed = null;
      say(msg, authProblem(r) || 'Not published.', 'bad');
      if (r.status !== 401 && r.status !== 403) renderErrors(r.data);
    });
  }

  // ---- status ---------------------------------------------------------------

  function fact(dl, name, value) {
    if (value === undefined || value === null || value === '') return;
    dl.append(el('dt', null, name), el('dd', null, String(value)));
  }

  function when(t) {
    if (!t) return '';
    const d = new Date(t);
    return isNaN(d) ? t : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function setupStatus() {
    const box = $('status');
    if (!box) return;
    const id = box.dataset.alertId;
    const msg = $('status-msg');
    try {
      const titles = JSON.parse(sessionStorage.getItem(TITLES_KEY) || '{}');
      if (titles[id]) $('alert-title').textContent = '\u2014 ' + titles[id];
    } catch (e) { /* ignore */ }

    async function poll() {
      const r = await api('GET', '/v1/alerts/' + encodeURIComponent(id) + '/deliveries');
      if (r.status === 404) {
        say(msg, 'Waiting for the fan-out to record this alert\u2026 (' + r.data.error + ')', 'warn');
        return true;
      }
      if (r.status !== 200) {
        say(msg, authProblem(r) || r.data.error, 'bad');
        return r.status !== 401 && r.status !== 403;
      }
      const s = await api('GET', '/v1/alerts/' + encodeURIComponent(id));
      if (s.status === 200) {
        const dl = $('alert-facts');
        clear(dl);
        fact(dl, 'Type', s.data.type);
        fact(dl, 'TLP', s.data.tlp ? 'TLP:' + s.data.tlp : '');
        fact(dl, 'Marking', s.data.marking);
        fact(dl, 'References', (s.data.references || []).join(', '));
        fact(dl, 'Issued by', s.data.issued_by);
        fact(dl, 'Fanned out', when(s.data.fanned_out));
      }
      const d = r.data;
      renderCounts($('status-counts'), d.counts, [
        { key: 'delivered', cls: 'good', text: 'delivered' },
        { key: 'pending', cls: 'warn', text: 'pending' },
        { key: 'retrying', cls: 'warn', text: 'retrying' },
        { key: 'withheld', cls: 'muted', text: 'withheld by policy' },
        { key: 'dead', cls: 'bad', text: 'failed' },
        { key: 'expired', cls: 'bad', text: 'expired' },
        { key: 'disabled', cls: 'bad', text: 'endpoint disabled' }
      ]);
      const table = $('deliveries');
      const tbody = table.tBodies[0];
      clear(tbody);
      for (const e of d.deliveries) {
        let why = e.reason || '';
        if (e.last_error) why += (why ? ' \u2014 last error: ' : 'last error: ') + e.last_error;
        if (e.retry_at && e.state === 'retrying') why += ' (next try ' + when(e.retry_at) + ')';
        tbody.append(el('tr', 'state-' + e.state,
          el('td', null, e.subscriber), el('td', null, e.channel || '\u2014'), el('td', 'target', e.target || '\u2014'),
          el('td', null, e.decision + (e.mode ? ' (' + e.mode + ')' : '')), el('td', null, el('strong', null, e.state)),
          el('td', null, String(e.attempts)), el('td', null, el('code', null, e.rule)),
          el('td', null, why), el('td', null, when(e.updated_at))));
      }
      table.hidden = false;
      say(msg, d.done ? 'Every delivery has settled.' : 'Deliveries in progress; refreshing every few seconds\u2026', d.done ? 'good' : '');
      return !d.done;
    }

    let running = false;
    async function loop() {
      if (running) return;
      if (!token()) {
        say(msg, 'Sign in with your API token to see the deliveries.', 'warn');
        return;
      }
      running = true;
      try {
        while (await poll()) {
          await new Promise(function (res) { setTimeout(res, POLL_MS); });
        }
      } finally {
        running = false;
      }
    }
    document.addEventListener('herald:signedin', loop);
    loop();
  }

  document.addEventListener('DOMContentLoaded', function () {
    setupSignIn();
    const page = document.body.dataset.page;
    if (page === 'compose') setupCompose();
    if (page === 'status') setupStatus();
  });
})();
