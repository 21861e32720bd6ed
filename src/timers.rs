//! Connection timers at O(1) per event.
//!
//! Every timer of one kind has the same duration (the handshake timeout, the
//! ping interval, ...), so deadlines pushed in time order are already sorted:
//! each kind is a FIFO queue, and the loop only ever looks at the fronts.
//! Entries are never removed early. A connection that was active simply has
//! its entry re-pushed, later, when the stale one comes up (lazy re-arming),
//! and an entry whose connection is gone, or whose slab slot now holds a
//! newer connection (another serial), is skipped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One armed timer: when, for which slab key, and which connection there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// When it fires.
    pub deadline: Instant,
    /// The connection's slab key.
    pub key: usize,
    /// The connection's serial, to tell it from a later one in the same slot.
    pub serial: u32,
}

/// Timers of one fixed duration, in deadline order.
#[derive(Debug)]
pub struct TimerQueue {
    duration: Duration,
    entries: VecDeque<Entry>,
}

impl TimerQueue {
    /// Timers that each fire `duration` after they are armed.
    pub fn new(duration: Duration) -> TimerQueue {
        TimerQueue {
            duration,
            entries: VecDeque::new(),
        }
    }

    /// The fixed duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Arms a timer `duration` after `from` (`from` must not be earlier than
    /// the `from` of any armed timer, which holds for "now" and for a
    /// connection's last activity re-armed when its old timer fires).
    pub fn arm(&mut self, from: Instant, key: usize, serial: u32) {
        let deadline = from + self.duration;
        // Keep the order even if `from` was earlier than a previous one.
        let deadline = match self.entries.back() {
            Some(last) if last.deadline > deadline => last.deadline,
            _ => deadline,
        };
        self.entries.push_back(Entry {
            deadline,
            key,
            serial,
        });
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.deadline)
    }

    /// Takes the next timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.entries.front() {
            Some(e) if e.deadline <= now => self.entries.pop_front(),
            _ => None,
        }
    }

    /// Armed timers, stale ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No timers armed?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(Duration::from_secs(10));
        q.arm(t0, 1, 1);
        q.arm(t0 + Duration::from_secs(1), 2, 2);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(q.pop_due(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(10)).map(|e| e.key),
            Some(1)
        );
        assert_eq!(q.pop_due(t0 + Duration::from_secs(10)), None);
        assert_eq!(
            q.pop_due(t0 + Duration::from_secs(11)).map(|e| e.key),
            Some(2)
        );
        assert!(q.is_empty());
    }

    #[test]
    fn an_earlier_start_never_breaks_the_order() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(Duration::from_secs(1));
        q.arm(t0 + Duration::from_secs(5), 1, 1);
        q.arm(t0, 2, 2);
        let first = q.pop_due(t0 + Duration::from_secs(6)).unwrap();
        let second = q.pop_due(t0 + Duration::from_secs(6)).unwrap();
        assert_eq!((first.key, second.key), (1, 2));
        assert!(first.deadline <= second.deadline);
    }
}
