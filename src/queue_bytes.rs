//! The bytes a queue between threads holds, and their bound: the producer reserves an item's
//! bytes before it queues the item (and is refused once the bound is reached), the consumer
//! releases them when it is done with it. Used where a peer decides how big the items are: the
//! webhook queue (`[webhooks] queue_max_bytes`) and the queues to and from Redis
//! (`cluster/link.rs`); their count bounds stay beside it, for the slots.
//!
//! An item is accepted while the queue holds less than the bound, so the queue holds at most
//! the bound plus one item, and an item bigger than the bound still goes through a queue that
//! is (nearly) empty instead of never.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes held by a queue, and their bound (see the module docs).
#[derive(Debug)]
pub struct QueueBytes {
    held: AtomicUsize,
    max: usize,
}

impl QueueBytes {
    pub fn new(max: usize) -> QueueBytes {
        QueueBytes {
            held: AtomicUsize::new(0),
            max,
        }
    }

    /// Reserves `n` bytes unless the queue already holds its bound; false (and nothing
    /// reserved) then.
    pub fn try_reserve(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.max).then(|| held.saturating_add(n))
            })
            .is_ok()
    }

    /// Gives back what [`QueueBytes::try_reserve`] took for an item.
    pub fn release(&self, n: usize) {
        // Saturating: a release is never larger than its reservation, but a bug there must
        // not wrap the count and refuse everything after.
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(n))
            });
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_while_below_the_bound() {
        let q = QueueBytes::new(100);
        assert!(q.try_reserve(60));
        assert!(
            q.try_reserve(60),
            "below the bound: one more item, whatever its size"
        );
        assert_eq!(q.held(), 120);
        assert!(!q.try_reserve(1), "at or beyond the bound: refused");
        assert_eq!(q.held(), 120);
        q.release(60);
        assert!(q.try_reserve(1), "60 held: below the bound again");
        q.release(61);
        q.release(1000);
        assert_eq!(q.held(), 0, "a release never wraps");
        // An item bigger than the bound goes through an empty queue.
        assert!(q.try_reserve(1000));
    }
}
