//! The event loop: one thread, one `mio::Poll`, every socket, every timer.
//!
//! ```text
//! listener --accept--> Slab<Conn> --read--> protocol::Connection --events--> accept::decide
//!                                                                       \--> router (or echo)
//! router --Outbox--> SendQueue per Conn --one writev per socket per turn--> socket
//! ```
//!
//! A turn: wait for readiness (or the earliest timer), handle every event
//! (accept until `WouldBlock`, read and process until `WouldBlock` or a fair
//! share), fire due timers, then flush every connection that has output.
//! Tokens are slab keys; the listener, the signal pipe and the waker have
//! reserved tokens at the top of the range. A stale event (its connection
//! gone) finds nothing in the slab and does nothing.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use rakit_protocol::{CloseCode, Event, Limits, OpCode, State};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::accept::{self, Decision};
use crate::config::Config;
use crate::conn::{Conn, Phase, Stamp};
use crate::router::{ConnId, Frame, Outbox, Router};
use crate::server::ServerError;
use crate::session;
use crate::timers::TimerQueue;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);
/// Wakes the loop from other threads (shutdown today; scale-out later).
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

/// The shared read buffer: every socket is read into it, and only an
/// unconsumed tail is copied to the connection.
const READ_BUF: usize = 64 * 1024;
/// Reads per connection per turn before others get their turn.
const MAX_READS_PER_TURN: usize = 16;
/// Frames queued (fan-out deliveries) per turn before reading pauses until
/// the next turn: the queues are flushed while their entries are still in
/// cache, and a burst of published messages cannot pile up millions of
/// entries before the first byte goes out.
const DELIVERIES_PER_TURN: usize = 256 * 1024;
/// How long to wait for the peer's close frame, or for it to close TCP
/// after ours, and how long shutdown waits for clients.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most header lines in an upgrade request.
const MAX_HEADERS: usize = 100;

/// Everything the loop owns but the shared read buffer.
pub(crate) struct EventLoop {
    config: Config,
    echo: bool,
    limits: Limits,
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    router: Router,
    /// Open WebSocket connections (what `max_connections` limits).
    open: usize,
    /// Sockets held at most, handshakes included.
    max_sockets: usize,
    serial: u32,
    now: Instant,
    /// Frames queued by the router this turn (see [`DELIVERIES_PER_TURN`]).
    delivered: usize,
    /// What connections' compact timestamps count from.
    epoch: Instant,
    handshake_timers: TimerQueue,
    idle_timers: TimerQueue,
    pong_timers: TimerQueue,
    close_timers: TimerQueue,
    /// Connections with output to flush at the end of the turn.
    dirty: Vec<usize>,
    /// Connections that used their share of reads this turn.
    resume: Vec<usize>,
    /// Connections whose send queue overflowed, to drop.
    overflowed: Vec<usize>,
    /// Protocol output (pongs, close frames, handshake responses).
    scratch: Vec<u8>,
    /// The text message being routed.
    text: String,
    accept_paused_until: Option<Instant>,
    /// Accepting failed for lack of descriptors and has not succeeded since.
    accept_exhausted: bool,
    shutdown_deadline: Option<Instant>,
}

/// Queues router output on connections (the router's view of the loop).
struct Deliver<'a> {
    conns: &'a mut Slab<Conn>,
    dirty: &'a mut Vec<usize>,
    overflowed: &'a mut Vec<usize>,
    close_timers: &'a mut TimerQueue,
    scratch: &'a mut Vec<u8>,
    max_send_buffer: usize,
    now: Instant,
    delivered: &'a mut usize,
}

fn mark_dirty(conn: &mut Conn, key: usize, dirty: &mut Vec<usize>) {
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
        conn.outq.push_shared(frame);
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
            conn.outq.push_bytes(self.scratch);
            self.close_timers.arm(self.now, key, conn.serial);
            mark_dirty(conn, key, self.dirty);
        }
    }
}

/// What a processed frame asks of the loop once the connection is released.
enum Then {
    Nothing,
    Decide(Box<rakit_protocol::Request>),
    RouteText,
    RouteBinary,
}

