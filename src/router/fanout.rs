//! Channel fan-out across dialects, and the dialect-neutral channel operations another dialect
//! (see `dialect.rs`) builds on: join, leave, publish, and who is in a channel.
//!
//! A fan-out encodes a message at most once per dialect, lazily: a channel with Rakit
//! subscribers only never pays for the other encoding, and the reverse.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::channels::TooManyChannels;
use super::dialect::{ChannelEvent, Dialect, Foreign};
use super::entry::{ChannelMember, Subscription};
use super::history_state::Published;
use super::members::Change;
use super::wire::{Out, Outgoing};
use super::{Client, ClusterOut, ConnId, Frame, Outbox, Router};
use crate::events::ChannelActivity;

impl Router {
    /// Lets clients of [`Dialect::Pusher`] receive channel messages and presence channel
    /// member notices, encoded by `foreign`, and keeps its protected channels for that dialect.
    pub fn set_foreign(&mut self, foreign: Foreign) {
        self.foreign = Some(foreign);
    }

    /// What `conn` speaks, if it is connected.
    pub fn dialect(&self, conn: ConnId) -> Option<Dialect> {
        self.clients.get(&conn).map(|c| c.dialect)
    }

    /// The local connection of client `id`.
    pub fn conn_of(&self, id: &str) -> Option<ConnId> {
        let id = super::ids::ClientId::parse(id)?;
        self.clients.find(&id)
    }

    /// Subscribes `conn` to `channel` without checking the name (the caller's dialect has its
    /// own rules). `Ok(true)` when it was not subscribed before; `Err(max)` beyond
    /// `max_channels_per_client`. Fires `Handler::subscribe`, and `Handler::channel` when the
    /// channel had no local subscriber (of any dialect) before. On a channel with channel
    /// presence (`channel_presence.rs`) it joins as a member, and the others hear of it.
    pub fn join(
        &mut self,
        conn: ConnId,
        channel: &str,
        out: &mut impl Outbox,
    ) -> Result<bool, usize> {
        let (new, changes) = self.subscribe_as(conn, channel, None)?;
        self.notify_members(&changes, Some(conn), out);
        Ok(new)
    }

    /// [`Router::join`] for a presence channel, as `member`: when it is the user's first
    /// connection in the cluster, the channel's other local subscribers of the foreign dialect
    /// hear of it. A connection already subscribed keeps the member it joined as.
    pub fn join_member(
        &mut self,
        conn: ConnId,
        channel: &str,
        member: &ChannelMember,
        out: &mut impl Outbox,
    ) -> Result<bool, usize> {
        let (new, changes) = self.subscribe_as(conn, channel, Some(member))?;
        self.notify_members(&changes, Some(conn), out);
        Ok(new)
    }

    fn subscribe_as(
        &mut self,
        conn: ConnId,
        channel: &str,
        member: Option<&ChannelMember>,
    ) -> Result<(bool, Vec<Change>), usize> {
        let max = self.config.max_channels_per_client;
        let was_vacant = !self.occupied(channel);
        let new = self
            .channels
            .subscribe(conn, channel, max, &self.config.namespaces)
            .map_err(|TooManyChannels| max)?;
        if !new {
            return Ok((false, Vec::new()));
        }
        let own = match member {
            None if self.has_channel_presence(channel) => self.presence_member(conn),
            _ => None,
        };
        let changes = match member.or(own.as_ref()) {
            Some(m) => self.members.bind(conn, channel, &m.user, &m.info),
            None => Vec::new(),
        };
        if was_vacant {
            self.report(&ChannelActivity::Occupied { channel });
        }
        self.report_members(&changes);
        if let Some(client) = self.clients.get(&conn) {
            self.handler
                .subscribe(client.id.as_str(), client.user.as_deref(), channel);
            if self.remote.is_some() {
                let sub = self.subscription(client, conn, channel);
                self.publish(|| ClusterOut::Subscribed(sub));
            }
        }
        Ok((true, changes))
    }

