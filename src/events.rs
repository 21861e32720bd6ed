//! Events (SPEC section 7): what embedding code can observe.
//!
//! Every method has a no-op default, so a handler implements only what it needs.
//! The daemon installs [`LogHandler`], which logs each event.

use std::net::SocketAddr;

use serde_json::value::RawValue;

use crate::session::User;

/// What happened to a channel as a whole, or between the Pusher dialect's members (SPEC section
/// 13): the events Pusher's webhooks report. Occupancy counts every local subscriber, whatever
/// its dialect (the dialects share channels); membership is per user, as presence channels list
/// it.
#[derive(Debug, Clone, Copy)]
pub enum ChannelActivity<'a> {
    /// `channel` got its first subscriber in the cluster. In a cluster, the four transitions
    /// are reported by one node per channel, whatever caused them (`src/router/reporter.rs`).
    Occupied { channel: &'a str },
    /// The last subscriber of `channel` in the cluster left it.
    Vacated { channel: &'a str },
    /// The first connection of `user_id` in the cluster joined the presence channel `channel`.
    MemberAdded { channel: &'a str, user_id: &'a str },
    /// The last connection of `user_id` in the cluster left the presence channel `channel`.
    MemberRemoved { channel: &'a str, user_id: &'a str },
    /// A Pusher client event was relayed on `channel` (private or presence).
    ClientEvent {
        channel: &'a str,
        /// Its name (`client-...`).
        event: &'a str,
        /// Its `data`, as the client sent it.
        data: &'a RawValue,
        /// The sender's socket id.
        socket_id: &'a str,
        /// The sender's user on a presence channel.
        user_id: Option<&'a str>,
    },
    /// A subscriber of cache channel `channel` found no cached event (SPEC section 16): it
    /// got `pusher:cache_miss`, and the backend may publish the channel's state. Reported by
    /// the subscriber's node.
    CacheMiss { channel: &'a str },
}

/// Receives the server's events. All methods run on the event-loop thread and
/// must not block: a slow handler delays every client.
///
/// A handler that panics while a client's message is handled closes only that
/// client (close code 1011); the server keeps serving everyone else.
pub trait Handler {
    /// The server is listening on `addr`.
    fn start(&mut self, _addr: SocketAddr) {}
    /// A client finished its handshake and got its id.
    fn connect(&mut self, _client_id: &str, _user: Option<&User>) {}
    /// A client left (closed, dropped, or disconnected by a command).
    fn disconnect(&mut self, _client_id: &str, _user: Option<&User>) {}
    /// A text message arrived from a client.
    fn receive(&mut self, _client_id: &str, _user: Option<&User>, _message: &str) {}
    /// A client subscribed to a channel it was not in (a repeated subscribe
    /// does not fire). Leaving by disconnect fires `disconnect` only.
    fn subscribe(&mut self, _client_id: &str, _user: Option<&User>, _channel: &str) {}
    /// A client unsubscribed from a channel it was in.
    fn unsubscribe(&mut self, _client_id: &str, _user: Option<&User>, _channel: &str) {}
    /// A message was queued for a client (the JSON text of the frame).
    fn send(&mut self, _client_id: &str, _user: Option<&User>, _message: &str) {}
    /// A channel became occupied or vacated, a presence member came or went, a client event
    /// was relayed, or a cache channel's subscriber found nothing cached (see
    /// [`ChannelActivity`]).
    fn channel(&mut self, _activity: &ChannelActivity<'_>) {}
    /// Whether to call [`Handler::send`] at all. A fan-out calls it once per
    /// recipient; a handler that does nothing with it (or logs it at a level
    /// that is off) returns false and spares that work. Asked once per
    /// message.
    fn observes_send(&self) -> bool {
        true
    }
    /// The event loop failed fatally; the process exits non-zero after this.
    fn crash(&mut self, _error: &dyn std::error::Error) {}
}

/// The daemon's handler: logs every event (`receive`/`send` at debug, the rest at info).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogHandler;

fn who(user: Option<&User>) -> &str {
    user.map_or("guest", |u| u.name.as_str())
}

impl Handler for LogHandler {
    fn start(&mut self, addr: SocketAddr) {
        log::info!("start: listening on {addr}");
    }
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        log::info!("connect: {client_id} ({})", who(user));
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        log::info!("disconnect: {client_id} ({})", who(user));
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        log::debug!("receive: {client_id} ({}): {message}", who(user));
    }
    fn send(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        log::debug!("send: {client_id} ({}): {message}", who(user));
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        log::debug!("channel: {activity:?}");
    }
    fn observes_send(&self) -> bool {
        log::log_enabled!(log::Level::Debug)
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        log::error!("crash: {error}");
    }
}

/// Two handlers as one: every event goes to the first, then to the second. The daemon uses it to
/// put the webhook feed ([`crate::webhooks::WebhookHandler`]) beside [`LogHandler`], since the
/// router takes a single handler.
#[derive(Debug, Default, Clone)]
pub struct Both<A, B>(pub A, pub B);

impl<A: Handler, B: Handler> Handler for Both<A, B> {
    fn start(&mut self, addr: SocketAddr) {
        self.0.start(addr);
        self.1.start(addr);
    }
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        self.0.connect(client_id, user);
        self.1.connect(client_id, user);
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        self.0.disconnect(client_id, user);
        self.1.disconnect(client_id, user);
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        self.0.receive(client_id, user, message);
        self.1.receive(client_id, user, message);
    }
    fn subscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        self.0.subscribe(client_id, user, channel);
        self.1.subscribe(client_id, user, channel);
    }
    fn unsubscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        self.0.unsubscribe(client_id, user, channel);
        self.1.unsubscribe(client_id, user, channel);
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        self.0.channel(activity);
        self.1.channel(activity);
    }
    fn send(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        // Each side is asked separately, so a handler that does not observe sends never gets one.
        if self.0.observes_send() {
            self.0.send(client_id, user, message);
        }
        if self.1.observes_send() {
            self.1.send(client_id, user, message);
        }
    }
    fn observes_send(&self) -> bool {
        self.0.observes_send() || self.1.observes_send()
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        self.0.crash(error);
        self.1.crash(error);
    }
}

