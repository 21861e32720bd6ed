//! One daemon's streams in memory (single-node mode), bounded by `[history] max_memory`.
//!
//! Each stream keeps its epoch, its newest offset and its publications (a run of consecutive
//! offsets ending at the newest), each the frame its subscribers got. What it costs is counted
//! ([`Store::used`]): the bytes of every stored frame plus [`ENTRY_OVERHEAD`] per publication,
//! and [`STREAM_OVERHEAD`] plus the name and epoch per channel, so that the offsets and epochs
//! kept for a day after a channel's last publication are bounded too. Beyond `max_memory` the
//! channels published to least recently lose their whole stream (publications, offset and
//! epoch) first; a channel that alone is over it loses its oldest publications.
//!
//! Epochs. A stream made in this process before any stream was dropped (evicted, or forgotten
//! a day after its last publication) has the process's epoch, new at every start; once one was
//! dropped, every new stream gets an epoch of its own (the process's plus a counter). A channel
//! without a stream reports offset 0 and the epoch its next stream would have, as far as that
//! can be known: the process's epoch while nothing was dropped (so a client that subscribed
//! before the first publication recovers it), else an epoch no stream ever has (its recovery
//! answers `recovered: false`, never a wrong replay). Nothing is stored for a channel that is
//! only read.
//!
//! Time. A publication expires `ttl` after it was published (expired ones are trimmed whenever
//! the stream is touched, and all of a stream's at once when the newest expires, by
//! [`Store::sweep`]); the stream's offset and epoch stay for [`META_TTL`] after the last
//! publication. Two ordered indexes make this O(log n) per publication and O(expired) per
//! sweep: channels by last publication (for eviction and forgetting) and by the instant their
//! newest publication expires.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

use super::{epoch_of, Frame, Position, Query, Retention, Since, META_TTL};

/// What one stored publication costs beyond its frame's bytes: its queue slot (the instant and
/// the shared pointer) and the frame's reference counts.
pub const ENTRY_OVERHEAD: usize = 48;
/// What one stream costs beyond its name and epoch: its record and its places in the map and
/// the two indexes.
pub const STREAM_OVERHEAD: usize = 256;

/// The answer to a `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Every publication after `since` is held: these, oldest first (maybe none).
    Recovered {
        position: Position,
        replay: Vec<Frame>,
    },
    /// Another epoch, an offset this stream never reached, publications no longer held, or a
    /// replay over the size allowed.
    Lost(Position),
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    frame: Frame,
}

#[derive(Debug)]
struct Stream {
    epoch: Rc<str>,
    /// The newest publication's offset.
    last: u64,
    /// The publications still held: offsets `last - len + 1 ..= last`.
    pubs: VecDeque<Entry>,
    /// Its key in `Store::lru`.
    tick: u64,
    /// When it was last published to.
    last_at: Instant,
    /// Its key in `Store::expiry` while it holds publications.
    expiry: Option<(Instant, u64)>,
    keep: Retention,
    /// What it costs in all ([`Store::used`]).
    bytes: usize,
}

impl Stream {
    /// The offset of the oldest publication held (`last + 1` when none is).
    fn first(&self) -> u64 {
        self.last + 1 - self.pubs.len() as u64
    }

    /// Drops the publications that expired at `now`; returns the bytes freed.
    fn trim_expired(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        while self
            .pubs
            .front()
            .is_some_and(|e| e.at + self.keep.ttl <= now)
        {
            freed += self.pop_front();
        }
        freed
    }

    /// Drops the oldest publication; returns the bytes freed.
    fn pop_front(&mut self) -> usize {
        let freed = self.pubs.pop_front().map_or(0, |e| cost(&e.frame));
        self.bytes -= freed;
        freed
    }

    fn position(&self) -> Position {
        Position {
            offset: self.last,
            epoch: Rc::clone(&self.epoch),
        }
    }
}

fn cost(frame: &Frame) -> usize {
    frame.len() + ENTRY_OVERHEAD
}

/// The streams (see the module docs).
#[derive(Debug)]
pub struct Store {
    max_memory: usize,
    used: usize,
    streams: HashMap<Rc<str>, Stream>,
    /// Channels by their last publication, oldest first.
    lru: BTreeMap<u64, Rc<str>>,
    /// Channels holding publications, by when their newest expires.
    expiry: BTreeMap<(Instant, u64), Rc<str>>,
    next_tick: u64,
    /// This process's epoch.
    process: Rc<str>,
    /// Some stream was dropped since the start: new streams get epochs of their own.
    dropped: bool,
    /// Numbers the epochs of streams made after a drop.
    next_stream: u64,
    /// Streams dropped to stay within `max_memory`.
    evictions: u64,
}