    /// Unsubscribes `conn` from `channel`; false when it was not subscribed. A presence member
    /// whose last connection in the cluster this was leaves.
    pub fn leave(&mut self, conn: ConnId, channel: &str, out: &mut impl Outbox) -> bool {
        let left = self.channels.unsubscribe(conn, channel);
        if left {
            self.history_forget(conn, Some(channel));
            if let Some(client) = self.clients.get(&conn) {
                self.handler
                    .unsubscribe(client.id.as_str(), client.user.as_deref(), channel);
                let id = client.id;
                self.publish(|| ClusterOut::Unsubscribed {
                    id: id.as_str().to_owned(),
                    channel: channel.to_owned(),
                });
            }
            let changes = self.members.unbind(conn, channel);
            self.notify_members(&changes, None, out);
            self.report_members(&changes);
            if !self.occupied(channel) {
                self.report(&ChannelActivity::Vacated { channel });
            }
        }
        left
    }

    /// Whether `channel` has a subscriber on any node (in constant time).
    pub(super) fn occupied(&self, channel: &str) -> bool {
        self.channels.has_members(channel)
            || self
                .remote
                .as_deref()
                .is_some_and(|r| r.replica.subscriber_count(channel) > 0)
    }

    /// Tells the handler of presence channel members that came or went (their first or last
    /// connection in the cluster), whatever caused it, if this node reports their channel
    /// (`reporter.rs`), so that each is reported once in the cluster.
    pub(super) fn report_members(&mut self, changes: &[Change]) {
        for change in changes {
            // Channel presence (`channel_presence.rs`) has subscribers, not Pusher members:
            // Pusher's webhooks are not about it.
            if self.has_channel_presence(change.channel()) {
                continue;
            }
            let activity = match change {
                Change::Added { channel, user, .. } => ChannelActivity::MemberAdded {
                    channel,
                    user_id: user,
                },
                Change::Removed { channel, user, .. } => ChannelActivity::MemberRemoved {
                    channel,
                    user_id: user,
                },
            };
            self.report(&activity);
        }
    }

    /// A local subscription as the directory holds it.
    pub(super) fn subscription(
        &self,
        client: &Client,
        conn: ConnId,
        channel: &str,
    ) -> Subscription {
        Subscription {
            id: client.id.as_str().to_owned(),
            channel: channel.to_owned(),
            member: self
                .members
                .local(conn, channel)
                .map(|(user, info)| ChannelMember {
                    user: user.to_owned(),
                    info: info.to_owned(),
                }),
        }
    }

