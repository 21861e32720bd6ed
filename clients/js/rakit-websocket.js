/*! rakit-websocket browser client (SPEC 16.2): one file, no dependencies. docs/client.md */
(function () {
  'use strict';

  // Closes after which reconnecting would be wrong: kicked by the server, rate limited, policy.
  const FINAL = [1008, 4000, 4029];
  // A server going away (1001, what a daemon's SIGTERM sends) or restarting (1012): in a restart
  // without loss (SPEC 18) its successor already listens, so the next attempt goes at once.
  const RESTART = [1001, 1012];
  // In `waits`: the pong of a fence or of a liveness ping.
  const PONG = 'pong';

  // Full jitter: before reconnect attempt n (0: the first after a loss) a random wait in
  // [0, min(20 s, 0.5 s * 2^n)], in milliseconds.
  function backoff(n, random) {
    return (random || Math.random)() * Math.min(20000, 500 * 2 ** Math.min(n, 16));
  }

  // A handler that throws must not break the client: rethrown on its own, so it is reported.
  function call(fn, args) {
    if (typeof fn !== 'function') return;
    try { fn(...args); } catch (e) { setTimeout(() => { throw e; }); }
  }

  function failure(code, message, reply) {
    return Object.assign(new Error(message), { code, reply });
  }

  const text = (e) => String((e && e.message) || e);

  class RakitWebSocket {
    // urls: one URL or a list, tried in turn (default: this page's host). options: token (a
    // session token, or a function giving one or a Promise of one before every connect),
    // channelToken(channel, clientId) (asked before every subscribe: docs/client.md), timeout
    // (ms without an answer before a connection counts as dead, default 10000), pingInterval
    // (ms of silence before the client asks for a pong, default 25000; 0: never).
    constructor(urls, options) {
      const o = options || {};
      this.urls = [].concat(urls || []);
      if (!this.urls.length && typeof location !== 'undefined') {
        this.urls = [(location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/'];
      }
      this.options = { token: o.token, channelToken: o.channelToken, timeout: o.timeout || 10000,
        pingInterval: o.pingInterval === undefined ? 25000 : o.pingInterval };
      this.clientId = null;   // from `welcome`; null while not connected
      this.state = null;
      this.ws = null;         // the current socket: events of any other are stale
      this.subs = new Map();  // channel -> Subscription
      this.waits = [];        // requests sent and not yet answered, in order: PONG or a history request
      this.queued = [];       // history requests waiting for their channel's subscribe to be sent
      this.handlers = {};
      this.url = 0;           // the URL of the next attempt (moves on after a failed attempt)
      this.attempt = 0;       // failed attempts since the last welcome
      this.timer = null;      // the wait before the next attempt
      this.dog = null;        // the current socket's watchdog
      this.closed = false;
      // After the caller's own code, so that handlers it adds at once see `connecting`.
      Promise.resolve().then(() => this._connect());
    }

    on(event, handler) {
      (this.handlers[event] = this.handlers[event] || []).push(handler);
      return this;
    }

    subscribe(channel, handlers) {
      if (this.subs.has(channel)) throw new Error('already subscribed to ' + channel);
      const sub = new Subscription(this, channel, handlers || {});
      this.subs.set(channel, sub);
      if (this.clientId) this._subscribe(sub);
      return sub;
    }

    // These return whether the message was sent (false while not connected). `send` takes any
    // message of SPEC 5 (a command, a publish without subscribing), except `{"ping":X}`.
    broadcast(message) { return this.send({ message }); }
    privateMessage(clientId, message) { return this.send({ to: clientId, message }); }

    send(msg) {
      if (!this.clientId || this.ws.readyState !== 1) return false;
      this.ws.send(JSON.stringify(msg));
      return true;
    }

    close() {
      if (this.closed) return;
      const ws = this.ws;
      this.closed = true;
      this._lost(1000, 'closed by the client');
      if (ws) ws.close(1000);
    }

    _emit(event, ...args) {
      (this.handlers[event] || []).forEach((h) => call(h, args));
    }

    _setState(state, info) {
      if (state === this.state) return;
      this.state = state;
      this._emit('state', state, info || {});
    }

    async _connect() {
      this.timer = null;
      if (this.closed) return;
      this._setState('connecting');
      const base = this.urls[this.url % this.urls.length];
      let token = this.options.token;
      try {
        if (typeof token === 'function') token = await token();
      } catch (e) {
        this._emit('error', { code: 'token', message: text(e) });
        token = null;
      }
      if (this.closed) return;
      const url = token ? base + (base.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : base;
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (e) {
        this._emit('error', { code: 'bad_url', message: text(e) });
        return this._lost(1006, 'bad URL');
      }
      this.ws = ws;
      ws.onmessage = (e) => { if (this.ws === ws) this._frame(e.data); };
      ws.onclose = (e) => { if (this.ws === ws) this._lost(e.code, e.reason); };
      this._watch(this.options.timeout, true);
    }

    // The watchdog: after `ms` more of silence the connection is dead, or (`dead` false) asked
    // for a pong, which must come within `timeout`.
    _watch(ms, dead) {
      const ws = this.ws;
      clearTimeout(this.dog);
      if (!ms) return;
      this.dog = setTimeout(() => {
        if (this.ws !== ws) return;
        if (dead) {
          this._lost(1006, 'no answer within ' + this.options.timeout + ' ms');
          ws.close();
        } else if (this.send({ ping: 0 })) {
          this.waits.push(PONG);
          this._watch(this.options.timeout, true);
        }
      }, ms);
    }

    // The connection is gone, or the attempt failed: tell, and try again unless that is final.
    _lost(code, reason) {
      const welcomed = this.clientId !== null;
      this.ws = null;
      this.clientId = null;
      clearTimeout(this.dog);
      for (const w of this.waits.splice(0)) {
        if (w !== PONG) w.reject(failure('disconnected', 'the connection was lost before the answer'));
      }
      if (!welcomed) this.url++;
      if (FINAL.includes(code)) this.closed = true;
      const info = { code, reason: reason || '' };
      if (this.closed) {
        clearTimeout(this.timer);
        this.timer = null;
        for (const w of this.queued.splice(0)) w.reject(failure('closed', 'the client is closed'));
      } else {
        // At once only after a connection that was up: a server that closes every attempt
        // with 1001 gets the backoff like any failure.
        info.delay = welcomed && RESTART.includes(code) ? 0 : backoff(this.attempt++);
        this.timer = setTimeout(() => this._connect(), info.delay);
      }
      this._setState('disconnected', info);
    }

    _frame(data) {
      let m;
      try { m = JSON.parse(data); } catch (e) { return; }
      if (!m || typeof m !== 'object') return;
      this._watch(this.options.pingInterval, false);
      const sub = typeof m.channel === 'string' ? this.subs.get(m.channel) : undefined;
      switch (m.type) {
        case 'welcome':
          this.clientId = m.client_id;
          this.attempt = 0;
          this.subs.forEach((s) => this._subscribe(s));
          this._setState('connected');
          this._emit('welcome', m);
          break;
        case 'message':
        case 'private':
          this._emit(m.type, m.message, { client_id: m.client_id });
          break;
        case 'presence':
          this._emit('presence', m);
          break;
        case 'channel':
        case 'subscribed':
        case 'join':
        case 'leave':
          if (sub) sub['_' + m.type](m);
          break;
        case 'pong':
          // Answers come in request order: a history request before this pong got none.
          while (this.waits.length) {
            const w = this.waits.shift();
            if (w === PONG) break;
            w.reject(failure('no_answer', 'the server did not answer the request'));
          }
          break;
        case 'history':
          // Its fence's pong may have been refused (rate limit); it came before this answer.
          while (this.waits[0] === PONG) this.waits.shift();
          if (this.waits.length) this.waits.shift().resolve(m);
          break;
        case 'error':
          this._error(m);
          break;
      }
    }

    // With a history request at the head of `waits`, its fence's pong has come, so everything
    // sent before the request has been answered: the next error is the request's own. Except
    // unknown_client, which a private message to a client on another node may bring late.
    _error(m) {
      const w = this.waits[0];
      if (w && w !== PONG && m.code !== 'unknown_client' && (m.channel === undefined || m.channel === w.channel)) {
        this.waits.shift();
        w.reject(failure(m.code, m.message, m));
      } else {
        this._emit('error', m);
      }
    }

    // Sends the subscribe of `sub` on the current connection: with a fresh channel token when
    // the application gives them, with `since` once it has delivered from a history stream.
    async _subscribe(sub) {
      const ws = this.ws;
      let token;
      sub.ws = null;
      if (this.options.channelToken) {
        try {
          token = await this.options.channelToken(sub.channel, this.clientId);
        } catch (e) {
          return this._emit('error', { code: 'channel_token', channel: sub.channel, message: text(e) });
        }
        if (this.ws !== ws || this.subs.get(sub.channel) !== sub) return;
      }
      const msg = { event: 'subscribe', channel: sub.channel };
      sub.token = token || undefined;
      if (sub.token) msg.token = sub.token;
      if (sub.pos) msg.since = { offset: sub.pos.offset, epoch: sub.pos.epoch };
      sub.since = !!sub.pos;
      sub.ws = ws;
      this.send(msg);
      const ready = this.queued.filter((w) => w.sub === sub);
      this.queued = this.queued.filter((w) => w.sub !== sub);
      ready.forEach((w) => this._history(w));
    }

    _history(w) {
      const msg = { event: 'history', channel: w.channel, limit: w.limit };
      if (w.since !== undefined) msg.since = w.since;
      if (w.sub.token) msg.token = w.sub.token;
      // The fence: everything sent before it is answered before its pong.
      if (this.send({ ping: 0 })) this.waits.push(PONG);
      if (this.send(msg)) this.waits.push(w);
    }
  }

  class Subscription {
    constructor(rt, channel, handlers) {
      this.rt = rt;
      this.channel = channel;
      this.handlers = handlers;
      this.pos = null;      // {offset, epoch}: the last publication delivered (history channels)
      this.since = false;   // a subscribe with `since` awaits its answer
      this.token = undefined;
      this.ws = null;       // the socket this subscription's subscribe went out on
      this.presence = [];   // the channel's members (SPEC 15.3), in a namespace with presence
    }

    // Whether it was sent (false while not connected).
    publish(data) {
      return this.rt.send({ event: 'message', channel: this.channel, data });
    }

    // A Promise of the `history` reply (SPEC 16). Rejected with an Error whose `code` is the
    // server's error code (`reply` the error frame), or `disconnected`, `closed`, `no_answer`.
    // Sent once this subscription's subscribe has gone out on the current connection.
    history(options) {
      const o = options || {};
      return new Promise((resolve, reject) => {
        const rt = this.rt;
        if (rt.closed || rt.subs.get(this.channel) !== this) return reject(failure('closed', 'not subscribed'));
        const w = { sub: this, channel: this.channel, limit: o.limit || 100, since: o.since, resolve, reject };
        if (rt.clientId && this.ws === rt.ws) rt._history(w);
        else rt.queued.push(w);
      });
    }

    unsubscribe() {
      const rt = this.rt;
      if (rt.subs.get(this.channel) !== this) return;
      rt.subs.delete(this.channel);
      if (this.ws === rt.ws) rt.send({ event: 'unsubscribe', channel: this.channel });
      for (const w of rt.queued.filter((q) => q.sub === this)) w.reject(failure('closed', 'unsubscribed'));
      rt.queued = rt.queued.filter((q) => q.sub !== this);
    }

    _channel(m) {
      if (typeof m.offset === 'number' && typeof m.epoch === 'string') {
        // Within one epoch, an offset up to the last delivered one was delivered already.
        if (this.pos && this.pos.epoch === m.epoch && m.offset <= this.pos.offset) return;
        this.pos = { offset: m.offset, epoch: m.epoch };
      }
      const meta = { client_id: m.client_id, offset: m.offset, epoch: m.epoch };
      if (m.event !== undefined) meta.event = m.event;
      call(this.handlers.onMessage, [m.data, meta]);
    }

    _subscribed(m) {
      const recovering = this.since;
      this.since = false;
      // Recovered: the publications after `pos` follow. Otherwise delivery goes on from the
      // live stream, after the channel's current offset (no epoch: no history, no position).
      if (!(recovering && m.recovered === true)) {
        this.pos = m.epoch ? { offset: m.offset, epoch: m.epoch } : null;
      }
      if (Array.isArray(m.presence)) this.presence = m.presence;
      call(this.handlers.onSubscribed, [m]);
      if (recovering) call(this.handlers.onRecover, [{ recovered: m.recovered === true }]);
    }

    _join(m) {
      const c = { client_id: m.client_id, user: m.user };
      this.presence.push(c);
      call(this.handlers.onJoin, [c]);
    }

    _leave(m) {
      this.presence = this.presence.filter((p) => p.client_id !== m.client_id);
      call(this.handlers.onLeave, [{ client_id: m.client_id, user: m.user }]);
    }
  }

  RakitWebSocket.backoff = backoff;
  if (typeof window !== 'undefined') window.RakitWebSocket = RakitWebSocket;
  if (typeof module === 'object' && module && module.exports) module.exports = RakitWebSocket;
})();
