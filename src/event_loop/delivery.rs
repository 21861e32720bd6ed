//! Output: the router's [`Outbox`], flushing, and dropping slow clients.

use std::io::Write;
use std::time::Duration;

use mio::{Interest, Token};
use rakit_protocol::CloseCode;
use slab::Slab;

use super::EventLoop;
use crate::buffer::TurnFrames;
use crate::compression::Compression;
use crate::conn::{Conn, Life};
use crate::http::HttpSettings;
use crate::metrics::Metrics;
use crate::router::{ConnId, Frame, Outbox, Router};
use crate::transport::Transport;

/// What one router call may borrow of the loop (see [`EventLoop::parts`]).
pub(super) struct Parts<'a> {
    pub(super) router: &'a mut Router,
    pub(super) out: Deliver<'a>,
    pub(super) metrics: &'a mut Metrics,
    pub(super) http: &'a HttpSettings,
    pub(super) pusher: Option<&'a mut crate::pusher::Pusher>,
}

/// Queues router output on connections (the router's view of the loop).
pub(super) struct Deliver<'a> {
    pub(super) conns: &'a mut Slab<Conn>,
    pub(super) dirty: &'a mut Vec<usize>,
    pub(super) overflowed: &'a mut Vec<usize>,
    pub(super) closed: &'a mut Vec<usize>,
    pub(super) scratch: &'a mut Vec<u8>,
    pub(super) max_send_buffer: usize,
    pub(super) delivered: &'a mut usize,
    /// Close codes sent, for `rakit_closes_total`.
    pub(super) closes: &'a mut Vec<u16>,
    /// Compresses a frame once for all the clients that agreed deflate.
    pub(super) compression: &'a mut Compression,
    /// The frames queued this turn (`buffer.rs`).
    pub(super) turn: &'a mut TurnFrames,
}

pub(super) fn mark_dirty(conn: &mut Conn, key: usize, dirty: &mut Vec<usize>) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(key);
    }
}

impl Outbox for Deliver<'_> {
    fn send(&mut self, key: ConnId, frame: &Frame) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.proto.is_open() || conn.overflowed {
            return;
        }
        match conn.proto.deflate() {
            None => conn.outq.push_turn(frame, self.turn),
            Some(params) => conn
                .outq
                .push_turn(&self.compression.shared(frame, params), self.turn),
        }
        *self.delivered += 1;
        mark_dirty(conn, key, self.dirty);
        if conn.outq.len() > self.max_send_buffer {
            conn.overflowed = true;
            self.overflowed.push(key);
        }
    }

    fn close(&mut self, key: ConnId, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.scratch.clear();
        if conn.proto.close(code, reason, self.scratch) {
            self.closes.push(code);
            conn.outq.push_bytes(self.scratch);
            mark_dirty(conn, key, self.dirty);
            // Its life catches up once the router has returned.
            self.closed.push(key);
        }
    }
}

impl EventLoop {
    /// The router and an outbox over the connections, for one router call;
    /// [`EventLoop::after_router`] must follow it.
    pub(super) fn deliver(&mut self) -> (&mut Router, Deliver<'_>) {
        let parts = self.parts();
        (parts.router, parts.out)
    }

    /// [`EventLoop::deliver`], with what an HTTP request also needs.
    pub(super) fn deliver_http(
        &mut self,
    ) -> (&mut Router, Deliver<'_>, &mut Metrics, &HttpSettings) {
        let parts = self.parts();
        (parts.router, parts.out, parts.metrics, parts.http)
    }

