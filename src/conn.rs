//! One client connection as the event loop holds it: the socket, the
//! protocol state, the unconsumed input and the queued output.
//!
//! Memory matters here: ten thousand idle clients each hold one of these and
//! nothing else. An idle connection has no input buffer (the loop reads into
//! one shared buffer and keeps only an unconsumed tail), no output buffer
//! (the queue frees its chunks once flushed) and no message buffer.

use std::time::Instant;

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
    pub inbuf: Vec<u8>,
    /// Bytes waiting for the socket.
    pub outq: SendQueue,
    /// Tells this connection from an earlier one in the same slab slot.
    pub serial: u32,
    /// When bytes last arrived.
    pub last_rx: Instant,
    /// When the server pinged it for silence, if it has not answered yet.
    pub ping_sent: Option<Instant>,
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
    pub fn new(socket: TcpStream, limits: Limits, serial: u32, now: Instant) -> Conn {
        Conn {
            socket,
            proto: Connection::new(limits),
            inbuf: Vec::new(),
            outq: SendQueue::default(),
            serial,
            last_rx: now,
            ping_sent: None,
            phase: Phase::Active,
            routed: false,
            writable: false,
            dirty: false,
            overflowed: false,
        }
    }
}
