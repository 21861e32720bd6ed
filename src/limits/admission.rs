//! Who may open a WebSocket (SPEC section 17): open connections per client address and per
//! session user, and new handshakes per client address per second.
//!
//! The event loop asks at each upgrade request ([`Admission::check_address`], before anything
//! else is decided, and [`Admission::check_user`] once the session is known), tells when a
//! connection opens and when it leaves. Nothing is kept for a limit that is off (all three are
//! off by default).
//!
//! Bounds: an address or user with open connections has an entry (at most one per open
//! connection). With a connect rate, an address keeps an entry for its bucket after its
//! connections are gone, until the bucket is full again (it then says nothing a fresh one would
//! not); such entries are swept whenever the table has doubled since the last sweep, and if more
//! than [`MAX_IDLE`] remain, the half nearest to full is forgotten. So a million addresses
//! passing through cost at most [`MAX_IDLE`] entries beyond the open connections, and the
//! sweeps cost O(1) per handshake, amortized. Forgetting a bucket early lets that address
//! connect sooner than its rate says: under a flood of distinct addresses the rate memory
//! fails open (the alternative, refusing new addresses, would let one attacker lock everyone
//! out); the open-connection limits never forget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::address::AddrKey;
use crate::budget::{Budget, Rate};

/// Address entries with no open connection kept at most (their connect-rate buckets).
pub const MAX_IDLE: usize = 65_536;

/// Sweeps do not start below this many entries.
const MIN_SWEEP: usize = 1024;

/// What `Retry-After` says when an open-connection limit refuses: one of them must close
/// first, which nobody can promise; a few seconds keeps a reconnecting client from spinning.
const RETRY_OPEN: Duration = Duration::from_secs(5);

/// The connection limits of SPEC section 17; zero (or `None`) turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionRules {
    /// Open WebSocket connections per client address.
    pub max_per_address: u32,
    /// New handshakes per client address.
    pub connect_rate: Option<Rate>,
    /// Open connections per session user.
    pub max_per_user: u32,
}

/// Why an upgrade is refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address has `max_connections_per_ip` open.
    AddressFull,
    /// Its address handshakes faster than `connections_per_ip_per_second`.
    AddressRate { retry_after: Duration },
    /// Its user has `max_connections_per_user` open.
    UserFull,
}

impl Refusal {
    /// The refusal's one-line reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::AddressFull => "too many connections from this address",
            Refusal::AddressRate { .. } => "too many new connections from this address",
            Refusal::UserFull => "too many connections for this user",
        }
    }

    /// `Retry-After`, in whole seconds (at least 1).
    pub fn retry_after_secs(self) -> u32 {
        let wait = match self {
            Refusal::AddressRate { retry_after } => retry_after,
            Refusal::AddressFull | Refusal::UserFull => RETRY_OPEN,
        };
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
    }
}

/// One client address.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Its open WebSocket connections.
    open: u32,
    /// Its handshakes (when a connect rate is set).
    connects: Budget,
}

/// What an open connection was counted under.
#[derive(Debug, Default)]
struct Held {
    address: Option<AddrKey>,
    user: Option<Box<str>>,
}

/// The tables (see the module docs).
#[derive(Debug, Default)]
pub struct Admission {
    rules: AdmissionRules,
    addresses: HashMap<AddrKey, Entry>,
    users: HashMap<Box<str>, u32>,
    /// By connection, what it was counted under (only while a count is on).
    held: HashMap<usize, Held>,
    /// The table's size after the last sweep.
    swept: usize,
}

impl Admission {
    pub fn new(rules: AdmissionRules) -> Admission {
        Admission {
            rules,
            ..Admission::default()
        }
    }

    /// The rules (new ones apply to later handshakes; counts are kept).
    pub fn set_rules(&mut self, rules: AdmissionRules) {
        self.rules = rules;
    }

