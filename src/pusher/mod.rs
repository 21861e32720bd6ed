//! The Pusher Channels dialect (SPEC section 13): protocol 7 over WebSocket on `/app/{key}`,
//! and Pusher's signed HTTP API (`api.rs`).
//!
//! Sans-IO like the router, and layered on it: a Pusher connection is a router client of
//! [`Dialect::Pusher`], so it shares channels (and the cluster) with Rakit clients. This module
//! turns Pusher frames into router operations (join, leave, fan-out) and keeps what only
//! Pusher has: socket ids, channel authorization, and the client event rate limit. Presence
//! members (one per user, across the cluster) are counted by the router as opaque member data
//! (`user_id`, the JSON of `user_info`). The router never sees Pusher JSON; it encodes channel
//! messages and member notices for Pusher clients through [`FOREIGN`].
//!
//! Limits against clients that follow the protocol but not good manners (docs/pusher.md,
//! "Limits"): presence members per channel and their size (`subscribe.rs`), event names and
//! data, client events per second, and a budget of subscribes and bad frames (`src/budget.rs`).
//!
//! A connection's states: upgraded on `/app/{key}` -> refused (`pusher:error` and close 4001,
//! 4007 or 4008; never a router client) or established (`pusher:connection_established`, a
//! router client) -> closed ([`Pusher::closed`]; the router's disconnect ends its presence
//! memberships, with `member_removed` where it was its user's last connection anywhere).

pub mod api;
pub mod auth;
pub mod presence;
mod socket_id;
mod subscribe;
mod users;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use serde_json::value::RawValue;

use self::socket_id::SocketIds;
use self::wire::{Incoming, SubscribeData, UserData};
use crate::budget::{Budget, Rate};
use crate::config::PusherConfig;
use crate::events::ChannelActivity;
use crate::limits::Verdict;
use crate::router::{CacheChannels, ChannelEvent, ConnId, Dialect, Foreign, Frame, Outbox, Router};
use crate::session::User;

/// Close codes of Pusher's protocol (SPEC section 13).
pub mod close {
    /// The app key is unknown.
    pub const UNKNOWN_APP: u16 = 4001;
    /// The `protocol` version is not supported.
    pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
    /// No `protocol` version was given.
    pub const NO_PROTOCOL: u16 = 4008;
    /// A kick (the `disconnect` command, `terminate_connections`).
    pub const KICK: u16 = 4009;
    /// A slow client dropped (its send queue overflowed): pusher-js backs off.
    pub const SLOW: u16 = 4100;
    /// Server shutting down: pusher-js reconnects at once.
    pub const SHUTDOWN: u16 = 4200;
    /// No pong to our ping.
    pub const MISSED_PONG: u16 = 4201;
    /// Dropped for flooding (SPEC section 17): pusher-js does not reconnect after a 43xx.
    pub const RATE_LIMITED: u16 = 4301;
}

/// Client events allowed per connection per second (Pusher's documented limit), as a bucket of
/// that many that refills at that rate.
const CLIENT_EVENTS: Rate = Rate::per_second(10, 10);
/// Largest event `data`, in bytes (Pusher's limit for client and API events).
pub const MAX_EVENT_SIZE: usize = 10 * 1024;
/// Longest event name, in characters (Pusher's limit for client and API events).
pub const MAX_EVENT_NAME: usize = 200;
/// Sent in `connection_established`: pusher-js pings after this many seconds of silence.
const ACTIVITY_TIMEOUT: u64 = 30;
/// Channels only authorized Pusher clients may join; Rakit clients may neither subscribe nor
/// publish to them (admins and the backend may publish).
pub const PROTECTED: &[&str] = &["private-", "presence-", wire::USER_CHANNEL];

/// Pusher's cache channels (SPEC section 16): their last event is kept for `[pusher]
/// cache_ttl` and sent to each new subscriber (`src/router/cache.rs`).
pub const CACHE_PREFIXES: &[&str] = &[
    "cache-",
    "private-cache-",
    "private-encrypted-cache-",
    "presence-cache-",
];

/// The cache channels the dialect plugs into the router, kept for `ttl`.
pub fn cache_channels(ttl: std::time::Duration) -> CacheChannels {
    CacheChannels {
        prefixes: CACHE_PREFIXES,
        ttl,
        miss: wire::cache_miss,
    }
}

/// What the dialect plugs into the router.
pub const FOREIGN: Foreign = Foreign {
    channel: wire::encode_channel_event,
    member: presence::encode_member,
    protected: PROTECTED,
};

/// One Pusher connection.
#[derive(Debug)]
struct Session {
    /// Shared with the router's alias for it.
    socket_id: Rc<str>,
    /// The user it signed in as (`pusher:signin`).
    user: Option<String>,
    /// The presence channels it joined, with the user it joined as.
    presence: Vec<(String, String)>,
    /// Relayed client events (Pusher's 10 per second).
    client_events: Budget,
    /// What it may still send of subscribes, signins and bad frames (`src/budget.rs`).
    budget: Budget,
}

