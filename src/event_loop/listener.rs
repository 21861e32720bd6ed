//! Accepting sockets.

use std::io;
use std::net::IpAddr;

use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Token};
use rustls::ServerConfig;

use super::{EventLoop, ACCEPT_BACKOFF};
use crate::conn::{Conn, Life, Stamp};
use crate::limits::{AddrKey, Kind};

impl EventLoop {
    /// Accepts until `WouldBlock`. Each new socket's upgrade request is
    /// read at once: a client writes it as soon as it is connected, so it is
    /// usually here already, rather than a poll turn later.
    pub(super) fn accept_all(&mut self, readbuf: &mut [u8]) {
        if self.shutdown_deadline.is_some() || self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((socket, addr)) => {
                    self.accept_exhausted = false;
                    if let Some(key) = self.admit(socket, addr.ip()) {
                        self.on_readable(key, readbuf, false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    // Out of descriptors (or kernel memory): keep serving the
                    // clients we have and try again shortly, rather than spin
                    // on a listener that stays readable. Warn once per
                    // episode, not ten times a second.
                    let level = if self.accept_exhausted {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                    log::log!(
                        level,
                        "accept failed ({e}) with {} connections; pausing accepts for {:?}",
                        self.conns.len(),
                        ACCEPT_BACKOFF
                    );
                    self.accept_exhausted = true;
                    self.accept_paused_until = Some(self.now + ACCEPT_BACKOFF);
                    return;
                }
                // The peer gave up before we accepted (ECONNABORTED, ...).
                Err(e) => log::debug!("accept failed: {e}"),
            }
        }
    }

    /// Takes a new socket from `peer` into the slab (its life begins: Handshaking, with
    /// the handshake timer armed); its key, unless it was refused.
    fn admit(&mut self, mut socket: TcpStream, peer: IpAddr) -> Option<usize> {
        if self.conns.len() >= self.max_sockets {
            // Far past the limit even for handshakes in flight: no room to
            // answer 503, so drop the socket at once.
            log::debug!("refusing a socket: {} held", self.conns.len());
            return None;
        }
        // Its address's share of the sockets that are not WebSockets yet (SPEC section 17: one
        // address must not hold every socket); a trusted proxy speaks for many clients.
        let counted = (!self.proxies.contains(peer)).then(|| AddrKey::of(peer));
        if counted.is_some_and(|peer| !self.peer_sockets.has_room(peer)) {
            log::debug!("refusing a socket from {peer}: its address holds its share");
            self.metrics.rate_limited.incr(Kind::Ip);
            return None;
        }
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("set_nodelay failed: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut socket, Token(key), Interest::READABLE)
        {
            log::warn!("cannot register a socket: {e}");
            return None;
        }
        self.serial = self.serial.wrapping_add(1);
        let now = Stamp::new(self.epoch, self.now);
        let mut conn = Conn::new(socket, self.limits, self.serial, now);
        if let Some(config) = &self.tls {
            // Without its TLS session the socket must not be served.
            conn.tls = Some(crate::transport::session(config)?);
        }
        entry.insert(conn);
        if let Some(peer) = counted {
            self.peer_sockets.hold(key, peer);
        }
        self.handshake_timers.arm(self.now, key, self.serial);
        self.drop_stale_handshake_timers();
        Some(key)
    }
}

impl EventLoop {
    /// A connection that upgraded leaves its handshake timer behind until the
    /// deadline comes up: after a burst of ten thousand handshakes, one entry
    /// per open connection for `handshake_timeout`, and the queue's room for
    /// good. Once such entries are the larger part of the queue they are
    /// dropped (and the room given back): O(1) per accept, amortized, as each
    /// pass at least halves the queue and the next waits for as many arms.
    fn drop_stale_handshake_timers(&mut self) {
        let waiting = self.conns.len().saturating_sub(self.open);
        if self.handshake_timers.len() <= 2 * waiting + 1024 {
            return;
        }
        let conns = &self.conns;
        self.handshake_timers.retain(|key, serial| {
            conns.get(key).is_some_and(|c| {
                c.serial == serial && matches!(c.life, Life::Handshaking | Life::HttpBody)
            })
        });
    }

    /// Serves TLS with `config` (from [`crate::transport::load`]).
    pub(crate) fn set_tls(&mut self, config: Option<Arc<ServerConfig>>) {
        self.tls = config;
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}