impl EventLoop {
    /// A loop over `listener`, registered with `poll` under [`LISTENER`].
    pub(crate) fn new(
        config: Config,
        echo: bool,
        poll: Poll,
        listener: TcpListener,
        router: Router,
    ) -> EventLoop {
        let limits = Limits {
            max_handshake_size: config.max_handshake_size,
            max_headers: MAX_HEADERS,
            max_message_size: config.max_buffer_size,
        };
        let secs = Duration::from_secs;
        EventLoop {
            handshake_timers: TimerQueue::new(secs(config.handshake_timeout)),
            idle_timers: TimerQueue::new(secs(config.ping_interval)),
            pong_timers: TimerQueue::new(secs(config.ping_timeout)),
            close_timers: TimerQueue::new(CLOSE_TIMEOUT),
            // Room for handshakes in flight beyond the open-connection limit,
            // so that a full server can still answer 503.
            max_sockets: config
                .max_connections
                .saturating_add((config.max_connections / 8).max(64)),
            config,
            echo,
            limits,
            poll,
            listener,
            conns: Slab::new(),
            router,
            open: 0,
            serial: 0,
            now: Instant::now(),
            delivered: 0,
            epoch: Instant::now(),
            dirty: Vec::new(),
            resume: Vec::new(),
            overflowed: Vec::new(),
            scratch: Vec::new(),
            text: String::new(),
            accept_paused_until: None,
            accept_exhausted: false,
            shutdown_deadline: None,
        }
    }

    /// The event handler (for `start` and `crash`, fired around the loop).
    pub(crate) fn handler_mut(&mut self) -> &mut dyn crate::events::Handler {
        self.router.handler_mut()
    }

