//! Channel history and recovery (SPEC section 16), sans-IO: no sockets, no clock (time is a
//! parameter), nothing of the router.
//!
//! A channel whose namespace has `history_size` and `history_ttl` is a *stream*: every
//! publication gets the next `offset` (1, 2, 3, ... without gaps), and the stream has an
//! `epoch`, a string that stays as long as the stream is intact and changes whenever it is lost.
//! A client that saw offset N of epoch E asks for what came after it (`since`), and either gets
//! exactly the publications N+1..LAST (`recovered: true`) or learns that it cannot
//! (`recovered: false`) and reloads its state from the backend.
//!
//! - [`store`]: one daemon's streams in memory (single-node mode), bounded by
//!   `[history] max_memory`: the least recently published channels lose their whole stream
//!   first. A publication is stored once, as the very frame its subscribers get (the same
//!   `Rc` bytes in the store and in their send queues).
//! - In a cluster the streams live in Redis (`src/cluster/history.rs`); this module gives both
//!   the vocabulary: [`Position`], [`Since`], [`Retention`], and the limits.
//!
//! What is decided here where SPEC is silent is in docs/history.md.

pub mod store;

use std::rc::Rc;
use std::time::Duration;

pub use self::store::{Recovery, Store};

/// One complete encoded WebSocket frame, shared by the store and its recipients.
pub type Frame = Rc<[u8]>;

/// The most publications one `history` request returns, and its default (SPEC section 16).
pub const MAX_LIMIT: usize = 100;

/// How long a channel's offset and epoch outlive its last publication (SPEC: at least 24 h).
pub const META_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest epoch accepted from a client or from Redis; ours are much shorter.
pub const MAX_EPOCH_LEN: usize = 64;

/// Where a stream is: the newest publication's offset (0 when none) and its epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: Rc<str>,
}

/// What a client saw last: `{"offset":N,"epoch":E}` of a subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// `u64::MAX` stands for any offset beyond what a `u64` holds (never a real one).
    pub offset: u64,
    pub epoch: String,
}

/// How much of a channel's stream is kept (its namespace's `history_size` and `history_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Publications kept, at most.
    pub size: usize,
    /// How long each publication is kept.
    pub ttl: Duration,
}

/// Which publications a `history` request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The newest `limit`.
    Newest(usize),
    /// The first `limit` after offset `since`.
    After { since: u64, limit: usize },
}

impl Query {
    /// The most publications it returns.
    pub fn limit(self) -> usize {
        match self {
            Query::Newest(limit) | Query::After { limit, .. } => limit,
        }
    }
}

/// What a node asks Redis for (`src/cluster/history.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// Where the stream is (a subscribe without `since`).
    Position,
    /// Everything after `since`, if all of it is held (a subscribe with `since`).
    Recover(Since),
    /// A `history` request.
    Query(Query),
}

/// One publication as Redis holds it: its offset and the JSON of its Rakit frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub offset: u64,
    pub json: Vec<u8>,
}

/// Redis's answer to a [`Read`], checked (`src/cluster/history.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub position: Position,
    /// The publications asked for, oldest first. For [`Read::Recover`]: every one after
    /// `since`, or `None` when not all are held (or they are over the size allowed).
    pub publications: Option<Vec<Stored>>,
}

/// Whether `epoch` is one this daemon could have made, or Redis could hold for us: 1 to
/// [`MAX_EPOCH_LEN`] bytes of `[A-Za-z0-9-]`, so it goes into JSON without escaping.
pub fn is_valid_epoch(epoch: &[u8]) -> bool {
    (1..=MAX_EPOCH_LEN).contains(&epoch.len())
        && epoch
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// `value` as an epoch: 11 characters of `[0-9A-Za-z]` (64 bits in base 62).
pub fn epoch_of(mut value: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 11];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_eleven_base62_digits() {
        assert_eq!(epoch_of(0), "00000000000");
        assert_eq!(epoch_of(61), "0000000000z");
        assert_eq!(epoch_of(u64::MAX), "LygHa16AHYF");
        assert_ne!(epoch_of(1), epoch_of(2));
        assert!(is_valid_epoch(epoch_of(u64::MAX).as_bytes()));
        assert!(is_valid_epoch(b"abc-1"));
        for bad in [&b""[..], b"a\"b", b"a b", b"\xc3\xa9", &[b'a'; 65]] {
            assert!(!is_valid_epoch(bad), "{bad:?}");
        }
    }
}