impl Store {
    /// An empty store of at most `max_memory` bytes; `seed` makes the process's epoch (give it
    /// something new at every start).
    pub fn new(max_memory: usize, seed: u64) -> Store {
        Store {
            max_memory,
            used: 0,
            streams: HashMap::new(),
            lru: BTreeMap::new(),
            expiry: BTreeMap::new(),
            next_tick: 0,
            process: epoch_of(seed).into(),
            dropped: false,
            next_stream: 1,
            evictions: 0,
        }
    }

    /// Bytes counted against `max_memory` (see the module docs).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Streams dropped so far to stay within `max_memory`.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// How many channels have a stream.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no channel has a stream.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Where `channel`'s stream is (see the module docs for a channel without one).
    pub fn position(&self, channel: &str) -> Position {
        match self.streams.get(channel) {
            Some(stream) => stream.position(),
            None => Position {
                offset: 0,
                epoch: self.next_epoch(),
            },
        }
    }

    /// The epoch a stream made now gets.
    fn next_epoch(&self) -> Rc<str> {
        if self.dropped {
            format!("{}-{}", self.process, self.next_stream).into()
        } else {
            Rc::clone(&self.process)
        }
    }

    /// The frames `channel` holds, oldest first (expired ones included until trimmed).
    pub fn held(&self, channel: &str) -> impl Iterator<Item = &Frame> + '_ {
        self.streams
            .get(channel)
            .into_iter()
            .flat_map(|s| s.pubs.iter().map(|e| &e.frame))
    }

    /// A publication on `channel`: gives it the next offset, lets `frame_for(offset, epoch)`
    /// encode it, and stores that frame, which is returned for the fan-out. `None` (and nothing
    /// changes) when the frame cannot be made.
    pub fn publish(
        &mut self,
        channel: &str,
        keep: Retention,
        now: Instant,
        frame_for: impl FnOnce(u64, &str) -> Option<Frame>,
    ) -> Option<Frame> {
        if !self.streams.contains_key(channel) {
            let frame = frame_for(1, &self.next_epoch())?;
            let name: Rc<str> = channel.into();
            let epoch = self.next_epoch();
            if self.dropped {
                self.next_stream += 1;
            }
            let bytes = STREAM_OVERHEAD + name.len() + epoch.len();
            self.used += bytes;
            let tick = self.next_tick;
            self.next_tick += 1;
            let stream = Stream {
                epoch,
                last: 0,
                pubs: VecDeque::new(),
                tick,
                last_at: now,
                expiry: None,
                keep,
                bytes,
            };
            self.streams.insert(Rc::clone(&name), stream);
            self.lru.insert(tick, name);
            self.append(channel, frame.clone(), now);
            return Some(frame);
        }
        let stream = self.streams.get(channel)?;
        let frame = frame_for(stream.last + 1, &stream.epoch)?;
        self.append(channel, frame.clone(), now);
        Some(frame)
    }

    /// Stores `frame` as `channel`'s next publication, then keeps within the bounds.
    fn append(&mut self, channel: &str, frame: Frame, now: Instant) {
        let tick = self.next_tick;
        self.next_tick += 1;
        let Some(name) = self
            .streams
            .get_key_value(channel)
            .map(|(k, _)| Rc::clone(k))
        else {
            return;
        };
        let Some(stream) = self.streams.get_mut(channel) else {
            return;
        };
        let mut freed = stream.trim_expired(now);
        while stream.pubs.len() >= stream.keep.size.max(1) {
            freed += stream.pop_front();
        }
        let added = cost(&frame);
        stream.last += 1;
        stream.pubs.push_back(Entry { at: now, frame });
        stream.bytes += added;
        stream.last_at = now;
        self.lru.remove(&stream.tick);
        stream.tick = tick;
        self.lru.insert(tick, Rc::clone(&name));
        if let Some(key) = stream.expiry.take() {
            self.expiry.remove(&key);
        }
        let key = (now + stream.keep.ttl, tick);
        stream.expiry = Some(key);
        self.expiry.insert(key, name);
        self.used = self.used - freed + added;
        self.fit(channel);
    }

    /// Drops the least recently published streams but `current` while over `max_memory`; then,
    /// if `current` alone is still over, its oldest publications.
    fn fit(&mut self, current: &str) {
        while self.used > self.max_memory {
            let oldest = self
                .lru
                .values()
                .find(|name| &***name != current)
                .map(Rc::clone);
            let Some(name) = oldest else {
                break;
            };
            self.evictions += 1;
            self.drop_stream(&name);
        }
        if self.used <= self.max_memory {
            return;
        }
        if let Some(stream) = self.streams.get_mut(current) {
            let mut freed = 0;
            while self.used - freed > self.max_memory && !stream.pubs.is_empty() {
                freed += stream.pop_front();
            }
            if stream.pubs.is_empty() {
                if let Some(key) = stream.expiry.take() {
                    self.expiry.remove(&key);
                }
            }
            self.used -= freed;
        }
    }

    /// Forgets `channel`'s stream: its publications, offset and epoch.
    fn drop_stream(&mut self, channel: &str) {
        if let Some(stream) = self.streams.remove(channel) {
            self.lru.remove(&stream.tick);
            if let Some(key) = stream.expiry {
                self.expiry.remove(&key);
            }
            self.used -= stream.bytes;
            self.dropped = true;
        }
    }

    /// The answer to `since` on `channel`: the publications after it if all are held and
    /// their frames add up to at most `max_bytes`.
    pub fn recover(
        &mut self,
        channel: &str,
        since: &Since,
        now: Instant,
        max_bytes: usize,
    ) -> Recovery {
        let Some(stream) = self.streams.get_mut(channel) else {
            let position = self.position(channel);
            // Nothing was published on this channel since it lost its stream (or ever):
            // recovered only if the client saw this very beginning.
            if since.offset == 0 && *since.epoch == *position.epoch {
                return Recovery::Recovered {
                    position,
                    replay: Vec::new(),
                };
            }
            return Recovery::Lost(position);
        };
        let freed = stream.trim_expired(now);
        self.used -= freed;
        let position = stream.position();
        if *since.epoch != *stream.epoch || since.offset > stream.last {
            return Recovery::Lost(position);
        }
        // `since.offset < last` here or it is `== last`: nothing to replay.
        let from = since.offset + 1;
        if from < stream.first() {
            return Recovery::Lost(position);
        }
        let skip = (from - stream.first()) as usize;
        let mut bytes = 0usize;
        let mut replay = Vec::with_capacity(stream.pubs.len() - skip);
        for entry in stream.pubs.iter().skip(skip) {
            bytes += entry.frame.len();
            if bytes > max_bytes {
                return Recovery::Lost(position);
            }
            replay.push(entry.frame.clone());
        }
        Recovery::Recovered { position, replay }
    }

    /// The publications a `history` request wants, oldest first, and where the stream is.
    pub fn read(&mut self, channel: &str, query: Query, now: Instant) -> (Position, Vec<Frame>) {
        let Some(stream) = self.streams.get_mut(channel) else {
            return (self.position(channel), Vec::new());
        };
        let freed = stream.trim_expired(now);
        self.used -= freed;
        let first = stream.first();
        let held = stream.pubs.len();
        let (skip, take) = match query {
            Query::Newest(limit) => (held.saturating_sub(limit), limit),
            Query::After { since, limit } => {
                let from = since.saturating_add(1).max(first);
                let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
                (skip, limit)
            }
        };
        let frames = stream
            .pubs
            .iter()
            .skip(skip)
            .take(take)
            .map(|e| e.frame.clone())
            .collect();
        (stream.position(), frames)
    }

    /// When [`Store::sweep`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let forget = self
            .lru
            .values()
            .next()
            .and_then(|name| self.streams.get(name))
            .map(|s| s.last_at + META_TTL);
        let expire = self.expiry.keys().next().map(|&(at, _)| at);
        forget.into_iter().chain(expire).min()
    }

    /// Drops the publications that expired and forgets the streams published to more than
    /// [`META_TTL`] ago.
    pub fn sweep(&mut self, now: Instant) {
        while let Some((&key, name)) = self.expiry.first_key_value() {
            if key.0 > now {
                break;
            }
            let name = Rc::clone(name);
            self.expiry.remove(&key);
            if let Some(stream) = self.streams.get_mut(&name) {
                stream.expiry = None;
                let mut freed = 0;
                while !stream.pubs.is_empty() {
                    freed += stream.pop_front();
                }
                self.used -= freed;
            }
        }
        loop {
            let stale = self
                .lru
                .values()
                .next()
                .filter(|name| {
                    self.streams
                        .get(&***name)
                        .is_some_and(|s| s.last_at + META_TTL <= now)
                })
                .map(Rc::clone);
            match stale {
                Some(name) => self.drop_stream(&name),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const KEEP: Retention = Retention {
        size: 3,
        ttl: Duration::from_secs(60),
    };

    /// Every index names each stream once, and the bytes add up.
    fn check(s: &Store) {
        assert_eq!(s.lru.len(), s.streams.len());
        for (tick, name) in &s.lru {
            assert_eq!(s.streams[name].tick, *tick, "{name}");
        }
        for (key, name) in &s.expiry {
            assert_eq!(s.streams[name].expiry, Some(*key), "{name}");
        }
        let held = s.streams.values().filter(|st| st.expiry.is_some()).count();
        assert_eq!(s.expiry.len(), held);
        assert_eq!(s.used, s.streams.values().map(|st| st.bytes).sum::<usize>());
        for st in s.streams.values() {
            let pubs: usize = st.pubs.iter().map(|e| cost(&e.frame)).sum();
            assert!(st.bytes >= pubs);
        }
    }

    fn frame(offset: u64, epoch: &str) -> Option<Frame> {
        Some(Frame::from(format!("{offset}@{epoch}").into_bytes()))
    }

    fn text(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| String::from_utf8(f.to_vec()).unwrap())
            .collect()
    }

    fn since(offset: u64, epoch: &str) -> Since {
        Since {
            offset,
            epoch: epoch.into(),
        }
    }

    fn replay(r: Recovery) -> Vec<String> {
        match r {
            Recovery::Recovered { replay, .. } => text(&replay),
            Recovery::Lost(p) => panic!("lost at {p:?}"),
        }
    }

    #[test]
    fn offsets_count_up_in_one_epoch_and_the_frame_is_stored_once() {
        let mut s = Store::new(1 << 20, 7);
        let t = Instant::now();
        let epoch = s.position("c").epoch;
        assert_eq!(s.position("c").offset, 0);
        let first = s.publish("c", KEEP, t, frame).unwrap();
        assert_eq!(&*first, format!("1@{epoch}").as_bytes());
        for _ in 0..4 {
            s.publish("c", KEEP, t, frame);
        }
        assert_eq!(
            s.position("c"),
            Position {
                offset: 5,
                epoch: epoch.clone()
            }
        );
        // Three kept (history_size), oldest first; the very Rc the fan-out got.
        let (pos, frames) = s.read("c", Query::Newest(100), t);
        assert_eq!(pos.offset, 5);
        assert_eq!(
            text(&frames),
            ["3@", "4@", "5@"].map(|p| format!("{p}{epoch}"))
        );
        let last = s.publish("c", KEEP, t, frame).unwrap();
        let (_, frames) = s.read("c", Query::Newest(1), t);
        assert!(Rc::ptr_eq(&last, &frames[0]));
        // Channels are separate streams of one epoch.
        s.publish("d", KEEP, t, frame);
        assert_eq!(s.position("d"), Position { offset: 1, epoch });
    }

    #[test]
    fn recovery_replays_exactly_what_came_after() {
        let mut s = Store::new(1 << 20, 7);
        let t = Instant::now();
        let e = s.position("c").epoch.to_string();
        // Before any publication: the client saw the beginning.
        assert_eq!(
            replay(s.recover("c", &since(0, &e), t, usize::MAX)),
            Vec::<String>::new()
        );
        for _ in 0..5 {
            s.publish("c", KEEP, t, frame);
        }
        let r = |s: &mut Store, n, epoch: &str, max| s.recover("c", &since(n, epoch), t, max);
        assert_eq!(
            replay(r(&mut s, 2, &e, usize::MAX)),
            [3, 4, 5].map(|n| format!("{n}@{e}"))
        );
        assert_eq!(replay(r(&mut s, 5, &e, usize::MAX)), Vec::<String>::new());
        assert_eq!(replay(r(&mut s, 4, &e, usize::MAX)), [format!("5@{e}")]);
        // 1 and 2 are no longer held (history_size 3): not a partial replay.
        assert!(matches!(r(&mut s, 1, &e, usize::MAX), Recovery::Lost(p) if p.offset == 5));
        assert!(matches!(r(&mut s, 0, &e, usize::MAX), Recovery::Lost(_)));
        // Another epoch, an offset never reached, the largest offset.
        assert!(matches!(
            r(&mut s, 4, "other", usize::MAX),
            Recovery::Lost(_)
        ));
        assert!(matches!(r(&mut s, 6, &e, usize::MAX), Recovery::Lost(_)));
        assert!(matches!(
            r(&mut s, u64::MAX, &e, usize::MAX),
            Recovery::Lost(_)
        ));
        // A replay over the size allowed.
        let one = format!("5@{e}").len();
        assert_eq!(replay(r(&mut s, 3, &e, 2 * one)).len(), 2);
        assert!(matches!(r(&mut s, 3, &e, 2 * one - 1), Recovery::Lost(_)));
        // A channel nobody published to, with another epoch or a later offset.
        assert!(matches!(
            s.recover("x", &since(0, "zz"), t, 9),
            Recovery::Lost(_)
        ));
        assert!(matches!(
            s.recover("x", &since(1, &e), t, 9),
            Recovery::Lost(_)
        ));
    }

    #[test]
    fn history_reads_the_newest_or_the_first_after() {
        let mut s = Store::new(1 << 20, 7);
        let t = Instant::now();
        let keep = Retention { size: 10, ..KEEP };
        for _ in 0..6 {
            s.publish("c", keep, t, frame);
        }
        let offsets = |s: &mut Store, q| {
            let (_, frames) = s.read("c", q, t);
            text(&frames)
                .iter()
                .map(|f| f.split('@').next().unwrap().parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets(&mut s, Query::Newest(2)), [5, 6]);
        assert_eq!(offsets(&mut s, Query::Newest(100)), [1, 2, 3, 4, 5, 6]);
        assert_eq!(offsets(&mut s, Query::After { since: 2, limit: 2 }), [3, 4]);
        assert_eq!(
            offsets(
                &mut s,
                Query::After {
                    since: 0,
                    limit: 100
                }
            ),
            [1, 2, 3, 4, 5, 6]
        );
        assert_eq!(
            offsets(&mut s, Query::After { since: 6, limit: 5 }),
            Vec::<u64>::new()
        );
        assert_eq!(
            offsets(
                &mut s,
                Query::After {
                    since: u64::MAX,
                    limit: 5
                }
            ),
            Vec::<u64>::new()
        );
        let (pos, frames) = s.read("none", Query::Newest(5), t);
        assert_eq!((pos.offset, frames.len()), (0, 0));
    }

    #[test]
    fn publications_expire_but_offset_and_epoch_stay_a_day() {
        let mut s = Store::new(1 << 20, 7);
        let t = Instant::now();
        let keep = Retention {
            size: 10,
            ttl: Duration::from_secs(10),
        };
        s.publish("c", keep, t, frame);
        s.publish("c", keep, t + Duration::from_secs(5), frame);
        let e = s.position("c").epoch.to_string();
        assert_eq!(s.next_deadline(), Some(t + Duration::from_secs(15)));
        // The first expired: reads skip it, a recovery that needs it fails.
        let later = t + Duration::from_secs(11);
        assert_eq!(s.read("c", Query::Newest(10), later).1.len(), 1);
        assert!(matches!(
            s.recover("c", &since(0, &e), later, 99),
            Recovery::Lost(_)
        ));
        assert_eq!(replay(s.recover("c", &since(1, &e), later, 99)).len(), 1);
        // The sweep frees the rest when the newest expires; the position stays.
        let used = s.used();
        s.sweep(t + Duration::from_secs(15));
        assert!(s.used() < used);
        assert_eq!(
            s.position("c"),
            Position {
                offset: 2,
                epoch: e.clone().into()
            }
        );
        assert_eq!(
            replay(s.recover("c", &since(2, &e), t + Duration::from_secs(16), 9)).len(),
            0
        );
        // Publishing again continues the count in the same epoch.
        s.publish("c", keep, t + Duration::from_secs(20), frame);
        assert_eq!(s.position("c").offset, 3);
        assert_eq!(s.next_deadline(), Some(t + Duration::from_secs(30)));
        s.sweep(t + Duration::from_secs(30));
        // A day after the last publication the channel is forgotten: a new epoch.
        assert_eq!(
            s.next_deadline(),
            Some(t + Duration::from_secs(20) + META_TTL)
        );
        s.sweep(t + Duration::from_secs(20) + META_TTL);
        assert!(s.is_empty());
        assert_eq!(s.used(), 0);
        assert_eq!(s.position("c").offset, 0);
        assert_ne!(&*s.position("c").epoch, e);
        assert!(matches!(
            s.recover("c", &since(0, &e), t + META_TTL * 2, 9),
            Recovery::Lost(_)
        ));
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_published_go_first() {
        let big = |_: u64, _: &str| Some(Frame::from(vec![b'x'; 1000]));
        let per_channel = STREAM_OVERHEAD + 1 + 11 + 1000 + ENTRY_OVERHEAD;
        let mut s = Store::new(3 * per_channel + 10, 7);
        let t = Instant::now();
        let e = s.position("a").epoch.to_string();
        for name in ["a", "b", "c"] {
            s.publish(name, KEEP, t, big);
        }
        assert_eq!(s.used(), 3 * per_channel);
        // "a" is published to again: "b" is now the least recent.
        s.publish("a", KEEP, t, big);
        check(&s);
        assert_eq!(s.len(), 2);
        assert_eq!(s.evictions(), 1);
        assert!(s.used() <= 3 * per_channel + 10);
        // "b" lost its whole stream: no recovery, offset 0 and a new epoch.
        let b = s.position("b");
        assert_eq!(b.offset, 0);
        assert_ne!(&*b.epoch, e);
        assert!(matches!(
            s.recover("b", &since(1, &e), t, 1 << 20),
            Recovery::Lost(_)
        ));
        // "a" and "c" kept their epoch.
        assert_eq!(&*s.position("c").epoch, e);
        assert_eq!(&*s.position("a").epoch, e);
        // Its next stream starts at 1 in that announced epoch ("c", now the least recent,
        // makes room); and streams made later get others.
        s.publish("b", KEEP, t, big);
        assert_eq!(s.position("b"), b.clone().with_offset(1));
        assert_eq!(s.position("c").offset, 0);
        assert_ne!(s.position("z").epoch, b.epoch);
        // A channel alone over the bound keeps what fits of its newest.
        let mut s = Store::new(STREAM_OVERHEAD + 100 + 2 * (1000 + ENTRY_OVERHEAD), 7);
        for _ in 0..3 {
            s.publish("a", KEEP, t, big);
        }
        assert_eq!(s.read("a", Query::Newest(10), t).1.len(), 2);
        let e = s.position("a").epoch.to_string();
        assert_eq!(replay(s.recover("a", &since(1, &e), t, 1 << 20)).len(), 2);
        assert!(matches!(
            s.recover("a", &since(0, &e), t, 1 << 20),
            Recovery::Lost(_)
        ));
        // A frame larger than everything: offsets go on, nothing is held.
        let huge = |_: u64, _: &str| Some(Frame::from(vec![b'x'; 1 << 20]));
        s.publish("a", KEEP, t, huge);
        assert_eq!(s.position("a").offset, 4);
        assert!(s.read("a", Query::Newest(10), t).1.is_empty());
        assert!(s.used() <= STREAM_OVERHEAD + 100 + 2 * (1000 + ENTRY_OVERHEAD));
        assert_eq!(replay(s.recover("a", &since(4, &e), t, 1 << 20)).len(), 0);
    }

    #[test]
    fn many_channels_keep_every_index_consistent() {
        // Publications to 300 channels in a scrambled order, some expiring, under a bound that
        // evicts all the time: every index names each stream once, and the bytes add up.
        let mut s = Store::new(20_000, 7);
        let t = Instant::now();
        let mut x: u64 = 1;
        for i in 0..5_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("c{}", x % 300);
            let keep = Retention {
                size: 1 + (x % 5) as usize,
                ttl: Duration::from_secs(1 + x % 30),
            };
            let now = t + Duration::from_secs(i / 50);
            let len = (x % 3000) as usize;
            s.publish(&name, keep, now, |_, _| Some(Frame::from(vec![b'x'; len])));
            if i % 97 == 0 {
                s.sweep(now);
            }
            if i % 13 == 0 {
                s.recover(&name, &since(1, "x"), now, 1 << 20);
                s.read(&name, Query::Newest(3), now);
            }
            check(&s);
            assert!(s.used() <= 20_000, "{}", s.used());
        }
        assert!(s.evictions() > 100);
        s.sweep(t + META_TTL * 2);
        check(&s);
        assert!(s.is_empty());
    }

    #[test]
    fn a_frame_that_cannot_be_made_changes_nothing() {
        let mut s = Store::new(1 << 20, 7);
        let t = Instant::now();
        assert!(s.publish("c", KEEP, t, |_, _| None).is_none());
        assert!(s.is_empty());
        s.publish("c", KEEP, t, frame);
        assert!(s.publish("c", KEEP, t, |_, _| None).is_none());
        assert_eq!(s.position("c").offset, 1);
    }

    impl Position {
        fn with_offset(self, offset: u64) -> Position {
            Position { offset, ..self }
        }
    }
}
