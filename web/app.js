// gpuorch dashboard: plain JavaScript, no framework, no other origin (the server's
// Content-Security-Policy allows only its own files and API). Three views of the REST API
// (docs/api.md), refreshed by polling every PERIOD_S seconds. The token comes from the URL
// fragment (#token=..., never sent to the server) or the login form, and lives in this
// tab's sessionStorage. Every value from the API is inserted as text, never as markup.
'use strict';

const PERIOD_S = 3;
const TOKEN_KEY = 'gpuorch.token';
const NODE_PAGE = 1000;      // nodes per request; the grid shows at most MAX_NODES
const MAX_NODES = 2000;
const WORKLOAD_PAGE = 1000;  // workloads per request; a list shows at most MAX_WORKLOADS
const MAX_WORKLOADS = 2000;
const DASH = '\u2013';       // what a missing value shows

// ---- Small DOM helpers.

// h('div', {class: 'x', title: 't'}, child, 'text', ...): children are nodes or text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'onclick') el.addEventListener('click', v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function show(el, visible) { el.hidden = !visible; }

// ---- Formatting.

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

function gpus(milli) {
  if (!isNum(milli)) return DASH;
  const g = milli / 1000;
  return Number.isInteger(g) ? String(g) : g.toFixed(2).replace(/0+$/, '');
}

function pct(v) { return isNum(v) ? Math.round(v) + '%' : DASH; }

function mib(v) {
  if (!isNum(v)) return DASH;
  return v >= 1024 ? (v / 1024).toFixed(v >= 10240 ? 0 : 1) + ' GiB' : v + ' MiB';
}

// "40/80 GiB": a GPU's memory used of its total, short enough for a grid cell.
function memPair(used, total) {
  const gib = (v) => {
    const g = v / 1024;
    return g >= 10 || Number.isInteger(g) ? String(Math.round(g)) : g.toFixed(1);
  };
  return `${isNum(used) ? gib(used) : DASH}/${isNum(total) ? gib(total) : DASH} GiB`;
}

function ago(iso) {
  if (!iso) return DASH;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return DASH;
  const s = Math.round((Date.now() - t) / 1000);
  const abs = Math.abs(s);
  const text = abs < 60 ? abs + 's' : abs < 3600 ? Math.floor(abs / 60) + 'm'
             : abs < 86400 ? Math.floor(abs / 3600) + 'h' : Math.floor(abs / 86400) + 'd';
  return s >= 0 ? text + ' ago' : 'in ' + text;
}

