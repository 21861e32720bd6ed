//! One client connection as the event loop holds it: the socket, the
//! protocol state, the unconsumed input and the queued output.
//!
//! Memory matters here: ten thousand idle clients each hold one of these and
//! nothing else. An idle connection has no input buffer (the loop reads into
//! one shared buffer and keeps only an unconsumed tail), no output buffer
//! (the queue frees its chunks once flushed) and no message buffer; and
//! those it does not have cost one pointer each in the slab entry.

use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rakit_protocol::{Connection, Limits};

use crate::buffer::SendQueue;

/// What the loop does with the socket, beside the protocol's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and writing per the protocol state.
    Active,
    /// Everything is written and our side is shut down; input is read and
    /// dropped until the peer closes (or a timer gives up), so that unread
    /// bytes do not turn our close into a reset that could destroy the last
    /// response before the peer reads it.
    Draining,
}

/// One client.
#[derive(Debug)]
pub struct Conn {
    /// The socket, registered under the connection's slab key.
    pub socket: TcpStream,
    /// RFC 6455 state (handshake, frames, fragments, close).
    pub proto: Connection,
    /// Bytes received but not yet consumed (a partial frame or request).
    pub inbuf: InBuf,
    /// Bytes waiting for the socket.
    pub outq: SendQueue,
    /// Tells this connection from an earlier one in the same slab slot.
    pub serial: u32,
    /// When bytes last arrived.
    pub last_rx: Stamp,
    /// The server pinged it for silence and it has not answered yet (the
    /// ping went out `ping_timeout` before its pong timer's deadline).
    pub ping_pending: bool,
    /// Socket handling beside the protocol state.
    pub phase: Phase,
    /// Counted as an open WebSocket connection (and known to the router).
    pub routed: bool,
    /// `WRITABLE` interest is registered (only while output waits).
    pub writable: bool,
    /// Queued in the loop's list of connections to flush this turn.
    pub dirty: bool,
    /// Its send queue overflowed: it is being dropped.
    pub overflowed: bool,
}

impl Conn {
    /// A connection accepted at `now`, its handshake still to come.
    pub fn new(socket: TcpStream, limits: Limits, serial: u32, now: Stamp) -> Conn {
        Conn {
            socket,
            proto: Connection::new(limits),
            inbuf: InBuf::default(),
            outq: SendQueue::default(),
            serial,
            last_rx: now,
            ping_pending: false,
            phase: Phase::Active,
            routed: false,
            writable: false,
            dirty: false,
            overflowed: false,
        }
    }
}

/// A connection's unconsumed input: usually none, so one pointer in the
/// slab entry rather than a `Vec`'s three words.
#[derive(Debug, Default)]
// The box is the point: 8 bytes per idle connection instead of 24.
#[allow(clippy::box_collection)]
pub struct InBuf(Option<Box<Vec<u8>>>);

impl InBuf {
    /// Nothing waiting?
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().map_or(true, |v| v.is_empty())
    }

    /// Takes the bytes out (to append a read and parse them).
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    /// Puts back what is left unconsumed (nothing is kept for an empty rest).
    pub fn put(&mut self, rest: Vec<u8>) {
        self.0 = (!rest.is_empty()).then(|| Box::new(rest));
    }

    /// Appends bytes.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0
                .get_or_insert_with(Box::default)
                .extend_from_slice(bytes);
        }
    }

    /// Drops everything (and its memory).
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// A point in time as nanoseconds after the event loop's epoch: 8 bytes in
/// every connection where an `Instant` takes 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(u64);

impl Stamp {
    /// `at`, counted from `epoch` (an `at` before `epoch` counts as `epoch`).
    pub fn new(epoch: Instant, at: Instant) -> Stamp {
        // u64 nanoseconds last 584 years.
        Stamp(at.saturating_duration_since(epoch).as_nanos() as u64)
    }

    /// Back to an `Instant`, given the same `epoch`.
    pub fn instant(self, epoch: Instant) -> Instant {
        epoch + Duration::from_nanos(self.0)
    }
}
