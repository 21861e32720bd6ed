//! A per-connection budget of control frames, shared by both dialects: Pusher's
//! `pusher:subscribe`, `pusher:signin` and malformed or unsupported frames (docs/pusher.md,
//! "Limits"), and Rakit's `subscribe` (docs/limits.md).
//!
//! Without one a client can churn a channel (each join and leave is a frame to every
//! member, a write to Redis and a message to every node, a webhook) or make the server verify
//! signatures and answer errors as fast as it can write. A token bucket: it starts full, holds
//! `capacity` tokens (at least twice `max_channels_per_client`, so a reconnecting client that
//! leaves and rejoins all its channels at once is never refused), and refills at
//! [`REFILL_PER_SECOND`]. Time is passed in, so tests need no clock.

use std::time::Instant;

/// Tokens the bucket regains per second: a sustained rate no real page needs.
pub const REFILL_PER_SECOND: u64 = 10;

/// Tokens are counted in thousandths, so that a refill between two frames a few
/// milliseconds apart is not lost to rounding.
const MILLI: u64 = 1000;

/// A connection's budget (see the module docs).
#[derive(Debug, Clone)]
pub struct Budget {
    /// Thousandths of a token.
    milli: u64,
    at: Instant,
}

impl Budget {
    /// A full bucket of `capacity` tokens.
    pub fn new(capacity: u64, now: Instant) -> Budget {
        Budget {
            milli: capacity.saturating_mul(MILLI),
            at: now,
        }
    }

    /// Takes `cost` tokens if there are that many at `now` (after the refill since the last
    /// call); false, taking nothing, if not. A cost above `capacity` is charged as `capacity`
    /// (a full bucket): a frame the bucket could never pay for would be refused for ever (a
    /// presence channel with more members than ten times the capacity stays joinable).
    pub fn spend(&mut self, cost: u64, capacity: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        // REFILL_PER_SECOND tokens per second are as many thousandths per millisecond.
        let refill = u64::try_from(elapsed.as_micros() * u128::from(REFILL_PER_SECOND) / 1000)
            .unwrap_or(u64::MAX);
        self.milli = self
            .milli
            .saturating_add(refill)
            .min(capacity.saturating_mul(MILLI));
        self.at = self.at.max(now);
        let cost = cost.min(capacity).saturating_mul(MILLI);
        if self.milli < cost {
            return false;
        }
        self.milli -= cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_full_bucket_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(5, t0);
        assert!((0..5).all(|_| b.spend(1, 5, t0)));
        assert!(!b.spend(1, 5, t0));
        // 10 per second: one token per 100 ms, not before.
        assert!(!b.spend(1, 5, t0 + 99 * MS));
        assert!(b.spend(1, 5, t0 + 100 * MS));
        assert!(!b.spend(1, 5, t0 + 100 * MS));
        // Small steps add up (thousandths are kept).
        let mut t = t0 + 100 * MS;
        let mut granted = 0;
        for _ in 0..100 {
            t += 3 * MS;
            granted += u32::from(b.spend(1, 5, t));
        }
        assert_eq!(granted, 3, "300 ms give 3 tokens");
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut b = Budget::new(3, t0);
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.spend(1, 3, later)));
        assert!(!b.spend(1, 3, later));
    }

    #[test]
    fn a_costly_frame_takes_several_tokens_or_none() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = Budget::new(10, t1);
        assert!(b.spend(7, 10, t1));
        assert!(!b.spend(4, 10, t1), "3 left");
        assert!(b.spend(3, 10, t1));
        // An earlier instant (the loop's clock does not go back, but) refills nothing.
        assert!(!b.spend(1, 10, t0));
        // More than the capacity costs a full bucket: affordable once it is full, not before.
        assert!(!b.spend(u64::MAX, 10, t1 + Duration::from_millis(900)));
        assert!(b.spend(u64::MAX, 10, t1 + Duration::from_secs(1)));
        assert!(!b.spend(1, 10, t1 + Duration::from_secs(1)));
    }
}
