//! The cluster module's history work (SPEC section 16, "Cluster"): sending publications and
//! reads to Redis, their answers, their deadlines, and what an outage leaves to repair. The
//! scripts and the checks of their answers are in `history.rs`.
//!
//! A publication waits (at most `node_timeout_ms`, at most [`MAX_PUBLISHING`] of them) for
//! Redis to publish it back, numbered; the origin delivers it then, like every other node.
//! One that cannot be sent, that Redis refused, that never came back, or that was waiting
//! when Redis went out of reach is delivered here without offset ("unstored"), and its channel
//! is remembered: when Redis answers again the channel's stream is deleted, so it gets a new
//! epoch and nobody is told a replay that misses what only this node's clients saw. Should it
//! come back late after all, it is not delivered twice. A read waits at most
//! `node_timeout_ms`; unanswered, failed or garbled, the router answers it as unavailable.

use std::time::Instant;

use super::envelope::history_head;
use super::history::{
    keys, meta_ttl, parse_read, read_args, seconds, Publication, Reading, MAX_PUBLISHING, PUBLISH,
    READ,
};
use super::resp::Value;
use super::{Cluster, Query};
use crate::history::{Read, Retention};
use crate::router::{ChannelExtras, HistoryPublication, Outbox, Router};

impl Cluster {
    /// Sends a publication to Redis to be numbered, stored and published; delivered here at
    /// once, unstored, when it cannot be.
    pub(super) fn history_publish(
        &mut self,
        publication: HistoryPublication,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        let HistoryPublication {
            channel,
            json,
            frame,
            except,
            user,
            keep,
        } = publication;
        let pending = Publication {
            channel,
            frame,
            except,
            user,
            deadline: now + self.timeout,
        };
        let Some(prefix) = json.strip_suffix('}') else {
            return self.deliver_unstored(pending, router, out);
        };
        if !self.is_up() || self.history.publishing.len() >= MAX_PUBLISHING {
            return self.deliver_unstored(pending, router, out);
        }
        let seq = self.history.next_seq;
        self.history.next_seq += 1;
        let [meta, stream, generation] = keys(&self.ns, &pending.channel);
        let head = history_head(
            &self.node,
            &pending.channel,
            pending.except.as_deref(),
            pending.user.as_deref(),
            seq,
        );
        let candidate = self.history.epoch();
        let bus = self.bus();
        let size = keep.size.to_string();
        let ttl = seconds(keep.ttl);
        let meta_ttl = meta_ttl();
        let tag = self.tag(Query::HistoryPublish(seq));
        let args: [&[u8]; 14] = [
            b"EVAL",
            PUBLISH.as_bytes(),
            b"3",
            meta.as_bytes(),
            stream.as_bytes(),
            generation.as_bytes(),
            candidate.as_bytes(),
            size.as_bytes(),
            ttl.as_bytes(),
            meta_ttl.as_bytes(),
            bus.as_bytes(),
            &head,
            pending.user.as_deref().unwrap_or_default().as_bytes(),
            prefix.as_bytes(),
        ];
        if !self.tagged(&args, tag) {
            self.queries.remove(&tag);
            return self.deliver_unstored(pending, router, out);
        }
        self.counts.messages_out += 1;
        self.history
            .publishing_order
            .push_back((pending.deadline, seq));
        self.history.publishing.insert(seq, pending);
    }

    /// Delivers a publication here without offset and remembers its channel as unstored.
    fn deliver_unstored(&mut self, p: Publication, router: &mut Router, out: &mut impl Outbox) {
        self.history.unstored(&p.channel);
        let extras = ChannelExtras {
            except: p.except.as_deref(),
            user: p.user.as_deref(),
        };
        router.remote_channel(&p.channel, &p.frame, extras, out);
    }

