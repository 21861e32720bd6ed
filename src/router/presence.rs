//! Presence (SPEC section 5): who is connected, sent to every client.
//!
//! A presence message lists every connection, so sending one per connect
//! would cost O(n^2) bytes when n clients arrive together. Changes are
//! therefore throttled by a small state machine:
//!
//! ```text
//!            change (schedule at max(now, last_sent + interval))
//!   Idle ───────────────────────────────────────────────► Pending(deadline)
//!    ▲                                                     │  more changes: no-op,
//!    └──── deadline reached: send the state as it is then ─┘  they share the message
//! ```
//!
//! The `presence` command sends at once and returns to `Idle`. Time is a
//! parameter, never read from a clock, so tests drive it with made-up instants.

use std::time::{Duration, Instant};

use serde::ser::{Serialize, Serializer};

use super::clients::Clients;
use super::entry::Entry;
use super::replica::Replica;
use super::Client;

/// The throttle's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// Nothing changed since the last presence message.
    Idle,
    /// A change is waiting to be sent at this instant.
    Pending(Instant),
}

/// The presence throttle (see the module docs).
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    schedule: Schedule,
    /// When the last presence message went out, if any has.
    last_sent: Option<Instant>,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            schedule: Schedule::Idle,
            last_sent: None,
        }
    }

    /// Someone connected or disconnected at `now`.
    pub(crate) fn changed(&mut self, now: Instant) {
        if let Schedule::Idle = self.schedule {
            let earliest = self
                .last_sent
                .and_then(|last| last.checked_add(self.interval))
                .map_or(now, |next| next.max(now));
            self.schedule = Schedule::Pending(earliest);
        }
    }

    /// When a pending update is due, if one is.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.schedule {
            Schedule::Idle => None,
            Schedule::Pending(at) => Some(at),
        }
    }

    /// Whether a pending update is due at `now`. If so the throttle returns
    /// to `Idle`; the caller then sends (and calls [`Throttle::sent`]) or,
    /// with nobody connected, drops the update.
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        match self.schedule {
            Schedule::Pending(at) if at <= now => {
                self.schedule = Schedule::Idle;
                true
            }
            _ => false,
        }
    }

    /// A presence message went out at `now`: any pending update is covered
    /// by it, and the next one waits a full interval.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.schedule = Schedule::Idle;
        self.last_sent = Some(now);
    }
}

/// The `users` array of a presence message, serialised straight from the
/// router's tables (no intermediate `Vec`), in connection order.
pub(crate) struct PresenceUsers<'a> {
    /// The local clients in connection order; `None` when the list is truncated.
    local: Option<Vec<&'a Client>>,
    /// Other nodes' clients, in a cluster.
    remote: Option<(&'a str, &'a Replica)>,
}

impl<'a> PresenceUsers<'a> {
    pub(crate) fn new(
        clients: &'a Clients,
        remote: Option<(&'a str, &'a Replica)>,
        truncated: bool,
    ) -> PresenceUsers<'a> {
        PresenceUsers {
            local: (!truncated).then(|| clients.in_order()),
            remote: remote.filter(|(_, r)| r.len() > 0),
        }
    }
}

/// An entry of a cluster-wide list: here or elsewhere.
enum AnyEntry<'a> {
    Local(&'a Client),
    Remote(&'a serde_json::value::RawValue),
}

impl Serialize for AnyEntry<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            AnyEntry::Local(client) => Entry(client).serialize(serializer),
            AnyEntry::Remote(raw) => raw.serialize(serializer),
        }
    }
}

impl Serialize for PresenceUsers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let (Some(local), Some((node, remote))) = (&self.local, self.remote) {
            // The cluster's order (replica.rs): time, node, the node's order.
            let mut all: Vec<((u64, &str, u64), AnyEntry<'_>)> = local
                .iter()
                .map(|c| ((u64::from(c.connected_at), node, c.seq), AnyEntry::Local(c)))
                .chain(
                    remote
                        .entries()
                        .map(|((at, n, seq), raw)| ((*at, &**n, *seq), AnyEntry::Remote(raw))),
                )
                .collect();
            all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            return serializer.collect_seq(all.iter().map(|(_, e)| e));
        }
        let entries = self.local.iter().flatten().map(|c| Entry(c));
        serializer.collect_seq(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_change_is_due_at_once() {
        let t0 = Instant::now();
        let mut t = Throttle::new(200 * MS);
        assert_eq!(t.deadline(), None);
        t.changed(t0);
        assert_eq!(t.deadline(), Some(t0));
        assert!(t.take_due(t0));
        assert_eq!(t.deadline(), None);
        assert!(!t.take_due(t0));
    }

    #[test]
    fn changes_within_the_interval_share_one_update() {
        let t0 = Instant::now();
        let mut t = Throttle::new(200 * MS);
        t.changed(t0);
        assert!(t.take_due(t0));
        t.sent(t0);
        t.changed(t0 + 10 * MS);
        t.changed(t0 + 50 * MS);
        t.changed(t0 + 150 * MS);
        assert_eq!(t.deadline(), Some(t0 + 200 * MS));
        assert!(!t.take_due(t0 + 199 * MS));
        assert!(t.take_due(t0 + 200 * MS));
        t.sent(t0 + 200 * MS);
        // Long after: due at once again.
        t.changed(t0 + 1000 * MS);
        assert_eq!(t.deadline(), Some(t0 + 1000 * MS));
    }

    #[test]
    fn an_immediate_send_cancels_the_pending_update() {
        let t0 = Instant::now();
        let mut t = Throttle::new(200 * MS);
        t.sent(t0);
        t.changed(t0 + 10 * MS);
        t.sent(t0 + 20 * MS);
        assert_eq!(t.deadline(), None);
        t.changed(t0 + 30 * MS);
        assert_eq!(t.deadline(), Some(t0 + 220 * MS));
    }

    #[test]
    fn zero_interval_never_delays() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::ZERO);
        t.sent(t0);
        t.changed(t0);
        assert_eq!(t.deadline(), Some(t0));
    }

    #[test]
    fn huge_interval_does_not_overflow() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::MAX);
        t.sent(t0);
        t.changed(t0);
        assert_eq!(t.deadline(), Some(t0));
    }
}