    /// An upgrade request from `address` at `now`: refused if the address has all the open
    /// connections it may have, or handshakes faster than its rate (a refused handshake costs
    /// no token; an accepted one costs one, whatever is decided about it next).
    pub fn check_address(&mut self, address: AddrKey, now: Instant) -> Result<(), Refusal> {
        let rules = self.rules;
        if rules.max_per_address == 0 && rules.connect_rate.is_none() {
            return Ok(());
        }
        if rules.max_per_address > 0 {
            let open = self.addresses.get(&address).map_or(0, |e| e.open);
            if open >= rules.max_per_address {
                return Err(Refusal::AddressFull);
            }
        }
        let Some(rate) = rules.connect_rate else {
            return Ok(());
        };
        self.sweep(now);
        let entry = self.addresses.entry(address).or_default();
        if entry.connects.spend(1, rate, now) {
            Ok(())
        } else {
            let retry_after = entry.connects.wait(rate, now);
            self.forget_if_idle(address, now);
            Err(Refusal::AddressRate { retry_after })
        }
    }

    /// The session's user may open one more connection?
    pub fn check_user(&self, user: &str) -> Result<(), Refusal> {
        let max = self.rules.max_per_user;
        if max > 0 && self.users.get(user).copied().unwrap_or(0) >= max {
            return Err(Refusal::UserFull);
        }
        Ok(())
    }

    /// `conn` opened, from `address`, as `user`.
    pub fn opened(&mut self, conn: usize, address: AddrKey, user: Option<&str>) {
        let mut held = Held::default();
        if self.rules.max_per_address > 0 {
            self.addresses.entry(address).or_default().open += 1;
            held.address = Some(address);
        }
        if let Some(user) = user.filter(|_| self.rules.max_per_user > 0) {
            *self.users.entry(user.into()).or_default() += 1;
            held.user = Some(user.into());
        }
        if held.address.is_some() || held.user.is_some() {
            self.held.insert(conn, held);
        }
    }

