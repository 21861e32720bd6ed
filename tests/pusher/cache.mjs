// Cache channels (SPEC section 16) with pusher-js 8.6.0 and the Node `pusher` 5.3.4 server
// library. Driven by tests/pusher_cache.rs.
//
// Usage: node cache.mjs PORT KEY SECRET APP_ID single
//          the whole single-node story: misses, the last event after subscription_succeeded
//          (public, private with auth, presence with a client event's user_id), refusals.
//        node cache.mjs PORT KEY SECRET APP_ID first CHANNEL...
//          one pusher-js client subscribes to each CHANNEL (signed where it needs it, as user 7
//          on presence channels) and reports what came first after subscription_succeeded.
// Prints one JSON object on stdout.
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import { authServer, host, until } from './common.mjs';

const [port, key, secret, appId, mode, ...channels] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });
const forger = new PusherServer({ appId, key, secret: 'not-the-secret-at-all', host, port, useTLS: false });

function client(app, user) {
  const p = new Pusher(key, {
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: { endpoint: `http://${host}:${app.address().port}/broadcasting/auth?user=${user}`, transport: 'ajax' },
  });
  return p;
}

// Subscribes `p` to `name`; `log` gets every event of the channel in order, as
// [event, data] (and [event, data, user_id] for those with metadata), from its
// subscription_succeeded on; `done` resolves with the events up to the first one after it
// (or the error).
function watch(p, name) {
  const log = [];
  const ch = p.subscribe(name);
  ch.bind_global((event, data) => {
    if (event === 'pusher:subscription_error') log.push([event, data.status]);
    else if (event === 'pusher:subscription_succeeded') log.push([event]);
    else if (!event.startsWith('client-')) log.push([event, data === undefined ? null : data]);
  });
  // Client events carry their sender's user_id on presence channels (pusher-js's metadata).
  ch.bind('client-typing', (data, meta) => log.push(['client-typing', data, meta && meta.user_id]));
  const done = until(`the first event on ${name}`, () => log.length >= 2 || (log[0] && log[0][0] === 'pusher:subscription_error')).then(() => log.slice());
  return { ch, log, done };
}

function connected(p) {
  return new Promise((resolve) => {
    if (p.connection.state === 'connected') return resolve(p.connection.socket_id);
    p.connection.bind('connected', () => resolve(p.connection.socket_id));
  });
}

async function single(out) {
  const app = await authServer(server);
  const forged = await authServer(forger);
  const a = client(app, 1);
  await connected(a);

  // Nothing published yet: subscription_succeeded, then pusher:cache_miss.
  const first = watch(a, 'cache-news');
  out.miss = await first.done;

  // Two events from the backend (trigger, then triggerBatch): A hears both.
  await server.trigger('cache-news', 'headline', { n: 1 });
  await server.triggerBatch([{ channel: 'cache-news', name: 'headline', data: { n: 2 } }]);
  await until('both headlines at A', () => first.log.length >= 4);
  out.live = first.log.slice(2);

  // A new subscriber: subscription_succeeded, then the last event as it was.
  const b = client(app, 2);
  await connected(b);
  out.hit = await watch(b, 'cache-news').done;

  // A private cache channel, published to before anyone subscribed; authorized by the app.
  await server.trigger('private-cache-doc', 'state', { rev: 9 });
  out.private = await watch(b, 'private-cache-doc').done;
  // A forged authorization gets the subscription error, and not the cached event.
  const c = client(forged, 3);
  await connected(c);
  out.forged = await watch(c, 'private-cache-doc').done;

  // A presence cache channel: a member's client event is cached with its user_id. Another
  // member hears it first, so it was relayed (and cached) before B subscribes.
  const d = watch(a, 'presence-cache-room');
  out.presence_first = await d.done;
  const w = client(app, 5);
  await connected(w);
  const witness = watch(w, 'presence-cache-room');
  await witness.done;
  d.ch.trigger('client-typing', { typing: true });
  await until('the client event at the witness', () => witness.log.some((e) => e[0] === 'client-typing'));
  out.presence = await watch(b, 'presence-cache-room').done;

  // A channel that is no cache channel: no miss; the first thing after subscription_succeeded
  // is the next event.
  const plain = watch(b, 'news');
  await until('news subscribed', () => plain.log.length >= 1);
  await server.trigger('news', 'fence', {});
  await until('the fence', () => plain.log.length >= 2);
  out.plain = plain.log;

  for (const p of [a, b, c, w]) p.disconnect();
  app.close();
  forged.close();
}

async function first(out) {
  const app = await authServer(server);
  const p = client(app, 7);
  await connected(p);
  for (const name of channels) {
    const log = await watch(p, name).done;
    out[name] = log[1] ?? log[0];
  }
  p.disconnect();
  app.close();
}

async function main() {
  const out = {};
  if (mode === 'single') await single(out);
  else if (mode === 'first') await first(out);
  else throw new Error('unknown mode ' + mode);
  console.log(JSON.stringify(out));
  process.exit(0);
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
