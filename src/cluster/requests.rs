//! Requests this node sent to another node's inbox (a private message or a `disconnect` for a
//! client there) and awaits an answer to, by number. Sans-IO.
//!
//! An entry goes when its reply arrives, or at its deadline (no answer within `node_timeout`:
//! as far as this node can tell, no live node has the client). Only a reply to a request still
//! waiting reaches the router, so a late, repeated or made-up reply does nothing.
//!
//! All requests share one timeout and their numbers grow with time (the router numbers them
//! as it makes them, and they are sent in that order), so the lowest number is the first due.

use std::collections::BTreeMap;
use std::time::Instant;

/// Requests awaiting a reply: number -> deadline.
#[derive(Debug, Default)]
pub(super) struct Requests {
    waiting: BTreeMap<u64, Instant>,
}

impl Requests {
    /// `req` was sent; it is answered "not found" at `deadline` if no reply came.
    pub(super) fn sent(&mut self, req: u64, deadline: Instant) {
        self.waiting.insert(req, deadline);
    }

    /// A reply to `req` arrived: whether it was awaited (and is no longer).
    pub(super) fn answered(&mut self, req: u64) -> bool {
        self.waiting.remove(&req).is_some()
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.first_key_value().map(|(_, at)| *at)
    }

    /// The next request whose deadline is past at `now`, removed.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<u64> {
        let (&req, &at) = self.waiting.first_key_value()?;
        if at > now {
            return None;
        }
        self.waiting.remove(&req);
        Some(req)
    }

    /// How many await a reply.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reply_removes_its_request_at_once() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut r = Requests::default();
        for req in 1..=3 {
            r.sent(req, t0 + timeout + Duration::from_millis(req));
        }
        assert!(r.answered(2));
        assert!(!r.answered(2), "answered once");
        assert!(!r.answered(99), "never asked");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.next_deadline(),
            Some(t0 + timeout + Duration::from_millis(1))
        );
        assert!(r.answered(1));
        assert_eq!(
            r.next_deadline(),
            Some(t0 + timeout + Duration::from_millis(3))
        );
        assert_eq!(r.pop_due(t0), None);
        assert_eq!(r.pop_due(t0 + 2 * timeout), Some(3));
        assert_eq!(r.pop_due(t0 + 2 * timeout), None);
        assert_eq!(r.len(), 0);
    }
}
