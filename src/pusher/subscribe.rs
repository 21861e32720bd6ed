//! `pusher:subscribe` and `pusher:unsubscribe`: who may join which channel, as which presence
//! member, and at what cost (docs/pusher.md, "Limits").
//!
//! A subscribe is checked in this order, each refusal a `pusher:subscription_error` on the
//! channel (pusher-js emits it there; Echo's `.error()`), the connection staying open:
//! 1. the budget (`budget.rs`; `LimitReached`, 4301): one token;
//! 2. the authorization: a signature for `private-` and `presence-`, the signin for
//!    `#server-to-user-{id}` (`AuthError`, 401);
//! 3. on a presence channel, the member: `channel_data` with a `user_id` (401); at most 128
//!    bytes of `user_id` and 1 KB of `user_info` (Pusher's documented limits; `LimitReached`,
//!    4301 as Soketi); the same user as an earlier subscription of this connection (409);
//!    a place on the channel for a new user (`max_presence_members`; `LimitReached`, 4100 as
//!    Soketi);
//! 4. the rest of the budget (`LimitReached`, 4301): one more token per ten members on a
//!    presence channel (or a channel with the Rakit dialect's channel presence), whose answer
//!    lists them all and whose arrival each of them hears of. Charged only once the
//!    subscription is authorized: a refused one costs one token whatever the channel, or a
//!    client could count the members of a channel it may not join by when its budget ran out;
//! 5. the router's `max_channels_per_client` (`LimitReached`, 400).
//!
//! Between 1 and 2: any other channel must be in a namespace anyone may subscribe to (SPEC
//! section 15; `AuthError`, 403), or a Pusher subscription would read what a Rakit client may
//! not.
//!
//! After `subscription_succeeded`, a cache channel's subscriber gets its last event or
//! `pusher:cache_miss` (`src/router/cache.rs`).
//!
//! A subscribe to a channel the connection is already in (pusher-js never sends one) is
//! answered again (a cache channel's event too), and costs again; on a presence channel as the same user it keeps the
//! member's first `user_info`.

use std::time::Instant;

use serde_json::value::RawValue;

use super::wire::{self, ChannelData, SubscribeData};
use super::{auth, presence, Pusher};
use crate::router::{ChannelMember, ConnId, Outbox, Router, MAX_INFO_LEN, MAX_USER_LEN};

/// Members per extra token of a presence subscription.
const MEMBERS_PER_TOKEN: usize = 10;

impl Pusher {
    pub(super) fn subscribe(
        &mut self,
        router: &mut Router,
        conn: ConnId,
        data: Option<&RawValue>,
        now: Instant,
        out: &mut impl Outbox,
    ) {
        let data = SubscribeData::parse(data);
        let channel = data.channel.as_deref().filter(|c| wire::valid_channel(c));
        if !self.spend(conn, 1, now) {
            // Over budget: a short answer, and no signature checked.
            if let Some(channel) = channel {
                over_budget(conn, channel, out);
            }
            return;
        }
        let Some(channel) = channel else {
            out.send(conn, &wire::error(None, "Invalid channel name"));
            return;
        };
        if !own_authorization(channel) && !router.is_public(channel) {
            // SPEC section 15: a Pusher subscription may not read what a Rakit client may not.
            let text = "This channel's namespace needs authorization the Pusher protocol cannot \
                        carry (only public namespaces, private- and presence- channels)";
            out.send(
                conn,
                &wire::subscription_error(channel, "AuthError", text, 403),
            );
            return;
        }
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let socket_id: &str = &session.socket_id;
        let auth = data.auth.as_deref().unwrap_or_default();
        let mut member = None;
        if let Some(owner) = wire::channel_user(channel) {
            // No signature: the connection's signin is the authorization.
            if session.user.as_deref() != Some(owner) {
                return auth_error(conn, channel, "Not signed in as this channel's user", out);
            }
        } else if channel.starts_with("presence-") {
            let channel_data = data.channel_data.as_deref().unwrap_or_default();
            let parts = [socket_id, channel, channel_data];
            if !auth::verify_auth(&self.key, &self.secret, auth, &parts) {
                return auth_error(conn, channel, "Invalid signature", out);
            }
            match self.member(router, conn, channel, channel_data) {
                Ok(m) => member = Some(m),
                Err(refusal) => return out.send(conn, &refusal),
            }
        } else if channel.starts_with("private-")
            && !auth::verify_auth(&self.key, &self.secret, auth, &[socket_id, channel])
        {
            return auth_error(conn, channel, "Invalid signature", out);
        }
        // Authorized: the rest of the cost of a channel whose members it will hear of, at most
        // what is left of a full bucket (a full one pays for a channel of any size).
        if channel.starts_with("presence-") || router.has_channel_presence(channel) {
            let most = usize::try_from(self.burst.saturating_sub(1)).unwrap_or(usize::MAX);
            let extra = (router.user_count(channel) / MEMBERS_PER_TOKEN).min(most);
            if extra > 0 && !self.spend(conn, extra, now) {
                return over_budget(conn, channel, out);
            }
        }
        let joined = match &member {
            Some(m) => router.join_member(conn, channel, m, out),
            None => router.join(conn, channel, out),
        };
        let new = match joined {
            Ok(new) => new,
            Err(max) => {
                let text = format!("at most {max} channels per connection");
                out.send(
                    conn,
                    &wire::subscription_error(channel, "LimitReached", &text, 400),
                );
                return;
            }
        };
        let succeeded = match member {
            Some(m) => {
                if new {
                    if let Some(session) = self.sessions.get_mut(&conn) {
                        session.presence.push((channel.to_owned(), m.user));
                    }
                }
                presence::snapshot(router, channel)
            }
            None => "{}".to_owned(),
        };
        out.send(
            conn,
            &wire::frame(
                "pusher_internal:subscription_succeeded",
                Some(channel),
                &succeeded,
                None,
            ),
        );
        // A cache channel's last event, or `pusher:cache_miss` (SPEC 16; maybe later, from
        // Redis).
        router.cache_subscribe(conn, channel, out);
    }

