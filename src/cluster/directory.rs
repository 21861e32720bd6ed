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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::router::{Member, Subscription};

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
}

/// Other nodes, as far as this node knows (see the module docs).
#[derive(Debug, Default)]
pub struct Directory {
    nodes: HashMap<String, NodeState>,
}

impl Directory {
    /// `node` said something at `now`; true if it was unknown until now.
    pub fn heard(&mut self, node: &str, now: Instant) -> bool {
        match self.nodes.get_mut(node) {
            Some(state) => {
                state.last_heard = now;
                false
            }
            None => {
                self.nodes.insert(
                    node.to_owned(),
                    NodeState {
                        last_heard: now,
                        ver: None,
                        syncing: None,
                        buffer: Vec::new(),
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
            state.buffer.push((ver, delta));
            return Outcome::Nothing;
        }
        match state.ver {
            Some(known) if ver <= known => Outcome::Nothing,
            Some(known) if ver == known + 1 => {
                state.ver = Some(ver);
                Outcome::Apply(delta)
            }
            _ => {
                state.buffer.push((ver, delta));
                Outcome::Resync
            }
        }
    }

    /// A heartbeat of `node` at version `ver`: whether to resync it (it
    /// disagrees, or a snapshot has been awaited longer than `patience`).
    pub fn heartbeat(&mut self, node: &str, ver: u64, now: Instant, patience: Duration) -> bool {
        let Some(state) = self.nodes.get_mut(node) else {
            return false;
        };
        match state.syncing {
            Some(since) => now.saturating_duration_since(since) > patience,
            None => state.ver != Some(ver),
        }
    }

    /// A snapshot of `node` is being fetched (asked at `now`).
    pub fn start_sync(&mut self, node: &str, now: Instant) {
        if let Some(state) = self.nodes.get_mut(node) {
            state.syncing = Some(now);
        }
    }

    /// Whether a snapshot of `node` is awaited.
    pub fn syncing(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|s| s.syncing.is_some())
    }

    /// The snapshot of `node` arrived, at version `ver` (`None`: its hash
    /// had no version, e.g. it expired). Returns the kept deltas that
    /// follow it, to apply in order, and whether a gap calls for another
    /// resync; `None` when the node is no longer known (do not apply).
    pub fn synced(&mut self, node: &str, ver: Option<u64>) -> Option<(Vec<Delta>, bool)> {
        let state = self.nodes.get_mut(node)?;
        state.syncing = None;
        state.ver = ver;
        let mut kept = std::mem::take(&mut state.buffer);
        kept.sort_by_key(|(v, _)| *v);
        let mut apply = Vec::new();
        for (v, delta) in kept {
            match state.ver {
                Some(known) if v <= known => {}
                Some(known) if v == known + 1 => {
                    state.ver = Some(v);
                    apply.push(delta);
                }
                _ => return Some((apply, true)),
            }
        }
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
}
