//! The connection's life: entering a state arms its timer, and every way
//! out ends in [`EventLoop::release`], the one place where the slot, the
//! descriptor and the router entry are given back.
//!
//! ```text
//! Handshaking --accept--> Open --(protocol no longer open)--> Closing --(all written,
//!      |   (handshake timer)   (idle/pong timers)              |  peer's close seen)--> Draining
//!      +--(refusal, /health)-------------------------------->--+   (close timer, armed once)  |
//!  release: handshake timeout, EOF, write error, slow client, pong timeout, close timer, EOF <-+
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rakit_protocol::{OpCode, State};

use super::EventLoop;
use crate::conn::{Life, Stamp};

impl EventLoop {
    /// Handshaking -> Open: the 101 is queued; the connection counts
    /// against `max_connections` and is pinged when silent.
    pub(super) fn enter_open(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.life = Life::Open;
        conn.last_rx = Stamp::new(self.epoch, self.now);
        self.peer_sockets.done(key);
        if std::mem::take(&mut conn.http) {
            // A persistent HTTP connection upgraded.
            self.http_open -= 1;
        }
        self.open += 1;
        self.metrics.connections_accepted += 1;
        if self.config.ping_interval > 0 {
            self.idle_timers.arm(self.now, key, conn.serial);
        }
    }

    /// Brings a connection's life up to date with its protocol state, its
    /// output and its input: leaves Open (and the router) once the protocol
    /// is no longer open, shuts our side down once all is written, and lets
    /// go once a peer that sent FIN has everything due to it.
    pub(super) fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let proto = conn.proto.state();
        match conn.life {
            Life::Handshaking | Life::HttpBody if proto == State::Closed => self.enter_closing(key),
            Life::Open if proto != State::Open => {
                self.enter_closing(key);
                self.left(key);
            }
            _ => {}
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // (TLS records still held count as output: the flush finishes them.)
        let tls_pending = conn.tls.as_ref().is_some_and(|tls| tls.wants_write());
        if conn.life != Life::Closing || !conn.outq.is_empty() || tls_pending {
            return;
        }
        if conn.eof {
            // Everything due is written and the peer will send no more (all
            // it sent was processed before its FIN was acted on).
            return self.release(key);
        }
        if proto == State::Closed {
            conn.life = Life::Draining;
            conn.inbuf.clear();
            if conn.transport().shutdown_write().is_err() {
                self.release(key);
            }
        }
    }

    /// Enters Closing (from Handshaking or Open) and arms the close timer:
    /// whatever the peer does from now on, the connection is gone within
    /// [`super::CLOSE_TIMEOUT`].
    fn enter_closing(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.life = Life::Closing;
        conn.backlog = false;
        self.close_timers.arm(self.now, key, conn.serial);
    }