    /// The member a signed presence subscription joins as, or the `subscription_error` that
    /// refuses it (steps 3 of the module docs).
    fn member(
        &self,
        router: &Router,
        conn: ConnId,
        channel: &str,
        channel_data: &str,
    ) -> Result<ChannelMember, crate::router::Frame> {
        let refuse = |kind: &str, text: &str, status: u16| {
            wire::subscription_error(channel, kind, text, status)
        };
        let parsed = serde_json::from_str::<ChannelData<'_>>(channel_data).ok();
        let Some((user, info)) =
            parsed.and_then(|d| Some((wire::user_id(d.user_id)?, d.user_info)))
        else {
            return Err(refuse("AuthError", "Invalid channel_data: no user_id", 401));
        };
        let info = info.map_or("null", RawValue::get);
        if user.len() > MAX_USER_LEN || info.len() > MAX_INFO_LEN {
            let text = format!(
                "The user_id may have at most {MAX_USER_LEN} bytes and user_info at most {} KB",
                MAX_INFO_LEN / 1024
            );
            return Err(refuse("LimitReached", &text, 4301));
        }
        let earlier = self
            .sessions
            .get(&conn)
            .and_then(|s| s.presence.iter().find(|(c, _)| c == channel));
        if let Some((_, as_user)) = earlier {
            if *as_user != user {
                let text =
                    format!("Already subscribed as another user_id ({as_user}): unsubscribe first");
                return Err(refuse("AuthError", &text, 409));
            }
        } else if !router.is_member(channel, &user)
            && router.user_count(channel) >= self.max_members
        {
            let text = format!(
                "The presence channel is full: at most {} members",
                self.max_members
            );
            return Err(refuse("LimitReached", &text, 4100));
        }
        Ok(ChannelMember {
            user,
            info: info.to_owned(),
        })
    }

    /// Always honoured, and free: leaving frees what joining took, and every member that
    /// leaves was charged for on its way in.
    pub(super) fn unsubscribe(
        &mut self,
        router: &mut Router,
        conn: ConnId,
        data: Option<&RawValue>,
        out: &mut impl Outbox,
    ) {
        let data = SubscribeData::parse(data);
        let Some(channel) = data.channel.as_deref() else {
            return;
        };
        if !router.leave(conn, channel, out) {
            return;
        }
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.presence.retain(|(c, _)| c != channel);
        }
    }
}

/// Whether `channel` is one Pusher authorizes itself (`private-`, `presence-`, a user's
/// `#server-to-user-`: [`super::PROTECTED`]), whatever its namespace says.
fn own_authorization(channel: &str) -> bool {
    super::PROTECTED.iter().any(|p| channel.starts_with(p))
}

/// A subscribe beyond the budget (docs/pusher.md, "Limits").
fn over_budget(conn: ConnId, channel: &str, out: &mut impl Outbox) {
    let text = "Too many subscriptions: slow down (docs/pusher.md, Limits)";
    out.send(
        conn,
        &wire::subscription_error(channel, "LimitReached", text, 4301),
    );
}

fn auth_error(conn: ConnId, channel: &str, text: &str, out: &mut impl Outbox) {
    out.send(
        conn,
        &wire::subscription_error(channel, "AuthError", text, 401),
    );
}
