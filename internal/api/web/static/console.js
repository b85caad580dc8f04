// Herald analyst console. Plain script, no dependencies, no build step.
// Every value from the API or the analyst is put on the page with
// textContent or as an attribute value set through the DOM: never as HTML.
'use strict';

(function () {
  const TOKEN_KEY = 'herald.token';
  const TITLES_KEY = 'herald.titles'; // titles of alerts published from this tab, by id
  const POLL_MS = 3000;               // status page
  const DESK_POLL_MS = 5000;          // desk
  // How long a status page looks for an alert Herald does not hold yet (the
  // fan-out records a published alert within a second or so): longer for
  // one this tab has just published.
  const NOT_FOUND_GRACE_MS = 4000;
  const JUST_PUBLISHED_GRACE_MS = 20000;

  let me = null; // {name, role} of the signed-in token, or null

  // ---- DOM helpers --------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  // el builds an element; children are nodes or strings (made text nodes).
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  // link builds an anchor to a path of this console.
  function link(href, ...children) {
    const a = el('a', null, ...children);
    a.href = href;
    return a;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function say(node, text, cls) {
    if (!node) return;
    node.textContent = text || '';
    node.className = 'msg' + (cls ? ' ' + cls : '');
  }

  function when(t) {
    if (!t) return '';
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/:\d\dZ$/, 'Z');
  }

  function tlpBadge(tlp) {
    if (!tlp) return null;
    return el('span', 'tlp tlp-' + String(tlp).replace('+', '-').toLowerCase(), 'TLP:' + tlp);
  }

  // row appends a row to a table's body, labelling each cell with its
  // column's heading, which narrow screens show beside the value.
  function row(table, cls, cells) {
    const heads = table.tHead ? table.tHead.rows[0].cells : [];
    const tr = el('tr', cls);
    cells.forEach(function (c, i) {
      const td = c instanceof HTMLTableCellElement ? c : el('td', null, c);
      if (heads[i]) td.dataset.label = heads[i].textContent;
      tr.append(td);
    });
    table.tBodies[0].append(tr);
    return tr;
  }

  function emptyTable(table) { clear(table.tBodies[0]); }

  // every runs fn now and then ms after each run ends, while fn returns
  // true (or a number: the milliseconds to wait this time); it waits while
  // the tab is hidden.
  function every(ms, fn) {
    let timer = null;
    async function run() {
      timer = null;
      if (document.hidden) return;
      let again = false;
      try { again = await fn(); } catch (e) { again = true; }
      if (again) timer = setTimeout(run, typeof again === 'number' ? again : ms);
    }
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && timer === null) run();
    });
    run();
  }

  // ---- API ----------------------------------------------------------------

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

  async function api(method, path, body, tok) {
    const headers = { 'Accept': 'application/json' };
    const t = tok === undefined ? token() : tok;
    if (t) headers['Authorization'] = 'Bearer ' + t;
    const opts = { method: method, headers: headers, credentials: 'omit', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = typeof body === 'string' ? body : JSON.stringify(body);
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
    if (r.status === 403) return 'Not allowed: ' + r.data.error;
    return '';
  }

  // problem describes a failed call in a sentence, naming the fields the
  // API named.
  function problem(r) {
    const a = authProblem(r);
    if (a) return a;
    const errs = (r.data.errors || []).map(function (e) { return e.field + ': ' + e.message; });
    return (r.data.error || 'HTTP ' + r.status) + (errs.length ? ' \u2014 ' + errs.join('; ') : '');
  }

  function enc(s) { return encodeURIComponent(s); }

  // ---- field errors -----------------------------------------------------------

  // controlFor finds the control a field error names within root, by its
  // data-field attribute: "audience.subscribers[1]" finds the named-partner
  // picker, "grading.source" the source select, "indicators[0].type" the
  // indicators box.
  function controlFor(root, field) {
    if (!root || !field) return null;
    const parts = String(field).replace(/\[\d+\]/g, '').split('.');
    while (parts.length) {
      const c = root.querySelector('[data-field="' + CSS.escape(parts.join('.')) + '"]');
      if (c) return c;
      parts.pop();
    }
    return null;
  }

  function clearInvalid(root) {
    if (!root) return;
    for (const c of root.querySelectorAll('[aria-invalid]')) c.removeAttribute('aria-invalid');
    for (const c of root.querySelectorAll('.invalid')) c.classList.remove('invalid');
  }

  // showErrors lists the errors of a failed call in list, each naming its
  // field and linking to its control in root, which is marked invalid.
  function showErrors(list, data, root) {
    clear(list);
    clearInvalid(root);
    const errs = data.errors || [];
    if (!errs.length) list.append(el('li', null, data.error || 'Refused.'));
    for (const e of errs) {
      const c = controlFor(root, e.field);
      let name = el('code', null, e.field);
      if (c && c.id) {
        name = link('#' + c.id, name);
        name.addEventListener('click', function (ev) {
          ev.preventDefault();
          c.scrollIntoView({ block: 'center' });
          const f = c.matches('input, select, textarea') ? c : c.querySelector('input, select, textarea');
          if (f) f.focus();
        });
      }
      if (c) {
        if (c.matches('input, select, textarea')) c.setAttribute('aria-invalid', 'true');
        else c.classList.add('invalid');
      }
      list.append(el('li', null, name, ' ', e.message));
    }
    list.hidden = false;
  }

  // ---- sign-in --------------------------------------------------------------

  async function whoami() {
    if (!token()) return null;
    const r = await api('GET', '/v1/whoami');
    if (r.status === 200) return r.data;
    if (r.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    return { error: r.status === 401 ? 'Token not accepted' : 'Cannot check the token: ' + r.data.error };
  }

  function showSignedIn() {
    const signedIn = !!me;
    $('whoami').textContent = signedIn ? 'Signed in as ' + me.name + ' (' + me.role + ')' : 'Not signed in';
    $('signout-btn').hidden = !signedIn;
    $('token').hidden = signedIn;
    $('signin-btn').hidden = signedIn;
    for (const a of document.querySelectorAll('nav [data-role]')) {
      a.hidden = !(me && me.role === a.dataset.role);
    }
  }

  // setupSignIn checks a token before keeping it, then reloads the page so
  // that everything on it is for one identity.
  function setupSignIn() {
    $('signin').addEventListener('submit', async function (ev) {
      ev.preventDefault();
      const v = $('token').value.trim();
      $('token').value = '';
      if (!v) return;
      $('whoami').textContent = 'Checking the token\u2026';
      const r = await api('GET', '/v1/whoami', undefined, v);
      if (r.status !== 200) {
        $('whoami').textContent = r.status === 401 ? 'Token not accepted' : problem(r);
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, v);
      window.location.reload();
    });
    $('signout-btn').addEventListener('click', function () {
      sessionStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    });
  }

  // needSignIn says on node that the page needs a token; it returns
  // whether one is missing.
  function needSignIn(node, role) {
    if (!me) {
      say(node, 'Sign in with your API token (top right) to use this page.', 'warn');
      return true;
    }
    if (role && me.role !== role) {
      say(node, 'This page is for the ' + role + ' role; you are signed in as ' + me.role + '.', 'warn');
      return true;
    }
    return false;
  }

  // ---- partners' names --------------------------------------------------------

  let partnerNames = null; // id → name, once loaded

  async function loadPartners() {
    const r = await api('GET', '/v1/partners');
    if (r.status !== 200) return { list: [], error: problem(r) };
    partnerNames = {};
    for (const p of r.data.partners) partnerNames[p.id] = p.name;
    return { list: r.data.partners };
  }

  // partner renders a partner's name beside its id.
  function partner(id) {
    const name = partnerNames && partnerNames[id];
    return el('span', 'partner', name ? el('span', 'pname', name) : null, name ? ' ' : null, el('code', null, id));
  }

  // ---- decisions (preview, review, release state) -------------------------------

  const MODE_TEXT = {
    'signed': 'signed',
    'encrypted': 'signed and encrypted to the address\u2019s key',
    'key-notice': 'content-free notice: the address\u2019s key needs attention',
    'cancel-notice': 'content-free notice that an alert it had was withdrawn',
    'followup-key-notice': 'content-free notice: it cannot read this update'
  };

  function how(d) {
    const m = MODE_TEXT[d.mode] || d.mode || '';
    if (d.mode === 'signed' && d.channel === 'email') return 'email, PGP/MIME signed';
    if (d.mode === 'signed' && d.channel === 'webhook') return 'webhook, Standard Webhooks + OpenPGP signed';
    if (d.mode === 'encrypted') return 'email, PGP/MIME ' + m;
    return (d.channel ? d.channel + ', ' : '') + m;
  }

  const GROUPS = [
    { key: 'deliver', title: 'Will receive the alert', cls: 'good', cols: ['Partner', 'Target', 'How', 'Rule', 'Why'] },
    { key: 'notice', title: 'Notice only \u2014 no alert content', cls: 'warn', cols: ['Partner', 'Target', 'What goes', 'Rule', 'Why'] },
    { key: 'withhold', title: 'Will not get it', cls: 'bad', cols: ['Partner', 'Target', 'Channel', 'Rule', 'Why not'] }
  ];

  // renderCounts shows counts as tiles; a label marked optional is left
  // out while its count is zero.
  function renderCounts(node, counts, labels) {
    clear(node);
    for (const l of labels) {
      if (l.optional && !counts[l.key]) continue;
      node.append(el('div', 'count ' + l.cls, el('strong', null, String(counts[l.key] || 0)), ' ' + l.text));
    }
  }

  // OPEN_WITHHELD is how many withheld rows a decision table shows
  // without a click: the table has a row for every registered partner, and
  // most of a large registry is outside any one alert's audience.
  const OPEN_WITHHELD = 10;

  // ruleTally counts decisions per rule, the most frequent first:
  // "12 audience.sector, 1 clearance.tlp".
  function ruleTally(ds) {
    const n = new Map();
    for (const d of ds) n.set(d.rule, (n.get(d.rule) || 0) + 1);
    return [...n].sort(function (x, y) { return y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0); })
      .map(function (e) { return e[1] + ' ' + e[0]; }).join(', ');
  }

  // renderDecisions shows a decision table (the preview's and the
  // review's) in box, grouped by what each target gets. It has a row for
  // every target of every registered partner; the withheld rows, when
  // there are many, are folded under their count per rule. others, when
  // the server summarised the partners outside the audience instead of
  // listing them (a large registry), says how many and why.
  function renderDecisions(box, decisions, counts, level, others) {
    clear(box);
    const c = el('div', 'counts');
    renderCounts(c, counts, [
      { key: 'deliver', cls: 'good', text: 'targets get the alert' },
      { key: 'notice', cls: 'warn', text: 'get a content-free notice' },
      { key: 'withhold', cls: 'bad', text: 'withheld' }
    ]);
    box.append(c);
    if (!decisions.length && !others) box.append(el('p', 'banner bad', 'No partner is registered: nobody would get this alert.'));
    else if (!counts.deliver && !counts.notice) box.append(el('p', 'banner bad', 'Nobody would get this alert: every partner is withheld (see why below).'));
    for (const g of GROUPS) {
      const ds = decisions.filter(function (d) { return d.decision === g.key; });
      if (!ds.length) continue;
      const headRow = el('tr');
      for (const col of g.cols) headRow.append(el('th', null, col));
      const table = el('table', 'table stack', el('thead', null, headRow), el('tbody'));
      table.dataset.decision = g.key;
      for (const d of ds) {
        const third = g.key === 'withhold' ? (d.channel || '\u2014') : how(d);
        const tr = row(table, null, [partner(d.subscriber), el('td', 'target', d.target || '\u2014'), third,
          el('code', null, d.rule), d.reason]);
        tr.dataset.subscriber = d.subscriber;
      }
      const head = el(level || 'h3', g.cls, g.title + ' (' + ds.length + ')');
      if (g.key !== 'withhold') {
        box.append(head, table);
        continue;
      }
      const fold = el('details', 'decisions-fold', el('summary', null, head, el('span', 'tally', ruleTally(ds))), table);
      fold.open = ds.length <= OPEN_WITHHELD;
      box.append(fold);
    }
    if (others) {
      const tally = Object.keys(others.rules).sort().map(function (k) { return others.rules[k] + ' ' + k; }).join(', ');
      box.append(el('p', 'others', others.left_out + ' more targets of partners outside the audience are withheld and not listed (' +
        tally + '); ', el('code', null, 'herald publish --dry-run'), ' lists every one.'));
    }
  }

  // alertFacts lists what an alert says, for a reviewer to read.
  function alertFacts(a) {
    const dl = el('dl', 'facts');
    function fact(name, value) {
      if (value === undefined || value === null || value === '' || (Array.isArray(value) && !value.length)) return;
      dl.append(el('dt', null, name), value instanceof Node ? el('dd', null, value) : el('dd', null, String(value)));
    }
    fact('Type', a.type + (a.status && a.status !== 'actual' ? ' (' + a.status + ')' : ''));
    fact('References', (a.references || []).join(', '));
    fact('Severity', a.severity);
    fact('Summary', a.summary);
    if (a.body) fact('Body', el('div', 'body-text', a.body));
    if (a.indicators && a.indicators.length) {
      const ul = el('ul', 'plain-list');
      for (const i of a.indicators) ul.append(el('li', null, el('code', null, i.type), ' ', i.value, i.context ? ' \u2014 ' + i.context : ''));
      fact('Indicators', ul);
    }
    if (a.actions && a.actions.length) {
      const ul = el('ul', 'plain-list');
      for (const x of a.actions) ul.append(el('li', null, x));
      fact('Actions', ul);
    }
    const au = a.audience || {};
    fact('Sectors', (au.sectors || []).join(', '));
    fact('Regions', (au.regions || []).join(', ') || (au.sectors || au.subscribers ? 'everywhere' : ''));
    if (au.subscribers && au.subscribers.length) {
      const span = el('span');
      au.subscribers.forEach(function (id, i) { if (i) span.append(', '); span.append(partner(id)); });
      fact('Named partners', span);
    }
    const h = a.handling || {};
    fact('Handling', h.code ? h.code + (h.conditions ? ': ' + h.conditions : '') : '');
    fact('Grading', a.grading ? a.grading.source + '/' + a.grading.intelligence : '');
    fact('Reporting', a.reporting);
    fact('Contact', a.contact);
    fact('Not before', when(a.not_before));
    fact('Expires', when(a.expires_at));
    return dl;
  }

  // ---- desk -------------------------------------------------------------------

  const STATE_TEXT = { pending: 'awaiting approval', published: 'published', rejected: 'rejected', expired: 'expired unapproved',
    quarantined: 'quarantined' };

  function deliverySummary(counts) {
    const parts = [];
    for (const k of ['delivered', 'pending', 'retrying', 'withheld', 'dead', 'expired', 'disabled']) {
      if (counts && counts[k]) parts.push(counts[k] + ' ' + (k === 'dead' ? 'failed' : k));
    }
    return parts.join(' \u00b7 ') || '\u2014';
  }

  function startOfToday() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    return d;
  }

  function setupDesk() {
    const msg = $('desk-msg');
    if (needSignIn(msg)) return;
    const analyst = me.role === 'analyst';
    if (!analyst) {
      $('awaiting').hidden = true;
      say(msg, 'Only analysts approve alerts; the list below shows every alert.', '');
    }
    const table = $('alert-list');
    let filter = '';
    let before = '';    // this page's cursor ('' for the newest; only it refreshes)
    let next = '';
    const cards = new Map(); // alert id → {node, done}
    const names = analyst ? loadPartners() : null;

    for (const b of document.querySelectorAll('#tiles .tile')) {
      b.addEventListener('click', function () {
        filter = b.dataset.state;
        for (const o of document.querySelectorAll('#tiles .tile')) o.setAttribute('aria-pressed', String(o === b));
        before = '';
        refreshList();
      });
    }
    $('older-btn').addEventListener('click', function () { before = next; refreshList(); });
    $('newer-btn').addEventListener('click', function () { before = ''; refreshList(); });

    // showCounts fills the tiles from the list's counts (GET /v1/alerts
    // with counts=true): the whole list's, not a page's.
    function showCounts(c) {
      const tiles = { pending: c.pending, 'published-today': c.published_since, rejected: c.rejected, expired: c.expired, quarantined: c.quarantined };
      for (const key in tiles) {
        document.querySelector('[data-count="' + key + '"]').textContent = String(tiles[key] || 0);
      }
    }

    // countsQuery asks for the tiles' counts, published ones since the
    // start of today (local time).
    function countsQuery() {
      return '&counts=true&since=' + enc(startOfToday().toISOString());
    }

    // pendingAlerts lists the alerts awaiting approval, for the review cards.
    async function pendingAlerts() {
      const r = await api('GET', '/v1/alerts?state=pending&limit=500');
      if (r.status !== 200) throw r;
      return r.data.alerts;
    }

    // refreshList shows the list's page; counted (the desk's poll) also
    // refreshes the tiles from the same answer and throws the answer of a
    // failed request, for the poll to report.
    async function refreshList(counted) {
      let q = '/v1/alerts?limit=50';
      if (filter) q += '&state=' + enc(filter);
      if (before) q += '&before=' + enc(before);
      if (counted) q += countsQuery();
      const r = await api('GET', q);
      if (r.status !== 200) {
        if (counted) throw r;
        say(msg, problem(r), 'bad');
        return;
      }
      if (r.data.counts) showCounts(r.data.counts);
      next = r.data.next || '';
      emptyTable(table);
      for (const s of r.data.alerts) {
        const title = link('/status/' + enc(s.id), s.title || s.id);
        let released = s.approved_by || '';
        if (s.state === 'rejected') released = 'rejected by ' + (s.rejected_by || '?') + (s.reject_reason ? ': ' + s.reject_reason : '');
        if (s.state === 'pending') released = 'waiting until ' + when(s.expires_at);
        if (s.state === 'quarantined') released = 'quarantined by the fan-out: ' + (s.quarantine_reason || '?');
        const tr = row(table, 'state-' + s.state, [
          el('div', null, title, el('div', 'sub', el('code', null, s.id))),
          el('div', null, tlpBadge(s.tlp), ' ', el('span', 'marking', s.marking || '')),
          el('span', 'state state-' + s.state, STATE_TEXT[s.state] || s.state),
          s.issued_by || '', released, deliverySummary(s.counts), String(s.acks || 0), when(s.at)
        ]);
        tr.dataset.alertId = s.id;
      }
      table.hidden = !r.data.alerts.length;
      $('list-empty').hidden = !!r.data.alerts.length;
      $('list-filter').textContent = filter ? '\u2014 ' + (STATE_TEXT[filter] || filter) : '';
      $('older-btn').hidden = !next;
      $('newer-btn').hidden = !before;
    }

    async function refreshCards(pending) {
      await names;
      const ids = new Set(pending.map(function (s) { return s.id; }));
      for (const [id, c] of cards) {
        if (!ids.has(id) && !c.done) { c.node.remove(); cards.delete(id); }
      }
      for (const s of pending) {
        if (cards.has(s.id)) continue;
        const r = await api('GET', '/v1/alerts/' + enc(s.id) + '/review');
        if (r.status !== 200 || r.data.state !== 'pending') continue;
        const c = { node: reviewCard(r.data), done: false };
        c.node.addEventListener('herald:decided', function () { c.done = true; });
        cards.set(s.id, c);
        (r.data.own ? $('mine-list') : $('awaiting-list')).append(c.node);
      }
      $('awaiting-none').hidden = !!$('awaiting-list').children.length;
      $('mine').hidden = !$('mine-list').children.length;
    }

    every(DESK_POLL_MS, async function () {
      try {
        // One request for the tiles and the newest page; an older page
        // stays as it is while it is read, and only the tiles refresh.
        if (!before) {
          await refreshList(true);
        } else {
          const r = await api('GET', '/v1/alerts?limit=1' + countsQuery());
          if (r.status !== 200) throw r;
          showCounts(r.data.counts);
        }
        if (analyst) await refreshCards(await pendingAlerts());
        if (msg.classList.contains('bad')) say(msg, '');
      } catch (r) {
        say(msg, r && r.status !== undefined ? problem(r) : 'Cannot refresh: ' + r, 'bad');
        return !(r && (r.status === 401 || r.status === 403));
      }
      return true;
    });
  }

  // reviewCard shows an alert waiting for a second analyst as its author
  // submitted it, with the audience preview, and the buttons to approve or
  // reject it (the author can only withdraw it).
  function reviewCard(rv) {
    const a = rv.alert;
    const card = el('article', 'card');
    card.dataset.alertId = a.id;
    card.dataset.digest = rv.digest;
    const headId = 'card-' + a.id;
    const h = el('h3', null, tlpBadge(a.tlp), ' ', el('span', 'marking', a.marking), ' ', a.title);
    h.id = headId;
    card.setAttribute('aria-labelledby', headId);
    card.append(h, el('p', 'meta', el('code', null, a.id), ' \u00b7 ', a.severity + ' ' + a.type,
      ' \u00b7 issued by ', el('strong', null, rv.issued_by), ' at ' + when(rv.submitted_at),
      ' \u00b7 waits until ' + when(rv.expires_at)));
    const details = el('details', null, el('summary', null, 'The alert as submitted'), alertFacts(a));
    details.open = !rv.own; // the reviewer reads it; its author knows it
    card.append(details);
    const preview = el('div', 'review-preview');
    renderDecisions(preview, rv.decisions, rv.counts, 'h5', rv.others);
    card.append(el('h4', null, 'Who will get it'), preview);

    const out = el('p', 'msg');
    out.setAttribute('aria-live', 'polite');
    const act = el('div', 'decide');
    const reasonId = 'reason-' + a.id;
    const reason = el('input');
    reason.id = reasonId;
    reason.name = 'reason';
    reason.dataset.field = 'reason';
    reason.maxLength = 1000;
    const errs = el('ul', 'errors-inline');
    errs.hidden = true;
    const rejectBtn = el('button', 'danger', rv.own ? 'Withdraw' : 'Reject');
    rejectBtn.type = 'submit';
    rejectBtn.dataset.action = 'reject';
    const label = el('label', null, rv.own ? 'Reason for withdrawing' : 'Reason for rejecting', reason);
    label.htmlFor = reasonId;
    const form = el('form', 'inline-form', label, rejectBtn);
    form.noValidate = true;

    function decided(text, cls, id) {
      card.classList.add('decided');
      clear(act);
      const p = el('p', 'banner ' + cls, text);
      if (id) p.append(' ', link('/status/' + enc(id), 'Follow its deliveries'));
      act.append(p);
      card.dispatchEvent(new CustomEvent('herald:decided'));
    }

    if (rv.own) {
      act.append(el('p', 'hint', 'You issued this alert: another analyst must approve it. You may withdraw it.'));
    } else {
      const approve = el('button', 'approve', 'Approve and release to ' + (rv.counts.deliver || 0) + ' target(s)');
      approve.type = 'button';
      approve.dataset.action = 'approve';
      approve.addEventListener('click', async function () {
        approve.disabled = true;
        say(out, 'Approving\u2026');
        const r = await api('POST', '/v1/alerts/' + enc(a.id) + '/approve', { digest: rv.digest });
        if (r.status === 200) {
          decided('Approved by you: ' + a.id + ' is released.', 'good', a.id);
          return;
        }
        approve.disabled = false;
        say(out, problem(r), 'bad');
      });
      act.append(approve);
    }
    form.addEventListener('submit', async function (ev) {
      ev.preventDefault();
      errs.hidden = true;
      clearInvalid(form);
      rejectBtn.disabled = true;
      say(out, rv.own ? 'Withdrawing\u2026' : 'Rejecting\u2026');
      const r = await api('POST', '/v1/alerts/' + enc(a.id) + '/reject', { reason: reason.value, digest: rv.digest });
      rejectBtn.disabled = false;
      if (r.status === 200) {
        decided((rv.own ? 'Withdrawn: ' : 'Rejected: ') + a.id + ' will not go out.', 'bad');
        return;
      }
      say(out, authProblem(r) || r.data.error, 'bad');
      if (r.data.errors) showErrors(errs, r.data, form);
      if (r.data.errors && r.data.errors.length) reason.focus();
    });
    act.append(form, errs);
    card.append(act, out);
    return card;
  }

  // ---- compose, preview, publish -------------------------------------------

  function list(s) {
    return (s || '').split(/[,\s]+/).map(function (x) { return x.trim(); }).filter(Boolean);
  }

  function lines(s) {
    return (s || '').split('\n').map(function (x) { return x.trim(); }).filter(Boolean);
  }

  // utc turns a datetime-local value, read as UTC, into RFC 3339.
  function utc(v) {
    if (!v) return undefined;
    return /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(v) ? v + (v.length === 16 ? ':00Z' : 'Z') : v;
  }

  function checked(box) {
    return Array.from(box.querySelectorAll('input[type=checkbox]:checked')).map(function (c) { return c.value; });
  }

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
    const sectors = checked($('sector-checks')), regions = checked($('region-checks')), subs = checked($('partner-checks'));
    if (sectors.length) a.audience.sectors = sectors;
    if (regions.length) a.audience.regions = regions;
    if (subs.length) a.audience.subscribers = subs;
    if (v('grading_source') || v('grading_intelligence')) {
      a.grading = { source: Number(v('grading_source')) || 0, intelligence: v('grading_intelligence') };
    }
    if (v('summary')) a.summary = v('summary');
    if (v('body')) a.body = f.elements['body'].value;
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

  function checkbox(name, value, ...label) {
    const c = el('input');
    c.type = 'checkbox';
    c.name = name;
    c.value = value;
    return el('label', 'check', c, ' ', ...label);
  }

  // loadPickers fills the sector, region and partner pickers from the
  // taxonomy and the partner directory.
  async function loadPickers() {
    const pmsg = $('picker-msg');
    const [tax, parts] = await Promise.all([api('GET', '/v1/taxonomy'), loadPartners()]);
    if (tax.status !== 200) { say(pmsg, 'Cannot load the taxonomy: ' + problem(tax), 'bad'); return; }
    for (const s of tax.data.sectors) $('sector-checks').append(checkbox('sector', s.slug, s.name, ' ', el('code', null, s.slug)));
    for (const r of tax.data.regions) $('region-checks').append(checkbox('region', r.code, r.name, ' ', el('code', null, r.code)));
    const box = $('partner-checks');
    for (const p of parts.list) {
      const l = checkbox('subscriber', p.id, el('span', 'pname', p.name), ' ', el('code', null, p.id),
        el('span', 'sub', ' ' + p.kind + ', cleared ' + p.clearance + (p.status !== 'active' ? ', ' + p.status : '')));
      l.dataset.search = [p.id, p.name, p.kind, (p.sectors || []).join(' '), (p.regions || []).join(' ')].join(' ').toLowerCase();
      box.append(l);
    }
    if (parts.error) say(pmsg, 'Cannot load the partners: ' + parts.error, 'bad');
    else say(pmsg, parts.list.length ? '' : 'No partner is registered yet.');
    pmsg.hidden = !pmsg.textContent;
    $('partner-filter').addEventListener('input', function () {
      const q = this.value.trim().toLowerCase();
      for (const l of box.children) l.hidden = !!q && !l.dataset.search.includes(q) && !l.querySelector('input').checked;
    });
    box.addEventListener('change', function () {
      const names = Array.from(box.querySelectorAll('input:checked')).map(function (c) {
        return (partnerNames[c.value] || c.value) + ' (' + c.value + ')';
      });
      $('partner-chosen').textContent = names.length ? 'Named: ' + names.join(', ') : 'None named.';
    });
  }

  function setupCompose() {
    const form = $('alert-form');
    const jsonBox = $('alert-json');
    const publishBtn = $('publish-btn');
    const msg = $('compose-msg');
    let previewed = null; // {alert, counts, needs_release} of the last successful preview

    if (needSignIn(msg)) {
      say($('picker-msg'), 'Sign in to load the sectors, regions and partners.', 'warn');
    } else {
      loadPickers();
    }

    function mode() { return document.querySelector('input[name=mode]:checked').value; }

    function stale() {
      if (previewed) say(msg, 'Changed since the preview: preview again before publishing.', 'warn');
      previewed = null;
      publishBtn.disabled = true;
      $('confirm').hidden = true;
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
    form.addEventListener('input', function (ev) { if (ev.target.id !== 'partner-filter') stale(); });
    form.addEventListener('change', function (ev) { if (ev.target.id !== 'partner-filter') stale(); });

    function fail(r, what) {
      say(msg, authProblem(r) || what, 'bad');
      if (r.status !== 401 && r.status !== 403) {
        showErrors($('error-list'), r.data, form);
        $('errors').hidden = false;
        $('errors').focus();
      }
    }

    form.addEventListener('submit', async function (ev) {
      ev.preventDefault();
      stale();
      $('errors').hidden = true;
      $('preview').hidden = true;
      $('published').hidden = true;
      clearInvalid(form);
      let body;
      if (mode() === 'json') {
        body = jsonBox.value;
        try { JSON.parse(body); } catch (e) {
          showErrors($('error-list'), { error: 'The JSON does not parse: ' + e.message }, form);
          $('errors').hidden = false;
          return;
        }
      } else {
        body = JSON.stringify(alertFromForm(form));
      }
      say(msg, 'Checking\u2026');
      const r = await api('POST', '/v1/alerts/preview', body);
      if (r.status !== 200) { fail(r, 'Not valid yet: see the fields named below.'); return; }
      previewed = r.data;
      const a = r.data.alert;
      const head = $('preview-head');
      clear(head);
      head.append(tlpBadge(a.tlp), ' ', el('span', 'marking', a.marking), ' ',
        el('span', null, a.severity + ' ' + a.type + ' '), el('code', null, a.id), ': ', el('strong', null, a.title));
      if (r.data.needs_release) head.append(el('span', 'release-note', ' \u2014 needs a second analyst\u2019s approval before it goes out'));
      renderDecisions($('preview-body'), r.data.decisions, r.data.counts, null, r.data.others);
      $('preview').hidden = false;
      publishBtn.disabled = false;
      say(msg, 'Preview ready. Publish sends exactly this alert.', 'good');
    });

    publishBtn.addEventListener('click', function () {
      if (!previewed) return;
      const a = previewed.alert;
      const n = previewed.counts.deliver || 0;
      $('confirm-text').textContent = 'Publish ' + a.id + ' (TLP:' + a.tlp + ', ' + a.marking + ')? ' +
        (previewed.needs_release ? 'It will wait for a second analyst; once approved it goes to ' : 'It goes to ') + n + ' target(s) now.';
      if (previewed.needs_release) $('confirm-text').textContent = $('confirm-text').textContent.replace(' now.', '.');
      $('confirm').hidden = false;
      $('confirm-btn').focus();
    });
    $('cancel-btn').addEventListener('click', function () { $('confirm').hidden = true; publishBtn.focus(); });

    $('confirm-btn').addEventListener('click', async function () {
      if (!previewed) return;
      const a = Object.assign({}, previewed.alert);
      delete a.issued_by;
      delete a.issued_at;
      $('confirm').hidden = true;
      publishBtn.disabled = true;
      say(msg, 'Publishing\u2026');
      const r = await api('POST', '/v1/alerts', JSON.stringify(a));
      previewed = null;
      if (r.status !== 202) { fail(r, 'Not published.'); return; }
      try {
        const titles = JSON.parse(sessionStorage.getItem(TITLES_KEY) || '{}');
        titles[r.data.id] = a.title;
        sessionStorage.setItem(TITLES_KEY, JSON.stringify(titles));
      } catch (e) { /* a title is a nicety */ }
      const box = $('published');
      clear(box);
      box.dataset.alertId = r.data.id;
      box.dataset.state = r.data.state;
      const status = link('/status/' + enc(r.data.id), 'Its status page');
      if (r.data.unchanged) {
        box.append(el('strong', null, 'Already held.'), ' ', el('code', null, r.data.id), ' is ' + r.data.state + '; nothing was sent again. ', status);
        say(msg, '');
      } else if (r.data.state === 'pending') {
        box.append(el('strong', null, 'Pending approval.'), ' ', el('code', null, r.data.id),
          ' waits for a second analyst until ' + when(r.data.expires_at) + '; it is on their desk now. ', status);
        say(msg, 'Submitted for approval.', 'good');
      } else {
        box.append(el('strong', null, 'Published.'), ' ', el('code', null, r.data.id), ' is on its way. ',
          link('/status/' + enc(r.data.id), 'Follow its deliveries'));
        say(msg, 'Published.', 'good');
      }
      box.className = 'banner ' + (r.data.state === 'pending' ? 'warn' : 'good');
      box.hidden = false;
      box.focus();
    });
  }

  // ---- status ---------------------------------------------------------------

  function setupStatus() {
    const box = $('status');
    if (!box) return;
    const id = box.dataset.alertId;
    const msg = $('status-msg');
    const retry = $('status-retry');
    let grace = NOT_FOUND_GRACE_MS;
    try {
      const titles = JSON.parse(sessionStorage.getItem(TITLES_KEY) || '{}');
      if (titles[id]) {
        $('alert-title').textContent = '\u2014 ' + titles[id];
        grace = JUST_PUBLISHED_GRACE_MS;
      }
    } catch (e) { /* ignore */ }
    if (needSignIn(msg)) return;

    let since = Date.now();
    const names = loadPartners();

    function facts(list) {
      const dl = $('alert-facts');
      clear(dl);
      for (const [k, v] of list) {
        if (v) dl.append(el('dt', null, k), el('dd', null, v));
      }
    }

    // showRelease shows an alert that waits for, or was refused by, a
    // second analyst (its deliveries do not exist yet, or never will).
    function showRelease(rv) {
      const a = rv.alert;
      $('alert-title').textContent = '\u2014 ' + a.title;
      facts([['TLP', 'TLP:' + a.tlp], ['Marking', a.marking], ['Type', a.type], ['Issued by', rv.issued_by],
        ['Submitted', when(rv.submitted_at)], ['Waits until', rv.state === 'pending' ? when(rv.expires_at) : ''],
        ['Approved by', rv.approved_by], ['Rejected by', rv.rejected_by], ['Reason', rv.reject_reason]]);
      renderDecisions($('release-preview'), rv.decisions, rv.counts, 'h4', rv.others);
      $('release').hidden = rv.state === 'published';
      const text = {
        pending: 'Pending approval: it waits for a second analyst and has gone to nobody yet.',
        rejected: 'Rejected by ' + rv.rejected_by + ': it went to nobody.',
        expired: 'Expired: nobody approved it before ' + when(rv.expires_at) + '; it went to nobody.',
        published: 'Approved by ' + rv.approved_by + '; waiting for the fan-out to record its deliveries\u2026'
      }[rv.state] || rv.state;
      say(msg, text, rv.state === 'pending' || rv.state === 'published' ? 'warn' : 'bad');
      box.dataset.state = rv.state;
      return rv.state === 'pending' || rv.state === 'published';
    }

    // showQuarantined shows an alert the fan-out refused at ingest: why,
    // and that it went to nobody. Nothing will change: polling stops.
    async function showQuarantined(d) {
      const s = await api('GET', '/v1/alerts/' + enc(id));
      if (s.status === 200) {
        if (s.data.title) $('alert-title').textContent = '\u2014 ' + s.data.title;
        facts([['TLP', s.data.tlp ? 'TLP:' + s.data.tlp : ''], ['Marking', s.data.marking], ['Type', s.data.type],
          ['Issued by', s.data.issued_by], ['Approved by', s.data.approved_by],
          ['Quarantined', when(d.quarantined_at)], ['Reason', d.quarantine_reason], ['Error', d.quarantine_error]]);
      }
      for (const sec of ['release', 'by-partner', 'by-target', 'acks-box']) $(sec).hidden = true;
      clear($('status-counts'));
      say(msg, 'Quarantined by the fan-out (' + (d.quarantine_reason || 'no reason given') + '): it went to nobody.' +
        (d.quarantine_error ? ' ' + d.quarantine_error : ''), 'bad');
      box.dataset.state = 'quarantined';
      return false;
    }

    async function showDeliveries(d) {
      await names;
      const s = await api('GET', '/v1/alerts/' + enc(id));
      if (s.status === 200) {
        if (s.data.title) $('alert-title').textContent = '\u2014 ' + s.data.title;
        facts([['TLP', s.data.tlp ? 'TLP:' + s.data.tlp : ''], ['Marking', s.data.marking], ['Type', s.data.type],
          ['References', (s.data.references || []).join(', ')], ['Issued by', s.data.issued_by],
          ['Approved by', s.data.approved_by || (s.data.issued_by ? 'no second analyst needed' : '')],
          ['Fanned out', when(s.data.fanned_out)]]);
      }
      $('release').hidden = true;
      renderCounts($('status-counts'), d.counts, [
        { key: 'delivered', cls: 'good', text: 'delivered' },
        { key: 'pending', cls: 'warn', text: 'pending' },
        { key: 'retrying', cls: 'warn', text: 'retrying', optional: true },
        { key: 'withheld', cls: 'muted', text: 'withheld by policy', optional: true },
        { key: 'dead', cls: 'bad', text: 'failed', optional: true },
        { key: 'expired', cls: 'bad', text: 'expired', optional: true },
        { key: 'disabled', cls: 'bad', text: 'endpoint disabled', optional: true }
      ]);
      const acked = {};
      for (const k of d.acks || []) acked[k.subscriber] = k;

      // Per organisation.
      const orgs = new Map();
      for (const e of d.deliveries) {
        const o = orgs.get(e.subscriber) || { targets: 0, delivered: 0, progress: 0, withheld: 0, failed: 0 };
        o.targets++;
        if (e.state === 'delivered') o.delivered++;
        else if (e.state === 'pending' || e.state === 'retrying') o.progress++;
        else if (e.state === 'withheld') o.withheld++;
        else o.failed++;
        orgs.set(e.subscriber, o);
      }
      const org = $('org-table');
      emptyTable(org);
      for (const [sid, o] of orgs) {
        const k = acked[sid];
        const tr = row(org, o.failed ? 'has-failed' : '', [partner(sid), String(o.targets), String(o.delivered), String(o.progress),
          String(o.withheld), String(o.failed), k ? when(k.at) + ' by ' + k.by : '\u2014']);
        tr.dataset.subscriber = sid;
      }
      $('by-partner').hidden = !orgs.size;

      // Per target.
      const table = $('deliveries');
      emptyTable(table);
      for (const e of d.deliveries) {
        let why = e.reason || '';
        if (e.last_error) why += (why ? ' \u2014 last error: ' : 'last error: ') + e.last_error;
        if (e.retry_at && e.state === 'retrying') why += ' (next try ' + when(e.retry_at) + ')';
        const tr = row(table, 'state-' + e.state, [partner(e.subscriber), e.channel || '\u2014', el('td', 'target', e.target || '\u2014'),
          e.decision + (e.mode ? ' (' + e.mode + ')' : ''), el('strong', 'state', e.state), String(e.attempts),
          el('code', null, e.rule), why, when(e.updated_at)]);
        tr.dataset.subscriber = e.subscriber;
        tr.dataset.state = e.state;
      }
      $('by-target').hidden = !d.deliveries.length;

      const acks = $('acks');
      clear(acks);
      for (const k of d.acks || []) {
        acks.append(el('li', null, partner(k.subscriber), ' acknowledged at ' + when(k.at) + ' (' + k.by + ')', k.note ? ': ' + k.note : ''));
      }
      $('acks-box').hidden = !(d.acks && d.acks.length);
      box.dataset.state = d.done ? 'done' : 'delivering';
      say(msg, d.done ? 'Every delivery has settled.' : 'Deliveries in progress; refreshing every few seconds\u2026', d.done ? 'good' : '');
      return !d.done;
    }

    // released is the state of the review shown while the alert has no
    // deliveries. The review decides for every registered partner, which
    // a large registry makes costly: while the alert stays in that state
    // (for as long as a day, waiting for a second analyst) the page asks
    // only where it stands, and reads the review again once that changes.
    let released = '';

    async function poll() {
      const r = await api('GET', '/v1/alerts/' + enc(id) + '/deliveries');
      // An alert waiting for a second analyst, rejected or expired has no
      // deliveries and never will without a release: show its review.
      if (r.status === 200 && r.data.state === 'quarantined') return showQuarantined(r.data);
      if (r.status === 200 && (!r.data.state || r.data.state === 'published')) return showDeliveries(r.data);
      if (r.status !== 200 && r.status !== 404) {
        say(msg, problem(r), 'bad');
        return r.status !== 401 && r.status !== 403;
      }
      if (released && r.status === 200 && r.data.state === released) return true;
      const rv = await api('GET', '/v1/alerts/' + enc(id) + '/review');
      if (rv.status === 200) { await names; released = rv.data.state; return showRelease(rv.data); }
      if (rv.status !== 404) { say(msg, problem(rv), 'bad'); return rv.status !== 401 && rv.status !== 403; }
      if (Date.now() - since < grace) {
        say(msg, 'Looking for alert ' + id + '\u2026', 'warn');
        return 1000;
      }
      say(msg, 'Not found: Herald holds no alert ' + id + '. If it was published moments ago, check again.', 'bad');
      box.dataset.state = 'not-found';
      retry.hidden = false;
      return false;
    }

    retry.addEventListener('click', function () {
      retry.hidden = true;
      since = Date.now();
      every(POLL_MS, poll);
    });
    every(POLL_MS, poll);
  }

  // ---- partner directory (administrators) ----------------------------------------

  function setupPartners() {
    const msg = $('partners-msg');
    if (needSignIn(msg)) return;
    const table = $('partners');
    $('partner-search').addEventListener('submit', function (ev) { ev.preventDefault(); });
    (async function () {
      say(msg, 'Loading\u2026');
      const res = await loadPartners();
      if (res.error) { say(msg, res.error, 'bad'); return; }
      for (const p of res.list) {
        const name = link('/partners/' + enc(p.id), p.name);
        const channels = [];
        if (p.emails) channels.push(p.emails + ' email');
        if (p.webhooks) channels.push(p.webhooks + ' webhook');
        const tr = row(table, 'status-' + p.status, [el('div', null, name, el('div', 'sub', el('code', null, p.id))), p.kind,
          tlpBadge(p.clearance), (p.sectors || []).join(', ') || 'all', (p.regions || []).join(', ') || 'all',
          channels.join(', ') || 'none', el('span', 'state state-' + p.status, p.status)]);
        tr.dataset.partnerId = p.id;
        tr.dataset.search = [p.id, p.name, p.kind, p.clearance, p.status, (p.sectors || []).join(' '), (p.regions || []).join(' ')].join(' ').toLowerCase();
      }
      table.hidden = !res.list.length;
      function filter() {
        const q = $('partner-q').value.trim().toLowerCase();
        let shown = 0;
        for (const tr of table.tBodies[0].rows) {
          tr.hidden = !!q && !tr.dataset.search.includes(q);
          if (!tr.hidden) shown++;
        }
        say(msg, res.list.length ? shown + ' of ' + res.list.length + ' partners' : 'No partner is registered yet.');
      }
      $('partner-q').addEventListener('input', filter);
      filter();
    })();
  }

  function setupPartner() {
    const box = $('partner');
    if (!box) return;
    const id = box.dataset.partnerId;
    const msg = $('partner-msg');
    if (needSignIn(msg, 'admin')) return;
    $('partner-audit').href = '/audit?object=' + enc('subscriber:' + id);
    let rec = null;
    // The keys and secrets the partner manages itself (…/partner-managed).
    let managed = { keys: [], secrets: [] };

    function showRecord(s) {
      rec = s;
      $('partner-name').textContent = '\u2014 ' + s.name;
      const dl = $('partner-facts');
      clear(dl);
      for (const [k, v] of [['Kind', s.kind], ['Sectors', (s.sectors || []).join(', ') || 'all'], ['Regions', (s.regions || []).join(', ') || 'all'],
        ['Clearance', 'TLP:' + s.clearance], ['Minimum severity', s.min_severity], ['Sensitive (OFFICIAL-SENSITIVE)', s.sensitive ? 'yes' : 'no'],
        ['Accepts test alerts', s.accepts_test ? 'yes' : 'no']]) {
        if (v) dl.append(el('dt', null, k), el('dd', null, v));
      }
      const suspended = s.status === 'suspended';
      $('partner-status').textContent = s.status;
      $('partner-status').className = 'state state-' + s.status;
      $('status-btn').textContent = suspended ? 'Resume' : 'Suspend';
      $('status-btn').dataset.action = suspended ? 'resume' : 'suspend';
      $('status-box').hidden = false;

      const emails = $('partner-emails');
      emptyTable(emails);
      for (const e of s.email || []) {
        // A key the partner uploaded itself is in force over the record's.
        const own = managed.keys.find(function (k) { return k.in_force && k.address.toLowerCase() === e.address.toLowerCase(); });
        let text = e.pgp_key ? 'on file: alerts that must be encrypted are encrypted to it'
          : 'none: alerts that must be encrypted go as a content-free key notice';
        if (own) {
          text = "the partner's own key " + (own.fingerprint || '') + ' (by ' + own.by + ' at ' + when(own.at) + '): ' +
            (own.usable ? 'alerts that must be encrypted are encrypted to it'
              : 'cannot be used (' + (own.problem || 'unusable') + '): alerts that must be encrypted go as a content-free key notice');
        }
        row(emails, null, [e.address, text]);
      }
      $('emails-box').hidden = !(s.email && s.email.length);
    }

    function showWebhooks(states) {
      const s = rec;
      const table = $('partner-webhooks');
      emptyTable(table);
      (s.webhooks || []).forEach(function (w, i) {
        const st = states.find(function (x) { return x.url === w.url; });
        const disabled = st ? st.disabled : !!w.disabled;
        let state = disabled ? 'disabled' : 'enabled';
        if (st) state += ' by ' + st.by + ' at ' + when(st.at) + (st.reason ? ': ' + st.reason : '');
        else if (w.disabled) state += ' in the record';
        const reason = el('input');
        reason.id = 'wh-reason-' + i;
        reason.dataset.field = 'reason';
        reason.maxLength = 200;
        const label = el('label', null, 'Reason', reason);
        label.htmlFor = reason.id;
        const btn = el('button', disabled ? '' : 'danger', disabled ? 'Enable' : 'Disable');
        btn.type = 'submit';
        const out = el('span', 'msg');
        out.setAttribute('aria-live', 'polite');
        const form = el('form', 'inline-form', label, btn, out);
        form.noValidate = true;
        form.addEventListener('submit', async function (ev) {
          ev.preventDefault();
          clearInvalid(form);
          btn.disabled = true;
          const r = await api('POST', '/v1/subscribers/' + enc(id) + '/webhooks/' + i + '/' + (disabled ? 'enable' : 'disable'), { reason: reason.value });
          btn.disabled = false;
          if (r.status !== 200) {
            say(out, problem(r), 'bad');
            if (r.data.errors) reason.setAttribute('aria-invalid', 'true');
            return;
          }
          const others = states.filter(function (x) { return x.url !== w.url; });
          others.push(r.data);
          showWebhooks(others);
        });
        // Secrets the partner rotated itself are in force over the record's.
        const own = managed.secrets.find(function (x) { return x.in_force && x.url === w.url; });
        const secrets = own ? own.secrets : (w.secrets || []);
        const tr = row(table, disabled ? 'state-disabled' : '', [String(i), el('td', 'target', w.url), w.max_tlp ? 'TLP:' + w.max_tlp : '',
          w.format || 'herald', secrets.length + ' (' + secrets.join(', ') + ')' + (own ? " the partner's own (by " + own.by + ' at ' + when(own.at) + ')' : ''),
          state, form]);
        tr.dataset.index = String(i);
      });
      $('webhooks-box').hidden = !(s.webhooks && s.webhooks.length);
    }

    $('status-form').addEventListener('submit', async function (ev) {
      ev.preventDefault();
      const out = $('status-form-msg');
      const action = $('status-btn').dataset.action;
      const reason = $('status-reason');
      reason.removeAttribute('aria-invalid');
      $('status-btn').disabled = true;
      const r = await api('POST', '/v1/subscribers/' + enc(id) + '/' + action, { reason: reason.value });
      $('status-btn').disabled = false;
      if (r.status !== 200) {
        say(out, problem(r), 'bad');
        if (r.data.errors) { reason.setAttribute('aria-invalid', 'true'); reason.focus(); }
        return;
      }
      showRecord(r.data);
      reason.value = '';
      say(out, (action === 'suspend' ? 'Suspended: it receives nothing until resumed.' : 'Resumed.') + ' Recorded in the audit trail.', 'good');
    });

    (async function () {
      const r = await api('GET', '/v1/subscribers/' + enc(id));
      if (r.status !== 200) {
        say(msg, r.status === 404 ? 'Not found: no partner ' + id + ' is registered.' : problem(r), 'bad');
        return;
      }
      say(msg, '');
      const m = await api('GET', '/v1/subscribers/' + enc(id) + '/partner-managed');
      if (m.status === 200) managed = m.data;
      showRecord(r.data);
      if (m.status !== 200) say(msg, "Cannot load the partner's own keys and secrets: " + problem(m), 'bad');
      const e = await api('GET', '/v1/subscribers/' + enc(id) + '/endpoints');
      showWebhooks(e.status === 200 ? e.data.endpoints : []);
      if (e.status !== 200) say(msg, 'Cannot load the endpoint states: ' + problem(e), 'bad');
    })();
  }

  // ---- audit trail (administrators) -----------------------------------------------

  function detailText(details) {
    if (!details) return '';
    return Object.keys(details).sort().map(function (k) {
      const v = details[k];
      return k + ': ' + (typeof v === 'string' ? v : Array.isArray(v) ? v.join(', ') : JSON.stringify(v));
    }).join('; ');
  }

  function objectLink(obj) {
    const m = /^(alert|subscriber):(.+)$/.exec(obj || '');
    if (!m) return el('code', null, obj || '');
    return link('/' + (m[1] === 'alert' ? 'status' : 'partners') + '/' + enc(m[2]), el('code', null, obj));
  }

  function setupAudit() {
    const msg = $('audit-msg');
    if (needSignIn(msg, 'admin')) return;
    const form = $('audit-filters');
    const table = $('audit');
    const older = $('audit-older');
    const q = new URLSearchParams();
    for (const k of ['actor', 'action', 'object']) {
      const v = form.elements[k].value.trim();
      if (v) q.set(k, v);
    }
    for (const k of ['since', 'until']) {
      const v = new URLSearchParams(window.location.search).get(k) || form.elements[k].value;
      if (v) q.set(k, utc(v.trim()));
    }
    let next = '';

    async function load(before) {
      const p = new URLSearchParams(q);
      if (before) p.set('before', before);
      say(msg, 'Loading\u2026');
      const r = await api('GET', '/v1/audit?' + p.toString());
      if (r.status !== 200) {
        say(msg, authProblem(r) || r.data.error, 'bad');
        if (r.data.errors) showErrors($('audit-errors'), r.data, form);
        return;
      }
      if (!before) emptyTable(table);
      for (const a of r.data.entries) {
        const tr = row(table, a.outcome === 'refused' ? 'state-refused' : '', [when(a.at), a.actor, el('code', null, a.action),
          objectLink(a.object), a.outcome || 'ok', a.reason || '', detailText(a.details)]);
        tr.dataset.action = a.action;
        tr.dataset.object = a.object;
      }
      next = r.data.next || '';
      older.hidden = !next;
      const n = table.tBodies[0].rows.length;
      table.hidden = !n;
      say(msg, n ? n + ' entries' + (next ? ' (more below)' : '') : 'No entry matches these filters.');
    }
    older.addEventListener('click', function () { load(next); });
    load('');
  }

  document.addEventListener('DOMContentLoaded', async function () {
    setupSignIn();
    const who = await whoami();
    me = who && !who.error ? who : null;
    showSignedIn();
    if (who && who.error) $('whoami').textContent = who.error;
    const setup = {
      desk: setupDesk, compose: setupCompose, status: setupStatus,
      partners: setupPartners, partner: setupPartner, audit: setupAudit
    }[document.body.dataset.page];
    if (setup) setup();
  });
})();
