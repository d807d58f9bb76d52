// The live dashboard of one entity: socket.io-client 4.x, no framework, no build step.
// Protocol: docs/websocket-api.md. Connect with auth.token, subscribe, render
// dashboard:initial, then apply metric:update and dashboard:update as they come:
// a layout change of the dashboard shown, or "replaced" when the entity now shows
// another dashboard (or none). An entity that is removed gets an error instead.
// Line tiles start from the history the snapshot (and "replaced") carries, so a reload
// shows their charts at once; each metric:update is appended to it.
//
// Reconnecting: the page keeps the `seq` of the last event it applied and, after the socket
// reconnects by itself, subscribes with `sinceSeq`; the server answers with dashboard:resume
// (only what changed meanwhile, merged into what the page shows) or, when it cannot, a full
// dashboard:initial (`recovered: false`) that is drawn from scratch. The first subscribe of a
// connection made from the token form (or at page load) has no `sinceSeq`.
//
// Token refresh hook: a page that can get fresh tokens sets, before or after this script loads,
//
//   window.analyticsDashboard = { getToken: async ({ entityId, entityType, expiresAt }) => '<jwt>' };
//
// On auth:expiring the page calls getToken (it may return the token or a promise of it), sends
// it as auth:refresh and, once the server accepts it, uses it for reconnections and reloads too.
// Without the hook, or when it fails or the server refuses its token, a notice says when the
// session ends; at that time the server ends the connection and the page asks for a token.
// Under the page's Content Security Policy the hook must come from a script file of this origin.
//
// For tests and troubleshooting, #live-dashboard carries data-seq (the last seq applied),
// data-initials and data-resumes (how many of each were applied) and data-refreshes (tokens
// the server accepted through auth:refresh).
(function () {
  'use strict';

  const root = document.getElementById('live-dashboard');
  const entityId = root.dataset.entityId;
  const entityType = root.dataset.entityType;
  const namespace = root.dataset.namespace;
  const tilesEl = document.getElementById('tiles');
  const emptyEl = document.getElementById('empty');
  const noticeEl = document.getElementById('notice');
  const sessionEl = document.getElementById('session');
  const removedEl = document.getElementById('removed');
  const connEl = document.getElementById('connection');
  const tokenForm = document.getElementById('token-form');
  const tokenInput = document.getElementById('token');
  const disconnectButton = document.getElementById('disconnect');
  const versionEl = document.getElementById('version');
  const lastUpdateEl = document.getElementById('last-update');
  const STORAGE_KEY = 'analytics.token';
  // Values a chart keeps: the snapshot's history (HISTORY_POINTS, 120 by default) and as many live ones.
  const HISTORY = 240;
  // How long to wait for the server to acknowledge auth:refresh.
  const REFRESH_ACK_MS = 10000;
  // The codes of a token the server refused (connection or auth:refresh).
  const TOKEN_CODES = new Set(['ANALYTICS_1001', 'ANALYTICS_1002', 'ANALYTICS_1003', 'ANALYTICS_1004']);

  const state = {
    dashboardId: null,
    version: null,
    snapshotSeq: 0,
    layoutSeq: 0, // seq of the snapshot or of the last "replaced" applied
    tiles: new Map(), // tile id -> tile
    order: [], // tile ids in display order
    metrics: {}, // metric name -> value
    metricSeq: {}, // metric name -> seq of the value shown
    history: {}, // metric name -> recent values, oldest first (the server's history, then live values)
  };
  let socket = null;
  // The seq of the last event applied for this entity; null until the connection's first snapshot.
  let lastSeq = null;
  let refreshing = false; // an auth:refresh is under way

  function applied(seq) {
    if (typeof seq !== 'number') return;
    lastSeq = lastSeq === null ? seq : Math.max(lastSeq, seq);
    root.dataset.seq = lastSeq;
  }

  function count(name) {
    root.dataset[name] = Number(root.dataset[name] || 0) + 1;
  }

  // --- connection state and messages ----------------------------------------------------------------------------

  function setConnection(value, detail) {
    connEl.dataset.state = value;
    connEl.querySelector('.label').textContent = detail || value;
    document.body.dataset.connection = value;
  }

  const FRIENDLY = {
    ANALYTICS_1001: () => 'Enter an access token to connect.',
    ANALYTICS_1002: (e) => `This token was not accepted (${e.message}). Check that you pasted all of it.`,
    ANALYTICS_1003: () => 'Your token has expired. Paste a fresh one and connect again.',
    ANALYTICS_1004: () => 'This token has no tenant (tenantId claim), so it cannot see any dashboard.',
    ANALYTICS_1101: () => `There is no ${entityType} “${entityId}” for this token's tenant.`,
    ANALYTICS_1102: () => 'This connection follows too many entities already.',
    ANALYTICS_1103: () => 'Too many requests at once; the page slowed down.',
    ANALYTICS_1000: () => 'The server had a problem. Try again in a moment.',
  };

  function showError(error) {
    const code = error && error.code;
    const text = (FRIENDLY[code] || ((e) => (e && e.message) || 'Something went wrong.'))(error || {});
    noticeEl.replaceChildren(document.createTextNode(text));
    if (code) {
      const small = document.createElement('span');
      small.className = 'code';
      small.textContent = code;
      noticeEl.append(' ', small);
    }
    noticeEl.dataset.code = code || '';
    noticeEl.hidden = false;
  }

  function clearError() {
    noticeEl.hidden = true;
    noticeEl.dataset.code = '';
  }

  // The session will end at `expiresAt`: no hook gave a fresh token, or the server refused it.
  function showSessionEnding(warning, error) {
    const at = new Date(warning && warning.expiresAt);
    const when = isNaN(at) ? 'soon' : 'at ' + at.toLocaleTimeString();
    const why = error && error.code ? ` The fresh token was refused (${error.code}).` : '';
    sessionEl.textContent = `Your session ends ${when}; then paste a fresh token to carry on.${why}`;
    sessionEl.dataset.code = (error && error.code) || '';
    sessionEl.hidden = false;
  }

  function hideSession() {
    sessionEl.hidden = true;
    sessionEl.dataset.code = '';
  }

  // The server's error when the entity this page follows is removed: `entity '<id>' was removed`.
  const REMOVED = / was removed$/;

  function onError(error) {
    if (refreshing && error && TOKEN_CODES.has(error.code)) return; // a refused auth:refresh: see refreshToken
    if (error && error.code === 'ANALYTICS_1003') hideSession(); // the session has ended: the notice says so
    if (error && error.code === 'ANALYTICS_1101' && REMOVED.test(error.message || '')) {
      showRemoved();
    } else {
      showError(error);
    }
  }

  function showRemoved() {
    // The server has unsubscribed this socket from the entity; the connection stays up.
    state.dashboardId = null;
    state.version = null;
    lastSeq = null; // nothing left to resume: a later subscribe starts from a snapshot
    state.tiles = new Map();
    state.order = [];
    tilesEl.replaceChildren();
    emptyEl.hidden = true;
    versionEl.textContent = '–';
    removedEl.hidden = false;
    root.dataset.removed = 'true';
  }

  // --- formatting ---------------------------------------------------------------------------------------------

  const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

  function formatValue(value, unit) {
    if (value === undefined || value === null) return '–';
    const text = numberFormat.format(value);
    if (!unit) return text;
    return unit === '%' || unit.startsWith('/') ? text + unit : text + ' ' + unit;
  }

  function level(tile, value) {
    const t = tile.thresholds || {};
    if (value === undefined || value === null) return '';
    if (t.critical !== undefined && value >= t.critical) return 'critical';
    if (t.warning !== undefined && value >= t.warning) return 'warning';
    return 'ok';
  }

  // --- tiles ----------------------------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function buildTile(tile) {
    const card = el('article', 'tile');
    card.dataset.tileId = tile.id;
    const head = el('header', 'tile-head');
    head.append(el('h2', 'tile-title'), el('span', 'tile-kind'));
    const value = el('div', 'tile-value');
    card.append(head, value);
    if (tile.kind === 'gauge') {
      const gauge = el('div', 'gauge');
      gauge.append(el('div', 'gauge-fill'));
      card.append(gauge);
    } else if (tile.kind === 'line') {
      const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('class', 'chart');
      svg.setAttribute('viewBox', '0 0 100 32');
      svg.setAttribute('preserveAspectRatio', 'none');
      svg.setAttribute('role', 'img');
      const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
      line.setAttribute('class', 'chart-line');
      svg.append(line);
      card.append(svg);
    }
    card.dataset.kind = tile.kind;
    return card;
  }

  function tileElement(id) {
    return tilesEl.querySelector(`.tile[data-tile-id="${id}"]`);
  }

  function paintTile(card, tile) {
    card.dataset.metric = tile.metricName;
    card.className = 'tile kind-' + tile.kind;
    card.querySelector('.tile-title').textContent = tile.title;
    card.querySelector('.tile-kind').textContent = tile.metricName;
    const value = state.metrics[tile.metricName];
    card.querySelector('.tile-value').textContent = formatValue(value, tile.unit);
    card.dataset.level = level(tile, value);
    if (tile.kind === 'gauge') {
      const max = (tile.thresholds && tile.thresholds.max) || 100;
      const share = value === undefined ? 0 : Math.max(0, Math.min(1, value / max));
      card.querySelector('.gauge-fill').style.width = (share * 100).toFixed(1) + '%';
    } else if (tile.kind === 'line') {
      drawChart(card.querySelector('svg.chart'), state.history[tile.metricName] || []);
    }
  }

  function drawChart(svg, values) {
    const line = svg.querySelector('polyline');
    svg.dataset.points = values.length;
    if (!values.length) {
      line.setAttribute('points', '');
      return;
    }
    const min = Math.min(...values);
    const max = Math.max(...values);
    const span = max - min || 1;
    const step = values.length > 1 ? 100 / (values.length - 1) : 0;
    const points = values.map((v, i) => {
      const x = values.length > 1 ? i * step : 50;
      const y = 30 - ((v - min) / span) * 28;
      return x.toFixed(2) + ',' + y.toFixed(2);
    });
    line.setAttribute('points', points.join(' '));
    svg.setAttribute('aria-label', `Last ${values.length} values, from ${numberFormat.format(min)} to ${numberFormat.format(max)}`);
  }

  function highlight(card, className) {
    card.classList.remove(className);
    void card.offsetWidth; // restart the animation
    card.classList.add(className);
  }

  function renderAll() {
    const wanted = new Set(state.order.map(String));
    for (const card of [...tilesEl.children]) {
      if (!wanted.has(card.dataset.tileId)) card.remove();
    }
    for (const id of state.order) {
      const tile = state.tiles.get(id);
      let card = tileElement(id);
      if (card && card.dataset.kind !== tile.kind) {
        card.replaceWith(buildTile(tile));
        card = tileElement(id);
      }
      if (!card) card = buildTile(tile);
      paintTile(card, tile);
      tilesEl.append(card); // appending an existing node moves it: the order follows state.order
    }
    emptyEl.textContent =
      state.dashboardId === null ? 'This entity has no dashboard yet.' : 'This dashboard has no tiles yet.';
    emptyEl.hidden = state.order.length > 0;
    versionEl.textContent = state.version === null ? '–' : state.version;
  }

  function remember(name, value) {
    const values = state.history[name] || (state.history[name] = []);
    values.push(value);
    if (values.length > HISTORY) values.splice(0, values.length - HISTORY);
  }

  // The server's recent values of the line tiles' metrics (`history`: {name: [{t, value}]}, oldest first,
  // ending with the current value) replace what the page holds for them; other metrics keep theirs.
  function takeHistory(history) {
    if (!history || typeof history !== 'object') return new Set();
    for (const [name, points] of Object.entries(history)) {
      if (Array.isArray(points)) state.history[name] = points.map((p) => p.value).slice(-HISTORY);
    }
    return new Set(Object.keys(history));
  }

  // --- protocol -------------------------------------------------------------------------------------------------

  function showLayout(dashboardId, version, tiles) {
    state.dashboardId = dashboardId;
    state.version = version;
    state.tiles = new Map(tiles.map((t) => [t.id, t]));
    state.order = tiles.map((t) => t.id);
  }

  function onInitial(data) {
    if (data.entityId !== entityId) return;
    clearError();
    removedEl.hidden = true;
    delete root.dataset.removed;
    showLayout(data.dashboardId, data.version, data.tiles);
    state.snapshotSeq = data.seq || 0;
    state.layoutSeq = state.snapshotSeq;
    state.metrics = Object.assign({}, data.metrics);
    state.metricSeq = {};
    const given = takeHistory(data.history); // ends with the current value already
    for (const [name, value] of Object.entries(state.metrics)) {
      if (given.has(name)) continue;
      const values = state.history[name];
      if (!values || values[values.length - 1] !== value) remember(name, value);
    }
    renderAll();
    tilesEl.dataset.ready = 'true';
    lastSeq = null; // a snapshot replaces everything, its seq too
    applied(data.seq);
    count('initials');
  }

  // What changed since the sinceSeq of the subscribe: the newest value of each changed metric, then
  // every layout change in order, applied as if they had come live. A missing layout version makes
  // onLayout ask for a fresh snapshot; the rest of the updates are then left to it.
  function onResume(data) {
    if (data.entityId !== entityId) return;
    clearError();
    count('resumes');
    for (const [name, value] of Object.entries(data.metrics || {})) showMetric(name, value);
    for (const update of data.updates || []) {
      if (onUpdate(update) === GAP) return;
    }
    // Like a snapshot, the resume holds everything up to its seq: older updates still on their way are stale.
    state.snapshotSeq = Math.max(state.snapshotSeq, data.seq || 0);
    state.layoutSeq = Math.max(state.layoutSeq, data.seq || 0);
    applied(data.seq);
  }

  function onMetric(data) {
    if (data.entityId !== entityId || data.seq <= state.snapshotSeq) return;
    if (data.seq <= (state.metricSeq[data.metricName] || 0)) return;
    state.metricSeq[data.metricName] = data.seq;
    showMetric(data.metricName, data.value);
    lastUpdateEl.textContent = new Date(data.timestamp).toLocaleTimeString();
    applied(data.seq);
  }

  // A new value of a metric: kept, appended to its chart, and shown on its tiles.
  function showMetric(name, value) {
    state.metrics[name] = value;
    remember(name, value);
    for (const id of state.order) {
      const tile = state.tiles.get(id);
      if (tile.metricName !== name) continue;
      const card = tileElement(id);
      paintTile(card, tile);
      highlight(card, 'updated');
    }
  }

  // What onLayout returns when a layout version went missing and a fresh snapshot was asked for.
  const GAP = 'gap';

  function onUpdate(data) {
    if (data.action === 'replaced') return onReplaced(data);
    return onLayout(data);
  }

  // The entity now shows another dashboard, or none: draw the whole new layout; metric values stay.
  function onReplaced(data) {
    if (data.entityId !== entityId || data.seq <= state.layoutSeq) return; // in the snapshot already
    state.layoutSeq = data.seq;
    takeHistory(data.history); // the new layout's line tiles; without it, the charts keep what they have
    showLayout(data.dashboardId, data.version, data.tiles || []);
    renderAll();
    for (const card of tilesEl.children) highlight(card, 'changed');
    applied(data.seq);
  }

  function onLayout(data) {
    if (data.dashboardId !== state.dashboardId || state.version === null) return;
    if (data.version !== null && data.version <= state.version) return; // already in the snapshot
    if (data.version !== null && data.version > state.version + 1) {
      resubscribe(); // a change went missing: start again from a fresh snapshot
      return GAP;
    }
    const tile = data.tile;
    if (data.action === 'added') {
      state.tiles.set(tile.id, tile);
      state.order = state.order.filter((id) => id !== tile.id);
      state.order.splice(tile.position, 0, tile.id);
    } else if (data.action === 'updated') {
      state.tiles.set(tile.id, tile);
    } else if (data.action === 'removed') {
      state.tiles.delete(tile.id);
      state.order = state.order.filter((id) => id !== tile.id);
    } else if (data.action === 'reordered') {
      state.order = data.order.filter((id) => state.tiles.has(id));
    }
    state.version = data.version;
    renderAll();
    if (tile && data.action !== 'removed') {
      const card = tileElement(tile.id);
      if (card) highlight(card, 'changed');
    }
    applied(data.seq);
  }

  function resubscribe() {
    if (socket && socket.connected) socket.emit('subscribe', { entityId, entityType });
  }

  // auth:expiring: get a fresh token from the page's hook and hand it to the server (see the top of this file).
  async function refreshToken(warning) {
    const hooks = window.analyticsDashboard;
    const getToken = hooks && hooks.getToken;
    if (typeof getToken !== 'function') {
      showSessionEnding(warning);
      return;
    }
    if (refreshing) return;
    refreshing = true;
    const current = socket;
    try {
      const given = await getToken({ entityId, entityType, expiresAt: warning && warning.expiresAt });
      const token = typeof given === 'string' ? given.trim() : '';
      if (!token) throw new Error('the getToken hook gave no token');
      const ack = await current.timeout(REFRESH_ACK_MS).emitWithAck('auth:refresh', { token });
      if (!ack || !ack.ok) throw (ack && ack.error) || new Error('auth:refresh was refused');
      current.auth.token = token; // a reconnection presents the fresh token
      sessionStorage.setItem(STORAGE_KEY, token); // and so does a reload
      tokenInput.value = token;
      hideSession();
      count('refreshes');
    } catch (error) {
      if (current === socket) showSessionEnding(warning, error);
    } finally {
      refreshing = false;
    }
  }

  function connect(token) {
    if (socket) socket.disconnect();
    clearError();
    hideSession();
    lastSeq = null; // a new connection (perhaps another tenant's token) starts from a snapshot
    setConnection('connecting');
    socket = io(namespace, { auth: { token }, transports: ['websocket'] });
    socket.on('connect', () => {
      setConnection('connected');
      disconnectButton.hidden = false;
      // Again after every reconnect, then only for what changed since the last event applied.
      const subscription = { entityId, entityType };
      if (lastSeq !== null) subscription.sinceSeq = lastSeq;
      socket.emit('subscribe', subscription);
    });
    socket.on('disconnect', (reason) => {
      if (reason === 'io server disconnect' || reason === 'io client disconnect') {
        setConnection('disconnected');
        disconnectButton.hidden = true;
      } else {
        setConnection('reconnecting', 'reconnecting…');
      }
    });
    socket.on('connect_error', (err) => {
      if (socket.active) {
        setConnection('reconnecting', 'reconnecting…'); // the server is unreachable; the client retries
      } else {
        setConnection('disconnected');
        showError(err.data || { message: err.message });
      }
    });
    socket.io.on('reconnect_attempt', () => setConnection('reconnecting', 'reconnecting…'));
    socket.on('dashboard:initial', onInitial);
    socket.on('dashboard:resume', onResume);
    socket.on('metric:update', onMetric);
    socket.on('dashboard:update', onUpdate);
    socket.on('error', onError);
    socket.on('auth:expiring', refreshToken);
  }

  tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) {
      showError({ code: 'ANALYTICS_1001' });
      return;
    }
    sessionStorage.setItem(STORAGE_KEY, token);
    connect(token);
  });

  disconnectButton.addEventListener('click', () => {
    if (socket) socket.disconnect();
  });

  if (!tokenInput.value) tokenInput.value = sessionStorage.getItem(STORAGE_KEY) || '';
  if (tokenInput.value) connect(tokenInput.value.trim());
})();
