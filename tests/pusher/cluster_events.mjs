// The Node `pusher` 5.3.4 library on one node of a cluster (SPEC sections 11 and 13): events that
// exclude a socket of another node (trigger and triggerBatch with socket_id, as Laravel's
// toOthers() sends them), then a fence event for everyone; or terminateUserConnections for a user
// signed in on other nodes. Driven by tests/cluster_pusher_events.rs.
// Usage: node cluster_events.mjs PORT KEY SECRET APP_ID trigger CHANNEL SOCKET_ID
//        node cluster_events.mjs PORT KEY SECRET APP_ID terminate USER
// Prints one JSON object: each call's status.
import PusherServer from 'pusher';

const [port, key, secret, appId, what, ...args] = process.argv.slice(2);
const server = new PusherServer({ appId, key, secret, host: '127.0.0.1', port, useTLS: false });
const out = {};

async function status(promise) {
  try {
    return (await promise).status;
  } catch (err) {
    return err.status ?? String(err);
  }
}

async function main() {
  if (what === 'trigger') {
    const [channel, socketId] = args;
    out.trigger = await status(server.trigger(channel, 'update', { n: 1 }, { socket_id: socketId }));
    out.batch = await status(
      server.triggerBatch([{ channel, name: 'update', data: { n: 2 }, socket_id: socketId }]),
    );
    out.fence = await status(server.trigger(channel, 'update', { n: 3 }));
  } else if (what === 'terminate') {
    out.terminate = await status(server.terminateUserConnections(args[0]));
  } else {
    throw new Error('unknown step ' + what);
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
