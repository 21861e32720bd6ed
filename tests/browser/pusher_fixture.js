// Records what one pusher-js client (its browser build, added to the page before this file)
// sees, for tests/restart.rs, which reads `P` with page evaluations.
'use strict';
window.P = {
  pusher: null,
  states: [],   // every connection state, in order
  sockets: [],  // the socket id of each connection
  closes: [],   // [socket id, code] per close code pusher-js reported (once per connection)
  got: [],      // [socket id, data] per `message` event on the channel

  open(port, key, channel) {
    const pusher = new Pusher(key, {
      wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'],
      cluster: 'mt1', disableStats: true,
    });
    P.pusher = pusher;
    pusher.connection.bind('state_change', (s) => P.states.push(s.current));
    pusher.connection.bind('connected', () => P.sockets.push(pusher.connection.socket_id));
    // A close with a code reaches `error` as a PusherError, and again wrapped by the action
    // pusher-js takes (Protocol.getCloseError): one entry per connection.
    pusher.connection.bind('error', (err) => {
      const code = (err && err.data && err.data.code) || (err && err.error && err.error.data && err.error.data.code);
      const socket = P.sockets[P.sockets.length - 1];
      if (code && !P.closes.some((c) => c[0] === socket && c[1] === code)) P.closes.push([socket, code]);
    });
    pusher.subscribe(channel).bind('message', (data) => P.got.push([pusher.connection.socket_id, data]));
    return true;
  },
};
