// SPEC section 17 as pusher-js (8.6.0, through Laravel Echo) meets it: a client that floods
// gets `pusher:error` 4301, then a close with 4301, and pusher-js does not reconnect (4300-4399
// is "refused"); an ordinary page that subscribes to 100 channels at once is never limited.
// Driven by tests/abuse_pusher.rs. Usage: node flood.mjs PORT KEY SECRET APP_ID; prints one
// JSON object of what it saw.
import PusherServer from 'pusher';
import { authServer, dialled, echo, host, say, sleep, until } from './common.mjs';

const [port, key, secret, appId] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });

async function main() {
  const app = await authServer(server);
  const flooder = echo(port, key, app, 1);
  const page = echo(port, key, app, 2);
  await until('both connected', () =>
    [flooder, page].every((c) => c.pusher.connection.state === 'connected'));

  // The ordinary page: 100 public channels at once, as after a reconnect.
  let subscribed = 0;
  for (let i = 0; i < 100; i++) page.e.channel(`room-${i}`).subscribed(() => subscribed++);
  await until('100 subscriptions', () => subscribed === 100);

  // The flooder: 600 frames at once, far past a burst of 200 and 200 refusals.
  const before = dialled.length;
  const errors = [];
  flooder.pusher.connection.bind('message', (m) => {
    if (m.event === 'pusher:error') errors.push(m.data?.code ?? null);
  });
  for (let i = 0; i < 600; i++) flooder.pusher.send_event('pusher:ping', {});
  await until('the flooder disconnected', () => flooder.pusher.connection.state === 'disconnected');
  // Long enough for a retry (pusher-js retries a 4200-4299 close at once, backs off up to a
  // few seconds after 4100-4199): none may come.
  await sleep(3000);

  // The page was never limited, and is still there.
  const got = [];
  page.e.channel('room-7').listen('.after', (d) => got.push(d.n));
  await server.trigger('room-7', 'after', { n: 1 });
  await until('the event on the page', () => got.length === 1);
  say({
    flooder: { states: flooder.life.states, codes: flooder.life.codes, errors },
    dialled_after_flood: dialled.slice(before),
    page: { states: page.life.states, codes: page.life.codes, subscribed, got },
  });
  page.e.disconnect();
  app.close();
  process.exit(0);
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
