//! History in a cluster (SPEC section 16, "Cluster"): the router's side of streams that live in
//! Redis (`src/cluster/history.rs` is the other side).
//!
//! Publishing. A publication on a history channel is not delivered where it was made: it goes
//! to Redis ([`super::ClusterOut::HistoryPublish`]), where one Lua script gives it the next
//! offset, stores it and publishes it to every node, the origin included, which delivers it
//! when it comes back ([`Router::remote_history`]). So every node delivers a channel's
//! publications in the order of their offsets, whichever node made them. While Redis is out of
//! reach ([`Router::set_history_up`]) a node delivers to its own subscribers at once, without
//! offset, and stores nothing.
//!
//! Reading. A subscribe (its position, or a recovery), a `history` request and the HTTP API's
//! `history` wait for Redis's answer ([`Router::history_reply`]); the cluster module answers
//! each one, with `None` when Redis failed or took too long. A subscriber waiting for its
//! position or recovery is subscribed already; what is published on the channel meanwhile is
//! *held* for it (a [`Seam`]) and delivered after its `subscribed` and its replay, minus what
//! they already carried. After the answer a subscriber keeps a *floor* (the offset it was
//! answered) until the live stream passes it: a publication Redis made before the answer may
//! still be on its way on the other connection, and must not arrive twice.
//!
//! Bounds: at most [`MAX_READS`] reads wait at once ([`MAX_API_READS`] of them HTTP
//! requests); what is held for one subscriber is at most `max_send_buffer` bytes (beyond it,
//! it is dropped and the subscribe answered `recovered: false` at the newest offset it saw).

use std::rc::Rc;

use super::history_state::{Pending, Seam, SeamState, MAX_API_READS, MAX_REQUESTS_PER_CONN};
use super::history_wire::{self, unavailable, Answer, SubscribedFields};
use super::ids::ClientId;
use super::remote::ChannelExtras;
use super::wire::Reject;
use super::{ApiError, ClusterOut, ConnId, Frame, Outbox, Router};
use crate::history::{Query, Read, Retention, Since, Snapshot};

/// The frame of a publication's JSON as Redis holds it.
fn frame_of(json: &[u8]) -> Frame {
    let mut frame = Vec::with_capacity(json.len() + 10);
    rakit_protocol::encode_frame(&mut frame, rakit_protocol::OpCode::Text, json);
    Frame::from(frame)
}

impl Router {
    /// Whether Redis can be asked (the cluster module's view): while it cannot, history
    /// channels are delivered without offset and reads are answered as unavailable.
    pub fn set_history_up(&mut self, up: bool) {
        if let Some(reads) = self.history.reads() {
            reads.up = up;
        }
    }

    /// Asks Redis for the position of `channel` (or a recovery) for `conn`'s subscribe; holds
    /// the channel's publications for it meanwhile. `Some` when it cannot be asked: answered
    /// as a channel whose position is unknown.
    pub(super) fn ask_subscribe(
        &mut self,
        conn: ConnId,
        channel: &str,
        since: Option<Since>,
        keep: Retention,
    ) -> Option<Answer> {
        let client = self.clients.get(&conn).map(|c| c.id);
        let max_bytes = self.history.max_bytes();
        let recover = since.is_some();
        let unknown = || {
            Some(Answer {
                fields: SubscribedFields::unknown(recover),
                replay: Vec::new(),
            })
        };
        let Some(client) = client else {
            return unknown();
        };
        let channel: Rc<str> = channel.into();
        let pending = Pending::Subscribe {
            conn,
            client,
            channel: Rc::clone(&channel),
            recover,
        };
        let read = since.map_or(Read::Position, Read::Recover);
        let Some(tag) = self.ask(pending, &channel, read, keep, max_bytes) else {
            return unknown();
        };
        let reads = self.history.reads()?;
        let seams = reads.seams.entry(channel).or_default();
        seams.retain(|s| s.conn != conn);
        seams.push(Seam {
            conn,
            state: SeamState::Waiting {
                tag,
                held: Vec::new(),
                bytes: 0,
                dropped: None,
            },
        });
        None
    }

    /// Asks Redis for a client's `history` request; the answer goes to `conn`.
    pub(super) fn ask_history(
        &mut self,
        conn: ConnId,
        channel: &str,
        query: Query,
        keep: Retention,
        max_bytes: usize,
    ) -> Result<(), Reject> {
        let Some(client) = self.clients.get(&conn).map(|c| c.id) else {
            return Err(unavailable(channel));
        };
        let Some(reads) = self.history.reads_ref().filter(|r| r.up) else {
            return Err(unavailable(channel));
        };
        if reads
            .requests
            .get(&conn)
            .is_some_and(|&n| n >= MAX_REQUESTS_PER_CONN)
        {
            return Err(Reject::new(
                super::wire::ErrorCode::BadRequest,
                "too many history requests waiting: wait for their answers",
            )
            .on(channel));
        }
        let pending = Pending::Request {
            conn,
            client,
            channel: channel.into(),
        };
        self.ask(pending, channel, Read::Query(query), keep, max_bytes)
            .map(drop)
            .ok_or_else(|| unavailable(channel))
    }

