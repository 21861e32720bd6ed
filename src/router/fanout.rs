//! Channel fan-out across dialects, and the dialect-neutral channel operations another dialect
//! (see `dialect.rs`) builds on: join, leave, publish, and who is in a channel.
//!
//! A fan-out encodes a message at most once per dialect, lazily: a channel with Rakit
//! subscribers only never pays for the other encoding, and the reverse.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::channels::TooManyChannels;
use super::dialect::{ChannelEvent, Dialect, Encoder};
use super::wire::{Out, Outgoing};
use super::{ClusterOut, ConnId, Frame, Outbox, Router};
use crate::events::ChannelActivity;

impl Router {
    /// Lets clients of [`Dialect::Pusher`] receive channel messages, encoded by `encoder`, and
    /// keeps channels whose names start with one of `protected` for that dialect (it checks
    /// their authorization; a Rakit `subscribe` to them is `forbidden`).
    pub fn set_foreign(&mut self, encoder: Encoder, protected: &'static [&'static str]) {
        self.foreign = Some(encoder);
        self.protected = protected;
    }

    /// What `conn` speaks, if it is connected.
    pub fn dialect(&self, conn: ConnId) -> Option<Dialect> {
        self.clients.get(&conn).map(|c| c.dialect)
    }

    /// The local connection of client `id`.
    pub fn conn_of(&self, id: &str) -> Option<ConnId> {
        let id = super::ids::ClientId::parse(id)?;
        self.by_id.get(&id).copied()
    }

    /// Subscribes `conn` to `channel` without checking the name (the caller's dialect has its
    /// own rules). `Ok(true)` when it was not subscribed before; `Err(max)` beyond
    /// `max_channels_per_client`. Fires `Handler::subscribe`, and `Handler::channel` when the
    /// channel had no local subscriber (of any dialect) before.
    pub fn join(&mut self, conn: ConnId, channel: &str) -> Result<bool, usize> {
        let max = self.config.max_channels_per_client;
        let was_empty = !self.channels.has_members(channel);
        let new = self
            .channels
            .subscribe(conn, channel, max)
            .map_err(|TooManyChannels| max)?;
        if new {
            if was_empty {
                self.handler.channel(&ChannelActivity::Occupied { channel });
            }
            if let Some(client) = self.clients.get(&conn) {
                self.handler
                    .subscribe(client.id.as_str(), client.user.as_deref(), channel);
            }
        }
        Ok(new)
    }

    /// Unsubscribes `conn` from `channel`; false when it was not subscribed. Fires
    /// `Handler::unsubscribe`, and `Handler::channel` when it was the last local subscriber.
    pub fn leave(&mut self, conn: ConnId, channel: &str) -> bool {
        let left = self.channels.unsubscribe(conn, channel);
        if left {
            if let Some(client) = self.clients.get(&conn) {
                self.handler
                    .unsubscribe(client.id.as_str(), client.user.as_deref(), channel);
            }
            if !self.channels.has_members(channel) {
                self.handler.channel(&ChannelActivity::Vacated { channel });
            }
        }
        left
    }

    /// The local subscribers of `channel` and what they speak, in subscription order.
    pub fn subscribers(&self, channel: &str) -> impl Iterator<Item = (ConnId, Dialect)> + '_ {
        self.channels
            .members(channel)
            .filter_map(|conn| self.clients.get(&conn).map(|c| (conn, c.dialect)))
    }

    /// How many local connections are subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.channels.members(channel).count()
    }

    /// Sends `event` to every subscriber of its channel in the cluster but `except`, each in
    /// its own dialect.
    pub fn fan_out(
        &mut self,
        event: &ChannelEvent<'_>,
        except: Option<ConnId>,
        out: &mut impl Outbox,
    ) {
        if !self.channels.has_members(event.channel) && self.remote.is_none() {
            return;
        }
        let mut rakit: Option<Option<Outgoing>> = None;
        let rakit_encode = || {
            Outgoing::encode(&Out::Channel {
                channel: event.channel,
                event: event.event,
                client_id: event.client_id,
                data: event.data,
            })
        };
        if self.remote.is_some() {
            // Other nodes get the Rakit form and translate it for their own Pusher clients.
            let encoded = rakit.insert(rakit_encode());
            if let Some(encoded) = encoded {
                let frame = encoded.frame.clone();
                self.publish(|| ClusterOut::Channel {
                    channel: event.channel.to_owned(),
                    frame,
                });
            }
        }
        let mut foreign: Option<Option<Frame>> = None;
        let observed = self.handler.observes_send();
        for conn in self.channels.members(event.channel) {
            if Some(conn) == except {
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
                        .get_or_insert_with(|| self.foreign.and_then(|encode| encode(event)));
                    if let Some(frame) = frame {
                        out.send(conn, frame);
                    }
                }
            }
        }
    }

    /// A Rakit channel frame from another node, translated once for the local clients of the
    /// other dialect.
    pub(super) fn remote_channel_foreign(
        &mut self,
        channel: &str,
        payload: &[u8],
        out: &mut impl Outbox,
    ) {
        let Some(encode) = self.foreign else {
            return;
        };
        let mut members = self
            .channels
            .members(channel)
            .filter(|conn| self.dialect(*conn) == Some(Dialect::Pusher))
            .peekable();
        if members.peek().is_none() {
            return;
        }
        let Ok(msg) = serde_json::from_slice::<RemoteChannel<'_>>(payload) else {
            return;
        };
        let event = ChannelEvent {
            channel,
            event: msg.event,
            data: msg.data,
            client_id: msg.client_id,
            user_id: None,
        };
        if let Some(frame) = encode(&event) {
            for conn in members {
                out.send(conn, &frame);
            }
        }
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
}
