//! Sockets one peer address may hold before they are WebSocket connections (SPEC section 17:
//! "nor one address hold every socket").
//!
//! The per-address limits of [`super::Admission`] are checked at the upgrade request, so they
//! count open WebSockets only. Before that, a socket is a handshake in flight or an HTTP
//! connection, and the daemon holds at most `max_connections + max_http_connections` plus a
//! room for handshakes in flight (docs/ARCHITECTURE.md, "Bounds"); beyond that it drops new
//! sockets at accept. Without a share per address, one address that connects and sends nothing
//! (or keeps idle keep-alive HTTP connections) fills every one of them for `handshake_timeout`,
//! reconnects, and locks every other client and the backend's API out, however low
//! `max_connections_per_ip` is.
//!
//! So while a per-address limit is on, a peer address (IPv6 per /64, as [`AddrKey`]) may hold
//! at most [`share`] such sockets; a socket beyond it is dropped at accept. The address is the
//! TCP peer's: `X-Forwarded-For` has not arrived yet, and a peer in `trusted_proxies` is never
//! counted (every client behind it shares its address). A socket stops counting when it
//! upgrades or goes. Nothing is kept while the limits are off.

use std::collections::HashMap;

use super::address::AddrKey;
use super::admission::AdmissionRules;

/// The smallest share: a browser holds one socket before its upgrade, a NAT of many browsers or
/// a backend polling the API a few, and keep-alive HTTP pollers count too.
pub const MIN_SHARE: u32 = 64;

/// The sockets a peer address may hold that are not (yet) WebSockets under `rules`: 0 when no
/// per-address limit is on (no share), else `max_connections_per_ip`, at least [`MIN_SHARE`].
pub fn share(rules: &AdmissionRules) -> u32 {
    if rules.max_per_address == 0 && rules.connect_rate.is_none() {
        0
    } else {
        rules.max_per_address.max(MIN_SHARE)
    }
}

/// The counts (see the module docs).
#[derive(Debug, Default)]
pub struct PeerSockets {
    /// The share in force; 0: off.
    share: u32,
    by_peer: HashMap<AddrKey, u32>,
    /// By connection, the address it counts under.
    held: HashMap<usize, AddrKey>,
}

impl PeerSockets {
    pub fn new(rules: &AdmissionRules) -> PeerSockets {
        PeerSockets {
            share: share(rules),
            ..PeerSockets::default()
        }
    }

    /// New rules (a reload): the new share applies to new sockets; sockets counted stay counted
    /// until they upgrade or go.
    pub fn set_rules(&mut self, rules: &AdmissionRules) {
        self.share = share(rules);
    }

    /// Whether a new socket from `peer` may be taken (always while the share is off).
    pub fn has_room(&self, peer: AddrKey) -> bool {
        self.share == 0 || self.by_peer.get(&peer).map_or(0, |&n| n) < self.share
    }

    /// Connection `conn` (taken after [`PeerSockets::has_room`]) holds a socket from `peer`.
    pub fn hold(&mut self, conn: usize, peer: AddrKey) {
        if self.share == 0 {
            return;
        }
        *self.by_peer.entry(peer).or_default() += 1;
        if let Some(before) = self.held.insert(conn, peer) {
            // A key still held was given out again: not what the loop does, but count right.
            self.release(before);
        }
    }

    /// `conn` upgraded or went: it no longer counts (a no-op for one that was not counted).
    pub fn done(&mut self, conn: usize) {
        if let Some(peer) = self.held.remove(&conn) {
            self.release(peer);
        }
    }

    fn release(&mut self, peer: AddrKey) {
        if let Some(n) = self.by_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Addresses with sockets counted (for tests and the bounds).
    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Rate;

    fn rules(max_per_address: u32, rate: bool) -> AdmissionRules {
        AdmissionRules {
            max_per_address,
            connect_rate: rate.then(|| Rate::per_second(5, 5)),
            max_per_user: 0,
        }
    }

    #[test]
    fn the_share_follows_the_per_address_limits() {
        assert_eq!(share(&rules(0, false)), 0);
        assert_eq!(
            share(&AdmissionRules {
                max_per_user: 3,
                ..rules(0, false)
            }),
            0
        );
        assert_eq!(share(&rules(2, false)), MIN_SHARE);
        assert_eq!(share(&rules(0, true)), MIN_SHARE);
        assert_eq!(share(&rules(500, false)), 500);
    }

    #[test]
    fn one_address_holds_its_share_and_no_more() {
        let mut s = PeerSockets::new(&rules(1, false));
        let (a, b) = (AddrKey::V4(1), AddrKey::V4(2));
        for conn in 0..MIN_SHARE as usize {
            assert!(s.has_room(a), "{conn}");
            s.hold(conn, a);
        }
        assert!(!s.has_room(a));
        assert!(s.has_room(b), "another address is not affected");
        // One upgrades, one goes: room for two.
        s.done(0);
        s.done(1);
        s.done(1);
        assert!(s.has_room(a));
        s.hold(0, a);
        s.hold(1, a);
        assert!(!s.has_room(a));
        for conn in 0..MIN_SHARE as usize {
            s.done(conn);
        }
        assert!(s.is_empty() && s.held.is_empty());
    }

    #[test]
    fn off_it_keeps_nothing_and_a_reload_keeps_the_counts() {
        let mut s = PeerSockets::new(&rules(0, false));
        let a = AddrKey::V4(1);
        for conn in 0..1000 {
            assert!(s.has_room(a));
            s.hold(conn, a);
        }
        assert!(s.is_empty() && s.held.is_empty());
        s.set_rules(&rules(0, true));
        for conn in 0..MIN_SHARE as usize {
            s.hold(conn, a);
        }
        assert!(!s.has_room(a));
        // Off again: room at once, and what was counted still leaves cleanly.
        s.set_rules(&rules(0, false));
        assert!(s.has_room(a));
        for conn in 0..MIN_SHARE as usize {
            s.done(conn);
        }
        assert!(s.is_empty());
        // A key given out again while held counts once.
        s.set_rules(&rules(0, true));
        s.hold(7, a);
        s.hold(7, AddrKey::V4(2));
        assert_eq!(s.len(), 1);
        s.done(7);
        assert!(s.is_empty());
    }
}
