//! The graceful stop (SIGINT/SIGTERM or a `ShutdownHandle`): serve what clients sent before
//! it, stop accepting, close every client with 1001, flush for up to 2 s.

use std::time::Instant;

use rakit_protocol::CloseCode;

use super::{EventLoop, CLOSE_TIMEOUT};
use crate::conn::Life;

impl EventLoop {
    pub(super) fn begin_shutdown(&mut self, readbuf: &mut [u8]) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        // What clients sent before the signal is served first (SPEC 18: a restart loses
        // nothing): the connections the kernel completed and queued for us (closing the
        // listener resets them; Linux hands them to another SO_REUSEPORT listener only with
        // net.ipv4.tcp_migrate_req = 1), and what waits unread on the others: an API request
        // is answered (its publication goes to Redis before we leave the cluster), an
        // upgrade gets its welcome and then the close below, a client's message is routed.
        self.accept_all(readbuf);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.on_readable(key, readbuf, true);
        }
        self.shutdown_deadline = Some(self.now + CLOSE_TIMEOUT);
        if let Some(mut listener) = self.listener.take() {
            if let Err(e) = self.poll.registry().deregister(&mut listener) {
                log::debug!("deregistering the listener: {e}");
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            match conn.life {
                Life::Open => self.close_with(key, CloseCode::GOING_AWAY, "server shutting down"),
                Life::Handshaking | Life::HttpBody if conn.outq.is_empty() => self.release(key),
                Life::Handshaking | Life::HttpBody => {
                    // Answers to earlier HTTP requests still go out.
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.proto.abort();
                        conn.life = Life::Handshaking;
                    }
                    self.settle(key);
                }
                Life::Closing | Life::Draining => {}
            }
        }
        self.cluster_leave();
    }

    /// Shutdown began, and every client is gone or the grace time is over.
    pub(super) fn shutdown_complete(&self) -> bool {
        self.shutdown_deadline
            .is_some_and(|deadline| self.conns.is_empty() || Instant::now() >= deadline)
    }
}
