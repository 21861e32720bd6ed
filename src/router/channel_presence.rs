//! Channel presence (SPEC section 15.3): in a namespace with `presence = true`, who is on a
//! channel, as a list in the `subscribed` reply and the `presence` query's answer, and as
//! `join`/`leave` to the other subscribers.
//!
//! One mechanism with the other dialect's presence channels (`members.rs`): every subscription
//! to such a channel, of either dialect, joins as a member of its own (user: the client id;
//! info: its `user` as in `welcome`), which the replica carries to every node with the
//! subscription (`replica.rs`, `src/cluster/hash.rs`). So a subscriber on another node, a
//! resync, and a node that dies (its subscribers leave within `node_timeout_ms` plus a second)
//! are the member changes the other dialect already has. Lists are in the order this node
//! learned of the members: subscription order here, arrival order for other nodes'.
//!
//! Above `presence_max_users` subscribers (the joining one counted, the leaving one still
//! counted) lists are empty with `truncated`, and no join or leave is sent: their cost would
//! grow with the square of the audience. A change from another node in a batch (a resync, a
//! node gone) is judged by the count after the whole batch. A subscribe costs one more token
//! of the subscriber's budget per ten members, as on the other dialect's presence channels: its
//! answer lists them and each of them hears of it.

use std::time::Instant;

use serde_json::value::RawValue;

use super::authorize::forbidden;
use super::dialect::Dialect;
use super::entry::{ChannelMember, MAX_INFO_LEN};
use super::history_wire::SubscribedFields;
use super::members::{user_value, Change, ChannelMembers};
use super::namespaces::SubscribePolicy;
use super::wire::{self, ErrorCode, Out, Outgoing, PublicUser, Reject};
use super::{channel_name, ConnId, Outbox, Router};
use crate::history::Since;

/// Members per extra token of a subscribe to a channel with presence.
const MEMBERS_PER_TOKEN: usize = 10;

impl Router {
    /// Whether `channel` has channel presence: its namespace says so, and it is no channel the
    /// other dialect authorizes (whose presence is that dialect's).
    pub fn has_channel_presence(&self, channel: &str) -> bool {
        !self.protected(channel) && self.namespace_of(channel).presence
    }

    /// How many connections are on channel-presence channel `channel`, in the cluster.
    fn presence_count(&self, channel: &str) -> usize {
        self.members.user_count(channel)
    }

    /// The member `conn` joins a channel with presence as: its client id, and its `user` as in
    /// `welcome`. `None` if that is over the size a member may have (it is replicated to every
    /// node: `MAX_INFO_LEN`).
    pub(super) fn presence_member(&self, conn: ConnId) -> Option<ChannelMember> {
        let client = self.clients.get(&conn)?;
        let user = client.user.as_deref().map(PublicUser::from);
        let info = serde_json::to_string(&user).ok()?;
        (info.len() <= MAX_INFO_LEN).then(|| ChannelMember {
            user: client.id.as_str().to_owned(),
            info,
        })
    }

    /// A Rakit `subscribe` to `channel` (a valid name, not the other dialect's), the budget's
    /// first token spent: its rule, then on a channel with presence the rest of its cost and
    /// the member, then the subscription, its `join` to the others and the `subscribed` reply.
    /// A connection already subscribed is answered again without a check (it passed one).
    pub(super) fn subscribe_event(
        &mut self,
        conn: ConnId,
        channel: &str,
        token: Option<&RawValue>,
        since: Option<Since>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let presence = self.has_channel_presence(channel);
        if !self.channels.is_member(conn, channel) {
            if presence {
                let extra = self.presence_count(channel) / MEMBERS_PER_TOKEN;
                self.spend_subscribes(conn, extra, now)?;
            }
            self.authorize_subscribe(conn, channel, token)?;
            if presence && self.presence_member(conn).is_none() {
                return Err(forbidden(
                    channel,
                    format!(
                        "this channel lists its subscribers, and your user is over {MAX_INFO_LEN} \
                         bytes of JSON"
                    ),
                ));
            }
        }
        self.join(conn, channel, out).map_err(|max| {
            Reject::new(
                ErrorCode::TooManyChannels,
                format!("at most {max} channels per client"),
            )
        })?;
        // SPEC 16: on a history channel its position, and what a `since` missed (maybe later:
        // in a cluster it is asked of Redis).
        if let Some(history) = self.history_subscribe(conn, channel, since) {
            self.reply_subscribed(conn, channel, &history.fields, out);
            self.deliver_frames(conn, &history.replay, out);
        }
        Ok(())
    }

