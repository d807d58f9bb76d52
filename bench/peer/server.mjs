// The Node.js Socket.IO reference server of the benchmarks: the same protocol as
// analytics-svc for the benchmark scenarios, kept in memory. It is the "speed of light"
// for a Node.js Socket.IO server, not a product: no database, no change log, no limits.
//
//   JWT_SECRET=... PORT=4010 node bench/peer/server.mjs
//
// Speaks: namespaces /dashboard and /analytics/dashboard with auth.token (HS256 JWT with
// tenantId), subscribe -> join the entity's room + dashboard:initial + ack {ok, seq},
// unsubscribe; REST PUT /api/v1/entities/:id, POST /api/v1/dashboards,
// POST /api/v1/metrics (metric:update to the room), GET /healthz.
import http from 'node:http';
import jwt from 'jsonwebtoken';
import { Server } from 'socket.io';

const SECRET = process.env.JWT_SECRET;
const PORT = Number(process.env.PORT || 4010);
const HOST = process.env.HOST || '127.0.0.1';
const LEEWAY = Number(process.env.JWT_LEEWAY_SECONDS || 30);
const ENTITY_TYPES = new Set(['event', 'venue']);
const NAMESPACES = ['/dashboard', '/analytics/dashboard'];

if (!SECRET) {
  console.error('JWT_SECRET is required');
  process.exit(2);
}

// tenant -> entityId -> {entityId, entityType, name, dashboardId, metrics: {name: value}}
const entities = new Map();
// dashboardId -> {id, tenant, name, version, tiles}
const dashboards = new Map();
let nextDashboardId = 1;
let seq = 0;

const roomFor = (tenant, entityId) => JSON.stringify([tenant, entityId]);
const fail = (code, message) => ({ code, message });

function verify(token) {
  if (typeof token !== 'string' || !token) return { error: fail('ANALYTICS_1001', 'missing token') };
  try {
    const claims = jwt.verify(token, SECRET, { algorithms: ['HS256'], clockTolerance: LEEWAY });
    if (claims.exp === undefined) return { error: fail('ANALYTICS_1002', 'invalid token: Token is missing the "exp" claim') };
    if (typeof claims.tenantId !== 'string' || !claims.tenantId.trim()) return { error: fail('ANALYTICS_1004', 'missing tenant') };
    const roles = typeof claims.roles === 'string' ? claims.roles.split(' ') : claims.roles || [];
    return { tenant: claims.tenantId, roles };
  } catch (err) {
    if (err.name === 'TokenExpiredError') return { error: fail('ANALYTICS_1003', 'token expired') };
    return { error: fail('ANALYTICS_1002', `invalid token: ${err.message}`) };
  }
}

function tenantEntities(tenant) {
  let map = entities.get(tenant);
  if (!map) entities.set(tenant, (map = new Map()));
  return map;
}

const httpServer = http.createServer((req, res) => {
  const send = (status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (req.method === 'GET' && req.url === '/healthz') return send(200, { status: 'ok', database: 'ok' });
  if (!req.url.startsWith('/api/v1/')) return send(404, fail('ANALYTICS_1201', 'not found'));
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const header = req.headers.authorization || '';
    const caller = verify(header.startsWith('Bearer ') ? header.slice(7) : '');
    if (caller.error) return send(401, caller.error);
    let body = null;
    try {
      body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : null;
    } catch {
      return send(400, fail('ANALYTICS_1200', 'malformed JSON body'));
    }
    const path = req.url.slice('/api/v1'.length);
    if (req.method === 'POST' && path === '/metrics') return ingest(caller, body, send);
    if (!caller.roles.includes('admin')) return send(403, fail('ANALYTICS_1005', 'requires role admin'));
    if (req.method === 'POST' && path === '/dashboards') {
      const dashboard = { id: nextDashboardId++, tenant: caller.tenant, name: body?.name || '', version: 1 };
      dashboard.tiles = (body?.tiles || []).map((t, i) => ({ id: i + 1, position: i, unit: '', thresholds: null, ...t }));
      dashboards.set(dashboard.id, dashboard);
      const { tenant, ...shown } = dashboard;
      return send(201, shown);
    }
    const match = req.method === 'PUT' && /^\/entities\/([^/]+)$/.exec(path);
    if (match) {
      const entityId = decodeURIComponent(match[1]);
      const map = tenantEntities(caller.tenant);
      const existing = map.get(entityId);
      if (existing) return send(200, shownEntity(existing));
      if (!ENTITY_TYPES.has(body?.entityType)) return send(400, fail('ANALYTICS_1200', 'entityType is invalid'));
      const entity = { entityId, entityType: body.entityType, name: body.name || '', dashboardId: body.dashboardId ?? null, metrics: {} };
      map.set(entityId, entity);
      return send(201, shownEntity(entity));
    }
    return send(404, fail('ANALYTICS_1201', 'not found'));
  });
});