    /// `conn` is no longer open (at `now`).
    pub fn closed(&mut self, conn: usize, now: Instant) {
        let Some(held) = self.held.remove(&conn) else {
            return;
        };
        if let Some(address) = held.address {
            if let Some(entry) = self.addresses.get_mut(&address) {
                entry.open = entry.open.saturating_sub(1);
            }
            self.forget_if_idle(address, now);
        }
        if let Some(user) = held.user {
            if let Some(n) = self.users.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    self.users.remove(&user);
                }
            }
        }
    }

    /// Entries held (addresses and users), for tests and the bounds' proof.
    pub fn len(&self) -> usize {
        self.addresses.len() + self.users.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops an address entry that holds nothing: no open connection, and a full bucket.
    fn forget_if_idle(&mut self, address: AddrKey, now: Instant) {
        if self
            .addresses
            .get(&address)
            .is_some_and(|e| e.open == 0 && e.connects.is_full(now))
        {
            self.addresses.remove(&address);
        }
    }

    /// Bounds the table (see the module docs).
    fn sweep(&mut self, now: Instant) {
        if self.addresses.len() < MIN_SWEEP.max(self.swept.saturating_mul(2)) {
            return;
        }
        self.addresses
            .retain(|_, e| e.open > 0 || !e.connects.is_full(now));
        let idle = self.addresses.values().filter(|e| e.open == 0).count();
        if idle > MAX_IDLE {
            // Keep the half of the idle entries furthest from full (the most recent handshakes).
            let mut order: Vec<Budget> = self
                .addresses
                .values()
                .filter(|e| e.open == 0)
                .map(|e| e.connects)
                .collect();
            let keep = MAX_IDLE / 2;
            let cut = idle - keep;
            order.select_nth_unstable(cut);
            let threshold = order[cut];
            self.addresses
                .retain(|_, e| e.open > 0 || e.connects >= threshold);
        }
        self.swept = self.addresses.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn v4(i: u32) -> AddrKey {
        AddrKey::V4(i)
    }

    #[test]
    fn open_connections_per_address() {
        let mut a = Admission::new(AdmissionRules {
            max_per_address: 2,
            ..AdmissionRules::default()
        });
        let t = Instant::now();
        for conn in 0..2 {
            assert_eq!(a.check_address(v4(1), t), Ok(()));
            a.opened(conn, v4(1), None);
        }
        assert_eq!(a.check_address(v4(1), t), Err(Refusal::AddressFull));
        assert_eq!(
            a.check_address(v4(2), t),
            Ok(()),
            "another address has its own"
        );
        a.closed(0, t);
        assert_eq!(a.check_address(v4(1), t), Ok(()));
        a.closed(1, t);
        a.closed(1, t); // twice: harmless
        assert!(
            a.is_empty(),
            "nothing kept for an address with nothing open"
        );
    }

    #[test]
    fn handshakes_per_address_per_second() {
        let mut a = Admission::new(AdmissionRules {
            connect_rate: Some(Rate::per_second(2, 2)),
            ..AdmissionRules::default()
        });
        let t = Instant::now();
        assert_eq!(a.check_address(v4(1), t), Ok(()));
        assert_eq!(a.check_address(v4(1), t), Ok(()));
        let refused = a.check_address(v4(1), t + 100 * MS).unwrap_err();
        assert_eq!(
            refused,
            Refusal::AddressRate {
                retry_after: 400 * MS
            }
        );
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(a.check_address(v4(1), t + 500 * MS), Ok(()));
        // Refusals cost nothing: still one token per 500 ms.
        assert!(a.check_address(v4(1), t + 600 * MS).is_err());
        assert_eq!(a.check_address(v4(1), t + 1000 * MS), Ok(()));
    }

    #[test]
    fn open_connections_per_user() {
        let mut a = Admission::new(AdmissionRules {
            max_per_user: 1,
            ..AdmissionRules::default()
        });
        let t = Instant::now();
        assert_eq!(a.check_user("42"), Ok(()));
        a.opened(7, v4(1), Some("42"));
        assert_eq!(a.check_user("42"), Err(Refusal::UserFull));
        assert_eq!(a.check_user("43"), Ok(()));
        // Guests are not counted.
        a.opened(8, v4(1), None);
        a.closed(8, t);
        a.closed(7, t);
        assert_eq!(a.check_user("42"), Ok(()));
        assert!(a.is_empty());
    }

    #[test]
    fn nothing_is_kept_when_the_limits_are_off() {
        let mut a = Admission::default();
        let t = Instant::now();
        for i in 0..10_000 {
            assert_eq!(a.check_address(v4(i), t), Ok(()));
            a.opened(i as usize, v4(i), Some("u"));
            assert_eq!(a.check_user("u"), Ok(()));
        }
        assert!(a.is_empty() && a.held.is_empty());
    }

    /// A million distinct addresses, each connecting once and leaving, at the worst pace (all
    /// within the time their buckets need to refill): the table stays bounded.
    #[test]
    fn a_million_addresses_do_not_grow_the_table_without_bound() {
        let mut a = Admission::new(AdmissionRules {
            max_per_address: 4,
            connect_rate: Some(Rate::per_second(1, 10)),
            ..AdmissionRules::default()
        });
        let t0 = Instant::now();
        let mut most = 0;
        for i in 0..1_000_000u32 {
            // A microsecond apart: every bucket is still far from full (10 s).
            let now = t0 + Duration::from_micros(u64::from(i));
            let address = if i % 2 == 0 {
                v4(i)
            } else {
                AddrKey::V6(u64::from(i) << 16)
            };
            assert_eq!(a.check_address(address, now), Ok(()), "{i}");
            a.opened(i as usize, address, None);
            a.closed(i as usize, now);
            most = most.max(a.addresses.len());
        }
        assert!(most <= 2 * MAX_IDLE + 1, "{most} entries");
        // The most recent addresses are remembered: one that just connected is still limited.
        let now = t0 + Duration::from_secs(1);
        for _ in 0..9 {
            assert_eq!(a.check_address(v4(999_998), now), Ok(()));
        }
        assert!(a.check_address(v4(999_998), now).is_err());
        // Once their buckets are full again, the next sweep forgets them all.
        a.swept = 0;
        a.sweep(t0 + Duration::from_secs(60));
        assert!(a.addresses.is_empty(), "{}", a.addresses.len());
    }

    /// Open connections are never forgotten, however many idle entries come and go, even
    /// once their own handshake bucket is full again (a sweep must not take an open count for
    /// an idle bucket).
    #[test]
    fn sweeps_keep_open_connections() {
        let mut a = Admission::new(AdmissionRules {
            max_per_address: 1,
            connect_rate: Some(Rate::per_second(1, 10)),
            ..AdmissionRules::default()
        });
        let t0 = Instant::now();
        a.check_address(v4(7), t0).unwrap();
        a.opened(0, v4(7), None);
        // Ten seconds refill v4(7)'s bucket; the flood (and its sweeps) comes after.
        let later = t0 + Duration::from_secs(20);
        for i in 0..(3 * MAX_IDLE) as u32 {
            a.check_address(v4(100 + i), later + Duration::from_micros(u64::from(i)))
                .unwrap();
        }
        assert_eq!(
            a.check_address(v4(7), t0 + Duration::from_secs(100)),
            Err(Refusal::AddressFull)
        );
    }

    /// `Retry-After` (SPEC section 17): the wait for the next handshake token rounded up to
    /// whole seconds, at least 1; a few seconds when a connection must close first.
    #[test]
    fn retry_after_is_the_wait_rounded_up() {
        let rate = |retry_after| Refusal::AddressRate { retry_after }.retry_after_secs();
        assert_eq!(rate(Duration::ZERO), 1);
        assert_eq!(rate(400 * MS), 1);
        assert_eq!(rate(1000 * MS), 1);
        assert_eq!(rate(1001 * MS), 2);
        assert_eq!(rate(2000 * MS), 2);
        assert_eq!(rate(2500 * MS), 3);
        assert_eq!(rate(Duration::from_secs(u64::MAX)), u32::MAX);
        assert_eq!(Refusal::AddressFull.retry_after_secs(), 5);
        assert_eq!(Refusal::UserFull.retry_after_secs(), 5);
    }

    /// The 429's body says which limit refused (the client's only clue besides the status).
    #[test]
    fn each_refusal_names_its_limit() {
        let address = Refusal::AddressFull.reason();
        let rate = Refusal::AddressRate {
            retry_after: 400 * MS,
        }
        .reason();
        let user = Refusal::UserFull.reason();
        assert!(
            address.contains("connections from this address"),
            "{address}"
        );
        assert!(rate.contains("new connections"), "{rate}");
        assert!(user.contains("user"), "{user}");
        assert!(address != rate && rate != user && user != address);
    }

    /// A reload's rules (SPEC section 18) apply to the next handshake; the open connections
    /// counted under the old rules stay counted.
    #[test]
    fn new_rules_apply_to_the_next_handshake_and_keep_the_counts() {
        let one = AdmissionRules {
            max_per_address: 1,
            max_per_user: 1,
            ..AdmissionRules::default()
        };
        let mut a = Admission::new(one);
        let t = Instant::now();
        a.check_address(v4(1), t).unwrap();
        a.opened(0, v4(1), Some("42"));
        assert_eq!(a.check_address(v4(1), t), Err(Refusal::AddressFull));
        a.set_rules(AdmissionRules {
            max_per_address: 2,
            max_per_user: 2,
            ..AdmissionRules::default()
        });
        assert_eq!(a.check_address(v4(1), t), Ok(()));
        assert_eq!(a.check_user("42"), Ok(()));
        a.opened(1, v4(1), Some("42"));
        assert_eq!(a.check_address(v4(1), t), Err(Refusal::AddressFull));
        assert_eq!(a.check_user("42"), Err(Refusal::UserFull));
        a.set_rules(AdmissionRules {
            connect_rate: Some(Rate::per_second(1, 1)),
            ..AdmissionRules::default()
        });
        assert_eq!(a.check_address(v4(1), t), Ok(()));
        assert!(a.check_address(v4(1), t).is_err(), "the new rate applies");
        assert_eq!(a.check_user("42"), Ok(()));
        a.set_rules(one);
        a.closed(1, t);
        assert_eq!(a.check_address(v4(1), t), Err(Refusal::AddressFull));
        a.closed(0, t);
        assert_eq!(a.check_address(v4(1), t), Ok(()));
    }

    /// What the tables hold: an entry per address and per user with open connections.
    #[test]
    fn entries_are_held_while_connections_are_open() {
        let mut a = Admission::new(AdmissionRules {
            max_per_address: 5,
            max_per_user: 5,
            ..AdmissionRules::default()
        });
        let t = Instant::now();
        a.opened(0, v4(1), Some("42"));
        a.opened(1, v4(2), Some("42"));
        a.opened(2, v4(2), None);
        assert_eq!((a.len(), a.is_empty()), (3, false));
        a.closed(1, t);
        assert_eq!(a.len(), 3);
        a.closed(0, t);
        assert_eq!((a.len(), a.is_empty()), (1, false));
        a.closed(2, t);
        assert_eq!((a.len(), a.is_empty()), (0, true));
    }

    /// Idle buckets that are full again are swept once the table reaches `MIN_SWEEP`
    /// entries, not one entry later; below it they wait.
    #[test]
    fn sweeps_start_at_min_sweep_entries() {
        let mut a = Admission::new(AdmissionRules {
            connect_rate: Some(Rate::per_second(1, 10)),
            ..AdmissionRules::default()
        });
        let t0 = Instant::now();
        for i in 0..(MIN_SWEEP - 1) as u32 {
            a.check_address(v4(i), t0).unwrap();
        }
        // A minute on, every one of them is full again: nothing left to remember.
        let later = t0 + Duration::from_secs(60);
        a.check_address(v4(1 << 20), later).unwrap();
        assert_eq!(a.len(), MIN_SWEEP, "no sweep below MIN_SWEEP");
        a.check_address(v4(2 << 20), later).unwrap();
        assert_eq!(a.len(), 2, "swept at MIN_SWEEP: the two new ones are left");
    }

    /// `MAX_IDLE` idle entries that are not full are all kept (each still limits its
    /// address); only beyond it is the half nearest to full forgotten.
    #[test]
    fn up_to_max_idle_entries_are_kept() {
        let mut a = Admission::new(AdmissionRules {
            connect_rate: Some(Rate::per_second(1, 10)),
            ..AdmissionRules::default()
        });
        let t0 = Instant::now();
        let at = |i: usize| t0 + Duration::from_micros(i as u64);
        for i in 0..MAX_IDLE {
            a.check_address(v4(i as u32), at(i)).unwrap();
        }
        // The table has doubled since the last sweep (at 32768): swept, all of them kept.
        a.check_address(v4(MAX_IDLE as u32), at(MAX_IDLE)).unwrap();
        assert_eq!(a.swept, MAX_IDLE);
        assert_eq!(a.len(), MAX_IDLE + 1);
        for i in MAX_IDLE + 1..2 * MAX_IDLE {
            a.check_address(v4(i as u32), at(i)).unwrap();
        }
        // Doubled again, now beyond MAX_IDLE: the oldest half is forgotten.
        a.check_address(v4(1 << 30), at(2 * MAX_IDLE)).unwrap();
        assert_eq!(a.swept, MAX_IDLE / 2);
        assert_eq!(a.len(), MAX_IDLE / 2 + 1);
        let kept = |a: &Admission, i: usize| a.addresses.contains_key(&v4(i as u32));
        assert!(!kept(&a, 0) && !kept(&a, 3 * MAX_IDLE / 2 - 1));
        assert!(kept(&a, 3 * MAX_IDLE / 2) && kept(&a, 2 * MAX_IDLE - 1));
    }
}
