//! Whether this node's view of the other nodes is good enough to report channel transitions
//! from (webhooks, see `src/router/reporter.rs`). Sans-IO: time is a parameter.
//!
//! ```text
//!   Off ──(connected: list the live nodes, fetch each one's snapshot)──► Listing
//!   Listing ──(the list came, and every known node's snapshot is in,
//!              or `patience` passed since connecting)──────────────────► On
//!   any ──(Redis link down)─────────────────────────────────────────────► Off
//! ```
//!
//! Before the first snapshots a node would take channels other nodes fill for vacant
//! (false `channel_occupied`, `member_added`); during an outage it forgets the others and
//! would report their subscribers gone. What changed meanwhile is not reported after the
//! resync either (see docs/pusher-webhooks.md).

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Trust {
    on: bool,
    /// Connected at this instant; the live nodes' list is awaited while `listing` is true.
    since: Option<Instant>,
    listing: bool,
}

impl Trust {
    /// Connected (again) at `now`: the live nodes are being listed and fetched.
    pub fn connected(&mut self, now: Instant) {
        self.on = false;
        self.since = Some(now);
        self.listing = true;
    }

    /// The live nodes' list arrived (their snapshots were asked for).
    pub fn listed(&mut self) {
        self.listing = false;
    }

    /// Redis is unreachable; true if reporting was on (turn it off).
    pub fn down(&mut self) -> bool {
        self.since = None;
        self.listing = false;
        std::mem::take(&mut self.on)
    }

    /// True when reporting may start now: connected, the list is in, and every known node's
    /// snapshot too (`all_synced`), or `patience` passed since connecting (a node whose
    /// snapshot never comes must not silence this one for ever).
    pub fn check(&mut self, all_synced: bool, now: Instant, patience: Duration) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        if self.on {
            return false;
        }
        let waited = now.saturating_duration_since(since) >= patience;
        if (!self.listing && all_synced) || waited {
            self.on = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn on_after_the_list_and_the_snapshots_off_while_down() {
        let t0 = Instant::now();
        let mut t = Trust::default();
        assert!(!t.check(true, t0, S), "not connected");
        t.connected(t0);
        assert!(!t.check(true, t0, S), "the list is awaited");
        t.listed();
        assert!(!t.check(false, t0, S), "a snapshot is awaited");
        assert!(t.check(true, t0, S));
        assert!(!t.check(true, t0, S), "once");
        assert!(t.down());
        assert!(!t.down());
        assert!(!t.check(true, t0 + 5 * S, S));
        // A snapshot that never comes: on after `patience`.
        t.connected(t0);
        t.listed();
        assert!(!t.check(false, t0 + S / 2, S));
        assert!(t.check(false, t0 + S, S));
    }
}
