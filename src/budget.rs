//! The one token bucket of the daemon: every rate limit is a [`Budget`] with its [`Rate`].
//!
//! - Rakit `subscribe`s (docs/limits.md) and Pusher's `pusher:subscribe`, `pusher:signin` and
//!   malformed or unsupported frames (docs/pusher.md, "Limits"): a burst of at least twice
//!   `max_channels_per_client` (a reconnecting client that leaves and rejoins all its channels
//!   at once is never refused), refilled at [`REFILL_PER_SECOND`]. Without one a client could
//!   churn a channel (each join and leave is a frame to every member, a write to Redis and a
//!   message to every node, a webhook).
//! - Pusher client events: Pusher's 10 a second.
//! - SPEC section 17 (`[limits]`, `src/limits/`): every message a client sends, its broadcasts,
//!   and new handshakes per client address.
//!
//! A bucket starts full, holds `capacity` tokens and regains them at a steady rate. Its state is
//! one instant (8 bytes, so every connection can afford several); the rate and capacity are
//! passed in, as they are the same for every connection. Time is passed in too, so tests need no
//! clock.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Tokens the subscribe budgets regain per second: a sustained rate no real page needs.
pub const REFILL_PER_SECOND: u64 = 10;

/// The most tokens a second a [`Rate`] may give: one per microsecond, the resolution of
/// [`Budget`].
pub const MAX_PER_SECOND: u64 = 1_000_000;

/// How a bucket refills and how much it holds: `per_second` tokens a second, at most
/// `capacity` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Microseconds per token.
    us_per_token: u64,
    capacity: u64,
    /// How long an empty bucket takes to fill again (`capacity` token times).
    window_us: u64,
}

impl Rate {
    /// `per_second` tokens a second (1 to [`MAX_PER_SECOND`]; clamped), holding `capacity` (at
    /// least 1; clamped).
    pub const fn per_second(per_second: u64, capacity: u64) -> Rate {
        let per_second = if per_second == 0 {
            1
        } else if per_second > MAX_PER_SECOND {
            MAX_PER_SECOND
        } else {
            per_second
        };
        let capacity = if capacity == 0 { 1 } else { capacity };
        let us_per_token = 1_000_000 / per_second;
        Rate {
            us_per_token,
            capacity,
            window_us: capacity.saturating_mul(us_per_token),
        }
    }

    /// The subscribe budget's rate: [`REFILL_PER_SECOND`], holding `capacity`.
    pub const fn subscribes(capacity: u64) -> Rate {
        Rate::per_second(REFILL_PER_SECOND, capacity)
    }

    /// The most tokens the bucket holds.
    pub fn capacity(self) -> u64 {
        self.capacity
    }
}

/// A bucket (see the module docs), in 8 bytes: kept as the instant at which it will be full
/// again ("theoretical arrival time", as in GCRA), in microseconds since a process-wide epoch.
/// Spending `n` tokens pushes that instant `n` token times into the future; a spend is refused
/// when that would put it more than a full bucket ahead of now. Zero is a full bucket; of two
/// buckets of one rate, the greater holds fewer tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Budget {
    full_at_us: u64,
}

/// `now` in microseconds since the epoch: an hour before the first instant this process asked
/// about, so that every instant the loop or a test uses comes after it.
///
/// Every message of a loop turn is handled at the turn's one instant, so the last conversion is
/// kept (per thread) and reused: an `Instant` subtraction costs more than the bucket itself.
fn us(now: Instant) -> u64 {
    thread_local! {
        static LAST: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((at, us)) if at == now => us,
        _ => {
            let us = convert(now);
            last.set(Some((now, us)));
            us
        }
    })
}

fn convert(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now.checked_sub(Duration::from_secs(3600)).unwrap_or(now));
    let since = now.saturating_duration_since(epoch);
    // u64 microseconds last 584,000 years; no 128-bit arithmetic.
    since
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(since.subsec_micros()))
}

impl Budget {
    /// A full bucket (of whatever rate [`Budget::spend`] is given).
    pub fn full(now: Instant) -> Budget {
        Budget {
            full_at_us: us(now),
        }
    }

    /// Takes `cost` tokens if there are that many at `now` (after the refill since the last
    /// call); false, taking nothing, if not. A cost above the capacity is charged as the whole
    /// capacity (a full bucket): a frame the bucket could never pay for would be refused for
    /// ever (a presence channel with more members than ten times the capacity stays joinable).
    #[inline]
    pub fn spend(&mut self, cost: u64, rate: Rate, now: Instant) -> bool {
        let now = us(now);
        let cost = cost.min(rate.capacity).saturating_mul(rate.us_per_token);
        let full_at = self.full_at_us.max(now).saturating_add(cost);
        if full_at - now > rate.window_us {
            return false;
        }
        self.full_at_us = full_at;
        true
    }