// A stable colour per queue: hues spread by the golden angle over a hash of the name.
function queueColour(queue) {
  let hash = 0;
  for (const c of queue) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${Math.round((hash % 97) * 137.508) % 360}, 62%, 52%)`;
}

// Utilization 0..100: grey-blue (idle) to green to orange-red (saturated).
function utilColour(v) {
  const x = Math.max(0, Math.min(100, v));
  return `hsl(${Math.round(210 - x * 1.9)}, 65%, ${Math.round(62 - x * 0.12)}%)`;
}

// ---- Token and API.

function fragmentParams() { return new URLSearchParams(location.hash.slice(1)); }

function setFragment(params) {
  const text = params.toString();
  history.replaceState(null, '', location.pathname + location.search + (text ? '#' + text : ''));
}

// A token in the fragment goes to sessionStorage and out of the address bar (and history).
function takeTokenFromFragment() {
  const p = fragmentParams();
  if (!p.has('token')) return;
  sessionStorage.setItem(TOKEN_KEY, p.get('token').trim());
  p.delete('token');
  setFragment(p);
}

// null: no token chosen yet (login form); '': none (a server without authentication).
function token() { return sessionStorage.getItem(TOKEN_KEY); }

class ApiError extends Error {
  constructor(status, message, path) {
    super(message);
    this.status = status;
    this.path = path;
  }
}

// Every failed request is listed in the footer (#failures), so that it is visible to the
// user and to the tests that drive this page.
function recordFailure(path, text) {
  const list = $('failures');
  const n = Number(list.dataset.count) + 1;
  list.dataset.count = String(n);
  list.prepend(h('li', {}, `${new Date().toLocaleTimeString()} ${path}: ${text}`));
  while (list.children.length > 5) list.lastChild.remove();
  $('failures-label').textContent = `${n} failed request${n === 1 ? '' : 's'}:`;
}

async function api(path) {
  const headers = {Accept: 'application/json'};
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  let res;
  try {
    res = await fetch(path, {headers, cache: 'no-store', credentials: 'omit'});
  } catch (e) {
    recordFailure(path, 'no answer (' + e.message + ')');
    throw new ApiError(0, 'the server did not answer', path);
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const message = body && body.error && body.error.message ? body.error.message : res.statusText;
    recordFailure(path, res.status + ' ' + message);
    const err = new ApiError(res.status, message, path);
    err.retryAfter = Number(res.headers.get('Retry-After')) || 0;
    throw err;
  }
  return body;
}

// Reads every page of a list (GET path?limit=N&continue=C) up to `max` entries.
async function apiPages(path, key, page, max) {
  const out = [];
  let cont = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const body = await api(`${path}${sep}limit=${page}` + (cont ? '&continue=' + encodeURIComponent(cont) : ''));
    out.push(...(body[key] || []));
    cont = body.continue || null;
    if (!out.summary && body.summary) out.summary = body.summary;
  } while (cont && out.length < max);
  out.truncated = !!cont;
  return out;
}

// A clear sentence for a refused request; 401 also brings the login form back.
function describeError(e, what) {
  if (!(e instanceof ApiError)) return `Cannot show ${what}: ${e.message}`;
  switch (e.status) {
    case 0: return `Cannot reach the server to read ${what}; retrying.`;
    case 401: return `The server refused the token (401): ${e.message}`;
    case 403: return `This token may not read ${what} (403): ${e.message}`;
    case 429: return `Rate limited (429): ${e.message}`;
    default: return `Reading ${what} failed (${e.status}): ${e.message}`;
  }
}

function showMessage(text, kind) {
  const m = $('message');
  m.textContent = text || '';
  m.className = kind || 'error';
  show(m, !!text);
}

function showLogin(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopPolling();
  for (const v of VIEWS) show($('view-' + v), false);
  show(document.querySelector('nav'), false);
  show($('signout'), false);
  $('who').textContent = '';
  showMessage(reason || '', 'error');
  show($('login'), true);
  document.body.dataset.auth = 'needed';
  $('token-input').focus();
}

// ---- Views.

const VIEWS = ['cluster', 'queues', 'workloads'];
const state = {
  view: 'cluster',
  colour: 'owner',
  queues: [],   // names, for the workloads filter
  timer: null,
  generation: 0,
  refreshes: 0,
};

function readFragment() {
  const p = fragmentParams();
  const v = p.get('view');
  state.view = VIEWS.includes(v) ? v : 'cluster';
  return p;
}

function card(label, value, detail) {
  return h('div', {class: 'card'}, h('div', {class: 'card-value'}, value),
           h('div', {class: 'card-label'}, label), detail ? h('div', {class: 'muted'}, detail) : null);
}

async function refreshCluster() {
  const nodes = await apiPages('/v1/nodes', 'nodes', NODE_PAGE, MAX_NODES);
  return () => renderCluster(nodes);
}

function renderCluster(nodes) {
  for (const r of document.querySelectorAll('input[name=colour]')) r.checked = r.value === state.colour;
  const summary = nodes.summary || {};
  const byStatus = {Ready: 0, Draining: 0, Down: 0};
  let total = 0, usedMilli = 0, unhealthy = 0;
  for (const n of nodes) {
    byStatus[n.status] = (byStatus[n.status] || 0) + 1;
    for (const g of n.gpus || []) {
      total += 1;
      usedMilli += g.used_milli || 0;
      if (g.healthy === false) unhealthy += 1;
    }
  }
  const cards = [
    card('nodes', String(summary.nodes ?? nodes.length),
         `${byStatus.Ready} ready, ${byStatus.Draining} draining, ${byStatus.Down} down`),
    card('GPUs allocated', `${gpus(usedMilli)} / ${summary.gpus ?? total}`,
         unhealthy ? `${unhealthy} unhealthy` : 'none unhealthy'),
  ];
  const models = summary.models || [];
  if (models.length === 0) {
    cards.push(card('idle while work waits', DASH, 'no figure yet'),
               card('fragmented GPUs', DASH, 'no figure yet'));
  }
  for (const m of models) {
    cards.push(card(`${m.model}: idle while work waits`, String(m.gpus_idle_while_waiting),
                    'free GPUs that pending work could use now'));
    cards.push(card(`${m.model}: fragmented GPUs`, isNum(m.fragmented_gpus) ? m.fragmented_gpus.toFixed(1) : DASH,
                    'free capacity the typical task cannot use'));
  }
  $('cluster-summary').replaceChildren(...cards);
  $('cluster-note').textContent = nodes.truncated
      ? `Showing the first ${nodes.length} of ${summary.nodes} nodes.` : '';

  const queues = new Set();
  const grid = nodes.map((n) => renderNode(n, queues));
  $('nodes').replaceChildren(...(grid.length ? grid : [h('p', {class: 'muted'}, 'No nodes have registered.')]));
  const legend = [];
  if (state.colour === 'owner') {
    for (const q of [...queues].sort()) {
      const sw = h('span', {class: 'swatch'});
      sw.style.backgroundColor = queueColour(q);
      legend.push(h('span', {class: 'legend-item'}, sw, q));
    }
    legend.push(h('span', {class: 'legend-item'}, h('span', {class: 'swatch other'}), 'another queue'),
                h('span', {class: 'legend-item'}, h('span', {class: 'swatch free'}), 'free'));
  } else {
    for (const v of [0, 50, 100]) {
      const sw = h('span', {class: 'swatch'});
      sw.style.backgroundColor = utilColour(v);
      legend.push(h('span', {class: 'legend-item'}, sw, v + '%'));
    }
    legend.push(h('span', {class: 'legend-item'}, h('span', {class: 'swatch free'}), 'no telemetry'));
  }
  $('legend').replaceChildren(...legend);
}

function renderNode(n, queues) {
  const cells = (n.gpus || []).map((g) => {
    // Holders of queues this token may not read come without name or queue (other_queue).
    const holders = (g.holders || []).filter((o) => !o.other_queue);
    const used = g.used_milli || 0;
    const cell = h('div', {class: 'gpu'});
    const title = [`GPU ${g.index} ${g.model || ''}`, `allocated ${gpus(used)} GPU`,
                   `utilization ${pct(g.util_pct)}`,
                   `memory ${mib(g.memory_used_mib)} / ${mib(g.memory_mib)}`];
    for (const o of holders) title.push(`${o.name} (#${o.workload}, task ${o.task}) in ${o.queue}`);
    if (g.healthy === false) title.push('unhealthy: ' + (g.health || 'reason unknown'));
    if (state.colour === 'owner') {
      if (holders.length) {
        queues.add(holders[0].queue);
        cell.style.backgroundColor = queueColour(holders[0].queue);
        cell.classList.add('held');
      } else if (used > 0) {
        cell.classList.add('other');  // held by work this token may not read
        title.push('held by work of a queue this token does not read');
      } else {
        cell.classList.add('free');
      }
    } else if (isNum(g.util_pct)) {
      cell.style.backgroundColor = utilColour(g.util_pct);
      cell.classList.add('held');
    } else {
      cell.classList.add('free');
    }
    if (used > 0 && used < 1000) {
      const share = h('div', {class: 'share'});
      share.style.width = (used / 10) + '%';
      cell.append(share);
    }
    if (g.healthy === false) cell.classList.add('unhealthy');
    cell.title = title.join('\n');
    cell.append(
        h('div', {class: 'gpu-top'}, h('span', {class: 'gpu-index'}, String(g.index)),
          h('span', {class: 'gpu-util'}, pct(g.util_pct))),
        h('div', {class: 'gpu-owner'}, g.healthy === false ? '\u2715 ' + (g.health || 'unhealthy')
            : holders.length ? holders.map((o) => o.name).join(', ')
            : used > 0 ? 'other queue' : 'free'),
        h('div', {class: 'gpu-mem'}, memPair(g.memory_used_mib, g.memory_mib)));
    return cell;
  });
  const model = (n.gpus && n.gpus[0] && n.gpus[0].model) || 'no GPUs';
  const cpu = n.cpu_milli ? `CPU ${gpus(n.cpu_used_milli || 0)} / ${gpus(n.cpu_milli)} cores` : '';
  return h('div', {class: 'node status-' + String(n.status).toLowerCase(), 'data-node': n.name},
           h('div', {class: 'node-head'}, h('span', {class: 'node-name'}, n.name),
             h('span', {class: 'badge ' + String(n.status).toLowerCase()}, n.status)),
           h('div', {class: 'node-meta muted'},
             [n.zone, n.rack].filter(Boolean).join(' / ') || 'no zone',
             ` \u00b7 ${model} \u00b7 ${cpu} \u00b7 heard ${ago(n.last_heartbeat)}`),
           h('div', {class: 'gpus'}, cells),
           n.metrics_url ? h('div', {class: 'node-meta muted'}, 'metrics: ' + n.metrics_url) : null);
}

