//! Which other nodes are alive, and whether our copy of each one's clients
//! is current. Sans-IO: time is a parameter, decisions are return values.
//!
//! Every node numbers the changes to its own client list and its clients'
//! subscriptions (`ver`). A join, leave, subscribe or unsubscribe carries the
//! version after it; a heartbeat carries the current one.
//! For each other node:
//!
//! ```text
//!              delta ver = known+1: apply           heartbeat ver = known: fine
//!   Current(known) ─────────────────────────────► Current(known+1)
//!        │  a gap, a heartbeat that disagrees, a node never seen
//!        ▼
//!   Syncing(since) ── HGETALL of its hash arrives (with its "~v") ──► Current(~v)
//!        deltas that arrive meanwhile are kept, then applied if they follow ~v
//! ```
//!
//! Deltas and heartbeats of one node reach us in the order it published
//! them (one publishing connection there, one subscription here), so a
//! heartbeat that disagrees with what we applied means we missed something.
//! A node not heard from for `node_timeout` is gone.
//!
//! Everything here is keyed by what arrives on the bus, so it is bounded (docs/limits.md):
//! at most [`MAX_NODES`] nodes are followed, at most [`MAX_BUFFERED`] deltas are kept per node
//! while its snapshot is awaited (beyond it they are dropped and the snapshot is fetched
//! again), and a node whose hash or replica is over the limits is *refused*: it counts as no
//! member of the cluster, its deltas are ignored, and its hash is looked at again only after a
//! backoff ([`REFUSAL_MIN`] doubling to [`REFUSAL_MAX`]), not at every heartbeat.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::router::{Member, Subscription};

/// The most other nodes followed at once (a node id is whatever a bus message says).
pub const MAX_NODES: usize = 1024;
/// The most deltas kept per node while its snapshot is awaited.
pub const MAX_BUFFERED: usize = 16 * 1024;
/// The first wait before a refused node's hash is looked at again.
pub const REFUSAL_MIN: Duration = Duration::from_secs(5);
/// The longest such wait.
pub const REFUSAL_MAX: Duration = Duration::from_secs(300);

/// A change to a node's client list or to its clients' subscriptions (one
/// version counter for both, so that one snapshot covers both), kept while
/// its snapshot is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    Join(Member),
    Leave(String),
    Subscribe(Subscription),
    Unsubscribe { id: String, channel: String },
}

/// What to do with a delta or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Apply this change to the router.
    Apply(Delta),
    /// Nothing (already known, or kept for after the snapshot).
    Nothing,
    /// Fetch the node's hash: our copy is not current.
    Resync,
}

#[derive(Debug)]
struct NodeState {
    last_heard: Instant,
    /// The version our copy reflects; `None` before the first snapshot.
    ver: Option<u64>,
    /// A snapshot was asked for at this instant and is awaited.
    syncing: Option<Instant>,
    /// Deltas received while syncing, with their versions.
    buffer: Vec<(u64, Delta)>,
    /// Deltas were dropped from `buffer` (it was full): the snapshot will not be current.
    dropped: bool,
    /// Refused (over the limits) until this instant; `None`: accepted.
    refused: Option<Instant>,
    /// The current refusal backoff; zero after a snapshot was accepted.
    backoff: Duration,
    /// `buffer` holds deltas kept past a gap once already: at the next gap they go.
    retained: bool,
}

impl NodeState {
    fn keep(&mut self, ver: u64, delta: Delta) {
        if self.buffer.len() >= MAX_BUFFERED {
            self.buffer = Vec::new();
            self.dropped = true;
        }
        if !self.dropped {
            self.buffer.push((ver, delta));
        }
    }
}

/// Other nodes, as far as this node knows (see the module docs).
#[derive(Debug, Default)]
pub struct Directory {
    nodes: HashMap<String, NodeState>,
}

impl Directory {
    /// `node` said something at `now`; true if it was unknown until now (and is followed
    /// now: not beyond [`MAX_NODES`]).
    pub fn heard(&mut self, node: &str, now: Instant) -> bool {
        if let Some(state) = self.nodes.get_mut(node) {
            state.last_heard = now;
            return false;
        }
        match self.nodes.len() >= MAX_NODES {
            true => false,
            false => {
                self.nodes.insert(
                    node.to_owned(),
                    NodeState {
                        last_heard: now,
                        ver: None,
                        syncing: None,
                        buffer: Vec::new(),
                        dropped: false,
                        refused: None,
                        backoff: Duration::ZERO,
                        retained: false,
                    },
                );
                true
            }
        }
    }

