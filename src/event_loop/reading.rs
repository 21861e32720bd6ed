//! Input: reading sockets, feeding the protocol, and acting on what it
//! reports (handshake decisions, routing, echo).
//!
//! Two rules bound what a connection holds. Its unconsumed input is at most
//! one partial frame or request (a few bytes of it do not pin the memory of
//! the read that brought them), plus, when the turn's delivery budget ran
//! out, the rest of one read. And a connection with whole frames still
//! unprocessed is not read again until they are: a publisher faster than
//! its recipients fills its socket and meets TCP back-pressure.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rakit_protocol::{Event, OpCode, State};

use super::delivery::mark_dirty;
use super::http::BodyStep;
use super::{EventLoop, MAX_READS_PER_TURN, READ_BUF, SMALL_TAIL};
use crate::accept::{self, Decision};
use crate::conn::{Conn, Life, Stamp};
use crate::session;

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
    Data(usize),
    Blocked,
    Closed,
}

fn read_some(socket: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
    loop {
        return match socket.read(buf) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Data(n),
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
        let n = match read {
            ReadOutcome::Data(n) => n,
            ReadOutcome::Blocked => {
                conn.inbuf.put(tail);
                return Step::Blocked;
            }
            ReadOutcome::Closed => {
                conn.inbuf.put(tail);
                return Step::Eof;
            }
        };
        conn.last_rx = Stamp::new(self.epoch, self.now);
        self.metrics.bytes_received += n as u64;
        if small {
            drop(tail);
            let input = &mut readbuf[..held + n];
            let (consumed, stop) = self.process(key, input);
            self.keep(key, &input[consumed..], stop);
            self.after_processing(n == room, stop)
        } else {
            tail.extend_from_slice(&readbuf[..n]);
            let (consumed, stop) = self.process(key, &mut tail);
            tail.drain(..consumed);
            self.keep_vec(key, tail, stop);
            self.after_processing(n == room, stop)
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
                ReadOutcome::Data(_) => continue,
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
        loop {
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
            if conn.life == Life::Handshaking
                && conn.outq.len() > self.config.max_send_buffer
                && pos < input.len()
            {
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
                            if let (Some((code, _)), false) = (code, self.scratch.is_empty()) {
                                // Our echo of the peer's close code.
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
                            match self.compression.inflate(payload, text, max) {
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
        let decision = accept::decide(&req, &self.config, self.open, session::now_unix());
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.scratch.clear();
        match decision {
            Decision::Refuse(e) => {
                log::debug!("handshake refused: {e} ({} {})", req.method, req.path);
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
                if !self.echo && self.pusher_open(key, &req, &mut user) {
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
                }
                return;
            }
        }
        conn.outq.push_bytes(&self.scratch);
        mark_dirty(conn, key, &mut self.dirty);
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