// A bar of `used` against a guarantee and a limit (null: none), in the unit `fmt` shows.
function quotaBar(label, used, guaranteed, limit, fmt) {
  const top = Math.max(used || 0, guaranteed || 0, limit || 0, 1) * (isNum(limit) ? 1 : 1.25);
  const bar = h('div', {class: 'bar'});
  const fill = h('div', {class: 'bar-fill' + (isNum(guaranteed) && used > guaranteed ? ' over' : '')});
  fill.style.width = Math.min(100, (100 * (used || 0)) / top) + '%';
  bar.append(fill);
  if (isNum(guaranteed) && guaranteed > 0) {
    const mark = h('div', {class: 'bar-guarantee', title: 'guaranteed'});
    mark.style.left = Math.min(100, (100 * guaranteed) / top) + '%';
    bar.append(mark);
  }
  if (isNum(limit)) bar.append(h('div', {class: 'bar-limit', title: 'limit'}));
  return h('div', {class: 'quota'}, h('div', {class: 'quota-label'}, label), bar,
           h('div', {class: 'quota-text'},
             `${fmt(used || 0)} used \u00b7 ${isNum(guaranteed) ? fmt(guaranteed) : DASH} guaranteed \u00b7 ` +
             `${isNum(limit) ? fmt(limit) : 'no'} limit`));
}