    /// A join or leave of `node` at version `ver` (after [`Directory::heard`]).
    pub fn delta(&mut self, node: &str, ver: u64, delta: Delta) -> Outcome {
        let Some(state) = self.nodes.get_mut(node) else {
            return Outcome::Nothing;
        };
        if state.syncing.is_some() {
            state.keep(ver, delta);
            return Outcome::Nothing;
        }
        if state.refused.is_some() {
            return Outcome::Nothing;
        }
        match state.ver {
            Some(known) if ver <= known => Outcome::Nothing,
            Some(known) if ver == known + 1 => {
                state.ver = Some(ver);
                Outcome::Apply(delta)
            }
            _ => {
                state.keep(ver, delta);
                Outcome::Resync
            }
        }
    }

    /// A heartbeat of `node` at version `ver`: whether to resync it (it
    /// disagrees, a snapshot has been awaited longer than `patience`, or a
    /// refused node's backoff is over).
    pub fn heartbeat(&mut self, node: &str, ver: u64, now: Instant, patience: Duration) -> bool {
        let Some(state) = self.nodes.get_mut(node) else {
            return false;
        };
        match (state.syncing, state.refused) {
            (Some(since), _) => now.saturating_duration_since(since) > patience,
            (None, Some(until)) => now >= until,
            (None, None) => state.ver != Some(ver),
        }
    }

    /// `node` is over the limits (its hash, or what it made us store): it is no member of
    /// the cluster until a later look at its hash, after a backoff. True when it was
    /// accepted until now (the refusal is news, worth a log line).
    pub fn refuse(&mut self, node: &str, now: Instant) -> bool {
        let Some(state) = self.nodes.get_mut(node) else {
            return false;
        };
        let news = state.backoff.is_zero();
        state.backoff = (state.backoff * 2).clamp(REFUSAL_MIN, REFUSAL_MAX);
        state.refused = Some(now + state.backoff);
        state.syncing = None;
        state.ver = None;
        state.buffer = Vec::new();
        state.dropped = false;
        state.retained = false;
        news
    }

