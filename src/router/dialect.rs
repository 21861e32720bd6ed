//! Dialects: the wire formats clients speak over the same clients and channels.
//!
//! The router speaks SPEC section 5 itself. Another dialect (Pusher, SPEC section 13) lives in
//! its own module and plugs in here without the router learning its JSON: each client carries
//! a [`Dialect`], messages that only make sense in section 5 (welcome, presence, broadcasts,
//! private messages, errors) go to Rakit clients only, and a channel message is described once
//! as a dialect-neutral [`ChannelEvent`]. A fan-out encodes it at most once per dialect (the
//! Rakit frame, and the other dialect's through its [`Encoder`]), and every recipient gets a
//! clone of its dialect's shared frame. Presence channel members (one per user across the
//! cluster, `members.rs`) are counted by the router; the dialect only encodes their arrival and
//! departure ([`MemberNotice`]).

use serde_json::value::RawValue;

use super::Frame;

/// How a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// SPEC section 5.
    #[default]
    Rakit,
    /// Pusher Channels protocol 7 (SPEC section 13).
    Pusher,
}

impl Dialect {
    /// The close code and reason of a kick (the `disconnect` command). Pusher clients get 4009:
    /// pusher-js reads 4000 as "switch to TLS and reconnect".
    pub fn kick(self) -> (u16, &'static str) {
        match self {
            Dialect::Rakit => (super::DISCONNECT_CODE, super::DISCONNECT_REASON),
            Dialect::Pusher => (4009, "disconnected by server"),
        }
    }

    /// The close code and reason of a connection dropped for flooding (SPEC section 17).
    /// Pusher clients get 4301, which pusher-js does not retry (4000-4099 would mean "refused"
    /// too, but 4000 itself "switch to TLS").
    pub fn rate_limited(self) -> (u16, &'static str) {
        let reason = crate::limits::CLOSE_REASON;
        match self {
            Dialect::Rakit => (crate::limits::CLOSE_CODE, reason),
            Dialect::Pusher => (4301, reason),
        }
    }
}

/// One message on a channel, in no dialect's wire form.
#[derive(Debug, Clone, Copy)]
pub struct ChannelEvent<'a> {
    pub channel: &'a str,
    /// The event name; `None` for a section 5 channel message (Pusher clients see `message`).
    pub event: Option<&'a str>,
    /// The value, as the receiving application should see it.
    pub data: &'a RawValue,
    /// The Rakit sender, if a Rakit client sent it.
    pub client_id: Option<&'a str>,
    /// The Pusher user who sent it (a client event on a presence channel).
    pub user_id: Option<&'a str>,
}

/// Encodes a [`ChannelEvent`] as one complete frame of a foreign dialect; `None` if it cannot.
pub type Encoder = fn(&ChannelEvent<'_>) -> Option<Frame>;

/// A presence channel member appeared (its first connection anywhere in the cluster) or left
/// (its last), in no dialect's wire form. Member data is the dialect's own, opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberNotice<'a> {
    Added {
        channel: &'a str,
        user: &'a str,
        info: &'a str,
    },
    Removed {
        channel: &'a str,
        user: &'a str,
    },
}

/// Encodes a [`MemberNotice`] as one complete frame of a foreign dialect; `None` if it cannot.
pub type MemberEncoder = fn(&MemberNotice<'_>) -> Option<Frame>;

/// What a foreign dialect plugs into the router.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// Its form of a channel message.
    pub channel: Encoder,
    /// Its form of a presence channel member's arrival or departure, sent to its subscribers
    /// of that channel on this node.
    pub member: MemberEncoder,
    /// Channel name prefixes only it may subscribe to (it checks their authorization): a Rakit
    /// `subscribe` or channel message is `forbidden`, and so is a `broadcast_to_channel` from a
    /// client that is no admin.
    pub protected: &'static [&'static str],
}

/// What a dialect with cache channels plugs into the router ([`super::Router::set_cache_channels`],
/// `cache.rs`): which channels keep their last publication, for how long, and how it tells a
/// subscriber that nothing is cached.
#[derive(Debug, Clone, Copy)]
pub struct CacheChannels {
    /// The name prefixes of its cache channels.
    pub prefixes: &'static [&'static str],
    /// How long a channel's last publication is kept.
    pub ttl: std::time::Duration,
    /// Its frame telling a subscriber that nothing is cached on a channel.
    pub miss: fn(&str) -> Option<Frame>,
}