    /// The peer sent FIN. Input already read is processed first (the caller
    /// sees to that); what is due to the peer is still written.
    pub(super) fn on_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.eof = true;
        match conn.life {
            Life::Draining => self.release(key),
            // No request is being answered: nothing more is due than what
            // is queued (answers to earlier HTTP requests).
            Life::Handshaking | Life::HttpBody if conn.outq.is_empty() => self.release(key),
            Life::Handshaking | Life::HttpBody => {
                conn.proto.abort();
                conn.life = Life::Handshaking;
                self.settle(key);
            }
            Life::Open => {
                // It left without a close frame (a half-close): it leaves the
                // router now, and gets the replies already queued.
                conn.proto.abort();
                self.settle(key);
            }
            Life::Closing => self.settle(key),
        }
    }

    /// The one exit: the connection is gone.
    pub(super) fn release(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        self.peer_sockets.done(key);
        if conn.life == Life::HttpBody {
            self.pending_http.remove(&key);
        }
        if conn.http {
            self.http_open -= 1;
        }
        if !conn.outq.is_empty() {
            // Do not leave the kernel pushing data at a peer that does not
            // read it: reset.
            if let Err(e) = socket2::SockRef::from(&conn.socket).set_linger(Some(Duration::ZERO)) {
                log::debug!("set_linger failed: {e}");
            }
        }
        if let Err(e) = self.poll.registry().deregister(&mut conn.socket) {
            log::debug!("deregister failed: {e}");
        }
        if conn.life.is_open() {
            self.left(key);
        }
    }

    /// An open WebSocket connection left (closing or gone): it no longer
    /// counts against `max_connections`, and the router forgets it.
    fn left(&mut self, key: usize) {
        self.open -= 1;
        self.admission.closed(key, self.now);
        if !self.echo {
            self.pusher_left(key);
            let now = self.now;
            let (router, mut out) = self.deliver();
            // Disconnect hooks run user code too.
            let _ = catch_unwind(AssertUnwindSafe(|| router.disconnect(key, now, &mut out)));
            self.after_router();
        }
    }

    // ---- timers ----

    pub(super) fn fire_timers(&mut self, readbuf: &mut [u8]) {
        let now = Instant::now();
        self.now = now;
        let epoch = self.epoch;
        let timeout = self.handshake_timers.duration();
        while let Some(t) = self.handshake_timers.pop_due(now) {
            let Some(conn) = self.live(t.key, t.serial) else {
                continue;
            };
            if !matches!(conn.life, Life::Handshaking | Life::HttpBody) {
                continue;
            }
            // A persistent HTTP connection's request may begin at its last
            // answer: one timer entry per connection, re-armed when it comes
            // up, rather than one more per request.
            let since = conn.last_rx.instant(epoch);
            if now.saturating_duration_since(since) >= timeout {
                log::debug!("connection {}: handshake timed out", t.key);
                self.release(t.key);
            } else {
                self.handshake_timers.arm(since, t.key, t.serial);
            }
        }
        while let Some(t) = self.idle_timers.pop_due(now) {
            let interval = self.idle_timers.duration();
            let Some(conn) = self.live(t.key, t.serial) else {
                continue;
            };
            if conn.life != Life::Open {
                continue;
            }
            let last_rx = conn.last_rx.instant(epoch);
            if now.saturating_duration_since(last_rx) >= interval {
                conn.outq.push_frame(OpCode::Ping, b"");
                conn.ping_pending = true;
                self.pong_timers.arm(now, t.key, t.serial);
                self.mark_dirty(t.key);
            } else {
                self.idle_timers.arm(last_rx, t.key, t.serial);
            }
        }
        while let Some(t) = self.pong_timers.pop_due(now) {
            // Pong timers are armed when the ping is sent, with the loop's
            // monotonic `now`, so the deadline minus the timeout is that time.
            let sent = t.deadline.checked_sub(self.pong_timers.duration());
            let Some(conn) = self.live(t.key, t.serial) else {
                continue;
            };
            if conn.life != Life::Open {
                continue;
            }
            match sent {
                Some(sent) if conn.ping_pending && conn.last_rx <= Stamp::new(epoch, sent) => {
                    log::debug!("connection {}: no answer to ping; dropping it", t.key);
                    match super::pusher::missed_pong(self.router.dialect(t.key)) {
                        Some(code) => self.close_with(t.key, code, "Pong reply not received"),
                        None => self.release(t.key),
                    }
                }
                _ => {
                    conn.ping_pending = false;
                    let from = conn.last_rx.instant(epoch);
                    self.idle_timers.arm(from, t.key, t.serial);
                }
            }
        }
        while let Some(t) = self.close_timers.pop_due(now) {
            if let Some(conn) = self.live(t.key, t.serial) {
                if matches!(conn.life, Life::Closing | Life::Draining) {
                    log::debug!("connection {}: closing timed out", t.key);
                    self.release(t.key);
                }
            }
        }
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.accept_all(readbuf);
        }
        if self.router.poll_timeout().is_some_and(|t| t <= now) {
            let (router, mut out) = self.deliver();
            let _ = catch_unwind(AssertUnwindSafe(|| router.handle_timeout(now, &mut out)));
            self.after_router();
        }
    }
}