async function refreshQueues() {
  const [queues, pending] = await Promise.all([
    api('/v1/queues'),
    apiPages('/v1/workloads?state=Pending', 'workloads', WORKLOAD_PAGE, MAX_WORKLOADS),
  ]);
  return () => renderQueues(queues.queues || [], pending);
}

function renderQueues(queues, pending) {
  state.queues = queues.filter((q) => q.leaf !== false).map((q) => q.name);
  if (queues.length === 0) {
    $('queues').replaceChildren(h('p', {class: 'muted'}, 'This token reads no queue.'));
    return;
  }
  const cards = queues.map((q) => {
    const mine = pending.filter((w) => w.queue === q.name);
    let reasons = q.pending_by_reason;
    if (!reasons) {  // a server without the field: count the list
      reasons = {};
      for (const w of mine) reasons[w.reason || 'Queued'] = (reasons[w.reason || 'Queued'] || 0) + 1;
    }
    const rows = (q.quota || []).map((e) => quotaBar(
        e.model + ' GPUs', e.used_milli, e.guaranteed_milli, e.limit_milli, gpus));
    const c = q.cpu_quota || {};
    if (isNum(c.guaranteed_milli) || isNum(c.limit_milli)) {
      rows.push(quotaBar('CPU cores', c.used_milli, c.guaranteed_milli, c.limit_milli, gpus));
    }
    const m = q.memory_quota || {};
    if (isNum(m.guaranteed_mib) || isNum(m.limit_mib)) {
      rows.push(quotaBar('memory', m.used_mib, m.guaranteed_mib, m.limit_mib, mib));
    }
    if (rows.length === 0) rows.push(h('p', {class: 'muted'}, 'No quota and no GPUs in use.'));
    const chips = Object.entries(reasons).sort().map(
        ([r, n]) => h('span', {class: 'chip reason-' + r}, `${r} ${n}`));
    const table = mine.length === 0 ? null : h('table', {class: 'pending'},
        h('thead', {}, h('tr', {}, ['id', 'name', 'reason', 'expected start', 'waiting for', 'submitted'].map((t) => h('th', {}, t)))),
        h('tbody', {}, mine.slice(0, 50).map((w) => h('tr', {},
            h('td', {}, h('a', {href: '#view=workloads&wl=' + w.id}, '#' + w.id)),
            h('td', {}, w.name), h('td', {}, w.reason || DASH),
            h('td', {}, w.estimated_start ? ago(w.estimated_start) : DASH),
            h('td', {}, w.waiting_for ? `${w.waiting_for.name} (#${w.waiting_for.id})` : DASH),
            h('td', {}, ago(w.submitted_at))))));
    const swatch = h('span', {class: 'swatch'});
    swatch.style.backgroundColor = queueColour(q.name);
    return h('div', {class: 'queue', 'data-queue': q.name},
             h('div', {class: 'queue-head'}, swatch, h('span', {class: 'queue-name'}, q.name),
               h('span', {class: 'muted'}, q.parent ? `in ${q.parent}` : ''),
               h('span', {class: 'muted'}, `weight ${q.weight}` +
                 (q.can_borrow ? ' \u00b7 borrows' : '') + (q.can_lend ? ' \u00b7 lends' : ''))),
             h('div', {class: 'queue-counts'}, `${q.running} running \u00b7 ${q.pending} pending`),
             rows,
             chips.length ? h('div', {class: 'chips'}, 'pending by reason: ', chips) : null,
             table,
             mine.length > 50 ? h('p', {class: 'muted'}, `and ${mine.length - 50} more`) : null);
  });
  $('queues').replaceChildren(...cards);
}

