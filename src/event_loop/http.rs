//! The HTTP side of the port in the loop (SPEC sections 8, 9 and 14): a
//! request that attempts no upgrade and names one of the HTTP paths is
//! answered by [`crate::http`] (sans-IO), over a persistent connection.
//!
//! A request's head is parsed by the protocol crate like any upgrade
//! request (so `max_handshake_size` and its 431 hold). Then the connection
//! is in [`Life::HttpBody`] until its `Content-Length` bytes are there
//! (at most `max_buffer_size`), under the same `handshake_timeout`. The
//! answer is queued; with keep-alive the connection goes back to
//! [`Life::Handshaking`] with a fresh request decoder, and its next request
//! must be in within `handshake_timeout` of that answer (the idle timeout:
//! `Conn::last_rx` marks the answer, and the connection's one timer entry
//! is re-armed from it when it comes up). Pipelined requests are answered
//! in order, at most a read's worth of work per call of processing (each
//! answer counts its bytes and 4 KiB), and while a connection's unsent
//! answers exceed 64 KiB (or `max_send_buffer` if less) no further request
//! of it is read: a client that does not read its answers meets TCP
//! back-pressure.
//!
//! A connection counts against `max_http_connections` from its first
//! request for the HTTP side until it is gone (or upgrades); a first
//! request beyond that cap is answered 503 and the connection closed. So
//! keep-alive pollers have their own room and never take that of WebSocket
//! handshakes, which `max_connections` bounds.

use rakit_protocol::{Connection, HandshakeError, Request};

use super::delivery::mark_dirty;
use super::{EventLoop, HTTP_ANSWER_WORK};
use crate::conn::{Life, Stamp};
use crate::http::{self, body, Handled, Head, HttpCtx, KeepAlive};
use crate::metrics::{Gauges, Metrics};

/// A request head the protocol refused (431: over `max_handshake_size`;
/// 400: malformed) that is an API request is answered in the API's JSON
/// (SPEC section 8) instead of the handshake's text, and counted as an API
/// request. `input` starts at the refused request; `out` holds the
/// handshake's refusal and is rewritten. False, nothing changed, for any
/// other request.
pub(super) fn refuse_api_head(
    input: &[u8],
    error: &HandshakeError,
    metrics: &mut Metrics,
    out: &mut Vec<u8>,
) -> bool {
    if !http::is_api_head(input) {
        return false;
    }
    out.clear();
    http::refuse_head(error.http_status(), error.reason(), metrics, out);
    true
}

/// An HTTP request in progress.
#[derive(Debug)]
pub(super) enum Pending {
    /// Its head is in and its body is awaited.
    Body { head: Head, len: usize },
    /// Its answer waits for Redis (a history request in a cluster, `src/http/history.rs`):
    /// nothing more of the connection is read until it is written.
    Answer { tag: u64, keep: KeepAlive },
}

/// What [`EventLoop::http_body`] did.
pub(super) enum BodyStep {
    /// Answered; this many input bytes (the body) were consumed.
    Answered(usize),
    /// The body is not all there yet.
    NeedMore,
    /// The answer waits: read nothing more.
    Wait,
}

