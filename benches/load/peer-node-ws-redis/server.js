// The hand-made alternative to a rakit cluster: a Node `ws` server with
// `ioredis` pub/sub, written the usual way, speaking the subset of SPEC
// section 5 that the load generator uses (as peer-tungstenite does):
//   on connect        -> {"type":"welcome","client_id":ID}
//   {"event":"subscribe","channel":C}         -> {"type":"subscribed","channel":C}
//   {"event":"message","channel":C,"data":D}  -> every subscriber of C on any
//       process gets {"type":"channel","channel":C,"client_id":SENDER,"data":D}
//   {"message":M}     -> every client on any process gets {"type":"message",...}
// Run several processes with the same REDIS (a URL or a unix socket path) to
// scale out; without REDIS it is one process on its own.
//
//   node server.js [--port 0] [--redis redis://127.0.0.1:6379 | /path/redis.sock]
//
// Prints `node-ws-redis listening on ws://ADDR` first.
'use strict';
const { WebSocketServer } = require('ws');
const Redis = require('ioredis');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const port = Number(arg('port', '0'));
const redisAt = arg('redis', process.env.REDIS || '');
const node = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;
let nextId = 1;

const channels = new Map(); // channel -> Set of sockets (insertion order)
const clients = new Set();
const sendAll = (set, text) => {
  // Encode once; ws frames it for each socket.
  const buf = Buffer.from(text);
  for (const ws of set) ws.send(buf, { binary: false });
};

// Redis: one connection publishes, one subscribes. A message carries its
// origin so that the origin, which delivered locally already, skips its echo.
let pub = null;
let sub = null;
if (redisAt) {
  pub = new Redis(redisAt);
  sub = new Redis(redisAt);
  sub.subscribe('bus:all');
  sub.on('messageBuffer', (chan, payload) => {
    const text = payload.toString();
    const nl = text.indexOf('\n');
    if (text.slice(0, nl) === node) return;
    const chanName = chan.toString();
    const body = text.slice(nl + 1);
    if (chanName === 'bus:all') sendAll(clients, body);
    else {
      const set = channels.get(chanName.slice(3));
      if (set) sendAll(set, body);
    }
  });
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('listening', () => {
  console.log(`node-ws-redis listening on ws://127.0.0.1:${wss.address().port} (${redisAt ? 'redis' : 'alone'})`);
});
wss.on('connection', (ws) => {
  const id = `${node}-${nextId++}`;
  const mine = new Set();
  clients.add(ws);
  ws.send(JSON.stringify({ type: 'welcome', client_id: id }));
  ws.on('message', (raw, isBinary) => {
    let m;
    try { m = JSON.parse(raw.toString()); } catch {
      ws.send(JSON.stringify({ type: 'error', code: 'invalid_json', message: 'not JSON' }));
      return;
    }
    if (m.event === 'subscribe' && typeof m.channel === 'string') {
      let set = channels.get(m.channel);
      if (!set) {
        channels.set(m.channel, (set = new Set()));
        // Confirmed once Redis has the subscription, so nothing published
        // after the client's `subscribed` can miss this process.
        set.ready = sub ? sub.subscribe(`ch:${m.channel}`) : Promise.resolve();
      }
      set.add(ws);
      mine.add(m.channel);
      const reply = JSON.stringify({ type: 'subscribed', channel: m.channel });
      set.ready.then(() => ws.send(reply));
    } else if (m.event === 'message' && typeof m.channel === 'string') {
      const text = JSON.stringify({ type: 'channel', channel: m.channel, client_id: id, data: m.data ?? null });
      const set = channels.get(m.channel);
      if (set) sendAll(set, text);
      if (pub) pub.publish(`ch:${m.channel}`, `${node}\n${text}`);
    } else if (m.event === undefined && m.message !== undefined) {
      const text = JSON.stringify({ type: 'message', client_id: id, message: m.message });
      sendAll(clients, text);
      if (pub) pub.publish('bus:all', `${node}\n${text}`);
    } else {
      ws.send(JSON.stringify({ type: 'error', code: 'bad_request', message: 'unsupported by this peer' }));
    }
  });
  ws.on('close', () => {
    clients.delete(ws);
    for (const c of mine) {
      const set = channels.get(c);
      set.delete(ws);
      if (set.size === 0) {
        channels.delete(c);
        if (sub) sub.unsubscribe(`ch:${c}`);
      }
    }
  });
  ws.on('error', () => {});
});
