// One load-generator process: holds many Socket.IO websocket connections, subscribes each
// to one entity, and records the latency of every metric:update it receives.
//
//   node bench/loadgen/loadgen.mjs '{"url": "http://127.0.0.1:4004", "token": "...", "clients": 2500,
//                                    "entities": ["e0", "e1"], "offset": 0, "batch": 200, "client": "raw"}'
//
// The writer puts its send time (Unix epoch, milliseconds, as a float) in each metric's
// value; latency is this process's clock at receipt minus that value (same machine, same clock).
//
// client "raw" (default): a minimal Socket.IO v5 client over the ws package, the cheapest
// per connection and per message; it still JSON-parses every event. client "socketio": the
// real socket.io-client 4.x, one Manager per connection (forceNew), websocket transport only unless
// "transports" says otherwise (["polling"]: long-polling only; ["polling", "websocket"]: the client's
// default, polling then the upgrade). Its polling opens a new TCP connection per request (Node's
// XMLHttpRequest without an agent); "keepAlive": true gives each client a keep-alive agent, as a browser.
//
// Control on stdin, one JSON line each: {"cmd": "reset"} zeroes the counters, {"cmd": "report"}
// prints them, {"cmd": "close"} disconnects and exits. Output on stdout: JSON lines with "event".
import fs from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { io as ioClient } from 'socket.io-client';
import WebSocket from 'ws';

// A configuration too large for one argument (thousands of entities) comes as @<path of a JSON file>.
const cfg = JSON.parse(process.argv[2].startsWith('@') ? fs.readFileSync(process.argv[2].slice(1), 'utf8') : process.argv[2]);
const NS = cfg.namespace || '/dashboard';
const BUCKET_MS = 0.1; // histogram resolution
const MAX_MS = 60_000;
const hist = new Uint32Array(MAX_MS / BUCKET_MS + 1);
let received = 0;
let initials = 0;
let errors = 0;
let disconnects = 0;
let minLatency = Infinity;
let maxLatency = 0;
const sockets = [];

const nowMs = () => performance.timeOrigin + performance.now();
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

function onUpdate(data) {
  const latency = nowMs() - data.value;
  received += 1;
  if (latency < minLatency) minLatency = latency;
  if (latency > maxLatency) maxLatency = latency;
  const bucket = Math.min(hist.length - 1, Math.max(0, Math.round(latency / BUCKET_MS)));
  hist[bucket] += 1;
}

function subscribeBody(i) {
  const body = { entityId: cfg.entities[(cfg.offset + i) % cfg.entities.length], entityType: cfg.entityType || 'event' };
  if (cfg.sinceSeq !== undefined && cfg.sinceSeq !== null) body.sinceSeq = cfg.sinceSeq; // resume (dashboard:resume)
  return body;
}

