// pusher-js (via Laravel Echo) across a daemon restart on the same port. Driven by
// tests/pusher_lifecycle.rs. Usage: node reconnect.mjs PORT KEY SECRET APP_ID
//   prints {"ready":SOCKET_ID} once subscribed to a public, a private and a presence channel;
//   waits for the line "go" (the old daemon got SIGTERM, a new one listens or will listen on
//   PORT); prints one JSON object of what it saw once it is back on all three channels and got
//   an event published after the restart on each (back_ms: from the close to the last
//   re-subscription).
import PusherServer from 'pusher';
import { authServer, dialled, echo, host, say, step, until } from './common.mjs';

const [port, key, secret, appId] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });
const channels = ['news', 'private-orders', 'presence-room'];

async function main() {
  const app = await authServer(server);
  const { e, pusher, life } = echo(port, key, app, 1);
  const subscribed = Object.fromEntries(channels.map((c) => [c, 0]));
  const got = Object.fromEntries(channels.map((c) => [c, []]));
  const on = (channel, name) => channel.subscribed(() => subscribed[name]++).listen('.after-restart', (d) => got[name].push(d));
  on(e.channel('news'), 'news');
  on(e.private('orders'), 'private-orders');
  on(e.join('room').here(() => {}), 'presence-room');
  await until('first subscriptions', () => channels.every((c) => subscribed[c] === 1));
  const before = dialled.length;
  say({ ready: pusher.connection.socket_id });

  let closed = null;
  pusher.connection.bind('state_change', (s) => (closed ??= s.previous === 'connected' ? Date.now() : null));
  const line = await step();
  if (line !== 'go') throw new Error('unexpected step ' + line);
  await until('reconnection and re-subscriptions', () => pusher.connection.state === 'connected' && channels.every((c) => subscribed[c] === 2), 40000);
  const back_ms = Date.now() - closed;
  await server.trigger(channels, 'after-restart', { n: 1 });
  await until('events after the restart', () => channels.every((c) => got[c].length === 1));
  say({
    sockets: life.sockets,
    codes: life.codes,
    states: life.states,
    using_tls: pusher.connection.isUsingTLS(),
    dialled_before: dialled.slice(0, before),
    dialled_after: dialled.slice(before),
    back_ms,
    got,
  });
  e.disconnect();
  app.close();
  process.exit(0);
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
