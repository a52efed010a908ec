/* statecore ui: runs, history and one run's Gantt, graph, details and time travel.
   Every text from the log is written with textContent, never parsed as markup. */
(function () {
  'use strict';
  var COLOURS = {
    Success: '#2e9e44', Cached: '#1f9c8f', Skipped: '#9aa0a6', Mapped: '#7fb3e6',
    Failed: '#d93025', TriggerFailed: '#a50e0e', ValidationFailed: '#c5221f',
    TimedOut: '#e8710a', Retrying: '#f29900', Running: '#1a73e8', Looped: '#4285f4',
    Pending: '#9334e6', Scheduled: '#b39ddb', Paused: '#f9ab00', Resume: '#fdd663',
    Cancelled: '#5f6368'
  };
  var ROW = 20, LABEL = 250;
  var app = document.getElementById('app');
  var crumbs = document.getElementById('crumbs');
  var embedded = document.getElementById('statecore-data');
  var token = new URLSearchParams(location.search).get('token');
  var timer = null;

  function colour(s) { return COLOURS[s] || '#80868b'; }
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'cls') e.className = attrs[k];
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    });
    (kids || []).forEach(function (k) { if (k != null) e.appendChild(typeof k === 'string' ? document.createTextNode(k) : k); });
    return e;
  }
  function badge(s) { var b = el('span', {cls: 'state', text: s, 'data-state': s}); b.style.background = colour(s); return b; }
  function iso(ns) { return ns == null ? '' : new Date(ns / 1e6).toISOString().replace('T', ' ').replace('Z', ''); }
  function dur(ns) {
    if (ns == null) return '';
    var s = ns / 1e9;
    if (s < 1) return (s * 1000).toFixed(1) + 'ms';
    if (s < 120) return s.toFixed(2) + 's';
    return Math.floor(s / 60) + 'm' + (s % 60).toFixed(1) + 's';
  }
  function api(path, opts) {
    if (token) path += (path.indexOf('?') < 0 ? '?' : '&') + 'token=' + encodeURIComponent(token);
    return fetch(path, opts).then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.statusText); return j; });
    });
  }
  function fail(err) { app.textContent = ''; app.appendChild(el('p', {cls: 'error', id: 'error', text: String(err.message || err)})); }
  function link(href, text) { return el('a', {href: href, text: text}); }
  function q(obj) {
    var p = new URLSearchParams();
    Object.keys(obj).forEach(function (k) { if (obj[k] !== '' && obj[k] != null) p.set(k, obj[k]); });
    return p.toString();
  }

  /* ---------- runs list ---------- */
  function runsPage(params) {
    crumbs.textContent = '';
    var f = {flow: params.get('flow') || '', state: params.get('state') || '',
             since: params.get('since') || '', q: params.get('q') || '', before: params.get('before') || ''};
    var flow = el('input', {id: 'f-flow', placeholder: 'flow', value: f.flow});
    var state = el('select', {id: 'f-state'}, [el('option', {value: '', text: 'any state'})].concat(
      Object.keys(COLOURS).map(function (s) { return el('option', {value: s, text: s}); })));
    state.value = f.state;
    var since = el('input', {id: 'f-since', placeholder: 'since (7d, ISO)', value: f.since});
    var search = el('input', {id: 'f-q', placeholder: 'search run id / flow', value: f.q});
    function go() { location.hash = '#/?' + q({flow: flow.value, state: state.value, since: since.value, q: search.value}); }
    [flow, since, search].forEach(function (i) { i.addEventListener('keydown', function (e) { if (e.key === 'Enter') go(); }); });
    state.addEventListener('change', go);
    app.textContent = '';
    app.appendChild(el('h1', {text: 'Runs'}));
    app.appendChild(el('div', {cls: 'filters'}, [flow, state, since, search, el('button', {id: 'f-go', text: 'filter', onclick: go})]));
    var table = el('table', {cls: 'list', id: 'runs'});
    table.appendChild(el('tr', null, ['run', 'flow', 'state', 'start', 'duration', 'trigger', 'parameters'].map(function (h) { return el('th', {text: h}); })));
    app.appendChild(table);
    var more = el('p');
    app.appendChild(more);
    api('api/runs?' + q({flow: f.flow, state: f.state, since: f.since, q: f.q, before: f.before})).then(function (page) {
      page.runs.forEach(function (r) {
        table.appendChild(el('tr', {cls: 'run', 'data-run': r.run_id, 'data-state': r.state}, [
          el('td', null, [link('#/run/' + encodeURIComponent(r.run_id), r.run_id)]),
          el('td', null, [link('#/history/' + encodeURIComponent(r.flow), r.flow)]),
          el('td', null, [badge(r.state)]), el('td', {text: iso(r.started)}),
          el('td', {text: dur(r.duration)}), el('td', {text: r.trigger}),
          el('td', {cls: 'params', text: r.parameters ? JSON.stringify(r.parameters) : ''})]));
      });
      if (!page.runs.length) app.appendChild(el('p', {cls: 'muted', id: 'no-runs', text: 'no runs match'}));
      if (page.next_before) {
        var g = Object.assign({}, f); g.before = page.next_before;
        more.appendChild(link('#/?' + q(g), 'older runs →'));
        more.lastChild.id = 'older';
      }
      document.body.setAttribute('data-ready', 'runs');
    }).catch(fail);
  }

  /* ---------- history ---------- */
  function chart(points, width, height) {
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('width', width); svg.setAttribute('height', height);
    var max = Math.max.apply(null, points.map(function (p) { return p.duration || 0; }).concat([1]));
    var w = width / Math.max(points.length, 1);
    points.forEach(function (p, i) {
      var h = Math.max(1, (p.duration || 0) / max * (height - 2));
      var r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', i * w); r.setAttribute('y', height - h);
      r.setAttribute('width', Math.max(1, w - 1)); r.setAttribute('height', h);
      r.setAttribute('fill', colour(p.state));
      var t = document.createElementNS(ns, 'title');
      t.textContent = (p.run_id || '') + ' ' + p.state + ' ' + dur(p.duration);
      r.appendChild(t); svg.appendChild(r);
    });
    return svg;
  }
  function pct(x) { return x == null ? '' : (x * 100).toFixed(0) + '%'; }
  function historyPage(flowName) {
    crumbs.textContent = ' / history of ' + flowName;
    api('api/flows/' + encodeURIComponent(flowName) + '/history?last=50').then(function (h) {
      app.textContent = '';
      app.appendChild(el('h1', {text: 'History of ' + h.flow}));
      app.appendChild(el('p', {id: 'hist-summary', text: h.runs.length + ' runs · median ' + dur(h.median) + ' · p95 ' + dur(h.p95) + ' · failure rate ' + pct(h.failure_rate)}));
      app.appendChild(chart(h.runs, 600, 80));
      var table = el('table', {cls: 'list', id: 'task-history'});
      table.appendChild(el('tr', null, ['task', 'attempts', 'median', 'p95', 'failure rate', 'last runs'].map(function (x) { return el('th', {text: x}); })));
      h.tasks.forEach(function (t) {
        table.appendChild(el('tr', {cls: 'task'}, [el('td', {text: t.name}), el('td', {text: String(t.points.length)}),
          el('td', {text: dur(t.median)}), el('td', {text: dur(t.p95)}), el('td', {text: pct(t.failure_rate)}),
          el('td', null, [chart(t.points, 200, 24)])]));
      });
      app.appendChild(el('h2', {text: 'Tasks'}));
      app.appendChild(table);
      document.body.setAttribute('data-ready', 'history');
    }).catch(fail);
  }

  /* ---------- one run ---------- */
  var run = null;
  function runPage(runId, until) {
    crumbs.textContent = ' / run ' + runId;
    var path = 'api/runs/' + encodeURIComponent(runId) + (until ? '?until=' + until : '');
    var load = embedded ? Promise.resolve(JSON.parse(embedded.textContent)) : api(path);
    load.then(function (doc) { drawRun(doc, until); }).catch(fail);
  }

  function buildRows(doc, st) {
    // one row per task; a mapped task's children follow it only when expanded
    var byTask = {}, kids = {};
    doc.attempts.forEach(function (a, i) {
      var k = a[1] < 0 ? byTask : (kids[a[0]] = kids[a[0]] || {});
      var id = a[1] < 0 ? a[0] : a[1];
      (k[id] = k[id] || []).push(i);
    });
    var rows = [], term = st.search.toLowerCase();
    doc.tasks.forEach(function (t, ti) {
      if (term && t.name.toLowerCase().indexOf(term) < 0 && t.key.toLowerCase().indexOf(term) < 0) return;
      var ok = !st.state || t.state === st.state || (t.child_states[st.state] || 0) > 0 ||
        (byTask[ti] || []).some(function (i) { return doc.states[doc.attempts[i][5]] === st.state; });
      if (!ok) return;
      rows.push({task: ti, index: -1, bars: byTask[ti] || []});
      if (t.children && st.open[ti] && !t.children_lazy) {
        var kb = kids[ti] || {};
        for (var c = 0; c < t.children; c++) {
          var cs = doc.states[t.child_state[c]];
          if (st.state && cs !== st.state && !(kb[c] || []).some(function (i) { return doc.states[doc.attempts[i][5]] === st.state; })) continue;
          rows.push({task: ti, index: c, bars: kb[c] || []});
        }
      }
    });
    return rows;
  }

  function drawRun(doc, until) {
    var prevState = run && run.doc.run_id === doc.run_id ? run.st : null;
    // attempt rows are ns after doc.started; everything drawn is on that scale
    var base = doc.started || 0, t0 = 0, t1 = Math.max((doc.ended || doc.last_ts || base) - base, 1);
    var st = prevState || {open: {}, state: '', search: '', v0: t0, v1: t1, sel: null};
    if (!prevState) { st.v0 = t0; st.v1 = t1; }
    run = {doc: doc, st: st, until: until};
    app.textContent = '';
    document.body.setAttribute('data-run-id', doc.run_id);
    document.body.setAttribute('data-flow-state', doc.state);
    document.body.setAttribute('data-head', String(doc.head));
    document.body.setAttribute('data-attempt-count', String(doc.attempts.length));
    app.appendChild(el('h1', {id: 'run-title'}, [doc.flow + ' ', badge(doc.state)]));
    if (doc.damage) app.appendChild(el('p', {cls: 'error', id: 'damage', text: 'The log is damaged from event ' + doc.damage.first_bad_seq + ' on: ' + doc.damage.error + '. Shown: events 1 to ' + doc.head + '.'}));
    if (doc.problems.length) app.appendChild(el('ul', {cls: 'error', id: 'problems'}, doc.problems.map(function (p) { return el('li', {text: p}); })));
    var meta = el('dl', {cls: 'meta'});
    [['run', doc.run_id], ['flow state rule', doc.rule || ''], ['trigger', doc.trigger + (doc.sessions.some(function (s) { return s.why === 'resume'; }) ? ' (resumed)' : '')],
     ['started', iso(doc.started)], [doc.ended ? 'ended' : 'last event', iso(doc.ended || doc.last_ts) + ' (' + dur(t1 - t0) + ')'],
     ['parameters', JSON.stringify(doc.parameters)],
     ['reference tasks', doc.reference.map(function (r) { return r.name + ' ' + r.state; }).join(', ') || 'none']
    ].concat(doc.parent_run ? [['rerun of', doc.parent_run]] : []).forEach(function (p) {
      meta.appendChild(el('dt', {text: p[0]})); meta.appendChild(el('dd', {text: p[1]}));
    });
    app.appendChild(meta);

    // time travel and live
    var slider = el('input', {type: 'range', id: 'travel', min: '1', max: String(doc.log_head || doc.head), value: String(doc.head)});
    var told = el('span', {id: 'travel-label', text: until ? 'as of event ' + doc.head + ' of ' + doc.log_head : 'live: event ' + doc.head});
    slider.addEventListener('input', function () { told.textContent = 'event ' + slider.value + ' of ' + slider.max; });
    slider.addEventListener('change', function () {
      var n = parseInt(slider.value, 10);
      location.hash = '#/run/' + encodeURIComponent(doc.run_id) + (n < (doc.log_head || doc.head) ? '?until=' + n : '');
    });
    var bar = el('div', {cls: 'travel'}, [el('span', {text: 'time travel'}), slider, told]);
    if (!embedded) {
      if (until) bar.appendChild(link('#/run/' + encodeURIComponent(doc.run_id), 'back to now'));
      if (!doc.finished && !until) bar.appendChild(el('button', {id: 'cancel', text: 'cancel run…', onclick: function () {
        if (!window.confirm('Cancel run ' + doc.run_id + '? Its driver starts no more tasks.')) return;
        api('api/runs/' + encodeURIComponent(doc.run_id) + '/cancel', {method: 'POST'}).then(function (r) { told.textContent = r.message; }).catch(function (e) { told.textContent = e.message; });
      }}));
    }
    if (!embedded) app.appendChild(bar);

    // toolbar: legend as state filter, search, zoom
    var legend = el('div', {cls: 'legend', id: 'legend'});
    var shown = {};
    doc.attempts.forEach(function (a) { shown[doc.states[a[5]]] = 1; });
    doc.tasks.forEach(function (t) { shown[t.state] = 1; Object.keys(t.child_states).forEach(function (s) { shown[s] = 1; }); });
    Object.keys(shown).forEach(function (s) {
      var i = el('i'); i.style.background = colour(s);
      legend.appendChild(el('span', {'data-state': s, cls: st.state && st.state !== s ? 'off' : '', onclick: function () { st.state = st.state === s ? '' : s; redraw(); }}, [i, s]));
    });
    var search = el('input', {id: 'task-search', placeholder: 'search task', value: st.search});
    search.addEventListener('input', function () { st.search = search.value; redraw(); });
    function zoom(f, at) {
      var c = at == null ? (st.v0 + st.v1) / 2 : at, span = (st.v1 - st.v0) * f;
      span = Math.max(span, 1000); st.v0 = c - (c - st.v0) * f; st.v1 = st.v0 + span; paint();
    }
    app.appendChild(el('div', {cls: 'toolbar'}, [legend, search,
      el('button', {id: 'zoom-in', text: '+', onclick: function () { zoom(0.5); }}),
      el('button', {id: 'zoom-out', text: '−', onclick: function () { zoom(2); }}),
      el('button', {id: 'zoom-reset', text: 'fit', onclick: function () { st.v0 = t0; st.v1 = t1; paint(); }}),
      el('button', {id: 'expand-all', text: 'expand maps', onclick: function () { doc.tasks.forEach(function (t, i) { if (t.children) { st.open[i] = true; children(i); } }); redraw(); }}),
      el('button', {id: 'collapse-all', text: 'collapse maps', onclick: function () { st.open = {}; redraw(); }})]));

    var sessions = el('div', {cls: 'sessions', id: 'sessions', title: 'driver sessions'});
    var axis = el('div', {cls: 'axis', id: 'axis'});
    var gantt = el('div', {id: 'gantt'});
    var inner = el('div', {cls: 'inner'});
    gantt.appendChild(inner);
    var cols = el('div', {cls: 'cols'});
    var left = el('div', null, [sessions, axis, gantt]);
    var details = el('div', {id: 'details'}, [el('p', {cls: 'muted', text: 'click a task or a bar for its attempts, result, traceback and logs'})]);
    cols.appendChild(left); cols.appendChild(el('div', null, [details, el('h2', {text: 'Dependency graph'}), graph(doc)]));
    app.appendChild(cols);
    var logs = el('table', {cls: 'list', id: 'logs'});
    doc.logs.slice(0, 2000).forEach(function (l) {
      logs.appendChild(el('tr', {cls: 'log'}, [el('td', {text: '+' + dur(l.ts - base)}), el('td', {text: l.level}), el('td', {text: l.source}), el('td', {cls: 'msg', text: l.message})]));
    });
    app.appendChild(el('h2', {text: 'Logs and notes (' + doc.logs.length + ')'}));
    app.appendChild(logs);
    var tip = document.getElementById('tip') || document.body.appendChild(el('div', {id: 'tip'}));

    var rows = [];
    function redraw() {
      rows = buildRows(doc, st);
      inner.style.height = (rows.length * ROW) + 'px';
      Array.prototype.forEach.call(legend.children, function (s) { s.className = st.state && st.state !== s.getAttribute('data-state') ? 'off' : ''; });
      paint();
    }
    function x(ns, w) { return (ns - st.v0) / (st.v1 - st.v0) * w; }
    function paint() {
      var w = Math.max(gantt.clientWidth - LABEL, 50);
      sessions.textContent = '';
      doc.sessions.forEach(function (s, i) {
        var end = s.ended == null ? t1 : s.ended - base;
        var d = el('div', {cls: 'session' + (s.reason === 'crashed' ? ' crashed' : ''), 'data-reason': s.reason || 'open',
          text: s.why + ' #' + (i + 1) + (s.reason ? ' · ' + s.reason : '')});
        d.style.left = x(s.started - base, w) + 'px'; d.style.width = Math.max(2, x(end, w) - x(s.started - base, w)) + 'px';
        d.title = s.owner + ' ' + s.why + ' ' + iso(s.started) + ' → ' + (s.ended ? iso(s.ended) : 'open') + ' ' + (s.reason || '');
        sessions.appendChild(d);
      });
      axis.textContent = '';
      for (var k = 0; k <= 5; k++) {
        var ns = st.v0 + (st.v1 - st.v0) * k / 5;
        var sp = el('span', {text: '+' + dur(ns - t0)}); sp.style.left = Math.min(k / 5 * w, w - 50) + 'px'; axis.appendChild(sp);
      }
      var first = Math.max(0, Math.floor(gantt.scrollTop / ROW) - 5);
      var last = Math.min(rows.length, first + Math.ceil(gantt.clientHeight / ROW) + 10);
      inner.textContent = '';
      for (var r = first; r < last; r++) inner.appendChild(rowEl(rows[r], r, w));
    }
    function rowEl(row, r, w) {
      var t = doc.tasks[row.task];
      var child = row.index >= 0;
      var name = child ? t.name + '[' + row.index + ']' : t.name;
      var sel = st.sel && st.sel.task === row.task && st.sel.index === row.index;
      var d = el('div', {cls: 'grow' + (child ? ' child' : '') + (sel ? ' sel' : ''), 'data-task': t.key, 'data-index': child ? String(row.index) : ''});
      d.style.top = (r * ROW) + 'px';
      var label = el('div', {cls: 'label', title: name});
      if (!child && t.children) {
        label.appendChild(el('span', {cls: 'toggle', text: st.open[row.task] ? '▾' : '▸'}));
        label.classList.add('map');
      } else if (!child) label.appendChild(el('span', {cls: 'toggle', text: ''}));
      label.appendChild(document.createTextNode(name));
      if (!child && t.children) {
        label.appendChild(el('span', {cls: 'counts', text: Object.keys(t.child_states).map(function (s) { return t.child_states[s] + ' ' + s; }).join(' · ')}));
      }
      label.addEventListener('click', function () {
        if (!child && t.children) { st.open[row.task] = !st.open[row.task]; if (st.open[row.task]) children(row.task); redraw(); }
        select(row);
      });
      d.appendChild(label);
      var lane = el('div', {cls: 'lane'});
      var state = child ? doc.states[t.child_state[row.index]] : t.state;
      if (!row.bars.length) {
        var m = el('div', {cls: 'marker', 'data-state': state, title: name + ': ' + state + ' (did not run)'});
        m.style.left = Math.max(0, x(doc.last_ts - base, w)) + 'px'; m.style.background = colour(state);
        if (t.children && !child) { m.style.left = '4px'; }
        lane.appendChild(m);
      }
      row.bars.forEach(function (i) {
        var a = doc.attempts[i], s = doc.states[a[5]], end = a[4] == null ? t1 : a[4];
        var b = el('div', {cls: 'attempt' + (a[4] == null ? ' open' : ''), 'data-state': s, 'data-attempt': String(a[2]),
          'data-start': String(a[3]), 'data-end': a[4] == null ? '' : String(a[4]), 'data-duration': a[4] == null ? '' : String(a[4] - a[3])});
        b.style.left = x(a[3], w) + 'px'; b.style.width = Math.max(2, x(end, w) - x(a[3], w)) + 'px';
        b.style.background = colour(s);
        b.addEventListener('mouseenter', function (ev) {
          tip.textContent = name + ' attempt ' + a[2] + '\n' + s + '\nstart +' + dur(a[3]) + '\n' + (a[4] == null ? 'still open' : 'duration ' + dur(a[4] - a[3])) + (a[6] ? '\n' + a[6] : '');
          tip.style.display = 'block'; tip.style.left = (ev.clientX + 12) + 'px'; tip.style.top = (ev.clientY + 12) + 'px';
        });
        b.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
        b.addEventListener('click', function (ev) { ev.stopPropagation(); select(row); });
        lane.appendChild(b);
      });
      d.appendChild(lane);
      return d;
    }
    function select(row) {
      st.sel = {task: row.task, index: row.index};
      paint();
      var t = doc.tasks[row.task];
      details.textContent = 'loading…';
      if (embedded) { details.textContent = t.name + ': ' + t.state + (t.message ? ' — ' + t.message : ''); return; }
      var path = 'api/runs/' + encodeURIComponent(doc.run_id) + '/task?' + q({key: t.key, index: row.index >= 0 ? row.index : '', until: until || ''});
      api(path).then(function (d) { showDetails(d); }).catch(function (e) { details.textContent = e.message; });
    }
    function showDetails(d) {
      details.textContent = '';
      details.appendChild(el('h2', {id: 'details-title'}, [(d.index == null ? d.name : d.name + '[' + d.index + ']') + ' ', badge(d.state)]));
      if (d.message) details.appendChild(el('p', {cls: 'message', text: d.message}));
      if (d.result != null) details.appendChild(el('p', null, ['result: ', el('code', {text: d.result})]));
      var at = el('table', {cls: 'list', id: 'details-attempts'});
      at.appendChild(el('tr', null, ['#', 'state', 'start', 'duration', 'message'].map(function (h) { return el('th', {text: h}); })));
      d.attempts.forEach(function (a) {
        at.appendChild(el('tr', null, [el('td', {text: String(a.number)}), el('td', null, [badge(a.state)]), el('td', {text: '+' + dur(a.start - base)}), el('td', {text: a.end == null ? 'open' : dur(a.end - a.start)}), el('td', {text: a.message || ''})]));
      });
      details.appendChild(at);
      if (d.traceback) {
        var tb = el('details', {id: 'traceback'}, [el('summary', {text: 'traceback'}), el('pre', {cls: 'tb', text: d.traceback})]);
        details.appendChild(tb);
      }
      if (d.logs.length) {
        var lt = el('table', {cls: 'list', id: 'details-logs'});
        d.logs.forEach(function (l) { lt.appendChild(el('tr', null, [el('td', {text: l.level}), el('td', {cls: 'msg', text: l.message})])); });
        details.appendChild(lt);
      }
    }
    gantt.addEventListener('scroll', paint);
    gantt.addEventListener('wheel', function (ev) {
      if (!ev.ctrlKey && !ev.shiftKey) return;
      ev.preventDefault();
      var w = Math.max(gantt.clientWidth - LABEL, 50), r = gantt.getBoundingClientRect();
      var at = st.v0 + (ev.clientX - r.left - LABEL) / w * (st.v1 - st.v0);
      zoom(ev.deltaY > 0 ? 1.25 : 0.8, at);
    }, {passive: false});
    var drag = null;
    gantt.addEventListener('mousedown', function (ev) { drag = {x: ev.clientX, v0: st.v0, v1: st.v1}; });
    window.addEventListener('mouseup', function () { drag = null; });
    gantt.addEventListener('mousemove', function (ev) {
      if (!drag) return;
      var w = Math.max(gantt.clientWidth - LABEL, 50), dx = (ev.clientX - drag.x) / w * (drag.v1 - drag.v0);
      st.v0 = drag.v0 - dx; st.v1 = drag.v1 - dx; paint();
    });
    // a big map's children's attempts are not in the document: asked for when it opens
    function children(ti) {
      var t = doc.tasks[ti];
      if (!t.children_lazy || embedded || t.loading) return;
      t.loading = true;
      var path = 'api/runs/' + encodeURIComponent(doc.run_id) + '/children?' + q({key: t.key, until: until || ''});
      api(path).then(function (r) {
        r.attempts.forEach(function (a) {
          var code = doc.states.indexOf(a[5]);
          if (code < 0) { code = doc.states.length; doc.states.push(a[5]); }
          a[0] = ti; a[5] = code; doc.attempts.push(a);
        });
        t.children_lazy = false;
        document.body.setAttribute('data-attempt-count', String(doc.attempts.length));
        redraw();
      }).catch(function (e) { t.loading = false; details.textContent = e.message; });
    }
    Object.keys(st.open).forEach(function (i) { if (st.open[i] && doc.tasks[i]) children(+i); });
    redraw();
    document.body.setAttribute('data-ready', 'run');
    if (!embedded && !until && !doc.finished) live(doc);
  }

  function live(doc) {
    timer = setTimeout(function () {
      api('api/runs/' + encodeURIComponent(doc.run_id) + '/head').then(function (h) {
        if (!run || run.doc.run_id !== doc.run_id || run.until) return;
        if (h.head !== doc.head) runPage(doc.run_id, null); else live(doc);
      }).catch(function () { live(doc); });
    }, 1000);
  }

  function graph(doc) {
    var ns = 'http://www.w3.org/2000/svg';
    var n = doc.tasks.length;
    if (n > 400) return el('p', {cls: 'muted', text: n + ' tasks: too many to draw'});
    var idx = {}; doc.tasks.forEach(function (t, i) { idx[t.key] = i; });
    var depth = doc.tasks.map(function () { return 0; });
    var edges = (doc.edges || []).map(function (e) {
      var a = Array.isArray(e) ? e[0] : (e.upstream || e.from), b = Array.isArray(e) ? e[1] : (e.downstream || e.to);
      return [typeof a === 'number' ? a : idx[a], typeof b === 'number' ? b : idx[b]];
    }).filter(function (e) { return e[0] != null && e[1] != null; });
    for (var pass = 0; pass < n; pass++) {
      var moved = false;
      edges.forEach(function (e) { if (depth[e[1]] <= depth[e[0]]) { depth[e[1]] = depth[e[0]] + 1; moved = true; } });
      if (!moved) break;
    }
    var cols = {}, pos = [];
    depth.forEach(function (d, i) { cols[d] = (cols[d] || 0) + 1; pos[i] = [d, cols[d] - 1]; });
    var maxRows = Math.max.apply(null, Object.keys(cols).map(function (k) { return cols[k]; }).concat([1]));
    var W = 130, H = 34;
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('id', 'graph');
    svg.setAttribute('width', (Math.max.apply(null, depth.concat([0])) + 1) * W + 10);
    svg.setAttribute('height', maxRows * H + 10);
    edges.forEach(function (e) {
      var l = document.createElementNS(ns, 'line');
      l.setAttribute('x1', pos[e[0]][0] * W + 115); l.setAttribute('y1', pos[e[0]][1] * H + 17);
      l.setAttribute('x2', pos[e[1]][0] * W + 5); l.setAttribute('y2', pos[e[1]][1] * H + 17);
      l.setAttribute('stroke', '#9aa0a6'); svg.appendChild(l);
    });
    doc.tasks.forEach(function (t, i) {
      var g = document.createElementNS(ns, 'g');
      g.setAttribute('class', 'node'); g.setAttribute('data-state', t.state);
      var r = document.createElementNS(ns, 'rect');
      r.setAttribute('x', pos[i][0] * W + 5); r.setAttribute('y', pos[i][1] * H + 5);
      r.setAttribute('width', 110); r.setAttribute('height', 24); r.setAttribute('rx', 4);
      r.setAttribute('fill', colour(t.state));
      var tx = document.createElementNS(ns, 'text');
      tx.setAttribute('x', pos[i][0] * W + 10); tx.setAttribute('y', pos[i][1] * H + 21);
      tx.setAttribute('fill', '#fff');
      tx.textContent = t.name.length > 16 ? t.name.slice(0, 7) + '…' + t.name.slice(-7) : t.name;
      var ti = document.createElementNS(ns, 'title'); ti.textContent = t.name + ': ' + t.state;
      g.appendChild(r); g.appendChild(tx); g.appendChild(ti); svg.appendChild(g);
    });
    return svg;
  }

  function route() {
    if (timer) { clearTimeout(timer); timer = null; }
    document.body.removeAttribute('data-ready');
    if (embedded) { runPage(null, null); return; }
    var h = location.hash.replace(/^#/, '') || '/';
    var qi = h.indexOf('?');
    var path = qi < 0 ? h : h.slice(0, qi), params = new URLSearchParams(qi < 0 ? '' : h.slice(qi + 1));
    var m;
    if ((m = path.match(/^\/run\/(.+)$/))) runPage(decodeURIComponent(m[1]), parseInt(params.get('until') || '0', 10) || null);
    else if ((m = path.match(/^\/history\/(.+)$/))) historyPage(decodeURIComponent(m[1]));
    else runsPage(params);
  }
  window.addEventListener('hashchange', route);
  route();
})();