    /// The `subscribed` reply to `conn`: on a channel with presence its members, on a history
    /// channel the fields of `history.rs`.
    pub(super) fn reply_subscribed(
        &mut self,
        conn: ConnId,
        channel: &str,
        history: &SubscribedFields,
        out: &mut impl Outbox,
    ) {
        let presence = self.has_channel_presence(channel);
        let truncated = presence && self.presence_count(channel) > self.config.presence_max_users;
        let msg = Out::Subscribed {
            channel,
            recovered: history.recovered,
            offset: history.offset,
            epoch: history.epoch.as_deref(),
            presence: presence.then(|| ChannelMembers::new(&self.members, channel, truncated)),
            truncated,
        };
        if let Some(encoded) = Outgoing::encode(&msg) {
            self.deliver(&encoded, [conn], out);
        }
    }

    /// `{"event":"presence","channel":C}`: the members of C, for a subscriber of C or a
    /// connection C's rule admits (with its `token` where it needs one; on a token channel the
    /// query costs a subscribe's token of the budget, spent before the token is verified).
    /// `bad_request` on a channel without presence.
    pub(super) fn presence_event(
        &mut self,
        conn: ConnId,
        msg: &wire::Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let channel = channel_name(msg.channel)?;
        if !self.has_channel_presence(&channel) {
            return Err(Reject::bad_request(
                "this channel has no presence (its namespace's `presence` is off)",
            ));
        }
        if !self.channels.is_member(conn, &channel) {
            if self.namespace_of(&channel).subscribe == SubscribePolicy::Token {
                self.spend_subscribes(conn, 1, now)?;
            }
            self.authorize_subscribe(conn, &channel, msg.token)?;
        }
        let count = self.presence_count(&channel);
        let truncated = count > self.config.presence_max_users;
        let msg = Out::ChannelPresence {
            channel: &channel,
            clients: ChannelMembers::new(&self.members, &channel, truncated),
            count,
            truncated,
        };
        if let Some(encoded) = Outgoing::encode(&msg) {
            self.deliver(&encoded, [conn], out);
        }
        Ok(())
    }

    /// `join` or `leave` for a change of a channel with presence, to its local Rakit
    /// subscribers but `except`; nothing above `presence_max_users` (see the module docs).
    pub(super) fn announce_presence(
        &mut self,
        change: &Change,
        except: Option<ConnId>,
        out: &mut impl Outbox,
    ) {
        let count = self.presence_count(change.channel());
        let msg = match change {
            Change::Added {
                channel,
                user,
                info,
            } if count <= self.config.presence_max_users => Out::Join {
                channel,
                client_id: user,
                user: user_value(info),
            },
            Change::Removed {
                channel,
                user,
                info,
            } if count < self.config.presence_max_users => Out::Leave {
                channel,
                client_id: user,
                user: user_value(info),
            },
            _ => return,
        };
        let mut recipients = self
            .subscribers(change.channel())
            .filter(|&(conn, dialect)| dialect == Dialect::Rakit && Some(conn) != except)
            .map(|(conn, _)| conn)
            .peekable();
        if recipients.peek().is_none() {
            return;
        }
        let recipients: Vec<ConnId> = recipients.collect();
        if let Some(encoded) = Outgoing::encode(&msg) {
            self.deliver(&encoded, recipients, out);
        }
    }

    /// `"presence":[...]` of `GET /api/channels/{name}` (never truncated): the members of a
    /// channel with presence, as JSON; `None` for another channel.
    pub fn channel_presence_json(&self, channel: &str) -> Option<String> {
        if !self.has_channel_presence(channel) {
            return None;
        }
        serde_json::to_string(&ChannelMembers::new(&self.members, channel, false)).ok()
    }
}
