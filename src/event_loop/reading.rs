//! Input: reading sockets, feeding the protocol, and acting on what it
//! reports (handshake decisions, routing, echo).
//!
//! Two rules bound what a connection holds. Its unconsumed input is at most
//! one partial frame or request (a few bytes of it do not pin the memory of
//! the read that brought them), plus, when the turn's delivery budget ran
//! out, the rest of one read. And a connection with whole frames still
//! unprocessed is not read again until they are: a publisher faster than
//! its recipients fills its socket and meets TCP back-pressure.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use std::net::{IpAddr, Ipv4Addr};

use rakit_protocol::{Event, HandshakeError, OpCode, State};

use super::delivery::mark_dirty;
use super::http::BodyStep;
use super::{EventLoop, MAX_READS_PER_TURN, READ_BUF, SMALL_TAIL, WORK_PER_CALL};
use crate::accept::{self, Decision};
use crate::conn::{Conn, Life, Stamp};
use crate::limits::{AddrKey, Kind, Refusal};
use crate::session;
use crate::transport::{Got, Transport};

/// Why processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The input holds no whole item (or nothing at all).
    NeedMore,
    /// The turn's delivery budget ran out: whole frames may remain.
    Budget,
    /// Nothing more will be read (the protocol closed, or the connection
    /// is gone).
    Done,
    /// An HTTP connection's unsent answers exceed `max_send_buffer`: no
    /// further request is read until they are written.
    Full,
}

/// What one read brought.
enum Step {
    /// Bytes, processed; `filled`: the read took all the room it had.
    Read { filled: bool },
    /// Nothing waiting.
    Blocked,
    /// End of file (or a read error).
    Eof,
    /// Processing stopped early; come back next turn.
    Later,
    /// Processing waits for output to be written (the flush resumes it).
    Wait,
    /// The connection closed or is gone.
    Done,
}

/// What a processed frame asks of the loop once the connection is released.
enum Then {
    Nothing,
    Decide(Box<rakit_protocol::Request>),
    RouteText,
    RouteBinary,
}

enum ReadOutcome {
    /// `n` bytes; `more`: more may wait without a new readiness event.
    Data {
        n: usize,
        more: bool,
    },
    Blocked,
    Closed,
}

fn read_some(transport: &mut Transport<'_>, buf: &mut [u8]) -> ReadOutcome {
    loop {
        return match transport.read_some(buf) {
            Ok(Got { n: 0, more: false }) => ReadOutcome::Closed,
            Ok(Got { n, more }) => ReadOutcome::Data { n, more },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => ReadOutcome::Closed,
        };
    }
}

/// Reading TLS can leave records to write (handshake messages, tickets,
/// alerts) that the socket did not take at once: the flush finishes them.
fn tls_output(conn: &mut Conn, key: usize, dirty: &mut Vec<usize>) {
    if conn.tls.as_ref().is_some_and(|tls| tls.wants_write()) {
        mark_dirty(conn, key, dirty);
    }
}

impl EventLoop {
    /// Processes what waits and reads on, until the socket is drained or the
    /// connection used its fair share of reads this turn.
    ///
    /// A read that does not fill its room emptied the socket's receive
    /// queue, and (edge-triggered) any byte arriving after it brings a new
    /// readiness event, so the loop stops there instead of paying a second
    /// `recv` just to see `EAGAIN` (a third of an echo's syscalls). Unless
    /// `to_the_end`: a FIN or error already reported gets no new edge, so
    /// then it reads until `EAGAIN` or EOF.
    pub(super) fn on_readable(&mut self, key: usize, readbuf: &mut [u8], to_the_end: bool) {
        for _ in 0..MAX_READS_PER_TURN {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.eof {
                return;
            }
            let discarding = conn.life == Life::Draining
                || (conn.life == Life::Closing && conn.proto.state() == State::Closed);
            if discarding {
                return self.discard(key, readbuf);
            }
            let backlog = conn.backlog;
            if self.budget_spent() {
                // Deliveries enough this turn: flush first, then go on.
                self.resume.push(key);
                return;
            }
            let step = if backlog {
                self.process_backlog(key)
            } else {
                self.read_once(key, readbuf)
            };
            match step {
                Step::Read { filled } => {
                    if !filled && !to_the_end {
                        return;
                    }
                }
                Step::Blocked | Step::Done | Step::Wait => return,
                Step::Eof => return self.on_eof(key),
                Step::Later => {
                    self.resume.push(key);
                    return;
                }
            }
        }
        // Fair share used: come back after the others.
        self.resume.push(key);
    }

