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
use rustls::ServerConnection;

use crate::buffer::SendQueue;
use crate::transport::Transport;

/// Where a connection is in its life, as the loop sees it. Every
/// transition goes through the loop's lifecycle code, which arms the
/// state's timer on entry and releases the slot, the descriptor and the
/// router entry in one place when the connection is gone.
///
/// ```text
///  HttpBody <--HTTP request / keep-alive answer--+
///      |                                         |
///  Handshaking --101--> Open --close frame sent or received, protocol error,
///      |                  |    end of file, shutdown--> Closing --all written,
///      | refusal, /health |                               |     peer's close seen-->
///      +------------------+------------------------------>+        Draining --EOF--> gone
///                                                          (the close timer, armed once on
///                                                           entering Closing, ends both: 2 s)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Reading the upgrade request, or the next request on a persistent
    /// HTTP connection (the handshake timer runs).
    Handshaking,
    /// An HTTP request's head is in and its body is being read (the same
    /// handshake timer runs).
    HttpBody,
    /// An open WebSocket: known to the router, counted against
    /// `max_connections`, pinged when silent.
    Open,
    /// Finishing: output (a close frame, a refusal, the last replies) is
    /// written; input is read only while the peer's close frame is still
    /// due, and dropped otherwise. The close timer runs.
    /// Once the peer has sent FIN ([`Conn::eof`]) nothing more is read, and
    /// the socket is closed as soon as the output is written.
    Closing,
    /// Everything is written and our side is shut down; input is read and
    /// dropped until the peer closes, so that unread bytes do not turn our
    /// close into a reset that could destroy the last frame before the peer
    /// reads it. The close timer armed on entering Closing still runs.
    Draining,
}

impl Life {
    /// Is it an open WebSocket (known to the router)?
    pub fn is_open(self) -> bool {
        self == Life::Open
    }
}

/// One client.
#[derive(Debug)]
pub struct Conn {
    /// The socket, registered under the connection's slab key. Read and
    /// write it through [`Conn::transport`].
    pub socket: TcpStream,
    /// The TLS session when the port speaks TLS: boxed, so a plain
    /// connection pays one null pointer.
    pub tls: Option<Box<ServerConnection>>,
    /// RFC 6455 state (handshake, frames, fragments, close).
    pub proto: Connection,
    /// Bytes received but not yet consumed (a partial frame or request, or
    /// whole frames left when the turn's delivery budget ran out).
    pub inbuf: InBuf,
    /// Bytes waiting for the socket.
    pub outq: SendQueue,
    /// Tells this connection from an earlier one in the same slab slot.
    pub serial: u32,
    /// Open: when bytes last arrived (for the idle ping). Before the
    /// upgrade, and between the requests of a persistent HTTP connection:
    /// when the current request could begin (accepted, or the last answer
    /// queued), which the handshake timer counts from; reads do not move it,
    /// so a request trickled byte by byte still times out.
    pub last_rx: Stamp,
    /// Where it is in its life.
    pub life: Life,
    /// The server pinged it for silence and it has not answered yet (the
    /// ping went out `ping_timeout` before its pong timer's deadline).
    pub ping_pending: bool,
    /// `inbuf` may hold whole frames not yet processed (the turn's delivery
    /// budget ran out): the socket is not read until they are, so a
    /// publisher faster than its recipients meets TCP back-pressure.
    pub backlog: bool,
    /// The peer sent FIN: nothing more is read from the socket; what was
    /// read is still processed and every reply due is still written.
    pub eof: bool,
    /// `WRITABLE` interest is registered (only while output waits).
    pub writable: bool,
    /// Queued in the loop's list of connections to flush this turn.
    pub dirty: bool,
    /// Its send queue overflowed: it is being dropped.
    pub overflowed: bool,
    /// It sent a request for the HTTP side and counts against
    /// `max_http_connections` until it is gone (or upgrades).
    pub http: bool,
}