    /// How long from `now` until [`Budget::spend`] of one token would succeed (zero if it
    /// would now): what a refusal's `Retry-After` says.
    pub fn wait(&self, rate: Rate, now: Instant) -> Duration {
        let now = us(now);
        let ahead = self.full_at_us.saturating_sub(now);
        let excess = (ahead + rate.us_per_token).saturating_sub(rate.window_us);
        Duration::from_micros(excess)
    }

    /// Whether the bucket is full at `now`: it then holds nothing a fresh one would not, and a
    /// table of buckets may forget it.
    pub fn is_full(&self, now: Instant) -> bool {
        self.full_at_us <= us(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// The subscribe budgets' rate, 10 a second, holding `n`.
    fn ten(n: u64) -> Rate {
        Rate::subscribes(n)
    }

    #[test]
    fn a_full_bucket_then_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = Budget::full(t0);
        assert!((0..5).all(|_| b.spend(1, ten(5), t0)));
        assert!(!b.spend(1, ten(5), t0));
        // 10 per second: one token per 100 ms, not before.
        assert!(!b.spend(1, ten(5), t0 + 99 * MS));
        assert!(b.spend(1, ten(5), t0 + 100 * MS));
        assert!(!b.spend(1, ten(5), t0 + 100 * MS));
        // Small steps add up (absolute instants are compared, nothing is rounded away).
        let mut t = t0 + 100 * MS;
        let mut granted = 0;
        for _ in 0..100 {
            t += 3 * MS;
            granted += u32::from(b.spend(1, ten(5), t));
        }
        assert_eq!(granted, 3, "300 ms give 3 tokens");
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let t0 = Instant::now();
        let mut b = Budget::full(t0);
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.spend(1, ten(3), later)));
        assert!(!b.spend(1, ten(3), later));
    }

    #[test]
    fn a_costly_frame_takes_several_tokens_or_none() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut b = Budget::full(t1);
        assert!(b.spend(7, ten(10), t1));
        assert!(!b.spend(4, ten(10), t1), "3 left");
        assert!(b.spend(3, ten(10), t1));
        // An earlier instant (the loop's clock does not go back, but) refills nothing.
        assert!(!b.spend(1, ten(10), t0));
        // More than the capacity costs a full bucket: affordable once it is full, not before.
        assert!(!b.spend(u64::MAX, ten(10), t1 + Duration::from_millis(900)));
        assert!(b.spend(u64::MAX, ten(10), t1 + Duration::from_secs(1)));
        assert!(!b.spend(1, ten(10), t1 + Duration::from_secs(1)));
    }

    #[test]
    fn rates_and_bursts_are_parameters() {
        let t0 = Instant::now();
        // SPEC 17's message bucket: 100 a second, a burst of 200.
        let messages = Rate::per_second(100, 200);
        let mut b = Budget::default();
        assert!((0..200).all(|_| b.spend(1, messages, t0)));
        assert!(!b.spend(1, messages, t0));
        assert!(!b.spend(1, messages, t0 + 9 * MS));
        assert!(b.spend(1, messages, t0 + 10 * MS), "one token per 10 ms");
        // Its broadcast bucket: 5 a second, a burst of 20.
        let broadcasts = Rate::per_second(5, 20);
        let mut b = Budget::full(t0);
        assert!((0..20).all(|_| b.spend(1, broadcasts, t0)));
        assert!(!b.spend(1, broadcasts, t0 + 199 * MS));
        assert!(b.spend(1, broadcasts, t0 + 200 * MS));
        // A million a second: one per microsecond, nothing lost to rounding.
        let fast = Rate::per_second(MAX_PER_SECOND, 1);
        let mut b = Budget::full(t0);
        let mut t = t0;
        for _ in 0..1000 {
            assert!(b.spend(1, fast, t));
            assert!(!b.spend(1, fast, t));
            t += Duration::from_micros(1);
        }
        // Out of range values are clamped, never a division by zero.
        assert_eq!(Rate::per_second(0, 0), Rate::per_second(1, 1));
        assert_eq!(Rate::per_second(u64::MAX, 5).capacity(), 5);
    }

    #[test]
    fn wait_says_when_the_next_token_comes() {
        let t0 = Instant::now();
        let rate = Rate::per_second(2, 2);
        let mut b = Budget::full(t0);
        assert_eq!(b.wait(rate, t0), Duration::ZERO);
        assert!(b.spend(1, rate, t0) && b.spend(1, rate, t0));
        assert_eq!(b.wait(rate, t0), Duration::from_millis(500));
        assert_eq!(b.wait(rate, t0 + 200 * MS), Duration::from_millis(300));
        assert_eq!(b.wait(rate, t0 + 500 * MS), Duration::ZERO);
        assert!(b.spend(1, rate, t0 + 500 * MS));
    }

    #[test]
    fn a_bucket_is_full_again_after_its_window() {
        let t0 = Instant::now();
        let rate = Rate::per_second(10, 5);
        let mut b = Budget::full(t0);
        assert!(b.is_full(t0) && Budget::default().is_full(t0));
        assert!(b.spend(2, rate, t0));
        assert!(!b.is_full(t0 + 199 * MS));
        assert!(b.is_full(t0 + 200 * MS));
    }
}
