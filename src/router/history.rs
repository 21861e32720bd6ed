//! The router's side of history and recovery (SPEC section 16): offsets and epochs on the
//! channel frames of history channels, `subscribed` with the position, subscribes with
//! `since`, and the `history` request (WebSocket and HTTP API).
//!
//! It hooks into the router at a few marked places: the fan-out (a publication on a history
//! channel gets its offset first, `fanout.rs`), the subscribe reply (`channel_presence.rs`),
//! the `history` event (`mod.rs`), the timers (`mod.rs`) and a departure (`history_cluster.rs`).
//!
//! On one node the streams are the sans-IO [`Store`]: everything is answered at once. In a
//! cluster they live in Redis and everything that reads them waits for its answer
//! (`history_cluster.rs`). A publication is encoded once: the frame with its offset and epoch
//! goes into the store and to every Rakit subscriber (the same `Rc`).

use std::time::Instant;

use super::dialect::ChannelEvent;
use super::history_state::{Mode, Published};
use super::history_wire::{answer, no_history, parse_query, Answer, ApiHistory, SubscribedFields};
use super::remote::payload;
use super::wire::{Incoming, Out, Outgoing, Reject};
use super::{channel_name, ApiError, ConnId, Outbox, Router};
use crate::history::{Query, Recovery, Retention, Since, Store};

impl Router {
    /// The retention of `channel`, if it is a history channel.
    /// The namespaces' history settings are those of the start (SPEC 18: a reload does not
    /// change them), so a reload's new rules do not start or stop a channel's history.
    pub(super) fn retention(&self, channel: &str) -> Option<Retention> {
        let namespaces = self.history.namespaces.as_ref()?;
        let namespace = namespaces.of(channel);
        namespace.has_history().then_some(Retention {
            size: namespace.history_size,
            ttl: namespace.history_ttl,
        })
    }

    /// SPEC 16, the fan-out's hook: a publication on a history channel gets its offset. On one
    /// node it is stored here and the frame returned; in a cluster it goes to Redis.
    pub(super) fn history_publish(
        &mut self,
        event: &ChannelEvent<'_>,
        except: Option<ConnId>,
        remote_except: Option<&str>,
    ) -> Published {
        let Some(keep) = self.retention(event.channel) else {
            return Published::Plain;
        };
        let encode = |offset: Option<u64>, epoch: Option<&str>| {
            Outgoing::encode(&Out::Channel {
                channel: event.channel,
                event: event.event,
                client_id: event.client_id,
                data: event.data,
                offset,
                epoch,
            })
        };
        let now = (self.history.clock)();
        match &mut self.history.mode {
            Mode::Local(store) => {
                let mut encoded = None;
                store.publish(event.channel, keep, now, |offset, epoch| {
                    let out = encode(Some(offset), Some(epoch))?;
                    let frame = out.frame.clone();
                    encoded = Some(out);
                    Some(frame)
                });
                Published::Stored(encoded)
            }
            Mode::Cluster(reads) if reads.up => {
                let Some(plain) = encode(None, None) else {
                    return Published::Elsewhere;
                };
                let except = remote_except
                    .map(str::to_owned)
                    .or_else(|| except.and_then(|c| self.aliases.name_of(c).map(str::to_owned)));
                let publication = super::HistoryPublication {
                    channel: event.channel.to_owned(),
                    json: plain.json,
                    frame: plain.frame,
                    except,
                    user: event.user_id.map(str::to_owned),
                    keep,
                };
                self.publish(|| super::ClusterOut::HistoryPublish(publication));
                Published::Elsewhere
            }
            Mode::Cluster(_) => {
                // Redis is down: delivered here without offset, stored nowhere; the cluster
                // module gives the channel a new epoch when Redis is back.
                self.publish(|| super::ClusterOut::Unstored {
                    channel: event.channel.to_owned(),
                });
                Published::Plain
            }
        }
    }