function filtersFromFragment(p) {
  return {queue: p.get('queue') || '', state: p.get('state') || '', kind: p.get('kind') || ''};
}

async function refreshWorkloads() {
  const p = fragmentParams();
  const f = filtersFromFragment(p);
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) query.set(k, v);
  const selected = Number(p.get('wl')) || 0;
  const [queues, list, detail] = await Promise.all([
    state.queues.length ? null : api('/v1/queues').catch(() => null),
    apiPages('/v1/workloads' + (query.toString() ? '?' + query : ''), 'workloads', WORKLOAD_PAGE, MAX_WORKLOADS),
    selected ? api('/v1/workloads/' + selected).catch((e) => e) : null,
  ]);
  if (queues) state.queues = (queues.queues || []).filter((q) => q.leaf !== false).map((q) => q.name);
  return () => renderWorkloads(f, list, selected, detail);
}

function setOptions(select, values, current) {
  const have = [...select.options].map((o) => o.value).slice(1).join('\n');
  const want = [...new Set([...values, ...(current ? [current] : [])])];
  if (have !== want.join('\n')) {
    select.replaceChildren(h('option', {value: ''}, 'any'), ...want.map((v) => h('option', {value: v}, v)));
  }
  select.value = current;
}

function taskGpus(w) {
  const s = w.spec || {};
  if (!s.gpus) return '0';
  return (s.gpu_milli && s.gpu_milli < 1000) ? `${gpus(s.gpu_milli)}` : String(s.gpus);
}

