//! Abuse limits (SPEC section 17): one guest must not flood everyone, nor one address hold
//! every socket. Sans-IO, like the router: time is passed in.
//!
//! - `flood.rs`: the per-connection message and broadcast buckets' rules, the rate-limited
//!   error (at most once a second) and the close after sustained flooding. The router applies
//!   them where client text enters it (both dialects), the buckets in its record of each
//!   client.
//! - `admission.rs`: open connections per client address and per user, new handshakes per
//!   address per second; asked by the event loop at each upgrade.
//! - `address.rs`: the client address behind `trusted_proxies` (`X-Forwarded-For`), and the
//!   key an address is counted under (IPv6 per /64).
//! - `sockets.rs`: while a per-address limit is on, the sockets one peer address may hold before
//!   they are WebSockets (handshakes in flight, HTTP connections).
//!
//! Every limit is a [`Budget`](crate::budget::Budget), the daemon's one token bucket. The HTTP
//! API and commands are never limited here: their callers are the backend and its admins.

pub mod address;
pub mod admission;
pub mod flood;
pub mod sockets;

pub use self::address::{AddrKey, Cidr, TrustedProxies};
pub use self::admission::{Admission, AdmissionRules, Refusal};
pub use self::flood::{FloodRules, Offenders, Verdict};
pub use self::sockets::PeerSockets;

/// The close code of a connection dropped for flooding (SPEC section 17); Pusher clients get
/// 4301 instead.
pub const CLOSE_CODE: u16 = 4029;
/// Its reason.
pub const CLOSE_REASON: &str = "rate limit exceeded";

/// What was refused, for `rakit_rate_limited_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message over its sender's message bucket.
    Message,
    /// A client broadcast over its sender's broadcast bucket.
    Broadcast,
    /// A handshake over a per-address limit.
    Ip,
    /// A handshake over the per-user limit.
    User,
}

impl Kind {
    /// Every kind, in the order the metrics list them.
    pub const ALL: [Kind; 4] = [Kind::Message, Kind::Broadcast, Kind::Ip, Kind::User];

    /// The metric's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Broadcast => "broadcast",
            Kind::Ip => "ip",
            Kind::User => "user",
        }
    }
}

/// Refusals counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts([u64; 4]);

impl Counts {
    /// One more of `kind`.
    pub fn incr(&mut self, kind: Kind) {
        let n = &mut self.0[kind as usize];
        *n = n.wrapping_add(1);
    }

    /// How many of `kind`.
    pub fn get(&self, kind: Kind) -> u64 {
        self.0[kind as usize]
    }

    /// Both counts added (the router's and the loop's).
    pub fn plus(self, other: Counts) -> Counts {
        let mut sum = self;
        for (a, b) in sum.0.iter_mut().zip(other.0) {
            *a = a.wrapping_add(b);
        }
        sum
    }
}