/// A boxed handler (the daemon's, or the embedder's) is a handler, so it can
/// be combined with [`Both`].
impl<H: Handler + ?Sized> Handler for Box<H> {
    fn start(&mut self, addr: SocketAddr) {
        (**self).start(addr);
    }
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        (**self).connect(client_id, user);
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        (**self).disconnect(client_id, user);
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        (**self).receive(client_id, user, message);
    }
    fn subscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        (**self).subscribe(client_id, user, channel);
    }
    fn unsubscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        (**self).unsubscribe(client_id, user, channel);
    }
    fn send(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        (**self).send(client_id, user, message);
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        (**self).channel(activity);
    }
    fn observes_send(&self) -> bool {
        (**self).observes_send()
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        (**self).crash(error);
    }
}

/// An optional handler: `None` observes nothing (e.g. webhooks turned off).
impl<H: Handler> Handler for Option<H> {
    fn start(&mut self, addr: SocketAddr) {
        if let Some(h) = self {
            h.start(addr);
        }
    }
    fn connect(&mut self, client_id: &str, user: Option<&User>) {
        if let Some(h) = self {
            h.connect(client_id, user);
        }
    }
    fn disconnect(&mut self, client_id: &str, user: Option<&User>) {
        if let Some(h) = self {
            h.disconnect(client_id, user);
        }
    }
    fn receive(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        if let Some(h) = self {
            h.receive(client_id, user, message);
        }
    }
    fn subscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        if let Some(h) = self {
            h.subscribe(client_id, user, channel);
        }
    }
    fn unsubscribe(&mut self, client_id: &str, user: Option<&User>, channel: &str) {
        if let Some(h) = self {
            h.unsubscribe(client_id, user, channel);
        }
    }
    fn send(&mut self, client_id: &str, user: Option<&User>, message: &str) {
        if let Some(h) = self {
            h.send(client_id, user, message);
        }
    }
    fn channel(&mut self, activity: &ChannelActivity<'_>) {
        if let Some(h) = self {
            h.channel(activity);
        }
    }
    fn observes_send(&self) -> bool {
        self.as_ref().is_some_and(Handler::observes_send)
    }
    fn crash(&mut self, error: &dyn std::error::Error) {
        if let Some(h) = self {
            h.crash(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count {
        calls: Vec<&'static str>,
        observes: bool,
    }

    impl Handler for Count {
        fn connect(&mut self, _: &str, _: Option<&User>) {
            self.calls.push("connect");
        }
        fn subscribe(&mut self, _: &str, _: Option<&User>, _: &str) {
            self.calls.push("subscribe");
        }
        fn unsubscribe(&mut self, _: &str, _: Option<&User>, _: &str) {
            self.calls.push("unsubscribe");
        }
        fn send(&mut self, _: &str, _: Option<&User>, _: &str) {
            self.calls.push("send");
        }
        fn channel(&mut self, _: &ChannelActivity<'_>) {
            self.calls.push("channel");
        }
        fn observes_send(&self) -> bool {
            self.observes
        }
    }

    #[test]
    fn both_forwards_to_each_and_respects_observes_send() {
        let mut both = Both(
            Count::default(),
            Count {
                observes: true,
                ..Count::default()
            },
        );
        assert!(both.observes_send());
        both.connect("id", None);
        both.subscribe("id", None, "c");
        both.unsubscribe("id", None, "c");
        both.send("id", None, "{}");
        both.channel(&ChannelActivity::Occupied { channel: "c" });
        assert_eq!(
            both.0.calls,
            ["connect", "subscribe", "unsubscribe", "channel"]
        );
        assert_eq!(
            both.1.calls,
            ["connect", "subscribe", "unsubscribe", "send", "channel"]
        );
        assert!(!Both(Count::default(), Count::default()).observes_send());
    }

    #[test]
    fn an_absent_handler_observes_nothing() {
        let mut none: Option<Count> = None;
        none.connect("id", None);
        assert!(!none.observes_send());
        let mut some = Some(Count {
            observes: true,
            ..Count::default()
        });
        some.connect("id", None);
        none.channel(&ChannelActivity::Vacated { channel: "c" });
        some.channel(&ChannelActivity::Vacated { channel: "c" });
        assert!(some.observes_send());
        assert_eq!(some.unwrap().calls, ["connect", "channel"]);
    }
}
