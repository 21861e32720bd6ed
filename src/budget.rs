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

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Tokens the bucket regains per second: a sustained rate no real page needs.
pub const REFILL_PER_SECOND: u64 = 10;

/// Milliseconds per token regained.
const MS_PER_TOKEN: u64 = 1000 / REFILL_PER_SECOND;

/// A connection's budget (see the module docs), in 8 bytes: kept as the instant at which the
/// bucket will be full again ("theoretical arrival time", as in GCRA), in milliseconds since a
/// process-wide epoch. Spending `n` tokens pushes it `n` token times into the future; a spend
/// is refused when that would put it more than a full bucket ahead of now.
#[derive(Debug, Clone)]
pub struct Budget {
    full_at_ms: u64,
}

/// `now` in milliseconds since the epoch: an hour before the first instant this process asked
/// about, so that every instant the loop or a test uses comes after it.
fn ms(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now.checked_sub(Duration::from_secs(3600)).unwrap_or(now));
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

impl Budget {
    /// A full bucket (of whatever capacity [`Budget::spend`] is given).
    pub fn full(now: Instant) -> Budget {
        Budget {
            full_at_ms: ms(now),
        }
    }

    /// Takes `cost` tokens if there are that many at `now` (after the refill since the last
    /// call); false, taking nothing, if not. A cost above `capacity` is charged as `capacity`
    /// (a full bucket): a frame the bucket could never pay for would be refused for ever (a
    /// presence channel with more members than ten times the capacity stays joinable).
    pub fn spend(&mut self, cost: u64, capacity: u64, now: Instant) -> bool {
        let now = ms(now);
        let cost = cost.min(capacity).saturating_mul(MS_PER_TOKEN);
        let full_at = self.full_at_ms.max(now).saturating_add(cost);
        if full_at - now > capacity.saturating_mul(MS_PER_TOKEN) {
            return false;
        }
        self.full_at_ms = full_at;
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
        let mut b = Budget::full(t0);
        assert!((0..5).all(|_| b.spend(1, 5, t0)));
        assert!(!b.spend(1, 5, t0));
        // 10 per second: one token per 100 ms, not before.
        assert!(!b.spend(1, 5, t0 + 99 * MS));
        assert!(b.spend(1, 5, t0 + 100 * MS));
        assert!(!b.spend(1, 5, t0 + 100 * MS));
        // Small steps add up (absolute instants are compared, nothing is rounded away).
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
        let mut b = Budget::full(t0);
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.spend(1, 3, later)));
        assert!(!b.spend(1, 3, later));
    }

    #[test]
    fn a_costly_frame_takes_several_tokens_or_none() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = Budget::full(t1);
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
