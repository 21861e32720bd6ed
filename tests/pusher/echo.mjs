// Laravel Echo 2.5.0 + pusher-js 8.6.0 against the daemon's Pusher dialect, with a Rakit client
// (ws) on the same channels. Usage: node echo.mjs PORT KEY SECRET APP_ID
// Prints one JSON object of observations on stdout; tests/pusher_js.rs checks it.
import http from 'node:http';
import WebSocket from 'ws';
import Pusher from 'pusher-js';
import Echo from 'laravel-echo';
import PusherServer from 'pusher';

const [port, key, secret, appId] = process.argv.slice(2);
const host = '127.0.0.1';
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });
const forger = new PusherServer({ appId, key, secret: 'not-the-secret-at-all', host, port, useTLS: false });
const out = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, pred, ms = 5000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + ': ' + JSON.stringify(out));
    await sleep(10);
  }
}

// The application's /broadcasting/auth, signing like Laravel's: users by ?user=N.
const users = { 1: { name: 'Ann' }, 2: { name: 'Bob' } };
const auth = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const form = new URLSearchParams(body);
    const socketId = form.get('socket_id');
    const channel = form.get('channel_name');
    const user = new URL(req.url, 'http://x').searchParams.get('user');
    const send = (status, obj) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    if (channel === 'private-denied') return send(403, { message: 'forbidden' });
    const signer = channel === 'private-forged' ? forger : server;
    if (channel.startsWith('presence-')) {
      return send(200, signer.authorizeChannel(socketId, channel, { user_id: user, user_info: users[user] }));
    }
    send(200, signer.authorizeChannel(socketId, channel));
  });
});

function echo(user) {
  return new Echo({
    broadcaster: 'pusher',
    Pusher,
    key,
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    authEndpoint: `http://${host}:${auth.address().port}/broadcasting/auth?user=${user}`,
  });
}

function connected(e) {
  return new Promise((resolve) => {
    const c = e.connector.pusher.connection;
    if (c.state === 'connected') return resolve(c.socket_id);
    c.bind('connected', () => resolve(c.socket_id));
  });
}

function rakit() {
  const ws = new WebSocket(`ws://${host}:${port}/`);
  const got = [];
  ws.on('message', (m) => got.push(JSON.parse(m.toString())));
  return new Promise((resolve) => ws.on('open', () => resolve({ ws, got })));
}

async function main() {
  await new Promise((r) => auth.listen(0, host, r));
  const a = echo(1);
  const b = echo(2);
  out.socket_a = await connected(a);
  out.socket_b = await connected(b);

  // Public channel, both directions across dialects.
  const r = await rakit();
  r.ws.send(JSON.stringify({ event: 'subscribe', channel: 'news' }));
  await until('rakit subscribed', () => r.got.some((m) => m.type === 'subscribed'));
  out.public = [];
  a.channel('news').listen('.message', (d) => out.public.push(['message', d]));
  a.channel('news').listen('.greeting', (d) => out.public.push(['greeting', d]));
  b.channel('news');
  await sleep(200);
  r.ws.send(JSON.stringify({ event: 'message', channel: 'news', data: { text: 'from rakit' } }));
  await until('rakit message at Echo', () => out.public.length >= 1);
  await server.trigger('news', 'greeting', { text: 'from the backend' });
  await until('backend event at Echo', () => out.public.length >= 2);
  await until('backend event at rakit', () => r.got.some((m) => m.event === 'greeting'));

  // .toOthers(): the backend's event skips the socket that caused it.
  out.to_others = [];
  b.channel('news').listen('.shipped', (d) => out.to_others.push(['b', d]));
  a.channel('news').listen('.shipped', (d) => out.to_others.push(['a', d]));
  await server.trigger('news', 'shipped', { id: 7 }, { socket_id: out.socket_a });
  await until('toOthers event', () => out.to_others.length >= 1);
  await sleep(300);

  // Private channels: auth, whisper (client events, not echoed), refusals.
  out.private = [];
  out.whispers = [];
  a.private('orders').subscribed(() => out.private.push('a')).listenForWhisper('typing', (d) => out.whispers.push(['a', d]));
  b.private('orders').subscribed(() => out.private.push('b')).listenForWhisper('typing', (d) => out.whispers.push(['b', d]));
  await until('private subscriptions', () => out.private.length === 2);
  b.private('orders').whisper('typing', { by: 2 });
  await until('whisper', () => out.whispers.length >= 1);
  await sleep(300);
  out.errors = {};
  a.private('denied').error((e) => (out.errors.denied = e.status));
  a.private('forged').error((e) => (out.errors.forged = e.status));
  await until('auth errors', () => out.errors.denied && out.errors.forged);
  r.ws.send(JSON.stringify({ event: 'subscribe', channel: 'private-orders' }));
  await until('rakit refused', () => r.got.some((m) => m.type === 'error'));
  out.rakit_private = r.got.find((m) => m.type === 'error').code;

  // Presence: here / joining / leaving, one member per user.
  out.presence = [];
  const log = (who) => (kind) => (u) => out.presence.push([who, kind, kind === 'here' ? u.map((x) => x.name).sort() : u.name]);
  const la = log('a');
  a.join('room').here(la('here')).joining(la('joining')).leaving(la('leaving'));
  await until('a here', () => out.presence.length >= 1);
  const lb = log('b');
  b.join('room').here(lb('here')).joining(lb('joining')).leaving(lb('leaving'));
  await until('b here and a sees b', () => out.presence.length >= 3);
  const a2 = echo(1);
  await connected(a2);
  const la2 = log('a2');
  a2.join('room').here(la2('here')).joining(la2('joining')).leaving(la2('leaving'));
  await until('a2 here', () => out.presence.some((p) => p[0] === 'a2'));
  await sleep(300);
  a2.disconnect();
  await sleep(500);
  a.disconnect();
  await until('b sees a leave', () => out.presence.some((p) => p[0] === 'b' && p[1] === 'leaving'));
  await sleep(200);

  // The backend's view of the channels.
  const channels = await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } });
  out.channels = await channels.json();
  const members = await server.get({ path: '/channels/presence-room/users' });
  out.users = await members.json();

  out.rakit_got = r.got.filter((m) => m.type === 'channel');
  b.disconnect();
  r.ws.close();
  auth.close();
  console.log(JSON.stringify(out));
  process.exit(0);
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