// --- raw Socket.IO v5 over ws -------------------------------------------------------------
function connectRaw(i) {
  return new Promise((resolve, reject) => {
    const base = cfg.url.replace(/^http/, 'ws');
    const ws = new WebSocket(`${base}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    const nsp = NS === '/' ? '' : `${NS},`; // Socket.IO packets: <eio 4><type><nsp,><ack id><json>
    let state = 'open';
    const timer = setTimeout(() => {
      ws.terminate(); // a late handshake must not hold a connection nobody counts
      reject(new Error('connect timeout'));
    }, 30_000);
    ws.on('message', (buf) => {
      const text = buf.toString();
      if (text === '2') return ws.send('3'); // engine.io ping -> pong
      if (text[0] === '0') return ws.send(`40${nsp}${JSON.stringify({ token: cfg.token })}`);
      if (text[0] !== '4' || !text.startsWith(nsp, 2)) return undefined;
      const type = text[1];
      const body = text.slice(2 + nsp.length);
      if (type === '2') {
        const [event, data] = JSON.parse(body);
        if (event === 'metric:update') onUpdate(data);
        else if (event === 'dashboard:initial') initials += 1;
        else if (event === 'error') errors += 1;
      } else if (type === '0') {
        // connected to the namespace: subscribe, asking for acknowledgement 1
        state = 'subscribing';
        ws.send(`42${nsp}1${JSON.stringify(['subscribe', subscribeBody(i)])}`);
      } else if (type === '4') {
        clearTimeout(timer);
        reject(new Error(`connect_error ${body}`));
      } else if (type === '3') {
        const [ack] = JSON.parse(body.slice(1)); // "1[...]"
        clearTimeout(timer);
        if (ack && ack.ok) {
          state = 'subscribed';
          resolve(ws);
        } else reject(new Error(`subscribe refused ${JSON.stringify(ack)}`));
      }
      return undefined;
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      if (state !== 'subscribed') reject(err);
    });
    ws.on('close', () => {
      if (state === 'subscribed') disconnects += 1;
      state = 'closed';
    });
  });
}

// --- socket.io-client ----------------------------------------------------------------------
function connectSocketIo(i) {
  return new Promise((resolve, reject) => {
    const socket = ioClient(cfg.url + NS, {
      auth: { token: cfg.token },
      transports: cfg.transports || ['websocket'],
      agent: cfg.keepAlive ? new http.Agent({ keepAlive: true }) : false,
      reconnection: false,
      forceNew: true,
      timeout: 30_000,
    });
    let subscribed = false;
    const fail = (err) => {
      socket.disconnect(); // a client that failed must not hold a connection nobody counts
      reject(err);
    };
    socket.on('metric:update', onUpdate);
    socket.on('dashboard:initial', () => (initials += 1));
    socket.on('error', () => (errors += 1));
    socket.on('disconnect', (reason) => {
      if (subscribed) disconnects += 1;
      else reject(new Error(`disconnected before subscribing: ${reason}`));
    });
    socket.on('connect_error', (err) => reject(err));
    socket.on('connect', () => {
      socket.timeout(30_000).emit('subscribe', subscribeBody(i), (err, ack) => {
        if (err) fail(err);
        else if (ack && ack.ok) {
          subscribed = true;
          resolve(socket);
        } else fail(new Error(`subscribe refused ${JSON.stringify(ack)}`));
      });
    });
  });
}

const connect = cfg.client === 'socketio' ? connectSocketIo : connectRaw;

async function connectAll() {
  const started = nowMs();
  let failed = 0;
  let firstError = null;
  for (let i = 0; i < cfg.clients; i += cfg.batch) {
    const n = Math.min(cfg.batch, cfg.clients - i);
    const results = await Promise.allSettled(Array.from({ length: n }, (_, k) => connect(i + k)));
    for (const r of results) {
      if (r.status === 'fulfilled') sockets.push(r.value);
      else {
        failed += 1;
        firstError = firstError || String(r.reason && r.reason.message ? r.reason.message : r.reason);
      }
    }
  }
  out({ event: 'ready', connected: sockets.length, failed, firstError, seconds: (nowMs() - started) / 1000 });
}

function report() {
  const buckets = [];
  for (let b = 0; b < hist.length; b += 1) if (hist[b]) buckets.push([b, hist[b]]);
  const mem = process.memoryUsage();
  out({
    event: 'report',
    received,
    initials,
    errors,
    disconnects,
    open: sockets.length - disconnects,
    bucketMs: BUCKET_MS,
    buckets,
    minMs: received ? minLatency : null,
    maxMs: received ? maxLatency : null,
    rss: mem.rss,
    cpu: process.cpuUsage(),
  });
}

function reset() {
  hist.fill(0);
  received = 0;
  errors = 0;
  minLatency = Infinity;
  maxLatency = 0;
  out({ event: 'reset' });
}

let closing = false;
function close() {
  if (closing) return;
  closing = true;
  for (const s of sockets) {
    if (s.terminate) s.terminate();
    else s.disconnect();
  }
  out({ event: 'closed' });
  setTimeout(() => process.exit(0), 50);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const { cmd } = JSON.parse(line);
  if (cmd === 'reset') reset();
  else if (cmd === 'report') report();
  else if (cmd === 'close') close();
});
process.stdin.on('end', close);
connectAll().catch((err) => {
  out({ event: 'fatal', error: String(err) });
  process.exit(1);
});