function shownEntity({ metrics, ...entity }) {
  return entity;
}

function ingest(caller, body, send) {
  if (!caller.roles.includes('ingest') && !caller.roles.includes('admin')) {
    return send(403, fail('ANALYTICS_1005', 'requires role ingest or admin'));
  }
  if (body && !Array.isArray(body) && Array.isArray(body.metrics)) body = body.metrics;
  const items = Array.isArray(body) ? body : [body];
  if (!items.length || items.length > 1000) return send(400, fail('ANALYTICS_1200', 'no metrics given'));
  const map = tenantEntities(caller.tenant);
  for (const p of items) {
    if (!p || typeof p.entityId !== 'string' || typeof p.metricName !== 'string' || !Number.isFinite(p.value)) {
      return send(400, fail('ANALYTICS_1200', 'invalid metric'));
    }
    if (!map.has(p.entityId)) return send(404, fail('ANALYTICS_1101', `unknown entity '${p.entityId}'`));
  }
  const dashboardNs = io.of('/dashboard');
  for (const p of items) {
    seq += 1;
    map.get(p.entityId).metrics[p.metricName] = p.value;
    const timestamp = p.timestamp ? new Date(p.timestamp).toISOString() : new Date().toISOString();
    dashboardNs.to(roomFor(caller.tenant, p.entityId)).emit('metric:update', {
      entityId: p.entityId,
      metricName: p.metricName,
      value: p.value,
      timestamp,
      seq,
    });
  }
  return send(201, { accepted: items.length, lastSeq: seq });
}

const io = new Server(httpServer, { cors: { origin: '*' }, serveClient: false, maxHttpBufferSize: 64 * 1024 });

for (const name of NAMESPACES) {
  const nsp = io.of(name);
  nsp.use((socket, next) => {
    const caller = verify(socket.handshake.auth?.token);
    if (caller.error) {
      const err = new Error(caller.error.message);
      err.data = caller.error;
      return next(err);
    }
    socket.data.tenant = caller.tenant;
    return next();
  });
  nsp.on('connection', (socket) => {
    const answer = (ack, body) => (typeof ack === 'function' ? ack(body) : undefined);
    const refuse = (ack, error) => {
      socket.emit('error', error);
      answer(ack, { ok: false, error });
    };
    socket.on('subscribe', (payload, ack) => {
      if (!payload || typeof payload.entityId !== 'string' || !payload.entityId) {
        return refuse(ack, fail('ANALYTICS_1100', 'entityId is required'));
      }
      if (!ENTITY_TYPES.has(payload.entityType)) {
        return refuse(ack, fail('ANALYTICS_1100', 'entityType must be one of: event, venue'));
      }
      const entity = tenantEntities(socket.data.tenant).get(payload.entityId);
      if (!entity || entity.entityType !== payload.entityType) {
        return refuse(ack, fail('ANALYTICS_1101', `unknown entity '${payload.entityId}'`));
      }
      socket.join(roomFor(socket.data.tenant, entity.entityId));
      const dashboard = dashboards.get(entity.dashboardId);
      socket.emit('dashboard:initial', {
        entityId: entity.entityId,
        entityType: entity.entityType,
        dashboardId: dashboard ? dashboard.id : null,
        version: dashboard ? dashboard.version : null,
        metrics: { ...entity.metrics },
        tiles: dashboard ? dashboard.tiles : [],
        seq,
      });
      return answer(ack, { ok: true, seq });
    });
    socket.on('unsubscribe', (payload, ack) => {
      if (payload && typeof payload.entityId === 'string') socket.leave(roomFor(socket.data.tenant, payload.entityId));
      answer(ack, { ok: true });
    });
  });
}

httpServer.listen(PORT, HOST, () => console.log(`peer listening on http://${HOST}:${PORT}`));
const stop = () => io.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
