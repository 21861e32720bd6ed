// Limits that pusher-js and the Node `pusher` library must see as Pusher shows them (driven by
// tests/pusher_hostile.rs, with max_presence_members = 2 on the daemon):
// - a third user on a full presence channel gets pusher:subscription_error, which Echo hands
//   to `.error()`; another connection of a user already there joins;
// - the HTTP API refuses `pusher:` and `pusher_internal:` event names (400), so a backend cannot
//   fake `pusher_internal:member_added` into pusher-js's member list.
// Usage: node limits.mjs PORT KEY SECRET APP_ID; prints one JSON object of what it saw.
import PusherServer from 'pusher';
import { authServer, echo, host, say, until } from './common.mjs';

const [port, key, secret, appId] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host, port, useTLS: false });
const out = { here: {}, errors: {}, joining: [] };

// What the library answers: status and body, or the status it rejected with.
async function answer(promise) {
  try {
    const res = await promise;
    return [res.status, await res.json()];
  } catch (err) {
    return [err.status ?? String(err), err.body ?? null];
  }
}

// Joins presence-room as `user`; resolves once it is in (or refused).
function join(app, name, user) {
  const c = echo(port, key, app, user);
  return new Promise((resolve) => {
    c.e.join('room')
      .here((members) => {
        out.here[name] = members.map((m) => m.name).sort();
        resolve(c);
      })
      .joining((m) => out.joining.push([name, m.name]))
      .error((e) => {
        out.errors[name] = e;
        resolve(c);
      });
  });
}

async function main() {
  const app = await authServer(server);
  // One after the other, so that the third user is the one over the limit.
  const a = await join(app, 'a', 1);
  const b = await join(app, 'b', 2);
  const c = await join(app, 'c', 3);
  const a2 = await join(app, 'a2', 1);

  // A backend cannot speak for the protocol.
  out.fake_member = await answer(
    server.trigger('presence-room', 'pusher_internal:member_added', { user_id: '66', user_info: { name: 'user 66' } }));
  out.fake_error = await answer(server.trigger('presence-room', 'pusher:error', { code: 4009 }));
  // A plain event after them: once it is in, anything accepted before it would be too.
  const got = [];
  a.e.join('room').listen('.after', (d) => got.push(d.n));
  out.after = await answer(server.trigger('presence-room', 'after', { n: 1 }));
  await until('the plain event', () => got.length === 1);
  out.members_a = Object.values(a.e.connector.channels['presence-room'].subscription.members.members)
    .map((m) => m.name).sort();
  for (const x of [a, b, c, a2]) x.pusher.disconnect();
  app.close();
  say(out);
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
