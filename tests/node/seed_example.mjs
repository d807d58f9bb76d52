// The seed document's socket.io-client example ("Connect", "Subscribe", "Listen for
// server events", "Full Example"), run as written against a live server. Changed only in:
//   * the URL, the token and the entity id, read from the environment;
//   * TRANSPORTS=default leaves out the `transports` option (polling, then upgrade);
//     a comma list such as "websocket" or "polling,websocket" is passed as given;
//   * no TOKEN in the environment leaves out `auth` altogether (the missing-token case);
//   * console.log / renderDashboard / updateMetricTile report one JSON line per event on
//     stdout, {"event": name, "data": payload}, so tests/test_node_client.py can assert.
//
// Protocol with the test:
//   {"event":"ready"}  after dashboard:initial: the test may now write data;
//   stdin "cleanup"    runs the seed's cleanup() (unsubscribe, then disconnect);
//   {"event":"done"}   the process then ends by itself (nothing left open) with exit code 0.
// Exit codes: 0 done, 2 refused by the server (connect_error that will not be retried),
// 3 hard timeout, 4 still running after cleanup, 5 stdin closed before cleanup, 64 bad usage.

import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';

const TIMEOUT_MS = Number(process.env.TIMEOUT_MS || 30000);
const LINGER_MS = 5000;

function report(event, data) {
  const line = data === undefined ? { event } : { event, data };
  // stdout is a pipe: writes are synchronous on Linux, so a line is out before any exit.
  process.stdout.write(JSON.stringify(line) + '\n');
}

function finish(code, why) {
  if (why) report('exit', { code, why });
  process.exit(code);
}

const url = process.env.SERVER_URL;
const entityId = process.env.ENTITY_ID;
const token = process.env.TOKEN; // undefined: connect without `auth`
const transports = process.env.TRANSPORTS || 'websocket';
if (!url || !entityId) finish(64, 'SERVER_URL and ENTITY_ID are required');

const hardTimeout = setTimeout(() => finish(3, `hard timeout after ${TIMEOUT_MS} ms`), TIMEOUT_MS);

// --- the seed's Full Example -------------------------------------------------------------

const options = {
  auth: { token },
  transports: ['websocket'],
  reconnection: true,
  reconnectionAttempts: 5,
  reconnectionDelay: 1000,
};
if (token === undefined) delete options.auth;
if (transports === 'default') delete options.transports;
else options.transports = transports.split(',');

const socket = io(url + '/dashboard', options);

socket.on('connect', () => {
  report('connect');
  // Subscribe to event metrics
  socket.emit('subscribe', {
    entityId,
    entityType: 'event',
  });
});

socket.on('connect_error', (err) => {
  // Seed: console.error('Connection failed:', err.message);
  report('connect_error', { message: err.message, data: err.data ?? null, active: socket.active });
  // Not active: the server refused the namespace and the client will not retry.
  if (!socket.active) finish(2);
});

socket.on('dashboard:initial', (data) => {
  // Seed: renderDashboard(data);
  report('dashboard:initial', data);
  report('ready');
});

socket.on('metric:update', (data) => {
  // Seed: updateMetricTile(data.metricName, data.value);
  report('metric:update', data);
});

socket.on('dashboard:update', (data) => {
  report('dashboard:update', data);
});

socket.on('error', (err) => {
  report('error', err);
});

socket.on('disconnect', (reason) => {
  report('disconnect', reason);
});

// Cleanup on component unmount
function cleanup() {
  socket.emit('unsubscribe', { entityId });
  socket.disconnect();
}

// --- reporting the transport, and the test's stdin ---------------------------------------

// The manager's engine opens on its first transport (polling unless told otherwise) and may
// upgrade before or after the namespace's 'connect', so both are reported here, not there.
socket.io.on('open', () => {
  const engine = socket.io.engine;
  report('open', { transport: engine.transport.name });
  engine.on('upgrade', (transport) => report('upgrade', { transport: transport.name }));
});

let cleanedUp = false;
const stdin = createInterface({ input: process.stdin });
stdin.on('line', (line) => {
  if (line.trim() !== 'cleanup' || cleanedUp) return;
  cleanedUp = true;
  clearTimeout(hardTimeout);
  cleanup();
  stdin.close();
  process.stdin.destroy();
  // Unreferenced: it only fires when something else (a socket, a timer) keeps the process alive.
  setTimeout(() => finish(4, `still running ${LINGER_MS} ms after cleanup()`), LINGER_MS).unref();
});
stdin.on('close', () => {
  if (!cleanedUp) finish(5, 'stdin closed before cleanup');
});

process.on('exit', (code) => {
  if (code === 0 && cleanedUp) report('done');
});
