// pusher-js 8.6.0 (through Laravel Echo 2.5.0) against namespaces (SPEC section 15): a
// subscription to a channel whose namespace is not public (token, user, authenticated) is
// refused with pusher:subscription_error, status 403, which Echo hands to `.error()`; public
// namespaces, private- and presence- channels keep working; a Rakit channel with presence
// still lets a Pusher client read it (public namespace).
// Usage: node namespaces.mjs PORT KEY SECRET APP_ID; prints one JSON object of what it saw.
import PusherServer from 'pusher';
import { authServer, echo, host, say, until } from './common.mjs';

const [port, key, secret, appId] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });
const out = { errors: {}, subscribed: [], events: [] };

async function main() {
  const app = await authServer(server);
  const c = echo(port, key, app, 1);
  const watch = (name, channel) => {
    channel
      .subscribed(() => out.subscribed.push(name))
      .error((e) => (out.errors[name] = e))
      .listen('.shipped', (d) => out.events.push([name, d]));
  };
  watch('order.1', c.e.channel('order.1'));
  watch('user.1', c.e.channel('user.1'));
  watch('staff.news', c.e.channel('staff.news'));
  watch('news', c.e.channel('news'));
  watch('room.1', c.e.channel('room.1'));
  watch('private-order.1', c.e.private('order.1'));
  const done = () => Object.keys(out.errors).length + out.subscribed.length === 6;
  await until('every answer', done);
  // The backend publishes everywhere; only what was subscribed arrives.
  for (const channel of ['order.1', 'news', 'private-order.1']) {
    await server.trigger(channel, 'shipped', { on: channel });
  }
  await until('the events', () => out.events.length >= 2);
  await new Promise((r) => setTimeout(r, 200));
  out.subscribed.sort();
  out.events.sort();
  say(out);
  c.e.disconnect();
  app.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    say(out);
    process.exit(1);
  },
);