    /// The loop's fields a router call borrows at once, split in one place.
    pub(super) fn parts(&mut self) -> Parts<'_> {
        Parts {
            router: &mut self.router,
            out: Deliver {
                conns: &mut self.conns,
                dirty: &mut self.dirty,
                overflowed: &mut self.overflowed,
                closed: &mut self.closed,
                scratch: &mut self.scratch,
                max_send_buffer: self.config.max_send_buffer,
                delivered: &mut self.delivered,
                closes: &mut self.closes,
                compression: &mut self.compression,
                turn: &mut self.turn,
            },
            metrics: &mut self.metrics,
            http: &self.http,
            pusher: self.pusher.as_mut(),
        }
    }

    /// What a router call left to do: drop the clients whose queue
    /// overflowed, and move the ones it closed to Closing. Either can call
    /// the router again (a client leaving), which can leave more to do.
    pub(super) fn after_router(&mut self) {
        for code in self.closes.drain(..) {
            self.metrics.closes.incr(code);
        }
        loop {
            if let Some(key) = self.overflowed.pop() {
                self.drop_slow(key);
            } else if let Some(key) = self.closed.pop() {
                self.settle(key);
            } else {
                return;
            }
        }
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            mark_dirty(conn, key, &mut self.dirty);
        }
    }

    /// Drops a client whose send queue passed `max_send_buffer`: a 4008
    /// close frame if the socket takes it at once, queued data discarded,
    /// and a reset (SO_LINGER 0) so the kernel does not keep pushing it.
    fn drop_slow(&mut self, key: usize) {
        let code = self.close_code(key, CloseCode::SEND_BUFFER_EXCEEDED);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        log::info!(
            "connection {key}: {} bytes queued (max_send_buffer {}); dropping it",
            conn.outq.len(),
            self.config.max_send_buffer
        );
        // Finish a frame cut short, or the close frame would be garbage;
        // every frame not yet started is queued data, and is discarded.
        let mut last = conn.outq.rest_of_frame().to_vec();
        rakit_protocol::encode_close(&mut last, code, "send buffer exceeded");
        let _ = conn.transport().write(&last);
        self.metrics.closes.incr(code);
        self.metrics.slow_client_drops += 1;
        conn.outq.clear();
        conn.proto.abort();
        if let Err(e) = socket2::SockRef::from(&conn.socket).set_linger(Some(Duration::ZERO)) {
            log::debug!("set_linger failed: {e}");
        }
        self.release(key);
    }

    /// Holds a queue filled outside the router (echoes, pongs, handshake
    /// answers) to `max_send_buffer` too: a peer that sends without reading
    /// must not grow its queue without bound. True if it was dropped.
    pub(super) fn check_overflow(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return true;
        };
        // An HTTP connection's answers are held back instead (see http.rs).
        if conn.outq.len() > self.config.max_send_buffer && !conn.overflowed && conn.life.is_open()
        {
            conn.overflowed = true;
            self.drop_slow(key);
            return true;
        }
        false
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.flush(key);
        }
        // Output queued while flushing (a client that left, told to others)
        // waits for the next turn: settled now, as the turn's log is cleared.
        for &key in &self.dirty {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.outq.settle(&self.turn);
            }
        }
        self.turn.clear();
        // Keep the list's memory for the next turn.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        let queued = conn.outq.len();
        let mut transport = Transport::of(&mut conn.socket, &mut conn.tls);
        // Done when the queue is written and TLS holds no records either.
        let flushed = conn
            .outq
            .flush(&mut transport, &self.turn)
            .and_then(|done| if done { transport.finish() } else { Ok(false) });
        // What the socket did not take must not refer to the turn's log.
        conn.outq.settle(&self.turn);
        self.metrics.bytes_sent += (queued - conn.outq.len()) as u64;
        let done = match flushed {
            Ok(done) => done,
            Err(e) => {
                log::debug!("connection {key}: write failed: {e}");
                conn.outq.clear();
                conn.proto.abort();
                return self.release(key);
            }
        };
        // WRITABLE interest only while output waits.
        if done == conn.writable {
            let interest = if done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut conn.socket, Token(key), interest)
            {
                log::debug!("reregister failed: {e}");
                return self.release(key);
            }
            conn.writable = !done;
        }
        if done && conn.backlog && conn.life != Life::Open {
            // An HTTP connection held back while its answers were unsent.
            self.resume.push(key);
        }
        self.settle(key);
    }
}