    /// The local subscribers of `channel` and what they speak, in subscription order.
    pub fn subscribers(&self, channel: &str) -> impl Iterator<Item = (ConnId, Dialect)> + '_ {
        self.channels
            .members(channel)
            .filter_map(|conn| self.clients.get(&conn).map(|c| (conn, c.dialect)))
    }

    /// How many connections are subscribed to `channel`, on every node.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        let remote = self
            .remote
            .as_deref()
            .map_or(0, |r| r.replica.subscriber_count(channel));
        self.channels.members(channel).count() + remote
    }

    /// Sends `event` to every subscriber of its channel in the cluster but `except` (a local
    /// connection: the sender), each in its own dialect.
    pub fn fan_out(
        &mut self,
        event: &ChannelEvent<'_>,
        except: Option<ConnId>,
        out: &mut impl Outbox,
    ) {
        self.fan_out_skipping(event, except, None, out);
    }

    /// [`Router::fan_out`] to everyone but the connection the dialect named `alias`
    /// ([`Router::set_alias`]; Pusher's `socket_id`), on whichever node it is.
    pub fn fan_out_but(&mut self, event: &ChannelEvent<'_>, alias: &str, out: &mut impl Outbox) {
        match self.aliases.get(alias) {
            Some(conn) => self.fan_out_skipping(event, Some(conn), None, out),
            // Not here: perhaps another node's (an invalid name is nobody's).
            None if super::aliases::is_valid_alias(alias) => {
                self.fan_out_skipping(event, None, Some(alias), out)
            }
            None => self.fan_out_skipping(event, None, None, out),
        }
    }

    /// The fan-out: local subscribers but `except`, and other nodes, told to skip `remote_except`.
    fn fan_out_skipping(
        &mut self,
        event: &ChannelEvent<'_>,
        except: Option<ConnId>,
        remote_except: Option<&str>,
        out: &mut impl Outbox,
    ) {
        // SPEC 16: a publication on a history channel gets its offset first: stored here, or
        // sent to Redis, which publishes it to every node (this one too: nothing now).
        let mut rakit: Option<Option<Outgoing>> =
            match self.history_publish(event, except, remote_except) {
                Published::Plain => None,
                Published::Stored(encoded) => Some(encoded),
                Published::Elsewhere => return,
            };
        if !self.channels.has_members(event.channel) && self.remote.is_none() {
            return;
        }
        let rakit_encode = || {
            Outgoing::encode(&Out::Channel {
                channel: event.channel,
                event: event.event,
                client_id: event.client_id,
                data: event.data,
                user_id: None,
                offset: None,
                epoch: None,
            })
        };
        if self.remote.is_some() {
            // Other nodes get the Rakit form and translate it for their own Pusher clients,
            // with the sender's user id beside it, which the Rakit form has no place for.
            let encoded = rakit.insert(rakit_encode());
            if let Some(encoded) = encoded {
                let frame = encoded.frame.clone();
                self.publish(|| ClusterOut::Channel {
                    channel: event.channel.to_owned(),
                    frame,
                    except: remote_except.map(str::to_owned),
                    user: event.user_id.map(str::to_owned),
                });
            }
        }
        // SPEC 16 (cluster, Redis down): held for subscribers waiting for their position.
        let held = match rakit.as_ref().and_then(Option::as_ref) {
            Some(msg) if self.remote.is_some() => {
                let frame = msg.frame.clone();
                self.hold_for_seams(event.channel, None, &frame)
            }
            _ => Vec::new(),
        };
        let mut foreign: Option<Option<Frame>> = None;
        let observed = self.handler.observes_send();
        for conn in self.channels.members(event.channel) {
            if Some(conn) == except || held.contains(&conn) {
                continue;
            }
            let Some(client) = self.clients.get(&conn) else {
                continue;
            };
            match client.dialect {
                Dialect::Rakit => {
                    if let Some(msg) = rakit.get_or_insert_with(rakit_encode) {
                        out.send(conn, &msg.frame);
                        if observed {
                            self.handler.send(
                                client.id.as_str(),
                                client.user.as_deref(),
                                &msg.json,
                            );
                        }
                    }
                }
                Dialect::Pusher => {
                    let frame = foreign
                        .get_or_insert_with(|| self.foreign.and_then(|f| (f.channel)(event)));
                    if let Some(frame) = frame {
                        out.send(conn, frame);
                    }
                }
            }
        }
    }

    /// A Rakit channel frame from another node, translated once for the local clients of the
    /// other dialect but `skip` and the `held` ones (waiting for a cache read: `cache.rs`),
    /// with the sender's `user_id` (what the Rakit frame cannot hold).
    pub(super) fn remote_channel_foreign(
        &mut self,
        channel: &str,
        payload: &[u8],
        skip: Option<ConnId>,
        held: &[ConnId],
        user_id: Option<&str>,
        out: &mut impl Outbox,
    ) {
        if self.foreign.is_none() {
            return;
        }
        let mut members = self
            .channels
            .members(channel)
            .filter(|conn| {
                Some(*conn) != skip
                    && !held.contains(conn)
                    && self.dialect(*conn) == Some(Dialect::Pusher)
            })
            .peekable();
        if members.peek().is_none() {
            return;
        }
        if let Some(frame) = self.foreign_frame(channel, payload, user_id) {
            for conn in members {
                out.send(conn, &frame);
            }
        }
    }

    /// The other dialect's frame of a Rakit channel frame's JSON `payload` on `channel`, with
    /// `user_id` (else the one a stored publication carries).
    pub(super) fn foreign_frame(
        &self,
        channel: &str,
        payload: &[u8],
        user_id: Option<&str>,
    ) -> Option<Frame> {
        let encode = self.foreign.map(|f| f.channel)?;
        let msg = serde_json::from_slice::<RemoteChannel<'_>>(payload).ok()?;
        let event = ChannelEvent {
            channel,
            event: msg.event,
            data: msg.data,
            client_id: msg.client_id,
            user_id: user_id.or(msg.user_id.as_deref()),
        };
        encode(&event)
    }
}

/// The fields of a section 5 channel frame that another dialect needs.
#[derive(Deserialize)]
struct RemoteChannel<'a> {
    #[serde(borrow, default)]
    event: Option<&'a str>,
    #[serde(borrow, default)]
    client_id: Option<&'a str>,
    #[serde(borrow)]
    data: &'a RawValue,
    /// A stored publication's Pusher sender (`history.rs`).
    #[serde(borrow, default)]
    user_id: Option<std::borrow::Cow<'a, str>>,
}
