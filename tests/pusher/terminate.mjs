// `POST /apps/{id}/users/{user}/terminate_connections` through the Node `pusher` library's
// terminateUserConnections, against pusher-js connections signed in with Echo's
// userAuthentication (pusher:signin). Driven by tests/pusher_lifecycle.rs.
// Usage: node terminate.mjs PORT KEY SECRET APP_ID; prints one JSON object of what it saw.
import PusherServer from 'pusher';
import { authServer, echo, host, say, sleep, until } from './common.mjs';

const [port, key, secret, appId] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });
const forger = new PusherServer({ appId, key, secret: 'not-the-secret-at-all', host, port, useTLS: false });
const out = {};

// What the library answers: status and body, or the status it rejected with.
async function answer(promise) {
  try {
    const res = await promise;
    return [res.status, await res.json()];
  } catch (err) {
    return [err.status ?? String(err), err.body ?? null];
  }
}

async function main() {
  const app = await authServer(server);
  // a1, a2: user 1 signed in twice; b: user 2 signed in; p: on presence as user 1, not signed in.
  const clients = { a1: echo(port, key, app, 1), a2: echo(port, key, app, 1), b: echo(port, key, app, 2), p: echo(port, key, app, 1) };
  const news = {};
  const toUser = {};
  for (const [name, c] of Object.entries(clients)) {
    news[name] = [];
    toUser[name] = [];
    c.e.channel('news').listen('.update', (d) => news[name].push(d.n));
    if (name === 'p') {
      c.e.join('room').here(() => (c.here = true));
    } else {
      c.pusher.signin();
      c.pusher.user.bind('direct', (d) => toUser[name].push(d.n));
    }
  }
  const signedIn = (c) => c.pusher.user.user_data && c.pusher.user.serverToUserChannel?.subscribed;
  await until('signins and subscriptions', () =>
    ['a1', 'a2', 'b'].every((n) => signedIn(clients[n])) && clients.p.here &&
    Object.values(clients).every((c) => c.e.connector.channels.news?.subscription.subscribed));

  // sendToUser reaches every connection signed in as that user, and only those.
  out.send_to_user = await answer(server.sendToUser('1', 'direct', { n: 1 }));
  await until('events to user 1', () => toUser.a1.length && toUser.a2.length);
  await server.trigger('news', 'update', { n: 1 });
  await until('news 1 everywhere', () => Object.values(news).every((l) => l.length === 1));
  out.to_user = toUser;

  // A wrong secret is refused (b stays to the end).
  out.forged = await answer(forger.terminateUserConnections('2'));
  out.unknown = await answer(server.terminateUserConnections('nobody'));
  out.terminate = await answer(server.terminateUserConnections('1'));
  const down = (n) => clients[n].pusher.connection.state === 'disconnected';
  await until('user 1 disconnected', () => down('a1') && down('a2'));
  // pusher-js would be back within a second (backoff) or at once (retry) were 4009 not "refused".
  await sleep(2500);
  await server.trigger('news', 'update', { n: 2 });
  await until('news 2 at b and p', () => news.b.length === 2 && news.p.length === 2);
  const count = await server.get({ path: '/channels/news', params: { info: 'subscription_count' } });
  out.news_subscribers = (await count.json()).subscription_count;
  out.news = news;
  out.life = Object.fromEntries(Object.entries(clients).map(([n, c]) => [n, { ...structuredClone(c.life), state: c.pusher.connection.state }]));
  for (const c of Object.values(clients)) c.e.disconnect();
  app.close();
  say(out);
  process.exit(0);
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err), JSON.stringify(out));
  process.exit(1);
});
