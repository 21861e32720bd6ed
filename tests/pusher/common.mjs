// Shared by the step-by-step scripts (reconnect.mjs, terminate.mjs): waiting, stdin steps, the
// application's auth endpoints signed with the Node `pusher` library, and Echo clients that
// record their connection's life (states, close codes, the URLs pusher-js dialled).
import http from 'node:http';
import readline from 'node:readline';
import Pusher from 'pusher-js';
import Echo from 'laravel-echo';

export const host = '127.0.0.1';
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function until(what, pred, ms = 10000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(10);
  }
}

// Lines from the Rust side, one per step.
const input = readline.createInterface({ input: process.stdin });
const waiting = [];
const queued = [];
input.on('line', (line) => (waiting.length ? waiting.shift()(line) : queued.push(line)));
export function step() {
  return queued.length ? Promise.resolve(queued.shift()) : new Promise((r) => waiting.push(r));
}
export function say(obj) {
  console.log(JSON.stringify(obj));
}

// Every URL pusher-js dials ("Connecting" debug lines), in order.
export const dialled = [];
// PUSHER_DEBUG=1 shows pusher-js's debug log on stderr.
Pusher.log = (message) => {
  if (process.env.PUSHER_DEBUG) console.error(message);
  if (message.includes('Connecting')) {
    for (const m of message.matchAll(/"url":"([^"]+)"/g)) dialled.push(m[1]);
  }
};

// The application's /broadcasting/auth (channels) and /broadcasting/user-auth (pusher:signin),
// signed by `server`: users by ?user=N.
export async function authServer(server) {
  const app = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      const url = new URL(req.url, 'http://x');
      const user = url.searchParams.get('user');
      const socketId = form.get('socket_id');
      let answer;
      if (url.pathname === '/broadcasting/user-auth') {
        answer = server.authenticateUser(socketId, { id: user, name: 'user ' + user });
      } else {
        const channel = form.get('channel_name');
        const presence = channel.startsWith('presence-') ? { user_id: user, user_info: { name: 'user ' + user } } : undefined;
        answer = server.authorizeChannel(socketId, channel, presence);
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise((r) => app.listen(0, host, r));
  return app;
}

// An Echo client of `user` on the daemon at `port`, and what its connection went through.
export function echo(port, key, app, user) {
  const base = `http://${host}:${app.address().port}/broadcasting`;
  const e = new Echo({
    broadcaster: 'pusher',
    Pusher,
    key,
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: `${base}/auth?user=${user}`,
    userAuthentication: { endpoint: `${base}/user-auth?user=${user}`, transport: 'ajax' },
  });
  const pusher = e.connector.pusher;
  const life = { states: [], codes: [], sockets: [] };
  pusher.connection.bind('state_change', (s) => life.states.push(s.current));
  pusher.connection.bind('connected', () => life.sockets.push(pusher.connection.socket_id));
  // A close with a code reaches `error` as a PusherError (pusher-js's Protocol.getCloseError),
  // and again wrapped in a WebSocketError by the action it takes.
  pusher.connection.bind('error', (err) => {
    const code = err?.data?.code ?? err?.error?.data?.code;
    if (code && !life.codes.includes(code)) life.codes.push(code);
  });
  return { e, pusher, life };
}
