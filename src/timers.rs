//! Connection timers at O(1) per event.
//!
//! Every timer of one kind has the same duration (the handshake timeout, the
//! ping interval, ...), so deadlines pushed in time order are already sorted:
//! each kind is a FIFO queue, and the loop only ever looks at the fronts.
//! Entries are never removed early. A connection that was active simply has
//! its entry re-pushed, later, when the stale one comes up (lazy re-arming),
//! and an entry whose connection is gone, or whose slab slot now holds a
//! newer connection (another serial), is skipped.
//!
//! Every open connection has an entry in the idle queue, and every connection
//! accepted lately one in the handshake queue (stale once it upgraded, until
//! its deadline comes up), so an entry is kept in 16 bytes: the deadline in
//! nanoseconds after the queue's creation, the slab key and the serial in
//! 32 bits each (slab keys are bounded by the sockets a process holds).

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

/// An [`Entry`] as the queue holds it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compact {
    /// Nanoseconds after the queue's epoch (u64 nanoseconds last 584 years).
    deadline: u64,
    key: u32,
    serial: u32,
}

/// Timers of one fixed duration, in deadline order.
#[derive(Debug)]
pub struct TimerQueue {
    duration: Duration,
    epoch: Instant,
    entries: VecDeque<Compact>,
}

impl TimerQueue {
    /// Timers that each fire `duration` after they are armed.
    pub fn new(duration: Duration) -> TimerQueue {
        TimerQueue {
            duration,
            epoch: Instant::now(),
            entries: VecDeque::new(),
        }
    }

    fn at(&self, deadline: u64) -> Instant {
        self.epoch + Duration::from_nanos(deadline)
    }

    fn expand(&self, c: Compact) -> Entry {
        Entry {
            deadline: self.at(c.deadline),
            key: c.key as usize,
            serial: c.serial,
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
        // An instant before the epoch counts as the epoch; the deadline is
        // rounded up to the nanosecond, never fired early.
        let since = (from + self.duration).saturating_duration_since(self.epoch);
        let deadline = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        // Keep the order even if `from` was earlier than a previous one.
        let deadline = match self.entries.back() {
            Some(last) if last.deadline > deadline => last.deadline,
            _ => deadline,
        };
        // A key beyond u32 cannot be a slab key of this process; its timer
        // finds no connection and does nothing.
        let key = u32::try_from(key).unwrap_or(u32::MAX);
        self.entries.push_back(Compact {
            deadline,
            key,
            serial,
        });
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.front().map(|e| self.at(e.deadline))
    }

    /// Takes the next timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        let front = *self.entries.front()?;
        let entry = self.expand(front);
        if entry.deadline > now {
            return None;
        }
        self.entries.pop_front();
        self.shrink();
        Some(entry)
    }

    /// Keeps only the timers `live(key, serial)` says are still wanted, in
    /// order, and gives back the room of the others.
    pub fn retain(&mut self, mut live: impl FnMut(usize, u32) -> bool) {
        self.entries.retain(|e| live(e.key as usize, e.serial));
        self.shrink();
    }

    /// Gives back the memory of a burst once the queue holds a quarter of its
    /// room: ten thousand connections accepted at once leave as many stale
    /// handshake entries, which must not stay resident for good.
    fn shrink(&mut self) {
        let (len, room) = (self.entries.len(), self.entries.capacity());
        if room > 1024 && len < room / 4 {
            self.entries.shrink_to(len * 2);
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

    /// Every open connection holds one in the idle queue, and every new one
    /// one in the handshake queue for `handshake_timeout`.
    #[test]
    fn an_entry_stays_small() {
        assert_eq!(std::mem::size_of::<Compact>(), 16);
    }

    #[test]
    fn a_burst_gives_its_memory_back() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(Duration::from_secs(1));
        for key in 0..10_000 {
            q.arm(t0, key, 1);
        }
        let later = t0 + Duration::from_secs(2);
        while q.pop_due(later).is_some() {}
        assert!(q.entries.capacity() <= 2048, "{}", q.entries.capacity());
    }

    #[test]
    fn retain_keeps_the_wanted_in_order_and_frees_the_rest() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new(Duration::from_secs(1));
        for key in 0..10_000 {
            q.arm(t0, key, 7);
        }
        q.retain(|key, serial| serial == 7 && key % 1000 == 3);
        assert_eq!(q.len(), 10);
        assert!(q.entries.capacity() <= 2048, "{}", q.entries.capacity());
        let later = t0 + Duration::from_secs(2);
        let keys: Vec<usize> = std::iter::from_fn(|| q.pop_due(later).map(|e| e.key)).collect();
        assert_eq!(keys, (0..10).map(|k| k * 1000 + 3).collect::<Vec<_>>());
    }

    #[test]
    fn deadlines_keep_the_nanosecond() {
        let t0 = Instant::now() + Duration::from_secs(3);
        let mut q = TimerQueue::new(Duration::from_nanos(1_500));
        q.arm(t0, 3, 9);
        let due = t0 + Duration::from_nanos(1_500);
        assert_eq!(q.next_deadline(), Some(due));
        assert_eq!(q.pop_due(due - Duration::from_nanos(1)), None);
        let e = q.pop_due(due).unwrap();
        assert_eq!((e.deadline, e.key, e.serial), (due, 3, 9));
    }

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