    /// One read, and the processing of what it brought.
    fn read_once(&mut self, key: usize, readbuf: &mut [u8]) -> Step {
        let Some(conn) = self.conns.get_mut(key) else {
            return Step::Done;
        };
        let mut tail = conn.inbuf.take();
        let held = tail.len();
        // Before the upgrade, never hold more than one byte past the
        // largest request allowed (that byte is what gets it refused).
        let room = if conn.life == Life::Handshaking {
            (self.config.max_handshake_size + 1)
                .saturating_sub(held)
                .clamp(1, READ_BUF)
        } else {
            READ_BUF
        };
        // A small tail is copied in front of the read: one buffer to parse.
        let small = held <= SMALL_TAIL;
        let dest = if small {
            readbuf[..held].copy_from_slice(&tail);
            &mut readbuf[held..held + room]
        } else {
            &mut readbuf[..room]
        };
        let read = read_some(&mut conn.transport(), dest);
        tls_output(conn, key, &mut self.dirty);
        let (n, more) = match read {
            ReadOutcome::Data { n, more } => (n, more),
            ReadOutcome::Blocked => {
                conn.inbuf.put(tail);
                return Step::Blocked;
            }
            ReadOutcome::Closed => {
                conn.inbuf.put(tail);
                return Step::Eof;
            }
        };
        if n == 0 {
            // A TLS read whose budget went on records without plaintext.
            conn.inbuf.put(tail);
            return Step::Read { filled: more };
        }
        if conn.life == Life::Open {
            // (Before the upgrade it marks when the request may begin: see
            // `Conn::last_rx`.)
            conn.last_rx = Stamp::new(self.epoch, self.now);
        }
        self.metrics.bytes_received += n as u64;
        if small {
            drop(tail);
            let input = &mut readbuf[..held + n];
            let (consumed, stop) = self.process(key, input);
            self.keep(key, &input[consumed..], stop);
            self.after_processing(more, stop)
        } else {
            tail.extend_from_slice(&readbuf[..n]);
            let (consumed, stop) = self.process(key, &mut tail);
            tail.drain(..consumed);
            self.keep_vec(key, tail, stop);
            self.after_processing(more, stop)
        }
    }

    /// Processes whole frames left from an earlier turn (no reading).
    fn process_backlog(&mut self, key: usize) -> Step {
        let Some(conn) = self.conns.get_mut(key) else {
            return Step::Done;
        };
        conn.backlog = false;
        let mut input = conn.inbuf.take();
        let (consumed, stop) = self.process(key, &mut input);
        input.drain(..consumed);
        self.keep_vec(key, input, stop);
        // Caught up: read on (the socket may hold more).
        self.after_processing(true, stop)
    }

    fn after_processing(&self, filled: bool, stop: Stop) -> Step {
        match stop {
            Stop::NeedMore => Step::Read { filled },
            Stop::Budget => Step::Later,
            Stop::Done => Step::Done,
            Stop::Full => Step::Wait,
        }
    }

