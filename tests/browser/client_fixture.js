// Records everything one RakitWebSocket (clients/js/rakit-websocket.js) reports, for
// tests/browser_client.rs, which reads `T` with page evaluations.
'use strict';
window.T = {
  rt: null,
  states: [],       // [state, info] per `state` event
  events: [],       // [name, ...args] per welcome/message/private/presence/error event
  tokenCalls: [],   // [channel, clientId] per channelToken call
  subs: {},         // channel -> Subscription
  got: {},          // channel -> [[data, meta]] per onMessage
  subscribed: {},   // channel -> [reply] per onSubscribed
  recovered: {},    // channel -> [{recovered}] per onRecover
  histories: [],    // [ok, value or {code, message}] per settled history()

  // `options.channelTokens`: a channelToken that records its calls and gives "tok-CLIENTID".
  open(urls, options) {
    const o = Object.assign({}, options);
    if (o.channelTokens) {
      delete o.channelTokens;
      o.channelToken = async (channel, clientId) => {
        T.tokenCalls.push([channel, clientId]);
        return 'tok-' + clientId;
      };
    }
    T.rt = new RakitWebSocket(urls, o);
    T.rt.on('state', (state, info) => T.states.push([state, info]));
    for (const name of ['welcome', 'message', 'private', 'presence', 'error']) {
      T.rt.on(name, (...args) => T.events.push([name, ...args]));
    }
    return true;
  },

  sub(channel) {
    T.got[channel] = [];
    T.subscribed[channel] = [];
    T.recovered[channel] = [];
    T.subs[channel] = T.rt.subscribe(channel, {
      onMessage: (data, meta) => T.got[channel].push([data, meta]),
      onSubscribed: (reply) => T.subscribed[channel].push(reply),
      onRecover: (r) => T.recovered[channel].push(r),
    });
    return true;
  },

  history(channel, options) {
    T.subs[channel].history(options).then(
      (reply) => T.histories.push([true, reply]),
      (e) => T.histories.push([false, { code: e.code, message: e.message }]),
    );
    return true;
  },

  // The events called `name`, without their names.
  of(name) {
    return T.events.filter((e) => e[0] === name).map((e) => e.slice(1));
  },
};