/// The Pusher dialect's state (see the module docs).
#[derive(Debug)]
pub struct Pusher {
    app_id: String,
    key: String,
    secret: Vec<u8>,
    /// By connection; its socket id is the router's name for it ([`Router::set_alias`]), so that
    /// `socket_id` exclusion works on every node.
    sessions: HashMap<ConnId, Session>,
    ids: SocketIds,
    /// Users a presence channel may hold (`max_presence_members`).
    max_members: usize,
    /// Each connection's budget: twice `max_channels_per_client` (`src/budget.rs`).
    burst: u64,
    /// The connections signed in as each user (`users.rs`).
    signed_in: users::SignedIn,
    /// The answer to a message over its sender's bucket (SPEC section 17), encoded once.
    rate_limited: Frame,
}

impl Pusher {
    /// `None` when `[pusher]` is not configured. A client may hold `max_channels_per_client`
    /// channels (the router enforces it; the budget of subscribes is sized by it).
    pub fn new(config: &PusherConfig, max_channels_per_client: usize) -> Option<Pusher> {
        config.enabled().then(|| Pusher {
            app_id: config.app_id.clone(),
            key: config.key.clone(),
            secret: config.secret.clone().into_bytes(),
            sessions: HashMap::new(),
            ids: SocketIds::default(),
            max_members: config.max_presence_members,
            burst: u64::try_from(max_channels_per_client)
                .unwrap_or(u64::MAX)
                .saturating_mul(2),
            signed_in: users::SignedIn::default(),
            rate_limited: wire::error(
                Some(close::RATE_LIMITED),
                "Too many messages: rate limit exceeded",
            ),
        })
    }

    /// Whether an upgrade to `path` speaks this dialect.
    pub fn wants(path: &str) -> bool {
        path.starts_with("/app/")
    }

