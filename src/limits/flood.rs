//! Message floods (SPEC section 17): what becomes of a message its sender's bucket cannot pay
//! for, and when a sender is dropped.
//!
//! The buckets themselves are [`Budget`](crate::budget::Budget)s in the router's record of
//! each client (8 bytes each); this module holds the rules and, for the connections refused
//! lately and only for them, a record of their refusals, so an idle connection pays nothing
//! for it. A refusal:
//!
//! - is answered with an error at most once a second: a refused message must not cost the
//!   server a reply each, or the error would be the amplifier;
//! - counts towards the close: more than `max_refusals` refusals (by either bucket) within
//!   [`WINDOW`] of the first one close the connection (4029 for Rakit, 4301 for Pusher).
//!
//! Nothing is allocated per refusal: the record is a fixed-size entry, made at the first
//! refusal of a connection and dropped when it goes (the table keeps its capacity).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::budget::{Budget, Rate};

/// How long refusals are counted together before the count starts again.
pub const WINDOW: Duration = Duration::from_secs(10);

/// At most one error frame a second per connection.
const ERRORS: Rate = Rate::per_second(1, 1);

/// The message limits of SPEC section 17, as the router applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodRules {
    /// Every text message (any dialect, pings included); `None`: unlimited.
    pub messages: Option<Rate>,
    /// Client broadcasts `{"message":M}`; `None`: unlimited.
    pub broadcasts: Option<Rate>,
    /// Refusals within [`WINDOW`] a connection may have; one more closes it.
    pub max_refusals: u32,
}

impl FloodRules {
    /// No limit at all (the benchmarks' setting, and `--echo`'s).
    pub const OFF: FloodRules = FloodRules {
        messages: None,
        broadcasts: None,
        max_refusals: u32::MAX,
    };
}