    /// SPEC 16, the subscribe's hook: the history part of the `subscribed` reply to `conn`
    /// (subscribed to `channel` now) and what to replay after it; `None` when it is asked of
    /// Redis (the reply comes with the answer).
    pub(super) fn history_subscribe(
        &mut self,
        conn: ConnId,
        channel: &str,
        since: Option<Since>,
    ) -> Option<Answer> {
        let Some(keep) = self.retention(channel) else {
            return Some(Answer {
                fields: SubscribedFields::unknown(since.is_some()),
                replay: Vec::new(),
            });
        };
        let now = (self.history.clock)();
        let max_bytes = self.history.max_bytes;
        match &mut self.history.mode {
            Mode::Local(store) => Some(match since {
                None => Answer {
                    fields: SubscribedFields::at(&store.position(channel), None),
                    replay: Vec::new(),
                },
                Some(since) => match store.recover(channel, &since, now, max_bytes) {
                    Recovery::Recovered { position, replay } => Answer {
                        fields: SubscribedFields::at(&position, Some(true)),
                        replay,
                    },
                    Recovery::Lost(position) => Answer {
                        fields: SubscribedFields::at(&position, Some(false)),
                        replay: Vec::new(),
                    },
                },
            }),
            Mode::Cluster(_) => self.ask_subscribe(conn, channel, since, keep),
        }
    }

    /// `{"event":"history","channel":C,"limit":N,"since":OFFSET}` from `conn`: for a subscriber
    /// of C or a connection C's rule admits (with its `token` where the rule needs one, which
    /// costs a subscribe's token of the budget, as the presence query does).
    pub(super) fn history_event(
        &mut self,
        conn: ConnId,
        msg: &Incoming<'_>,
        now: Instant,
        out: &mut impl Outbox,
    ) -> Result<(), Reject> {
        let channel = channel_name(msg.channel)?;
        let query = parse_query(msg)?;
        // The other dialect's authorized channels are read by its subscribers only.
        if self.protected(&channel) {
            return Err(super::authorize::forbidden(
                &channel,
                "this channel needs Pusher channel authorization (connect to /app/{key})",
            ));
        }
        if !self.channels.is_member(conn, &channel) {
            if msg.token.is_some() {
                self.spend_subscribes(conn, 1, now)?;
            }
            self.authorize_subscribe(conn, &channel, msg.token)?;
        }
        let Some(keep) = self.retention(&channel) else {
            return self.send_history(conn, &channel, &no_history(), &[], out);
        };
        let max_bytes = self.history.max_bytes;
        let now = (self.history.clock)();
        let (position, frames) = match &mut self.history.mode {
            Mode::Local(store) => store.read(&channel, query, now),
            Mode::Cluster(_) => return self.ask_history(conn, &channel, query, keep, max_bytes),
        };
        let payloads: Vec<&[u8]> = frames.iter().map(|f| payload(f)).collect();
        self.send_history(conn, &channel, &position, &payloads, out)
    }

    /// `GET /api/channels/{name}/history`: the answer's JSON now, or `Ok(None)` when it is
    /// asked of Redis (then [`Router::take_api_answers`] gives it, under the returned tag).
    pub fn api_history(&mut self, channel: &str, query: Query) -> Result<ApiHistory, ApiError> {
        if !super::channels::is_valid_name(channel) {
            return Err(ApiError::invalid_channel());
        }
        let Some(keep) = self.retention(channel) else {
            let encoded = answer(channel, &no_history(), &[]);
            return Ok(ApiHistory::Ready(
                encoded.map(|e| e.json).unwrap_or_default(),
            ));
        };
        let now = (self.history.clock)();
        match &mut self.history.mode {
            Mode::Local(store) => {
                let (position, frames) = store.read(channel, query, now);
                let payloads: Vec<&[u8]> = frames.iter().map(|f| payload(f)).collect();
                let encoded = answer(channel, &position, &payloads);
                Ok(ApiHistory::Ready(
                    encoded.map(|e| e.json).unwrap_or_default(),
                ))
            }
            Mode::Cluster(_) => self.ask_api(channel, query, keep).map(ApiHistory::Later),
        }
    }

    /// The history store, on one node.
    pub fn history_store(&self) -> Option<&Store> {
        self.history.store()
    }
}