    /// Whether `node` is refused (see [`Directory::refuse`]).
    pub fn refused(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|s| s.refused.is_some())
    }

    /// A snapshot of `node` is being fetched (asked at `now`).
    pub fn start_sync(&mut self, node: &str, now: Instant) {
        if let Some(state) = self.nodes.get_mut(node) {
            state.syncing = Some(now);
        }
    }

    /// Whether a snapshot of `node` may be fetched now: it is followed, and not refused
    /// (or its backoff is over).
    pub fn may_sync(&self, node: &str, now: Instant) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|s| s.refused.map_or(true, |until| now >= until))
    }

    /// Whether a snapshot of `node` is awaited.
    pub fn syncing(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|s| s.syncing.is_some())
    }

    /// The snapshot of `node` arrived, at version `ver` (`None`: its hash
    /// had no version, e.g. it expired). Returns the kept deltas that
    /// follow it, to apply in order, and whether a gap (or dropped deltas)
    /// calls for another resync; `None` when the node is no longer known
    /// (do not apply). The snapshot is accepted: a refusal ends.
    ///
    /// On a gap the deltas after it stay kept, once: the snapshot may be
    /// older than some of them (replies and bus messages come on two
    /// connections, in no fixed order), and the next snapshot may follow
    /// them. At a second gap in a row they are dropped, so that deltas no
    /// snapshot follows (a hash that is gone) cannot make a loop of resyncs.
    pub fn synced(&mut self, node: &str, ver: Option<u64>) -> Option<(Vec<Delta>, bool)> {
        let state = self.nodes.get_mut(node)?;
        state.syncing = None;
        state.refused = None;
        state.backoff = Duration::ZERO;
        state.ver = ver;
        if std::mem::take(&mut state.dropped) {
            state.buffer = Vec::new();
            return Some((Vec::new(), true));
        }
        let mut kept = std::mem::take(&mut state.buffer);
        kept.sort_by_key(|(v, _)| *v);
        let mut apply = Vec::new();
        let mut rest = kept.into_iter();
        for (v, delta) in rest.by_ref() {
            match state.ver {
                Some(known) if v <= known => {}
                Some(known) if v == known + 1 => {
                    state.ver = Some(v);
                    apply.push(delta);
                }
                _ => {
                    if !std::mem::replace(&mut state.retained, true) {
                        state.buffer.push((v, delta));
                        state.buffer.extend(rest);
                    }
                    return Some((apply, true));
                }
            }
        }
        state.retained = false;
        Some((apply, false))
    }

    /// Whether no snapshot is awaited.
    pub fn all_synced(&self) -> bool {
        self.nodes.values().all(|s| s.syncing.is_none())
    }

    /// Forgets `node`; true if it was known.
    pub fn remove(&mut self, node: &str) -> bool {
        self.nodes.remove(node).is_some()
    }

    /// Nodes silent for longer than `timeout`, removed.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_heard) >= timeout)
            .map(|(n, _)| n.clone())
            .collect();
        for node in &gone {
            self.nodes.remove(node);
        }
        gone
    }

    /// When the next node would expire.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.nodes.values().map(|s| s.last_heard + timeout).min()
    }

    /// Every known node.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn leave(id: &str) -> Delta {
        Delta::Leave(id.into())
    }

    #[test]
    fn a_new_node_is_synced_then_follows_deltas() {
        let t = Instant::now();
        let mut d = Directory::default();
        assert!(d.heard("b", t));
        assert!(!d.heard("b", t));
        // Never synced: a delta or heartbeat asks for a snapshot.
        assert_eq!(d.delta("b", 5, leave("x")), Outcome::Resync);
        d.start_sync("b", t);
        assert!(d.syncing("b"));
        // While syncing, deltas are kept; subscriptions share the clients' versions.
        let unsub = Delta::Unsubscribe {
            id: "y".into(),
            channel: "c".into(),
        };
        assert_eq!(d.delta("b", 6, unsub.clone()), Outcome::Nothing);
        assert_eq!(d.delta("b", 7, leave("z")), Outcome::Nothing);
        // The snapshot is at 5: 6 and 7 follow it.
        let (apply, again) = d.synced("b", Some(5)).unwrap();
        assert_eq!(apply, [unsub, leave("z")]);
        assert!(!again);
        assert_eq!(d.delta("b", 7, leave("z")), Outcome::Nothing);
        assert_eq!(d.delta("b", 8, leave("w")), Outcome::Apply(leave("w")));
        assert!(!d.heartbeat("b", 8, t, S));
        assert!(d.heartbeat("b", 9, t, S));
    }

    #[test]
    fn a_gap_after_the_snapshot_resyncs() {
        let t = Instant::now();
        let mut d = Directory::default();
        d.heard("b", t);
        d.start_sync("b", t);
        d.delta("b", 9, leave("y"));
        let (apply, again) = d.synced("b", Some(5)).unwrap();
        assert!(apply.is_empty());
        assert!(again);
        // A gap in the live stream too.
        let (_, _) = d.synced("b", Some(5)).unwrap();
        assert_eq!(d.delta("b", 7, leave("q")), Outcome::Resync);
    }

    #[test]
    fn a_snapshot_that_never_comes_is_asked_again() {
        let t = Instant::now();
        let mut d = Directory::default();
        d.heard("b", t);
        d.start_sync("b", t);
        assert!(!d.heartbeat("b", 1, t + S / 2, S));
        assert!(d.heartbeat("b", 1, t + 2 * S, S));
    }

    #[test]
    fn silent_nodes_expire_and_stay_gone() {
        let t = Instant::now();
        let mut d = Directory::default();
        d.heard("b", t);
        d.heard("c", t + S);
        assert_eq!(d.next_expiry(3 * S), Some(t + 3 * S));
        assert!(d.expire(t + 3 * S - S / 2, 3 * S).is_empty());
        assert_eq!(d.expire(t + 3 * S + S / 2, 3 * S), ["b"]);
        assert_eq!(d.synced("b", Some(1)), None);
        assert!(d.remove("c"));
        assert!(!d.remove("c"));
    }

    #[test]
    fn deltas_after_a_gap_stay_kept_for_the_next_snapshot() {
        let t = Instant::now();
        let mut d = Directory::default();
        d.heard("b", t);
        d.start_sync("b", t);
        d.delta("b", 7, leave("x"));
        d.delta("b", 8, leave("y"));
        // An older snapshot (5): 7 and 8 do not follow it, but are not lost.
        let (apply, again) = d.synced("b", Some(5)).unwrap();
        assert!(apply.is_empty() && again);
        d.start_sync("b", t);
        let (apply, again) = d.synced("b", Some(6)).unwrap();
        assert_eq!(apply, [leave("x"), leave("y")]);
        assert!(!again);
        // Deltas that no snapshot follows (its hash is gone) are given up at the second gap:
        // no endless resyncs.
        d.start_sync("b", t);
        d.delta("b", 20, leave("z"));
        assert!(d.synced("b", None).unwrap().1);
        d.start_sync("b", t);
        assert!(d.synced("b", None).unwrap().1);
        d.start_sync("b", t);
        assert_eq!(d.synced("b", None), Some((vec![], false)));
    }

    #[test]
    fn a_full_buffer_is_dropped_and_the_snapshot_fetched_again() {
        let t = Instant::now();
        let mut d = Directory::default();
        d.heard("b", t);
        d.start_sync("b", t);
        for v in 1..=(MAX_BUFFERED as u64 + 5) {
            assert_eq!(d.delta("b", v, leave("x")), Outcome::Nothing);
        }
        assert!(d.nodes["b"].buffer.len() <= MAX_BUFFERED);
        // Deltas were lost: the snapshot cannot be trusted to be followed by what is kept.
        let (apply, again) = d.synced("b", Some(0)).unwrap();
        assert!(apply.is_empty());
        assert!(again);
        d.start_sync("b", t);
        let (apply, again) = d.synced("b", Some(3)).unwrap();
        assert!(apply.is_empty() && !again);
    }

    #[test]
    fn a_refused_node_is_ignored_then_retried_with_backoff() {
        let t = Instant::now();
        let mut d = Directory::default();
        d.heard("b", t);
        d.start_sync("b", t);
        assert!(d.refuse("b", t), "news the first time");
        assert!(d.refused("b") && !d.syncing("b"));
        assert!(!d.may_sync("b", t));
        // Its deltas and heartbeats are ignored until the backoff is over.
        assert_eq!(d.delta("b", 1, leave("x")), Outcome::Nothing);
        assert_eq!(d.delta("b", 9, leave("x")), Outcome::Nothing);
        assert!(!d.heartbeat("b", 9, t + REFUSAL_MIN / 2, S));
        assert!(d.heartbeat("b", 9, t + REFUSAL_MIN, S));
        assert!(d.may_sync("b", t + REFUSAL_MIN));
        // Still too big: twice as long, and no news.
        let t2 = t + REFUSAL_MIN;
        d.start_sync("b", t2);
        assert!(!d.refuse("b", t2));
        assert!(!d.heartbeat("b", 9, t2 + REFUSAL_MIN, S));
        assert!(d.heartbeat("b", 9, t2 + 2 * REFUSAL_MIN, S));
        // Accepted at last: back to normal, and a later refusal is news again.
        d.start_sync("b", t2 + 2 * REFUSAL_MIN);
        assert_eq!(d.synced("b", Some(9)), Some((vec![], false)));
        assert!(!d.refused("b"));
        assert_eq!(d.delta("b", 10, leave("x")), Outcome::Apply(leave("x")));
        assert!(d.refuse("b", t2));
        // The backoff stops growing.
        for _ in 0..20 {
            d.refuse("b", t2);
        }
        assert!(d.may_sync("b", t2 + REFUSAL_MAX));
    }

    #[test]
    fn at_most_max_nodes_are_followed() {
        let t = Instant::now();
        let mut d = Directory::default();
        for i in 0..MAX_NODES {
            assert!(d.heard(&format!("n{i}"), t));
        }
        assert!(!d.heard("one-too-many", t));
        assert_eq!(d.nodes().count(), MAX_NODES);
        assert_eq!(d.delta("one-too-many", 1, leave("x")), Outcome::Nothing);
        assert!(!d.may_sync("one-too-many", t));
    }
}