    /// Keeps the unconsumed rest of the input, unless the protocol will
    /// read no more of it.
    fn keep(&mut self, key: usize, rest: &[u8], stop: Stop) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.proto.state() == State::Closed {
                conn.inbuf.clear();
            } else {
                conn.inbuf.put_copy(rest);
                conn.backlog = matches!(stop, Stop::Budget | Stop::Full) && !rest.is_empty();
            }
        }
    }

    fn keep_vec(&mut self, key: usize, rest: Vec<u8>, stop: Stop) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.proto.state() == State::Closed {
                conn.inbuf.clear();
            } else {
                conn.backlog = matches!(stop, Stop::Budget | Stop::Full) && !rest.is_empty();
                conn.inbuf.put(rest);
            }
        }
    }

    /// Reads and drops input (a closed protocol reads no more), noticing a
    /// peer that has gone. Bounded per turn like any reading.
    fn discard(&mut self, key: usize, readbuf: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.inbuf.clear();
        for _ in 0..MAX_READS_PER_TURN {
            match read_some(&mut conn.transport(), &mut readbuf[..READ_BUF]) {
                ReadOutcome::Data { .. } => continue,
                ReadOutcome::Blocked => return,
                ReadOutcome::Closed => return self.on_eof(key),
            }
        }
        self.resume.push(key);
    }

    /// Feeds `input` to the connection's protocol state, item by item, and
    /// acts on each event. Returns how many bytes were consumed and why it
    /// stopped.
    fn process(&mut self, key: usize, input: &mut [u8]) -> (usize, Stop) {
        let mut pos = 0;
        self.work = 0;
        let http_queue = self.http_queue();
        loop {
            if self.work >= WORK_PER_CALL && pos < input.len() {
                // Inflating or HTTP answers took a read's worth: the others first.
                return (pos, Stop::Budget);
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return (pos, Stop::Done);
            };
            if conn.life == Life::HttpBody {
                match self.http_body(key, &input[pos..]) {
                    BodyStep::Answered(n) => pos += n,
                    BodyStep::NeedMore => return (pos, Stop::NeedMore),
                    BodyStep::Wait => return (pos, Stop::Full),
                }
                continue;
            }
            if conn.life == Life::Handshaking && conn.outq.len() > http_queue && pos < input.len() {
                return (pos, Stop::Full);
            }
            let Conn { proto, outq, .. } = conn;
            self.scratch.clear();
            let mut then = Then::Nothing;
            let mut stop = None;
            let deflate = proto.deflate().copied();
            match proto.read(&mut input[pos..], &mut self.scratch) {
                Ok((0, None)) => {
                    stop = Some(if proto.state() == State::Closed {
                        Stop::Done
                    } else {
                        Stop::NeedMore
                    })
                }
                Ok((n, event)) => {
                    pos += n;
                    match event {
                        None | Some(Event::Ping(_) | Event::Pong(_)) => {}
                        Some(Event::Close(code)) => {
                            if let Some((code, _)) = code.filter(|_| !self.scratch.is_empty()) {
                                // Our echo of the peer's close code: labelled when it is one of
                                // the codes the server itself sends (a client ending with 1000
                                // or 1001), else `other`, so a client cannot create series.
                                self.metrics.closes.incr(code);
                            }
                            stop = Some(Stop::Done)
                        }
                        Some(Event::Request(req)) => then = Then::Decide(req),
                        Some(Event::Text(text)) if self.echo => {
                            self.metrics.messages_received += 1;
                            self.compression.push_message(
                                outq,
                                deflate.as_ref(),
                                OpCode::Text,
                                text.as_bytes(),
                            )
                        }
                        Some(Event::Binary(data)) if self.echo => {
                            self.metrics.messages_received += 1;
                            self.compression.push_message(
                                outq,
                                deflate.as_ref(),
                                OpCode::Binary,
                                data,
                            )
                        }
                        Some(Event::Compressed { text, payload }) => {
                            let max = self.limits.max_message_size;
                            let inflated = self.compression.inflate(payload, text, max);
                            // The loop's work is the inflated size, not the bytes read.
                            self.work += inflated.as_ref().map_or(0, |m| m.len());
                            match inflated {
                                Ok(_) if self.echo => {
                                    self.metrics.messages_received += 1;
                                    let opcode = if text { OpCode::Text } else { OpCode::Binary };
                                    self.compression
                                        .push_inflated(outq, deflate.as_ref(), opcode);
                                }
                                Ok(message) if text => {
                                    self.text.clear();
                                    // Checked by inflate().
                                    self.text
                                        .push_str(std::str::from_utf8(message).unwrap_or(""));
                                    then = Then::RouteText;
                                }
                                Ok(_) => then = Then::RouteBinary,
                                Err(e) => {
                                    log::debug!("connection {key}: protocol error: {e}");
                                    self.metrics.closes.incr(e.close_code());
                                    proto.fail(&e, &mut self.scratch);
                                    stop = Some(Stop::Done);
                                }
                            }
                        }
                        Some(Event::Text(text)) => {
                            self.text.clear();
                            self.text.push_str(text);
                            then = Then::RouteText;
                        }
                        Some(Event::Binary(_)) => then = Then::RouteBinary,
                    }
                }
                Err(e) => {
                    log::debug!("connection {key}: {e}");
                    match &e {
                        rakit_protocol::connection::Error::Handshake(e) => {
                            let (metrics, out) = (&mut self.metrics, &mut self.scratch);
                            if !super::http::refuse_api_head(&input[pos..], e, metrics, out) {
                                self.metrics.handshake_refusals.incr(e.http_status())
                            }
                        }
                        rakit_protocol::connection::Error::Protocol(e) => {
                            self.metrics.closes.incr(e.close_code())
                        }
                    }
                    stop = Some(Stop::Done);
                }
            }
            outq.push_bytes(&self.scratch);
            if !outq.is_empty() {
                mark_dirty(conn, key, &mut self.dirty);
            }
            if self.check_overflow(key) {
                return (pos, Stop::Done);
            }
            match then {
                Then::Nothing => {}
                Then::Decide(req) => self.decide(key, req),
                Then::RouteText => self.route(key, true),
                Then::RouteBinary => self.route(key, false),
            }
            self.settle(key);
            if let Some(stop) = stop {
                return (pos, stop);
            }
            if self.budget_spent() && pos < input.len() {
                return (pos, Stop::Budget);
            }
        }
    }

    fn decide(&mut self, key: usize, req: Box<rakit_protocol::Request>) {
        if self.http_request(key, &req) {
            return;
        }
        let client = self.client_address(key, &req);
        let address = AddrKey::of(client);
        let decision = self.judge(address, &req);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.scratch.clear();
        match decision {
            Decision::Refuse(e) => {
                log::debug!(
                    "handshake from {client} refused: {e} ({} {})",
                    req.method,
                    req.path
                );
                self.metrics.handshake_refusals.incr(e.http_status());
                conn.proto.reject(&e, &mut self.scratch);
            }
            Decision::Upgrade {
                accept_key,
                protocol,
                mut user,
            } => {
                let deflate = match (&req.extensions, self.config.compression) {
                    (Some(offers), true) => rakit_protocol::deflate::negotiate(offers),
                    _ => None,
                };
                conn.proto.accept_with(
                    &accept_key,
                    protocol.as_deref(),
                    deflate,
                    &mut self.scratch,
                );
                conn.outq.push_bytes(&self.scratch);
                mark_dirty(conn, key, &mut self.dirty);
                self.enter_open(key);
                let user_id = user.as_ref().map(|u| u.id.as_str());
                self.admission.opened(key, address, user_id);
                if !self.echo && self.pusher_open(key, &req, &mut user) {
                    self.log_address(key, client);
                    return;
                }
                if !self.echo {
                    let now = self.now;
                    let (router, mut out) = self.deliver();
                    let guarded = catch_unwind(AssertUnwindSafe(|| {
                        router.connect(key, user, session::now_unix(), now, &mut out);
                    }));
                    if guarded.is_err() {
                        self.fail_client(key);
                    }
                    self.after_router();
                    self.log_address(key, client);
                }
                return;
            }
        }
        conn.outq.push_bytes(&self.scratch);
        mark_dirty(conn, key, &mut self.dirty);
    }

    /// The address limits (before anything else is decided, so a refused flood costs no
    /// session check), the handshake's own rules, then the user limit (SPEC section 17).
    fn judge(&mut self, address: AddrKey, req: &rakit_protocol::Request) -> Decision {
        let refused = |refusal: Refusal| {
            Decision::Refuse(HandshakeError::TooManyRequests {
                reason: refusal.reason(),
                retry_after: refusal.retry_after_secs(),
            })
        };
        if let Err(refusal) = self.admission.check_address(address, self.now) {
            self.metrics.rate_limited.incr(Kind::Ip);
            return refused(refusal);
        }
        let decision = accept::decide(req, &self.config, self.open, session::now_unix());
        if let Decision::Upgrade {
            user: Some(user), ..
        } = &decision
        {
            if let Err(refusal) = self.admission.check_user(&user.id) {
                self.metrics.rate_limited.incr(Kind::User);
                return refused(refusal);
            }
        }
        decision
    }

    /// The client's address: the peer's, or the one a trusted proxy forwarded (SPEC section
    /// 17). A peer already gone counts as `0.0.0.0` (its handshake is answered to nobody).
    fn client_address(&self, key: usize, req: &rakit_protocol::Request) -> IpAddr {
        let peer = self
            .conns
            .get(key)
            .and_then(|c| c.socket.peer_addr().ok())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        self.proxies
            .client_address(peer, req.forwarded_for.as_deref())
    }

    /// Logs where a new client connects from (its id is in the `connect` event's line).
    fn log_address(&self, key: usize, client: IpAddr) {
        if let Some(id) = self.router.client_id(key) {
            log::info!("address: {id} connects from {client}");
        }
    }

    /// Hands the message to the router. A panic in it (or in an event
    /// handler) closes this client with 1011 and nobody else notices.
    fn route(&mut self, key: usize, text: bool) {
        self.metrics.messages_received += 1;
        let now = self.now;
        let message = std::mem::take(&mut self.text);
        if text && self.pusher_text(key, &message) {
            self.text = message;
            return;
        }
        let (router, mut out) = self.deliver();
        let guarded = catch_unwind(AssertUnwindSafe(|| {
            if text {
                router.handle_text(key, &message, now, &mut out);
            } else {
                router.handle_binary(key, now, &mut out);
            }
        }));
        self.text = message;
        if guarded.is_err() {
            self.fail_client(key);
        }
        self.after_router();
    }

    pub(super) fn fail_client(&mut self, key: usize) {
        log::error!("closing connection {key} with 1011 after a panic");
        let (_, mut out) = self.deliver();
        crate::router::Outbox::close(
            &mut out,
            key,
            rakit_protocol::CloseCode::INTERNAL_ERROR,
            "internal error",
        );
    }
}
