//! Cache channels (SPEC section 16, its last bullet), on the history machinery.
//!
//! While the Pusher dialect is on, a channel named with one of its cache prefixes (`cache-`,
//! `private-cache-`, `private-encrypted-cache-`, `presence-cache-`: [`CacheChannels`]) is a
//! history stream of one publication kept for `[pusher] cache_ttl` (its namespace's history
//! instead, when that keeps any). So every path that publishes on a channel (the fan-out:
//! Pusher's HTTP API, client events, Rakit channel messages, `broadcast_to_channel`, the Rakit
//! HTTP API) stores its last publication, in this process's store on one node (counted against
//! `max_memory`) and in Redis in a cluster (the same two scripts, `MAXLEN 1`), and a new
//! subscriber on any node reads it:
//!
//! - a subscriber of the other dialect, right after its subscription succeeded: the event as it
//!   was, on that channel, or the dialect's miss (`pusher:cache_miss`) when none is held;
//! - a Rakit subscriber without `since`: `subscribed` at the offset before the cached
//!   publication, then that publication as its channel frame, as if it had subscribed just
//!   before it (the browser client delivers it like any other); with `since`, SPEC 16's
//!   recovery as on any history channel.
//!
//! When nothing is held, the handler hears of the miss ([`ChannelActivity::CacheMiss`]: the
//! `cache_miss` webhook), whatever the subscriber's dialect, so the backend can publish the
//! channel's state.
//!
//! In a cluster the read waits for Redis like a history subscribe (`history_cluster.rs`): what
//! is published meanwhile is held for the subscriber and follows the cached event, without
//! what it already was. Redis out of reach, or no answer within `node_timeout_ms`: a miss, as
//! the safe answer (this node cannot know whether another node published something newer);
//! publications made while Redis was down are delivered unstored, and their channel's stream is
//! deleted when Redis is back, so a later subscriber gets a miss rather than an older event.

use super::dialect::CacheChannels;
use super::history_state::Mode;
use super::history_wire::{Answer, SubscribedFields};
use super::remote::payload;
use super::{ConnId, Frame, Outbox, Router};
use crate::events::ChannelActivity;
use crate::history::{Query, Retention};

impl Router {
    /// Makes the channels named with `cache.prefixes` cache channels (see the module docs).
    /// A channel's retention is decided when it is published to or read: set this before
    /// clients connect.
    pub fn set_cache_channels(&mut self, cache: CacheChannels) {
        self.history.cache = Some(cache);
    }

    /// Whether `channel` is a cache channel.
    pub fn is_cache_channel(&self, channel: &str) -> bool {
        self.history
            .cache
            .is_some_and(|c| c.prefixes.iter().any(|p| channel.starts_with(p)))
    }

    /// The retention of cache channel `channel` (`None` for any other): its last publication,
    /// for the cache's ttl.
    pub(super) fn cache_retention(&self, channel: &str) -> Option<Retention> {
        let cache = self.history.cache?;
        cache
            .prefixes
            .iter()
            .any(|p| channel.starts_with(p))
            .then_some(Retention {
                size: 1,
                ttl: cache.ttl,
            })
    }

    /// `conn`, a client of the other dialect, was told its subscription to `channel`
    /// succeeded: on a cache channel it gets the cached event or the miss now, or in a cluster
    /// when Redis answers. Nothing on other channels.
    pub fn cache_subscribe(&mut self, conn: ConnId, channel: &str, out: &mut impl Outbox) {
        let Some(keep) = self
            .is_cache_channel(channel)
            .then(|| self.retention(channel))
            .flatten()
        else {
            return;
        };
        let now = (self.history.clock)();
        let newest = match &mut self.history.mode {
            Mode::Local(store) => store.read(channel, Query::Newest(1), now).1.pop(),
            Mode::Cluster(_) => {
                if self
                    .ask_subscribe(conn, channel, None, keep, true)
                    .is_none()
                {
                    // Asked: answered with `history_reply`.
                    return;
                }
                None
            }
        };
        self.send_cached(conn, channel, newest.as_deref().map(payload), out);
    }

    /// Sends the other dialect's subscriber `conn` the cached publication of `channel` (the
    /// JSON of its Rakit frame), translated, or the miss when there is none.
    pub(super) fn send_cached(
        &mut self,
        conn: ConnId,
        channel: &str,
        newest: Option<&[u8]>,
        out: &mut impl Outbox,
    ) {
        let frame = match newest.and_then(|json| self.foreign_frame(channel, json, None)) {
            Some(frame) => Some(frame),
            None => {
                self.cache_missed(channel);
                self.history.cache.and_then(|c| (c.miss)(channel))
            }
        };
        if let Some(frame) = frame {
            out.send(conn, &frame);
        }
    }

    /// A Rakit subscribe (without `since`) to cache channel `channel`: `answer`, made at the
    /// stream's position, starts at the offset before `newest` (the cached publication's
    /// frame) and replays it; with none the handler hears of the miss.
    pub(super) fn cache_opening(
        &mut self,
        channel: &str,
        answer: &mut Answer,
        newest: Option<Frame>,
    ) {
        match newest {
            Some(frame) => {
                let SubscribedFields { offset, .. } = &mut answer.fields;
                if let Some(offset) = offset {
                    *offset = offset.saturating_sub(1);
                }
                answer.replay.push(frame);
            }
            None => self.cache_missed(channel),
        }
    }

    /// A subscriber of `channel` found nothing cached.
    fn cache_missed(&mut self, channel: &str) {
        self.handler
            .channel(&ChannelActivity::CacheMiss { channel });
    }
}