    /// Asks Redis for the HTTP API's `history`; its tag.
    pub(super) fn ask_api(
        &mut self,
        channel: &str,
        query: Query,
        keep: Retention,
    ) -> Result<u64, ApiError> {
        let unavailable = || ApiError::from(unavailable(channel));
        if self
            .history
            .reads_ref()
            .is_some_and(|r| r.api_reads >= MAX_API_READS)
        {
            return Err(unavailable());
        }
        let pending = Pending::Api {
            channel: channel.into(),
        };
        // An HTTP answer is not bounded by a client's send buffer.
        self.ask(pending, channel, Read::Query(query), keep, usize::MAX)
            .ok_or_else(unavailable)
    }

    /// Sends `read` for `pending`; its tag, or `None` when Redis cannot be asked or too many
    /// reads wait.
    fn ask(
        &mut self,
        pending: Pending,
        channel: &str,
        read: Read,
        keep: Retention,
        max_bytes: usize,
    ) -> Option<u64> {
        let reads = self.history.reads()?;
        if !reads.up || reads.full() {
            return None;
        }
        let tag = reads.tag();
        match &pending {
            Pending::Api { .. } => reads.api_reads += 1,
            Pending::Request { conn, .. } => *reads.requests.entry(*conn).or_default() += 1,
            Pending::Subscribe { .. } => {}
        }
        reads.pending.insert(tag, pending);
        self.publish(|| ClusterOut::HistoryRead {
            tag,
            channel: channel.to_owned(),
            read,
            keep,
            max_bytes,
        });
        Some(tag)
    }

    /// Redis's answer to read `tag` (`None`: it failed, or took too long).
    pub fn history_reply(&mut self, tag: u64, answer: Option<Snapshot>, out: &mut impl Outbox) {
        let Some(pending) = self.history.reads().and_then(|r| r.pending.remove(&tag)) else {
            return;
        };
        match pending {
            Pending::Subscribe {
                conn,
                client,
                channel,
                recover,
            } => self.finish_subscribe(tag, conn, client, &channel, recover, answer, out),
            Pending::Request {
                conn,
                client,
                channel,
            } => {
                if let Some(reads) = self.history.reads() {
                    if let Some(n) = reads.requests.get_mut(&conn) {
                        *n -= 1;
                        if *n == 0 {
                            reads.requests.remove(&conn);
                        }
                    }
                }
                if !self.clients.get(&conn).is_some_and(|c| c.id == client) {
                    return;
                }
                let result = match answer {
                    Some(snap) => {
                        let stored = snap.publications.unwrap_or_default();
                        let payloads: Vec<&[u8]> = stored.iter().map(|p| &p.json[..]).collect();
                        self.send_history(conn, &channel, &snap.position, &payloads, out)
                    }
                    None => Err(unavailable(&channel)),
                };
                if let Err(reject) = result {
                    self.send_error(conn, &reject, out);
                }
            }
            Pending::Api { channel } => {
                let answer = match answer {
                    Some(snap) => {
                        let stored = snap.publications.unwrap_or_default();
                        let payloads: Vec<&[u8]> = stored.iter().map(|p| &p.json[..]).collect();
                        let json = history_wire::answer(&channel, &snap.position, &payloads)
                            .map(|e| e.json);
                        Ok(json.unwrap_or_default())
                    }
                    None => Err(ApiError::from(unavailable(&channel))),
                };
                if let Some(reads) = self.history.reads() {
                    reads.api_reads -= 1;
                    reads.answers.push((tag, answer));
                }
            }
        }
    }

    /// The HTTP API's answers that came since the last call, by tag.
    pub fn take_api_answers(&mut self) -> Vec<(u64, Result<String, ApiError>)> {
        self.history
            .reads()
            .map(|r| std::mem::take(&mut r.answers))
            .unwrap_or_default()
    }