impl EventLoop {
    /// Takes a parsed request for the HTTP side, if it is one: answers at
    /// once when it is refused, else waits for its body. False: it is a
    /// handshake (or a plain request the handshake answers).
    pub(super) fn http_request(&mut self, key: usize, req: &Request) -> bool {
        let mut head = Head::from_request(req);
        head.authorization.clone_from(&req.authorization);
        head.content_length = req.content_length.map(|n| n.to_string());
        head.transfer_encoding.clone_from(&req.transfer_encoding);
        head.attempts_upgrade = req.attempts_upgrade();
        if !http::wants(&head) {
            return false;
        }
        if !self.admit_http(key) {
            let mut out = std::mem::take(&mut self.scratch);
            out.clear();
            http::refuse_busy(&head, &mut self.metrics, &mut out);
            self.reply(key, &out, KeepAlive::Close);
            self.scratch = out;
            return true;
        }
        match body::plan(&head, self.http.max_body) {
            Ok(len) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.life = Life::HttpBody;
                    self.pending_http.insert(key, Pending::Body { head, len });
                }
            }
            Err(error) => {
                let mut out = std::mem::take(&mut self.scratch);
                out.clear();
                http::refuse(&head, error, &mut self.metrics, &mut out);
                self.reply(key, &out, KeepAlive::Close);
                self.scratch = out;
            }
        }
        true
    }

    /// Counts `key` among the HTTP connections if it is not yet: false
    /// when `max_http_connections` are held already.
    fn admit_http(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.http {
            return true;
        }
        if self.http_open >= self.config.max_http_connections {
            log::debug!(
                "connection {key}: refused, {} HTTP connections held",
                self.http_open
            );
            return false;
        }
        conn.http = true;
        self.http_open += 1;
        true
    }

    /// Answers the pending request of `key` once `input` holds its body.
    pub(super) fn http_body(&mut self, key: usize, input: &[u8]) -> BodyStep {
        match self.pending_http.get(&key) {
            None => return BodyStep::Answered(0),
            Some(Pending::Answer { .. }) => return BodyStep::Wait,
            Some(Pending::Body { len, .. }) if input.len() < *len => return BodyStep::NeedMore,
            Some(Pending::Body { .. }) => {}
        }
        let Some(Pending::Body { head, len }) = self.pending_http.remove(&key) else {
            return BodyStep::Answered(0);
        };
        let cluster_up = self.cluster_metrics();
        self.count_deliveries();
        let gauges = Gauges {
            connections: self.open as u64,
            channels: 0,
            cluster_up,
            webhooks: self
                .webhooks
                .as_ref()
                .map(|w| w.counters().snapshot())
                .unwrap_or_default(),
            log_lines_dropped: Some(crate::logging::dropped()),
            compressions: self.compression.runs(),
            sockets: self.conns.len() as u64,
            rate_limited: Default::default(),
        };
        let mut out = std::mem::take(&mut self.http_out);
        out.clear();
        let now = self.now;
        // Lent to the request and back before any connection can leave (after_router).
        let mut pusher = self.pusher.take();
        let (router, mut outbox, metrics, settings) = self.deliver_http();
        let mut ctx = HttpCtx {
            settings,
            router,
            outbox: &mut outbox,
            metrics,
            gauges,
            now,
        };
        let handled = if crate::pusher::api::wants(&head.path) {
            Handled::Now(http::handle_pusher(
                &head,
                &input[..len],
                &mut ctx,
                pusher.as_mut(),
                &mut out,
            ))
        } else {
            http::handle_deferrable(&head, &input[..len], &mut ctx, &mut out)
        };
        self.pusher = pusher;
        self.after_router();
        match handled {
            Handled::Now(keep) => self.reply(key, &out, keep),
            Handled::Later { tag, keep } => {
                // Answered by `answer_later` (the router's tag is unique: no stale answer
                // can reach a reused slot).
                self.pending_http.insert(key, Pending::Answer { tag, keep });
                self.http_waiting.insert(tag, key);
            }
        }
        self.http_out = out;
        BodyStep::Answered(len)
    }

    /// Writes the HTTP answers the router has for requests that waited for Redis, and reads on
    /// from those connections.
    pub(super) fn answer_later(&mut self) {
        for (tag, answer) in self.router.take_api_answers() {
            let Some(key) = self.http_waiting.remove(&tag) else {
                continue;
            };
            let keep = match self.pending_http.get(&key) {
                Some(Pending::Answer { tag: t, keep }) if *t == tag => *keep,
                _ => continue,
            };
            self.pending_http.remove(&key);
            let mut out = std::mem::take(&mut self.http_out);
            out.clear();
            http::write_later(answer, keep, &mut self.metrics, &mut out);
            self.reply(key, &out, keep);
            self.http_out = out;
            // What it sent meanwhile was left unread.
            self.resume.push(key);
        }
    }

    /// Queues an HTTP answer; then either closes the connection once it is
    /// written, or waits for the next request under a fresh timer.
    fn reply(&mut self, key: usize, response: &[u8], keep: KeepAlive) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.outq.push_bytes(response);
        mark_dirty(conn, key, &mut self.dirty);
        self.work += response.len() + HTTP_ANSWER_WORK;
        match keep {
            KeepAlive::Close => {
                conn.proto.abort();
                conn.life = Life::Handshaking;
            }
            KeepAlive::Keep => {
                conn.proto = Connection::new(self.limits);
                conn.life = Life::Handshaking;
                // The idle timeout counts from here (the timer armed at
                // accept is re-armed from it when it comes up).
                conn.last_rx = Stamp::new(self.epoch, self.now);
            }
        }
        self.settle(key);
    }
}