    /// Runs turns until shutdown completes or polling fails.
    pub(crate) fn run(
        &mut self,
        mut signals: Option<&mut Signals>,
        stop: &AtomicBool,
    ) -> Result<(), ServerError> {
        let mut readbuf = vec![0; READ_BUF];
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = if self.resume.is_empty() {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Io {
                    context: "polling",
                    error,
                });
            }
            self.now = Instant::now();
            self.delivered = 0;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(&mut readbuf),
                    SIGNALS => {
                        if let Some(signals) = signals.as_deref_mut() {
                            if signals.pending().next().is_some() {
                                log::info!("signal received: shutting down");
                                self.begin_shutdown();
                            }
                        }
                    }
                    WAKER => {
                        if stop.load(Ordering::SeqCst) {
                            self.begin_shutdown();
                        }
                    }
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // A FIN or an error already signalled must be
                            // read to the end: no new edge will come for it.
                            let to_the_end = event.is_read_closed() || event.is_error();
                            self.on_readable(key, &mut readbuf, to_the_end);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.resume) {
                self.on_readable(key, &mut readbuf, true);
            }
            self.fire_timers(&mut readbuf);
            self.flush_dirty();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    log::info!("shutdown complete");
                    return Ok(());
                }
            }
        }
    }

    fn deliver(&mut self) -> (&mut Router, Deliver<'_>) {
        (
            &mut self.router,
            Deliver {
                conns: &mut self.conns,
                dirty: &mut self.dirty,
                overflowed: &mut self.overflowed,
                close_timers: &mut self.close_timers,
                scratch: &mut self.scratch,
                max_send_buffer: self.config.max_send_buffer,
                now: self.now,
                delivered: &mut self.delivered,
            },
        )
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.handshake_timers.next_deadline(),
            self.idle_timers.next_deadline(),
            self.pong_timers.next_deadline(),
            self.close_timers.next_deadline(),
            self.router.poll_timeout(),
            self.accept_paused_until,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            mark_dirty(conn, key, &mut self.dirty);
        }
    }

    // ---- accepting ----

    fn accept_all(&mut self, readbuf: &mut [u8]) {
        if self.shutdown_deadline.is_some() || self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((socket, _addr)) => {
                    self.accept_exhausted = false;
                    if let Some(key) = self.admit(socket) {
                        // A client writes its upgrade request as soon as it
                        // is connected, so it is usually here already: read
                        // it now rather than a poll turn later.
                        self.on_readable(key, readbuf, false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_resource_exhaustion(&e) => {
                    // Out of descriptors (or kernel memory): keep serving the
                    // clients we have and try again shortly, rather than spin
                    // on a listener that stays readable.
                    // Warn once per episode, not ten times a second.
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

    /// Takes a new socket into the slab; its key, unless it was refused.
    fn admit(&mut self, mut socket: TcpStream) -> Option<usize> {
        if self.conns.len() >= self.max_sockets {
            // Far past the limit even for handshakes in flight: no room to
            // answer 503, so drop the socket at once.
            log::debug!("refusing a socket: {} held", self.conns.len());
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
        entry.insert(Conn::new(socket, self.limits, self.serial, now));
        self.handshake_timers.arm(self.now, key, self.serial);
        Some(key)
    }

    // ---- reading ----

    /// Reads and processes until the socket is drained or the connection
    /// used its fair share of reads this turn.
    ///
    /// A read that does not fill the buffer emptied the socket's receive
    /// queue, and (edge-triggered) any byte arriving after it brings a new
    /// readiness event, so the loop stops there instead of paying a second
    /// `recv` just to see `EAGAIN` (a third of an echo's syscalls). Unless
    /// `to_the_end`: a FIN or error already reported gets no new edge, so
    /// then it reads until `EAGAIN` or EOF.
    fn on_readable(&mut self, key: usize, readbuf: &mut [u8], to_the_end: bool) {
        for _ in 0..MAX_READS_PER_TURN {
            if self.delivered >= DELIVERIES_PER_TURN {
                // Enough fan-out this turn: flush first, then read on.
                break;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.phase == Phase::Draining {
                return self.drain(key, readbuf);
            }
            if conn.proto.state() == State::Closed {
                // Waiting for output to flush; further input is dropped.
                return self.drain_discard(key, readbuf);
            }
            if conn.inbuf.is_empty() {
                let n = match read_some(&mut conn.socket, readbuf) {
                    ReadOutcome::Data(n) => n,
                    ReadOutcome::Blocked => return,
                    ReadOutcome::Closed => return self.remove(key),
                };
                conn.last_rx = Stamp::new(self.epoch, self.now);
                let consumed = self.process(key, &mut readbuf[..n]);
                if consumed < n {
                    if let Some(conn) = self.conns.get_mut(key) {
                        if conn.proto.state() != State::Closed {
                            conn.inbuf.extend_from_slice(&readbuf[consumed..n]);
                        }
                    }
                }
                if self.delivered >= DELIVERIES_PER_TURN {
                    break;
                }
                if n < readbuf.len() && !to_the_end {
                    return;
                }
            } else {
                let mut buf = conn.inbuf.take();
                let len = buf.len();
                buf.resize(len + READ_BUF, 0);
                let outcome = read_some(&mut conn.socket, &mut buf[len..]);
                let n = match outcome {
                    ReadOutcome::Data(n) => n,
                    // At EOF, whole frames still held (see below) are
                    // handled first; EOF is sticky, so it is seen again.
                    ReadOutcome::Blocked | ReadOutcome::Closed => 0,
                };
                buf.truncate(len + n);
                if n > 0 {
                    conn.last_rx = Stamp::new(self.epoch, self.now);
                }
                // Also with nothing new read: whole frames may wait there,
                // left when the turn's delivery budget ran out.
                let consumed = if buf.is_empty() {
                    0
                } else {
                    self.process(key, &mut buf)
                };
                buf.drain(..consumed);
                if let Some(conn) = self.conns.get_mut(key) {
                    if conn.proto.state() != State::Closed {
                        conn.inbuf.put(buf);
                    }
                }
                if self.delivered >= DELIVERIES_PER_TURN {
                    break;
                }
                if matches!(outcome, ReadOutcome::Closed) {
                    return self.remove(key);
                }
                if matches!(outcome, ReadOutcome::Blocked) || (n < READ_BUF && !to_the_end) {
                    return;
                }
            }
        }
        // Fair share (or the turn's delivery budget) used: come back after
        // the others, or next turn.
        self.resume.push(key);
    }

    /// After our side is shut down: read and drop until the peer closes.
    fn drain(&mut self, key: usize, readbuf: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            match read_some(&mut conn.socket, readbuf) {
                ReadOutcome::Data(_) => continue,
                ReadOutcome::Blocked => return,
                ReadOutcome::Closed => return self.remove(key),
            }
        }
    }

    /// Protocol closed, output still queued: drop input, notice a vanished peer.
    fn drain_discard(&mut self, key: usize, readbuf: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.inbuf.clear();
        for _ in 0..MAX_READS_PER_TURN {
            match read_some(&mut conn.socket, readbuf) {
                ReadOutcome::Data(_) => continue,
                ReadOutcome::Blocked => return,
                ReadOutcome::Closed => return self.remove(key),
            }
        }
    }

    /// Feeds `input` to the connection's protocol state, item by item, and
    /// acts on each event. Returns how many bytes were consumed.
    fn process(&mut self, key: usize, input: &mut [u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return pos;
            };
            let Conn { proto, outq, .. } = conn;
            self.scratch.clear();
            let mut then = Then::Nothing;
            let mut stop = false;
            match proto.read(&mut input[pos..], &mut self.scratch) {
                Ok((0, None)) => stop = true,
                Ok((n, event)) => {
                    pos += n;
                    match event {
                        None | Some(Event::Ping(_) | Event::Pong(_) | Event::Close(_)) => {}
                        Some(Event::Request(req)) => then = Then::Decide(req),
                        Some(Event::Text(text)) if self.echo => {
                            outq.push_frame(OpCode::Text, text.as_bytes())
                        }
                        Some(Event::Binary(data)) if self.echo => {
                            outq.push_frame(OpCode::Binary, data)
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
                    stop = true;
                }
            }
            outq.push_bytes(&self.scratch);
            if !outq.is_empty() {
                mark_dirty(conn, key, &mut self.dirty);
            }
            // Echoes and pongs bypass the router's Outbox, so they are held to
            // max_send_buffer here: a peer that sends without reading must not
            // grow its queue without bound.
            if conn.outq.len() > self.config.max_send_buffer && !conn.overflowed {
                conn.overflowed = true;
                self.overflowed.push(key);
                self.drop_overflowed();
                return pos;
            }
            match then {
                Then::Nothing => {}
                Then::Decide(req) => self.decide(key, req),
                Then::RouteText => self.route(key, true),
                Then::RouteBinary => self.route(key, false),
            }
            self.settle(key);
            if stop || self.delivered >= DELIVERIES_PER_TURN {
                return pos;
            }
        }
    }

    fn decide(&mut self, key: usize, req: Box<rakit_protocol::Request>) {
        let decision = accept::decide(&req, &self.config, self.open, session::now_unix());
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        self.scratch.clear();
        match decision {
            Decision::Health => conn.proto.respond(200, "ok", &mut self.scratch),
            Decision::Refuse(e) => {
                log::debug!("handshake refused: {e} ({} {})", req.method, req.path);
                conn.proto.reject(&e, &mut self.scratch);
            }
            Decision::Upgrade {
                accept_key,
                protocol,
                user,
            } => {
                conn.proto
                    .accept(&accept_key, protocol.as_deref(), &mut self.scratch);
                conn.outq.push_bytes(&self.scratch);
                conn.routed = true;
                self.open += 1;
                if self.config.ping_interval > 0 {
                    self.idle_timers.arm(self.now, key, conn.serial);
                }
                mark_dirty(conn, key, &mut self.dirty);
                if !self.echo {
                    let now = self.now;
                    let (router, mut out) = self.deliver();
                    let guarded = catch_unwind(AssertUnwindSafe(|| {
                        router.connect(key, user, session::now_unix(), now, &mut out);
                    }));
                    if guarded.is_err() {
                        self.fail_client(key);
                    }
                    self.drop_overflowed();
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
        let now = self.now;
        let message = std::mem::take(&mut self.text);
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
        self.drop_overflowed();
    }

    fn fail_client(&mut self, key: usize) {
        log::error!("closing connection {key} with 1011 after a panic");
        let (_, mut out) = self.deliver();
        out.close(key, CloseCode::INTERNAL_ERROR, "internal error");
        self.settle(key);
    }

    /// Brings the loop's view of a connection up to date with its protocol
    /// state: tell the router it left, shut the socket down once all is sent.
    fn settle(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.routed && !conn.proto.is_open() {
            conn.routed = false;
            self.left(key);
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.proto.state() == State::Closed
            && conn.outq.is_empty()
            && conn.phase == Phase::Active
        {
            conn.phase = Phase::Draining;
            conn.inbuf.clear();
            if conn.socket.shutdown(Shutdown::Write).is_err() {
                return self.remove(key);
            }
            self.close_timers.arm(self.now, key, conn.serial);
        }
    }

    /// Drops clients whose send queue passed `max_send_buffer`: a 4008 close
    /// frame if the socket takes it at once, queued data discarded, and a
    /// reset (SO_LINGER 0) so the kernel does not keep pushing it.
    fn drop_overflowed(&mut self) {
        while let Some(key) = self.overflowed.pop() {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            log::info!(
                "connection {key}: {} bytes queued (max_send_buffer {}); dropping it",
                conn.outq.len(),
                self.config.max_send_buffer
            );
            // Finish a frame cut short, or the close frame would be garbage;
            // every frame not yet started is queued data, and is discarded.
            let mut last = conn.outq.rest_of_frame().to_vec();
            rakit_protocol::encode_close(
                &mut last,
                CloseCode::SEND_BUFFER_EXCEEDED,
                "send buffer exceeded",
            );
            let _ = conn.socket.write(&last);
            conn.outq.clear();
            conn.proto.abort();
            if let Err(e) = socket2::SockRef::from(&conn.socket).set_linger(Some(Duration::ZERO)) {
                log::debug!("set_linger failed: {e}");
            }
            self.remove(key);
        }
    }

    fn remove(&mut self, key: usize) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        if let Err(e) = self.poll.registry().deregister(&mut conn.socket) {
            log::debug!("deregister failed: {e}");
        }
        if conn.routed {
            self.left(key);
        }
    }

    /// An open WebSocket connection left (closing, closed or gone): it no
    /// longer counts against `max_connections`, and the router forgets it.
    fn left(&mut self, key: usize) {
        self.open -= 1;
        if !self.echo {
            let now = self.now;
            let (router, mut out) = self.deliver();
            // Disconnect hooks run user code too.
            let _ = catch_unwind(AssertUnwindSafe(|| router.disconnect(key, now, &mut out)));
            self.drop_overflowed();
        }
    }

    // ---- writing ----

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.flush(key);
        }
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
        let done = match conn.outq.flush(&mut conn.socket) {
            Ok(done) => done,
            Err(e) => {
                log::debug!("connection {key}: write failed: {e}");
                return self.remove(key);
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
                return self.remove(key);
            }
            conn.writable = !done;
        }
        self.settle(key);
    }

    // ---- timers ----

    fn fire_timers(&mut self, readbuf: &mut [u8]) {
        let now = Instant::now();
        self.now = now;
        while let Some(t) = self.handshake_timers.pop_due(now) {
            if let Some(conn) = self.live(t.key, t.serial) {
                if matches!(
                    conn.proto.state(),
                    State::Handshaking | State::AwaitingDecision
                ) {
                    log::debug!("connection {}: handshake timed out", t.key);
                    self.remove(t.key);
                }
            }
        }
        let epoch = self.epoch;
        while let Some(t) = self.idle_timers.pop_due(now) {
            let interval = self.idle_timers.duration();
            let Some(conn) = self.live(t.key, t.serial) else {
                continue;
            };
            if !conn.proto.is_open() {
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
            match sent {
                Some(sent) if conn.ping_pending && conn.last_rx <= Stamp::new(epoch, sent) => {
                    log::debug!("connection {}: no answer to ping; dropping it", t.key);
                    conn.proto.abort();
                    self.remove(t.key);
                }
                _ => {
                    conn.ping_pending = false;
                    let from = conn.last_rx.instant(epoch);
                    if conn.proto.is_open() {
                        self.idle_timers.arm(from, t.key, t.serial);
                    }
                }
            }
        }
        while let Some(t) = self.close_timers.pop_due(now) {
            if let Some(conn) = self.live(t.key, t.serial) {
                if !conn.proto.is_open() {
                    self.remove(t.key);
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
            self.drop_overflowed();
        }
    }

    /// The connection a timer was armed for, if it is still there.
    fn live(&mut self, key: usize, serial: u32) -> Option<&mut Conn> {
        self.conns.get_mut(key).filter(|c| c.serial == serial)
    }

    // ---- shutdown ----

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(self.now + CLOSE_TIMEOUT);
        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
            log::debug!("deregistering the listener: {e}");
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.proto.state() {
                State::Open => {
                    let (_, mut out) = self.deliver();
                    out.close(key, CloseCode::GOING_AWAY, "server shutting down");
                    self.settle(key);
                }
                State::Handshaking | State::AwaitingDecision => self.remove(key),
                State::Closing | State::Closed => {}
            }
        }
    }
}

enum ReadOutcome {
    Data(usize),
    Blocked,
    Closed,
}

fn read_some(socket: &mut TcpStream, buf: &mut [u8]) -> ReadOutcome {
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

fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Server;
    use rakit_protocol::{encode_masked, FrameHeader};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream as StdStream};

    fn client(addr: SocketAddr) -> (StdStream, Vec<u8>) {
        let mut s = StdStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(buf.starts_with(b"HTTP/1.1 101"));
        (s, buf.split_off(end))
    }

    /// The next text message (frames from the server are whole and unmasked).
    fn next_text(s: &mut StdStream, buf: &mut Vec<u8>) -> String {
        loop {
            if let Some((h, n)) = FrameHeader::decode(buf).unwrap() {
                let len = h.payload_len as usize;
                if buf.len() >= n + len {
                    let payload = buf[n..n + len].to_vec();
                    buf.drain(..n + len);
                    if h.opcode == OpCode::Text {
                        return String::from_utf8(payload).unwrap();
                    }
                    continue;
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed early");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send_text(out: &mut Vec<u8>, text: &str) {
        encode_masked(out, true, OpCode::Text, text.as_bytes(), [1, 2, 3, 4]);
    }

    /// More deliveries than one turn's budget, published in one write by a
    /// client that closes at once: reading pauses mid-buffer and resumes
    /// next turn, and the frames held when the EOF is read still go out,
    /// all of them, in order.
    #[test]
    fn a_burst_past_the_turn_budget_is_delivered_whole_even_after_eof() {
        // All of it in one read (< READ_BUF), half again the budget, so the
        // read that follows the pause is the EOF.
        let subs = 400;
        let msgs = DELIVERIES_PER_TURN * 3 / 2 / subs;
        let config = Config {
            port: 0,
            presence: false,
            logging_enabled: false,
            ..Config::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let server = Server::new(config).bind().unwrap();
            tx.send((server.local_addr(), server.shutdown_handle()))
                .unwrap();
            server.run()
        });
        let (addr, stop) = rx.recv().unwrap();
        let mut clients = Vec::new();
        for _ in 0..subs {
            let (mut s, mut buf) = client(addr);
            assert!(next_text(&mut s, &mut buf).contains("welcome"));
            let mut out = Vec::new();
            send_text(&mut out, r#"{"event":"subscribe","channel":"t"}"#);
            s.write_all(&out).unwrap();
            assert!(next_text(&mut s, &mut buf).contains("subscribed"));
            clients.push((s, buf));
        }
        let (mut publisher, _) = client(addr);
        let mut out = Vec::new();
        for i in 0..msgs {
            send_text(
                &mut out,
                &format!(r#"{{"event":"message","channel":"t","data":{i}}}"#),
            );
        }
        assert!(out.len() < READ_BUF);
        publisher.write_all(&out).unwrap();
        drop(publisher);
        for (s, buf) in &mut clients {
            for i in 0..msgs {
                let text = next_text(s, buf);
                assert!(text.ends_with(&format!(r#""data":{i}}}"#)), "{i}: {text}");
            }
        }
        stop.shutdown();
        thread.join().unwrap().unwrap();
    }
}