    /// A subscribe's answer: `subscribed`, the replay, then what was held, without what they
    /// already carried.
    #[allow(clippy::too_many_arguments)]
    fn finish_subscribe(
        &mut self,
        tag: u64,
        conn: ConnId,
        client: ClientId,
        channel: &Rc<str>,
        recover: bool,
        answer: Option<Snapshot>,
        out: &mut impl Outbox,
    ) {
        let Some(seam) = self.take_seam(channel, conn, tag) else {
            // Unsubscribed (or subscribed again) meanwhile: a later answer is due, or none.
            return;
        };
        let here = self.clients.get(&conn).is_some_and(|c| c.id == client)
            && self.channels.is_member(conn, channel);
        let SeamState::Waiting { held, dropped, .. } = seam else {
            return;
        };
        if !here {
            return;
        }
        let max_bytes = self.history.max_bytes();
        let (fields, replay, floor) = match answer {
            Some(snap) => {
                let mut position = snap.position;
                let publications = snap.publications.filter(|p| {
                    recover && p.iter().map(|s| s.json.len()).sum::<usize>() <= max_bytes
                });
                let mut recovered = recover.then_some(publications.is_some());
                if let Some(newest) = dropped {
                    // Publications were dropped: whoever asked must reload its state.
                    recovered = recover.then_some(false);
                    if let Some((offset, epoch)) = newest {
                        if epoch == position.epoch && offset > position.offset {
                            position.offset = offset;
                        }
                    }
                }
                let replay: Vec<Frame> = match (recovered, publications) {
                    (Some(true), Some(list)) => list.iter().map(|p| frame_of(&p.json)).collect(),
                    _ => Vec::new(),
                };
                let floor = (Rc::clone(&position.epoch), position.offset);
                (
                    SubscribedFields::at(&position, recovered),
                    replay,
                    Some(floor),
                )
            }
            None => (SubscribedFields::unknown(recover), Vec::new(), None),
        };
        self.reply_subscribed(conn, channel, &fields, out);
        self.deliver_frames(conn, &replay, out);
        let mut floor = floor;
        let mut live = Vec::with_capacity(held.len());
        for (stamp, frame) in held {
            match (&stamp, &floor) {
                (Some((offset, epoch)), Some((fe, fo))) if epoch == fe && offset <= fo => continue,
                (Some(_), Some(_)) => floor = None,
                _ => {}
            }
            live.push(frame);
        }
        self.deliver_frames(conn, &live, out);
        if let (Some((epoch, offset)), Some(reads)) = (floor, self.history.reads()) {
            reads
                .seams
                .entry(Rc::clone(channel))
                .or_default()
                .push(Seam {
                    conn,
                    state: SeamState::Floor { epoch, offset },
                });
        }
    }

    /// Removes `conn`'s seam on `channel` if it waits for read `tag`.
    fn take_seam(&mut self, channel: &str, conn: ConnId, tag: u64) -> Option<SeamState> {
        let reads = self.history.reads()?;
        let seams = reads.seams.get_mut(channel)?;
        let i = seams.iter().position(|s| {
            s.conn == conn && matches!(s.state, SeamState::Waiting { tag: t, .. } if t == tag)
        })?;
        let seam = seams.swap_remove(i);
        if seams.is_empty() {
            reads.seams.remove(channel);
        }
        Some(seam.state)
    }

    /// The local subscribers of `channel` that must not get this publication now (`stamp`: its
    /// offset and epoch, if it has them): held for the ones waiting, skipped for the ones whose
    /// answer carried it. One map lookup when no subscriber of the channel is in between.
    pub(super) fn hold_for_seams(
        &mut self,
        channel: &str,
        stamp: Option<(u64, &str)>,
        frame: &Frame,
    ) -> Vec<ConnId> {
        let max_bytes = self.history.max_bytes();
        let Some(reads) = self.history.reads() else {
            return Vec::new();
        };
        let Some(seams) = reads.seams.get_mut(channel) else {
            return Vec::new();
        };
        let mut skip = Vec::new();
        seams.retain_mut(|seam| match &mut seam.state {
            SeamState::Waiting {
                held,
                bytes,
                dropped,
                ..
            } => {
                skip.push(seam.conn);
                let stamp = stamp.map(|(o, e)| (o, Rc::from(e)));
                if dropped.is_some() || *bytes + frame.len() > max_bytes {
                    let newest = stamp.or_else(|| held.iter().rev().find_map(|h| h.0.clone()));
                    held.clear();
                    *dropped = Some(newest);
                } else {
                    *bytes += frame.len();
                    held.push((stamp, frame.clone()));
                }
                true
            }
            SeamState::Floor { epoch, offset } => match stamp {
                Some((o, e)) if e == &**epoch && o <= *offset => {
                    skip.push(seam.conn);
                    true
                }
                Some(_) => false,
                None => true,
            },
        });
        if seams.is_empty() {
            reads.seams.remove(channel);
        }
        skip
    }

    /// `conn` left `channel` (or every channel: `None`): nothing is held for it any more.
    pub(super) fn history_forget(&mut self, conn: ConnId, channel: Option<&str>) {
        let Some(reads) = self.history.reads() else {
            return;
        };
        if reads.seams.is_empty() {
            return;
        }
        match channel {
            Some(channel) => {
                if let Some(seams) = reads.seams.get_mut(channel) {
                    seams.retain(|s| s.conn != conn);
                    if seams.is_empty() {
                        reads.seams.remove(channel);
                    }
                }
            }
            None => reads.seams.retain(|_, seams| {
                seams.retain(|s| s.conn != conn);
                !seams.is_empty()
            }),
        }
    }

    /// A publication on history channel `channel` as Redis published it (from any node, this
    /// one included): `json` is its Rakit frame's JSON with `offset` and `epoch`. Framed once
    /// for the local subscribers but `extras.except`; the other dialect's get it translated.
    pub fn remote_history(
        &mut self,
        channel: &str,
        offset: u64,
        epoch: &str,
        json: &[u8],
        extras: ChannelExtras<'_>,
        out: &mut impl Outbox,
    ) {
        let frame = frame_of(json);
        self.remote_frame(channel, &frame, Some((offset, epoch)), extras, out);
    }

    /// How many reads wait for Redis (tests, metrics).
    pub fn history_reads_waiting(&self) -> usize {
        self.history.reads_ref().map_or(0, |r| r.pending.len())
    }
}
