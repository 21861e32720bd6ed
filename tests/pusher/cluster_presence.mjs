// pusher-js 8.6.0 clients on two nodes of a cluster, on one presence channel (SPEC sections 11
// and 13). Usage: node cluster_presence.mjs PORT1 PORT2 KEY SECRET APP_ID
// Prints one JSON object of observations on stdout; tests/cluster_pusher.rs checks it.
import Pusher from 'pusher-js';
import PusherServer from 'pusher';

const [port1, port2, key, secret, appId] = process.argv.slice(2);
const host = '127.0.0.1';
const CHANNEL = 'presence-js';
const server = (port) => new PusherServer({ appId, key, secret, host, port, useTLS: false });
const api2 = server(port2);
const users = { 1: { name: 'Ann' }, 2: { name: 'Bob' } };
const out = { a: [], b: [] };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, pred, ms = 8000) {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + ': ' + JSON.stringify(out));
    await sleep(20);
  }
}

// Channel authorization signed by the `pusher` server library, as the application's endpoint would.
function client(port, user) {
  return new Pusher(key, {
    cluster: 'mt1',
    wsHost: host,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) =>
        callback(null, api2.authorizeChannel(socketId, channelName, { user_id: String(user), user_info: users[user] })),
    },
  });
}

// Records what a client's presence channel says: the members on success, then joins and leaves.
function watch(pusher, log) {
  const channel = pusher.subscribe(CHANNEL);
  channel.bind('pusher:subscription_succeeded', (members) => {
    const here = [];
    members.each((m) => here.push([m.id, m.info.name]));
    log.push(['here', here.sort(), members.count]);
  });
  channel.bind('pusher:member_added', (m) => log.push(['added', m.id, m.info.name]));
  channel.bind('pusher:member_removed', (m) => log.push(['removed', m.id]));
}

async function userCount() {
  const res = await api2.get({ path: `/channels/${CHANNEL}`, params: { info: 'user_count' } });
  return (await res.json()).user_count;
}

async function main() {
  const a = client(port1, 1);
  watch(a, out.a);
  await until('a here', () => out.a.length >= 1);
  // Node 2 counts node 1's member (its HTTP API, through the Node `pusher` library).
  await until('node 2 sees user 1', async () => (await userCount()) === 1);
  const b = client(port2, 2);
  watch(b, out.b);
  await until('b here', () => out.b.length >= 1);
  await until('a sees b join', () => out.a.length >= 2);
  out.count_with_b = await userCount();
  b.disconnect();
  await until('a sees b leave', () => out.a.length >= 3);
  await until('node 2 counts one user again', async () => (await userCount()) === 1);
  a.disconnect();
  console.log(JSON.stringify(out));
  process.exit(0);
}

main().catch((e) => {
  console.error(String(e && e.stack ? e.stack : e));
  process.exit(1);
});