impl Conn {
    /// A connection accepted at `now`, its handshake still to come.
    pub fn new(socket: TcpStream, limits: Limits, serial: u32, now: Stamp) -> Conn {
        Conn {
            socket,
            tls: None,
            proto: Connection::new(limits),
            inbuf: InBuf::default(),
            outq: SendQueue::default(),
            serial,
            last_rx: now,
            life: Life::Handshaking,
            ping_pending: false,
            backlog: false,
            eof: false,
            writable: false,
            dirty: false,
            overflowed: false,
            http: false,
        }
    }
}

impl Conn {
    /// The byte stream: the socket, or TLS over it.
    pub fn transport(&mut self) -> Transport<'_> {
        Transport::of(&mut self.socket, &mut self.tls)
    }
}

/// Spare capacity an input buffer may keep beyond twice its contents.
const SLACK: usize = 1024;

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

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// Puts back what is left unconsumed (nothing is kept for an empty
    /// rest). A buffer whose capacity is far beyond its contents is
    /// replaced by an exact copy: a connection holding a few bytes of a
    /// partial frame must not pin the memory of the read that brought them.
    pub fn put(&mut self, rest: Vec<u8>) {
        if rest.is_empty() {
            self.0 = None;
        } else if rest.capacity() > 2 * rest.len() + SLACK {
            self.0 = Some(Box::new(rest.as_slice().to_vec()));
        } else {
            self.0 = Some(Box::new(rest));
        }
    }

    /// Keeps a copy of `bytes` as the unconsumed input.
    pub fn put_copy(&mut self, bytes: &[u8]) {
        self.0 = (!bytes.is_empty()).then(|| Box::new(bytes.to_vec()));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten thousand idle connections each hold one: TLS and compression
    /// must not make a plain one bigger. (mio's socket is 4 bytes in a
    /// release build and 16 with debug assertions.) The budget of an idle
    /// connection (docs/ARCHITECTURE.md, "Memory per idle connection") is
    /// spent here, in the router's client record and in two timer entries;
    /// a change that adds bytes to any of them must say so here.
    #[test]
    fn an_idle_connection_stays_small() {
        use std::mem::size_of;
        let socket = size_of::<TcpStream>();
        let size = size_of::<Conn>();
        // 96 bytes in a release build (128 before the protocol state kept its
        // limits in 32 bits and its fragment buffer behind one pointer).
        assert!(
            size <= (92 + socket).next_multiple_of(8),
            "{size} bytes (socket {socket})"
        );
        // What an idle connection has none of costs a pointer or two.
        assert!(size_of::<InBuf>() <= 8);
        assert!(size_of::<SendQueue>() <= 16, "an empty queue, or one frame");
        assert!(size_of::<rakit_protocol::Connection>() <= 40);
        assert!(size_of::<rakit_protocol::message::Assembler>() <= 8);
        assert!(size_of::<Stamp>() <= 8);
    }

    /// Every record an idle connection holds, together: its `Conn` in the slab, the router's
    /// client record (a slot in a vector indexed by connection) and its entry in the id index
    /// (a `u32` and a control byte in a table kept at most 7/8 full: 6 bytes), and its timer
    /// entries (the idle one, and the handshake one until its deadline passes). At 10,000
    /// connections these are 190 of the ~205-235 bytes of RSS that `benches/load/guard.sh`
    /// measures per connection (the rest is allocator rounding and the tables' spare room);
    /// the goal is 256 bytes at the default config. A change that adds a per-connection
    /// record, or bytes to one, must raise this budget and say why.
    #[test]
    fn an_idle_connections_records_fit_the_budget() {
        use std::mem::size_of;
        let conn = size_of::<Conn>();
        let client = size_of::<Option<crate::router::Client>>();
        let index = 6;
        let timers = 2 * size_of::<crate::timers::Compact>();
        let total = conn + client + index + timers;
        eprintln!("per idle connection: Conn {conn} + client {client} + id index {index} + timers {timers} = {total} bytes");
        // 96 + 56 + 6 + 32 in a release build (the `Conn` is 16 bytes larger with debug
        // assertions, see above).
        let conn_budget = (92 + size_of::<TcpStream>()).next_multiple_of(8);
        assert!(total <= conn_budget + 94, "{total} bytes");
    }
}