    /// Our publication `seq` came back numbered: delivered now, unless it was given up.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn history_echo(
        &mut self,
        seq: u64,
        channel: &str,
        offset: u64,
        epoch: &str,
        json: &[u8],
        router: &mut Router,
        out: &mut impl Outbox,
    ) {
        let Some(p) = self.history.publishing.remove(&seq) else {
            return;
        };
        if p.channel != channel {
            // Not what we sent under that number (a forged echo): ours is delivered unstored.
            return self.deliver_unstored(p, router, out);
        }
        let extras = ChannelExtras {
            except: p.except.as_deref(),
            user: p.user.as_deref(),
        };
        router.remote_history(channel, offset, epoch, json, extras, out);
    }

    /// Redis's answer to publication `seq`: an offset, or an error (then nothing was published
    /// and it is delivered here unstored).
    pub(super) fn history_published(
        &mut self,
        seq: u64,
        value: &Value,
        router: &mut Router,
        out: &mut impl Outbox,
    ) {
        if matches!(value, Value::Integer(n) if *n > 0) {
            return;
        }
        log::debug!("cluster: Redis did not number a publication: {value:?}");
        if let Some(p) = self.history.publishing.remove(&seq) {
            self.deliver_unstored(p, router, out);
        }
    }

    /// Sends read `tag` of the router to Redis; answered at once as unavailable when it cannot
    /// be sent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn history_read(
        &mut self,
        tag: u64,
        channel: &str,
        read: Read,
        keep: Retention,
        max_bytes: usize,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        if !self.is_up() {
            return router.history_reply(tag, None, out);
        }
        let [meta, stream, generation] = keys(&self.ns, channel);
        let candidate = self.history.epoch();
        let meta_ttl = meta_ttl();
        let rest = read_args(&read, keep, max_bytes);
        let query = self.tag(Query::HistoryRead(tag));
        let mut args: Vec<&[u8]> = vec![
            b"EVAL",
            READ.as_bytes(),
            b"3",
            meta.as_bytes(),
            stream.as_bytes(),
            generation.as_bytes(),
            candidate.as_bytes(),
            meta_ttl.as_bytes(),
        ];
        args.extend(rest.iter().map(String::as_bytes));
        if !self.tagged(&args, query) {
            self.queries.remove(&query);
            return router.history_reply(tag, None, out);
        }
        let deadline = now + self.timeout;
        self.history.reading_order.push_back((deadline, tag));
        self.history.reading.insert(
            tag,
            Reading {
                read,
                keep,
                max_bytes,
            },
        );
    }

    /// Redis's answer to the router's read `tag`, checked.
    pub(super) fn history_answer(
        &mut self,
        tag: u64,
        value: &Value,
        router: &mut Router,
        out: &mut impl Outbox,
    ) {
        let Some(reading) = self.history.reading.remove(&tag) else {
            return;
        };
        let snapshot = parse_read(value, &reading.read, reading.keep, reading.max_bytes);
        if snapshot.is_none() {
            log::debug!("cluster: a history read got an answer it cannot use: {value:?}");
        }
        router.history_reply(tag, snapshot, out);
    }

    /// Publications and reads that waited too long.
    pub(super) fn history_timers(
        &mut self,
        router: &mut Router,
        out: &mut impl Outbox,
        now: Instant,
    ) {
        while let Some(&(at, seq)) = self.history.publishing_order.front() {
            if at > now {
                break;
            }
            self.history.publishing_order.pop_front();
            if let Some(p) = self.history.publishing.remove(&seq) {
                log::debug!("cluster: a publication did not come back from Redis in time");
                self.deliver_unstored(p, router, out);
            }
        }
        while let Some(&(at, tag)) = self.history.reading_order.front() {
            if at > now {
                break;
            }
            self.history.reading_order.pop_front();
            if self.history.reading.remove(&tag).is_some() {
                router.history_reply(tag, None, out);
            }
        }
    }

    /// Redis went out of reach: what waited for it is delivered unstored or answered as
    /// unavailable, and the router stops asking.
    pub(super) fn history_down(&mut self, router: &mut Router, out: &mut impl Outbox) {
        router.set_history_up(false);
        let mut waiting: Vec<(Instant, u64)> = self.history.publishing_order.drain(..).collect();
        waiting.retain(|(_, seq)| self.history.publishing.contains_key(seq));
        for (_, seq) in waiting {
            if let Some(p) = self.history.publishing.remove(&seq) {
                self.deliver_unstored(p, router, out);
            }
        }
        self.history.reading_order.clear();
        let tags: Vec<u64> = self.history.reading.drain().map(|(tag, _)| tag).collect();
        for tag in tags {
            router.history_reply(tag, None, out);
        }
    }

    /// Gives every channel published to unstored a new epoch (its stream deleted), or every
    /// channel at once (the generation) when there were too many; each is forgotten once Redis
    /// confirms it.
    pub(super) fn history_repair(&mut self) {
        if !self.is_up() {
            return;
        }
        if self.history.overflow {
            let key = super::history::generation_key(&self.ns);
            let tag = self.tag(Query::HistoryGeneration);
            if !self.tagged(&[b"INCR", key.as_bytes()], tag) {
                self.queries.remove(&tag);
            }
            return;
        }
        let channels: Vec<String> = self.history.unstored.iter().cloned().collect();
        for channel in channels {
            let [meta, stream, _] = keys(&self.ns, &channel);
            let tag = self.tag(Query::HistoryLose(channel));
            if !self.tagged(&[b"DEL", meta.as_bytes(), stream.as_bytes()], tag) {
                self.queries.remove(&tag);
                return;
            }
        }
    }

    /// Redis's answer to a repair.
    pub(super) fn history_repaired(&mut self, query: &Query, value: &Value) {
        if !matches!(value, Value::Integer(_)) {
            return;
        }
        match query {
            Query::HistoryLose(channel) => {
                self.history.unstored.remove(channel);
            }
            Query::HistoryGeneration => {
                self.history.overflow = false;
                self.history.unstored.clear();
            }
            _ => {}
        }
    }
}