    /// A WebSocket connection upgraded on `/app/{key}?protocol=7...`: greets it and makes it a
    /// router client, or refuses it with `pusher:error` and a close.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        router: &mut Router,
        conn: ConnId,
        path: &str,
        query: Option<&str>,
        user: Option<User>,
        connected_at_unix: u64,
        now: Instant,
        out: &mut impl Outbox,
    ) {
        let key = path.strip_prefix("/app/").unwrap_or_default();
        let protocol = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("protocol="));
        let refusal = if key != self.key {
            Some((close::UNKNOWN_APP, "App key does not exist"))
        } else {
            match protocol {
                None => Some((close::NO_PROTOCOL, "No protocol version supplied")),
                Some("7") => None,
                Some(_) => Some((close::UNSUPPORTED_PROTOCOL, "Unsupported protocol version")),
            }
        };
        if let Some((code, message)) = refusal {
            out.send(conn, &wire::error(Some(code), message));
            out.close(conn, code, message);
            return;
        }
        router.connect_as(conn, user, Dialect::Pusher, connected_at_unix, now, out);
        let socket_id: Rc<str> = self
            .ids
            .generate(|id| router.conn_of_alias(id).is_some())
            .into();
        router.set_alias(conn, Rc::clone(&socket_id));
        let data = serde_json::json!({
            "socket_id": &*socket_id,
            "activity_timeout": ACTIVITY_TIMEOUT,
        })
        .to_string();
        out.send(
            conn,
            &wire::frame("pusher:connection_established", None, &data, None),
        );
        let old = self.sessions.insert(
            conn,
            Session {
                socket_id,
                user: None,
                presence: Vec::new(),
                client_events: Budget::full(now),
                budget: Budget::full(now),
            },
        );
        if let Some(old) = old {
            self.signed_in.remove(old.user.as_deref(), conn);
        }
    }

    /// Takes `cost` from `conn`'s budget; false when it has not that much left.
    fn spend(&mut self, conn: ConnId, cost: usize, now: Instant) -> bool {
        let burst = self.burst;
        self.sessions.get_mut(&conn).is_some_and(|s| {
            let cost = u64::try_from(cost).unwrap_or(u64::MAX);
            s.budget.spend(cost, Rate::subscribes(burst), now)
        })
    }

    /// Whether `conn` is an established Pusher connection.
    pub fn is_session(&self, conn: ConnId) -> bool {
        self.sessions.contains_key(&conn)
    }

    /// The connection left (any reason): its session ends. Its channels and presence
    /// memberships end with `Router::disconnect`.
    pub fn closed(&mut self, conn: ConnId) {
        if let Some(session) = self.sessions.remove(&conn) {
            self.signed_in.remove(session.user.as_deref(), conn);
        }
    }

    /// One text message from a Pusher connection.
    pub fn handle_text(
        &mut self,
        router: &mut Router,
        conn: ConnId,
        text: &str,
        now: Instant,
        out: &mut impl Outbox,
    ) {
        if !self.sessions.contains_key(&conn) {
            return;
        }
        // Every message (pusher:ping included) costs a token of its message bucket first.
        match router.admit(conn, now, out) {
            Verdict::Pass => {}
            Verdict::Refuse { notify } => {
                if notify {
                    out.send(conn, &self.rate_limited);
                }
                return;
            }
            Verdict::Close => return,
        }
        // Frames that get an error cost from the budget; beyond it they are dropped unanswered.
        let Ok(msg) = serde_json::from_str::<Incoming<'_>>(text) else {
            if self.spend(conn, 1, now) {
                out.send(
                    conn,
                    &wire::error(None, "Invalid message: expected {\"event\",\"data\"}"),
                );
            }
            return;
        };
        match &*msg.event {
            "pusher:ping" => out.send(conn, &wire::frame("pusher:pong", None, "{}", None)),
            "pusher:pong" => {}
            "pusher:subscribe" => self.subscribe(router, conn, msg.data, now, out),
            "pusher:unsubscribe" => self.unsubscribe(router, conn, msg.data, out),
            "pusher:signin" if self.spend(conn, 1, now) => self.signin(router, conn, msg.data, out),
            "pusher:signin" => out.send(
                conn,
                &wire::error(Some(4301), "Signin rejected due to rate limit"),
            ),
            event if event.starts_with("client-") => {
                // A refusal costs from the budget like any other error; beyond it, no answer.
                if let Err(text) = self.client_event(router, conn, &msg, now, out) {
                    if self.spend(conn, 1, now) {
                        out.send(conn, &wire::error(Some(4301), text));
                    }
                }
            }
            _ => {
                if self.spend(conn, 1, now) {
                    out.send(conn, &wire::error(None, "Unsupported event received"));
                }
            }
        }
    }

    /// `pusher:signin`: user authentication, signed over `SOCKET_ID::user::USER_DATA`.
    ///
    /// A signin replaces the connection's user, and a failed one (or one whose `user_data`
    /// has no usable `id`) leaves it signed in as nobody: the connection stays, but whoever it
    /// was no longer owns it. Either way, a `#server-to-user-` channel of a user it no longer
    /// is signed in as is left at once (docs/pusher.md, "Signin").
    fn signin(
        &mut self,
        router: &mut Router,
        conn: ConnId,
        data: Option<&RawValue>,
        out: &mut impl Outbox,
    ) {
        let data = SubscribeData::parse(data);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let user_data = data.user_data.as_deref().unwrap_or_default();
        let auth = data.auth.as_deref().unwrap_or_default();
        let ok = auth::verify_signin(&self.key, &self.secret, auth, &session.socket_id, user_data);
        let user = if ok {
            serde_json::from_str::<UserData<'_>>(user_data)
                .ok()
                .and_then(|d| wire::user_id(d.id))
        } else {
            None
        };
        self.signed_in
            .replace(session.user.as_deref(), user.as_deref(), conn);
        let old = std::mem::replace(&mut session.user, user);
        if let Some(old) = old.filter(|old| session.user.as_ref() != Some(old)) {
            router.leave(conn, &format!("{}{old}", wire::USER_CHANNEL), out);
        }
        if ok {
            let data = serde_json::json!({ "user_data": user_data }).to_string();
            out.send(
                conn,
                &wire::frame("pusher:signin_success", None, &data, None),
            );
        } else {
            out.send(
                conn,
                &wire::error(Some(4009), "Invalid signature for signin"),
            );
        }
    }

    /// `client-*`: relayed to the channel's other subscribers (both dialects), on a private or
    /// presence channel the sender is in, that its namespace lets it publish to (SPEC section
    /// 15), within the rate and size limits; else why not.
    fn client_event(
        &mut self,
        router: &mut Router,
        conn: ConnId,
        msg: &Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), &'static str> {
        // Checked first: a long name costs as much to relay as long data.
        if msg.event.chars().count() > MAX_EVENT_NAME {
            return Err("Client event rejected: event name over 200 characters");
        }
        let Some(channel) = msg.channel.as_deref() else {
            return Err("Client event without a channel");
        };
        let private = channel.starts_with("private-") || channel.starts_with("presence-");
        if !private || channel.starts_with("private-encrypted-") {
            return Err("Client events are allowed on private and presence channels only (not encrypted ones)");
        }
        if !router.subscribers(channel).any(|(c, _)| c == conn) {
            return Err("Client event on a channel the connection is not in");
        }
        // SPEC section 15: the channel's namespace says who may publish; a client event is a
        // client's publish (else `publish = "backend"` would hold for Rakit clients only).
        if !router.may_publish(conn, channel) {
            return Err("Client event rejected: this channel's namespace forbids it");
        }
        let Some(data) = msg.data else {
            return Err("Client event without data");
        };
        if data.get().len() > MAX_EVENT_SIZE {
            return Err("Client event rejected: data over 10 KB");
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return Ok(());
        };
        if !session.client_events.spend(1, CLIENT_EVENTS, now) {
            return Err("Client event rejected due to rate limit (10 per second)");
        }
        let user_id = session
            .presence
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, u)| u.as_str());
        router.handler_mut().channel(&ChannelActivity::ClientEvent {
            channel,
            event: &msg.event,
            data,
            socket_id: &session.socket_id,
            user_id,
        });
        let event = ChannelEvent {
            channel,
            event: Some(&msg.event),
            data,
            client_id: None,
            user_id,
        };
        router.fan_out(&event, Some(conn), out);
        Ok(())
    }

    /// The configured app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
}