impl Default for FloodRules {
    /// SPEC section 17's defaults: 100 messages a second with a burst of 200, 5 broadcasts a
    /// second with a burst of 20, closed beyond 200 refusals within 10 s.
    fn default() -> FloodRules {
        FloodRules {
            messages: Some(Rate::per_second(100, 200)),
            broadcasts: Some(Rate::per_second(5, 20)),
            max_refusals: 200,
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Route it.
    Pass,
    /// Drop it; answer with the dialect's rate-limit error if `notify`.
    Refuse { notify: bool },
    /// Drop it and close the connection (rate limit exceeded).
    Close,
}

/// The refusals of one connection.
#[derive(Debug, Clone, Copy)]
struct Offender {
    /// When its window of [`WINDOW`] began (at a refusal).
    since: Instant,
    /// Refusals since then.
    refused: u32,
    /// Its error frames (one a second).
    errors: Budget,
}

/// The connections refused lately, by connection (see the module docs).
#[derive(Debug, Default)]
pub struct Offenders {
    by_conn: HashMap<usize, Offender>,
}

impl Offenders {
    /// `bucket` pays for one message of `conn` at `now` under `rate` (`None`: unlimited), or
    /// the message is refused ([`Offenders::refuse`]).
    #[inline]
    pub fn spend(
        &mut self,
        conn: usize,
        bucket: &mut Budget,
        rate: Option<Rate>,
        max_refusals: u32,
        now: Instant,
    ) -> Verdict {
        match rate {
            Some(rate) if !bucket.spend(1, rate, now) => self.refuse(conn, max_refusals, now),
            _ => Verdict::Pass,
        }
    }

    /// Counts a refused message of `conn`: [`Verdict::Close`] when it is one more than
    /// `max_refusals` within the window, else whether this refusal gets an error frame.
    pub fn refuse(&mut self, conn: usize, max_refusals: u32, now: Instant) -> Verdict {
        let offender = self.by_conn.entry(conn).or_insert(Offender {
            since: now,
            refused: 0,
            errors: Budget::default(),
        });
        if now.saturating_duration_since(offender.since) >= WINDOW {
            offender.since = now;
            offender.refused = 0;
        }
        offender.refused = offender.refused.saturating_add(1);
        if offender.refused > max_refusals {
            self.by_conn.remove(&conn);
            return Verdict::Close;
        }
        Verdict::Refuse {
            notify: offender.errors.spend(1, ERRORS, now),
        }
    }

    /// `conn` is gone.
    pub fn forget(&mut self, conn: usize) {
        self.by_conn.remove(&conn);
    }

    /// Connections with a record (at most the connections open).
    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    /// Whether no connection has a record.
    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_passes_then_refusals_answer_once_a_second_then_close() {
        let rules = FloodRules::default();
        let mut offenders = Offenders::default();
        let mut bucket = Budget::default();
        let t0 = Instant::now();
        let spend = |o: &mut Offenders, b: &mut Budget, t| {
            o.spend(7, b, rules.messages, rules.max_refusals, t)
        };
        for _ in 0..200 {
            assert_eq!(spend(&mut offenders, &mut bucket, t0), Verdict::Pass);
        }
        assert!(
            offenders.is_empty(),
            "nothing kept for a connection never refused"
        );
        assert_eq!(
            spend(&mut offenders, &mut bucket, t0),
            Verdict::Refuse { notify: true }
        );
        // 199 more refusals within the second: no error for any of them.
        for _ in 0..199 {
            assert_eq!(
                spend(&mut offenders, &mut bucket, t0 + 5 * MS),
                Verdict::Refuse { notify: false }
            );
        }
        // 200 refused so far; the 201st within 10 s closes.
        assert_eq!(
            spend(&mut offenders, &mut bucket, t0 + 5 * MS),
            Verdict::Close
        );
        assert!(offenders.is_empty());
    }

    #[test]
    fn the_error_comes_again_after_a_second() {
        let mut offenders = Offenders::default();
        let t0 = Instant::now();
        assert_eq!(
            offenders.refuse(1, 1000, t0),
            Verdict::Refuse { notify: true }
        );
        assert_eq!(
            offenders.refuse(1, 1000, t0 + 999 * MS),
            Verdict::Refuse { notify: false }
        );
        assert_eq!(
            offenders.refuse(1, 1000, t0 + 1000 * MS),
            Verdict::Refuse { notify: true }
        );
        // Another connection has its own.
        assert_eq!(
            offenders.refuse(2, 1000, t0 + 1000 * MS),
            Verdict::Refuse { notify: true }
        );
        offenders.forget(1);
        offenders.forget(2);
        assert!(offenders.is_empty());
    }

    /// The memory bound of the module docs: one record per refused connection, none for the
    /// others, and each dropped when its connection goes or is closed for flooding.
    #[test]
    fn one_record_per_refused_connection_until_it_goes() {
        let mut offenders = Offenders::default();
        let mut bucket = Budget::default();
        let t0 = Instant::now();
        let rate = Some(Rate::per_second(1, 1));
        assert_eq!(offenders.spend(9, &mut bucket, rate, 10, t0), Verdict::Pass);
        assert_eq!((offenders.len(), offenders.is_empty()), (0, true));
        for conn in 1..=3 {
            offenders.refuse(conn, 10, t0);
            offenders.refuse(conn, 10, t0);
        }
        assert_eq!((offenders.len(), offenders.is_empty()), (3, false));
        offenders.forget(2);
        offenders.forget(2);
        assert_eq!(offenders.len(), 2);
        // Closed for flooding: its record goes with it.
        assert_eq!(offenders.refuse(3, 2, t0), Verdict::Close);
        assert_eq!(offenders.len(), 1);
        offenders.forget(1);
        assert_eq!((offenders.len(), offenders.is_empty()), (0, true));
    }

    #[test]
    fn refusals_spread_over_more_than_the_window_never_close() {
        let mut offenders = Offenders::default();
        let t0 = Instant::now();
        // Three refusals allowed per 10 s; three every 10 s for a minute.
        for round in 0..6u32 {
            for i in 0..3u32 {
                let t = t0 + WINDOW * round + MS * i;
                assert_ne!(offenders.refuse(1, 3, t), Verdict::Close, "{round}/{i}");
            }
        }
        // A fourth within the same window closes.
        let t = t0 + WINDOW * 5 + 3 * MS;
        assert_eq!(offenders.refuse(1, 3, t), Verdict::Close);
    }

    #[test]
    fn unlimited_never_refuses() {
        let mut offenders = Offenders::default();
        let mut bucket = Budget::default();
        let t0 = Instant::now();
        for _ in 0..100_000 {
            assert_eq!(offenders.spend(1, &mut bucket, None, 0, t0), Verdict::Pass);
        }
        assert_eq!(
            bucket,
            Budget::default(),
            "an unlimited bucket is not touched"
        );
    }
}