function renderWorkloads(f, list, selected, detail) {
  setOptions($('filter-queue'), state.queues, f.queue);
  $('filter-state').value = f.state;
  $('filter-kind').value = f.kind;
  const rows = [...list].reverse();  // newest first
  $('workload-count').textContent = `${list.length} workload${list.length === 1 ? '' : 's'}` +
      (list.truncated ? ` (the oldest ${list.length} that match; narrow the filters)` : '');
  const table = h('table', {class: 'workloads'},
      h('thead', {}, h('tr', {}, ['id', 'name', 'queue', 'kind', 'state', 'tasks', 'GPUs/task', 'nodes', 'submitted'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.map((w) => {
        const nodes = [...new Set((w.tasks || []).map((t) => t.node).filter(Boolean))];
        const tr = h('tr', {class: w.id === selected ? 'selected' : null, 'data-id': w.id},
            h('td', {}, '#' + w.id), h('td', {}, w.name),
            h('td', {}, w.queue), h('td', {}, w.kind),
            h('td', {}, h('span', {class: 'badge ' + String(w.state).toLowerCase()}, w.state),
              w.reason ? h('span', {class: 'muted'}, ' ' + w.reason) : null),
            h('td', {}, String((w.tasks || []).length || (w.spec && w.spec.min_tasks) || 0)),
            h('td', {}, taskGpus(w)),
            h('td', {}, nodes.join(', ') || DASH),
            h('td', {}, ago(w.submitted_at)));
        tr.addEventListener('click', () => selectWorkload(w.id));
        return tr;
      })));
  $('workload-list').replaceChildren(list.length ? table : h('p', {class: 'muted'}, 'No workload matches.'));
  renderDetail(selected, detail);
}

function selectWorkload(id) {
  const p = fragmentParams();
  p.set('view', 'workloads');
  p.set('wl', String(id));
  location.hash = p.toString();  // hashchange refreshes
}

function kv(label, value) { return [h('dt', {}, label), h('dd', {}, value ?? DASH)]; }

function renderDetail(selected, w) {
  const pane = $('detail');
  if (!selected) {
    pane.replaceChildren(h('p', {class: 'muted'}, 'Select a workload to see its tasks and events.'));
    return;
  }
  if (w instanceof ApiError) {
    pane.replaceChildren(h('p', {class: 'error'}, w.status === 404
        ? `Workload #${selected} does not exist, or this token may not read its queue.`
        : describeError(w, 'workload #' + selected)));
    return;
  }
  if (!w) return;
  const s = w.spec || {};
  // CPU time and peak memory exist once a task exited: columns only when one did.
  const used = (w.tasks || []).some((t) => isNum(t.cpu_user_ms));
  const heads = ['task', 'node', 'GPUs', 'state', 'exit', 'GPU util', 'GPU memory'];
  if (used) heads.push('CPU user/sys', 'max RSS');
  const tasks = h('table', {class: 'tasks'},
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', {}, t)))),
      h('tbody', {}, (w.tasks || []).map((t) => h('tr', {},
          h('td', {}, String(t.task)), h('td', {}, t.node || DASH),
          h('td', {}, (t.gpus || []).join(', ') + (t.gpu_milli && t.gpu_milli < 1000 ? ` (${gpus(t.gpu_milli)} each)` : '') || DASH),
          h('td', {}, t.state), h('td', {}, t.exit_code ?? DASH),
          h('td', {class: 'util'}, pct(t.gpu_util_pct)),
          h('td', {}, mib(t.gpu_memory_used_mib)),
          used ? h('td', {}, isNum(t.cpu_user_ms) ? `${(t.cpu_user_ms / 1000).toFixed(1)}s / ${(t.cpu_system_ms / 1000).toFixed(1)}s` : DASH) : null,
          used ? h('td', {}, isNum(t.max_rss_kib) ? mib(Math.round(t.max_rss_kib / 1024)) : DASH) : null))));
  const events = h('ol', {class: 'events'}, (w.events || []).slice().reverse().map((e) => h('li', {},
      h('span', {class: 'muted'}, new Date(e.time).toLocaleString()), ' ',
      h('strong', {}, e.type), ' ', e.message)));
  pane.replaceChildren(
      h('h2', {}, `${w.name} `, h('span', {class: 'muted'}, '#' + w.id), ' ',
        h('span', {class: 'badge ' + String(w.state).toLowerCase()}, w.state)),
      h('dl', {},
        kv('queue', w.queue), kv('user', w.user || DASH), kv('kind', w.kind), kv('priority', w.priority),
        w.reason ? kv('reason', w.reason) : null,
        w.state === 'Pending' ? kv('expected start', w.estimated_start ? ago(w.estimated_start) : 'unknown') : null,
        w.waiting_for ? kv('waiting for', `${w.waiting_for.name} (#${w.waiting_for.id})`) : null,
        kv('tasks', `${s.min_tasks ?? DASH}` + (s.max_tasks && s.max_tasks !== s.min_tasks ? `..${s.max_tasks}` : '') +
           ` \u00d7 ${s.gpus ?? 0} GPU` + (s.gpu_milli && s.gpu_milli < 1000 ? ` (${gpus(s.gpu_milli)} each)` : '')),
        kv('GPU models', (s.gpu_models || []).join(', ') || 'any'),
        kv('command', (s.command || []).join(' ')),
        kv('submitted', ago(w.submitted_at)), kv('started', ago(w.started_at)), kv('finished', ago(w.finished_at)),
        kv('attempt', String(w.attempt))),
      h('h3', {}, 'Tasks'),
      (w.tasks || []).length ? h('div', {class: 'scroll'}, tasks) : h('p', {class: 'muted'}, 'No task placed.'),
      h('h3', {}, 'Events'), events);
}

// ---- The refresh loop: one refresh at a time, the next PERIOD_S after the last ended.

const REFRESH = {cluster: refreshCluster, queues: refreshQueues, workloads: refreshWorkloads};

function stopPolling() {
  clearTimeout(state.timer);
  state.timer = null;
  state.generation += 1;
}

async function refresh() {
  stopPolling();
  const generation = state.generation;
  const view = state.view;
  let delay = PERIOD_S * 1000;
  try {
    const render = await REFRESH[view]();
    if (generation !== state.generation) return;  // the view changed meanwhile
    render();
    showMessage('');
    delete document.body.dataset.error;
    state.refreshes += 1;
    document.body.dataset.refreshes = String(state.refreshes);
    document.body.dataset.ready = view;
    $('refreshed').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    if (generation !== state.generation) return;
    if (e instanceof ApiError && e.status === 401) {
      showLogin(describeError(e, view) + '. Paste another token.');
      return;
    }
    if (e instanceof ApiError && e.status === 429) delay = Math.max(delay, e.retryAfter * 1000);
    showMessage(describeError(e, view === 'cluster' ? 'the nodes' : view), 'error');
    document.body.dataset.error = view;
    if (!(e instanceof ApiError)) console.error(e);  // a bug of this page, not of the server
  }
  state.timer = setTimeout(refresh, delay);
}

function showView() {
  const p = readFragment();
  for (const v of VIEWS) show($('view-' + v), v === state.view);
  for (const a of document.querySelectorAll('nav a')) {
    a.classList.toggle('active', a.dataset.view === state.view);
    // Tabs keep the workloads' filters and selection in the fragment.
    const q = new URLSearchParams(p);
    q.set('view', a.dataset.view);
    a.setAttribute('href', '#' + q.toString());
  }
  document.body.dataset.view = state.view;
  delete document.body.dataset.ready;
  refresh();
}

async function start() {
  show($('login'), false);
  show(document.querySelector('nav'), true);
  show($('signout'), token() !== '');
  document.body.dataset.auth = 'ok';
  try {
    const self = await api('/v1/tokens/self');
    $('who').textContent = `${self.name || 'no name'} (${self.role})` +
        (self.queues && self.queues.length ? ' of ' + self.queues.join(', ') : '');
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showLogin(describeError(e, 'the token') + '. Paste another token.');
      return;
    }
    $('who').textContent = '';
  }
  showView();
}

function init() {
  $('period').textContent = String(PERIOD_S);
  takeTokenFromFragment();
  window.addEventListener('hashchange', () => {
    takeTokenFromFragment();
    if (token() !== null) showView();
  });
  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
    $('token-input').value = '';
    showMessage('');
    start();
  });
  $('signout').addEventListener('click', () => showLogin('Signed out.'));
  for (const r of document.querySelectorAll('input[name=colour]')) {
    r.addEventListener('change', () => { state.colour = r.value; refresh(); });
  }
  for (const [id, key] of [['filter-queue', 'queue'], ['filter-state', 'state'], ['filter-kind', 'kind']]) {
    $(id).addEventListener('change', () => {
      const p = fragmentParams();
      if ($(id).value) p.set(key, $(id).value); else p.delete(key);
      p.set('view', 'workloads');
      location.hash = p.toString();
    });
  }
  if (token() === null) showLogin('');
  else start();
}

document.addEventListener('DOMContentLoaded', init);
