//! The event loop: one thread, one `mio::Poll`, every socket, every timer.
//!
//! ```text
//! listener --accept--> Slab<Conn> --read--> protocol::Connection --events--> accept::decide
//!                                                                       \--> router (or echo)
//! router --Outbox--> SendQueue per Conn --one writev per socket per turn--> socket
//! ```
//!
//! A turn ([`EventLoop::run`]): wait for readiness (or the earliest timer);
//! accept, read and process what is ready; resume the connections that
//! stopped early last time; fire due timers; flush every connection with
//! output. The parts live beside this file:
//!
//! - `listener.rs`: accepting sockets (with a back-off when out of descriptors);
//! - `reading.rs`: reading, processing frames, handshake decisions, routing;
//! - `delivery.rs`: the router's [`Outbox`](crate::router::Outbox), flushing, slow clients;
//! - `http.rs`: requests for the HTTP side of the port (API, metrics, demo page, health);
//! - `lifecycle.rs`: the connection's life ([`Life`](crate::conn::Life)), its
//!   timers, and the one place where a connection is released;
//! - `shutdown.rs`: the graceful stop;
//! - `cluster.rs`: the hooks of scale-out over Redis (`src/cluster/`);
//! - `reload.rs`: SIGHUP, the configuration read again (`src/reload.rs`).
//!
//! Tokens are slab keys; the listener, the signal pipe and the waker have
//! reserved tokens at the top of the range. A stale event (its connection
//! gone) finds nothing in the slab and does nothing.

mod cluster;
mod delivery;
mod http;
mod lifecycle;
mod listener;
mod pusher;
mod reading;
mod reload;
mod shutdown;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Poll, Token};
use rakit_protocol::Limits;
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::conn::Conn;
use crate::error::ServerError;
use crate::http::HttpSettings;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::timers::TimerQueue;
use crate::webhooks::Hooks;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNALS: Token = Token(usize::MAX - 2);
/// Wakes the loop from other threads: shutdown, and the cluster's Redis threads.
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

/// The shared read buffer: every socket is read into it, and only an
/// unconsumed tail is kept by the connection.
const READ_BUF: usize = 64 * 1024;
/// A connection's unconsumed tail up to this size is copied in front of the
/// next read in the shared buffer (larger ones take the read appended).
const SMALL_TAIL: usize = 16 * 1024;
/// Reads per connection per turn before others get their turn.
const MAX_READS_PER_TURN: usize = 16;
/// Frames queued (fan-out deliveries) per turn before processing pauses
/// until the next turn: the queues are flushed while their entries are
/// still in cache, and a burst cannot pile up millions of entries before
/// the first byte goes out. The budget grows with the connections open
/// ([`DELIVERIES_PER_CONN`] each), so that a fan-out to many subscribers
/// still puts many frames into each `writev`: the cost per delivery stays
/// flat as subscribers grow.
const DELIVERIES_PER_TURN: usize = 256 * 1024;
/// See [`DELIVERIES_PER_TURN`].
const DELIVERIES_PER_CONN: usize = 128;
/// Work one call of processing may do before the connection waits for the
/// others (the rest of the turn, or the next one), in bytes: what messages
/// inflated to, and HTTP answers (each counts its bytes plus
/// [`HTTP_ANSWER_WORK`]). One read's worth, as a read of plain frames is.
/// At least one message or answer is always processed.
const WORK_PER_CALL: usize = READ_BUF;
/// What an HTTP answer costs besides its bytes (parsing, routing): so at
/// most 16 pipelined requests are answered per call, like 16 reads.
const HTTP_ANSWER_WORK: usize = 4 * 1024;
/// Unsent HTTP answers beyond which no further request of that connection
/// is read (at most `max_send_buffer`): a client that pipelines and never
/// reads makes the daemon hold this much plus one answer, not
/// `max_send_buffer` of answers.
const HTTP_QUEUED: usize = 64 * 1024;
/// How long a closing connection may take to finish (our close frame or
/// refusal written, the peer's close frame and FIN received), and how long
/// shutdown waits for clients.
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
    /// Closed (`None`) once shutdown begins: new connections are refused
    /// at once instead of waiting in the kernel's backlog until exit.
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    router: Router,
    /// Open WebSocket connections (what `max_connections` limits).
    open: usize,
    /// HTTP connections held (what `max_http_connections` limits).
    http_open: usize,
    /// Sockets held at most, handshakes included.
    max_sockets: usize,
    serial: u32,
    now: Instant,
    /// Frames queued by the router this turn, and how many may be.
    delivered: usize,
    /// How many of `delivered` are already in the metrics.
    delivered_counted: usize,
    budget: usize,
    /// Work done by the current call of processing (see [`WORK_PER_CALL`]).
    work: usize,
    /// What connections' compact timestamps count from.
    epoch: Instant,
    handshake_timers: TimerQueue,
    idle_timers: TimerQueue,
    pong_timers: TimerQueue,
    close_timers: TimerQueue,
    /// Connections with output to flush at the end of the turn.
    dirty: Vec<usize>,
    /// Connections that stopped early (fair share of reads, or delivery
    /// budget), to come back to.
    resume: Vec<usize>,
    /// Connections whose send queue overflowed, to drop.
    overflowed: Vec<usize>,
    /// Connections the router closed, whose life must catch up.
    closed: Vec<usize>,
    /// Close codes sent by the router this call, for the metrics.
    closes: Vec<u16>,
    /// Protocol output (pongs, close frames, handshake responses).
    scratch: Vec<u8>,
    /// HTTP answers being built.
    http_out: Vec<u8>,
    /// The HTTP side's settings (keys hashed once).
    http: HttpSettings,
    /// HTTP requests waiting for their bodies or answers, by connection.
    pending_http: HashMap<usize, http::Pending>,
    /// HTTP requests whose answer waits for Redis: the router's tag -> the connection.
    http_waiting: HashMap<u64, usize>,
    /// Counters for `GET /metrics`: plain integers, this thread only.
    metrics: Metrics,
    /// The webhook worker (when `[webhooks]` has a url) and its counters; `None` only once
    /// taken for the shutdown.
    webhooks: Option<Hooks>,
    /// The text message being routed.
    text: String,
    /// The TLS settings new connections get (SPEC section 12); replaced
    /// on SIGHUP, while connections keep the settings they started with.
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The thread that reads the configuration again on SIGHUP (SPEC section 18).
    reloader: Option<crate::reload::Reloader>,
    /// permessage-deflate's shared compressor and inflater.
    compression: crate::compression::Compression,
    /// The frames the router queued this turn, each once (`buffer.rs`).
    turn: crate::buffer::TurnFrames,
    accept_paused_until: Option<Instant>,
    /// Accepting failed for lack of descriptors and has not succeeded since.
    accept_exhausted: bool,
    shutdown_deadline: Option<Instant>,
    /// Scale-out over Redis, when `[cluster] redis_url` is set.
    cluster: Option<crate::cluster::Cluster>,
    /// The Pusher dialect, when `[pusher]` is set.
    pusher: Option<crate::pusher::Pusher>,
    /// Open connections per address and per user, handshakes per address (SPEC section 17).
    admission: crate::limits::Admission,
    /// Sockets per peer address that are not WebSockets yet, while a per-address limit is on.
    peer_sockets: crate::limits::PeerSockets,
    /// Whose `X-Forwarded-For` is believed.
    proxies: crate::limits::TrustedProxies,
}

impl EventLoop {
    /// A loop over `listener`, registered with `poll` under [`LISTENER`].
    pub(crate) fn new(
        config: Config,
        echo: bool,
        poll: Poll,
        listener: TcpListener,
        router: Router,
        webhooks: Hooks,
    ) -> EventLoop {
        let limits = Limits {
            max_handshake_size: config.max_handshake_size,
            max_headers: MAX_HEADERS,
            max_message_size: config.max_buffer_size,
        };
        let secs = Duration::from_secs;
        let http = HttpSettings::new(&config);
        let pusher = crate::pusher::Pusher::new(&config.pusher, config.max_channels_per_client);
        let admission = crate::limits::Admission::new(config.limits.admission());
        let peer_sockets = crate::limits::PeerSockets::new(&config.limits.admission());
        let proxies = config.limits.proxies();
        let mut router = router;
        if pusher.is_some() {
            router.set_foreign(crate::pusher::FOREIGN);
            router.set_cache_channels(crate::pusher::cache_channels(config.pusher.cache_ttl()));
        }
        EventLoop {
            handshake_timers: TimerQueue::new(secs(config.handshake_timeout)),
            idle_timers: TimerQueue::new(secs(config.ping_interval)),
            pong_timers: TimerQueue::new(secs(config.ping_timeout)),
            close_timers: TimerQueue::new(CLOSE_TIMEOUT),
            // Room for HTTP connections, and for handshakes in flight beyond
            // both limits, so that a full server can still answer 503.
            max_sockets: config
                .max_connections
                .saturating_add(config.max_http_connections)
                .saturating_add((config.max_connections / 8).max(64)),
            tls: None,
            reloader: None,
            turn: crate::buffer::TurnFrames::default(),
            compression: crate::compression::Compression::new(
                config.compression_level,
                config.compression_min_size,
            ),
            config,
            echo,
            limits,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            router,
            open: 0,
            http_open: 0,
            serial: 0,
            now: Instant::now(),
            delivered: 0,
            delivered_counted: 0,
            budget: DELIVERIES_PER_TURN,
            work: 0,
            epoch: Instant::now(),
            dirty: Vec::new(),
            resume: Vec::new(),
            overflowed: Vec::new(),
            closed: Vec::new(),
            closes: Vec::new(),
            scratch: Vec::new(),
            http_out: Vec::new(),
            http,
            pending_http: HashMap::new(),
            http_waiting: HashMap::new(),
            metrics: Metrics::new(),
            webhooks: Some(webhooks),
            text: String::new(),
            accept_paused_until: None,
            accept_exhausted: false,
            shutdown_deadline: None,
            cluster: None,
            pusher,
            admission,
            peer_sockets,
            proxies,
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
        let mut readbuf = vec![0; SMALL_TAIL + READ_BUF];
        let mut events = Events::with_capacity(1024);
        // What the Redis threads reported while the server waited for them before listening
        // (`Server::bind`), before any connection is accepted: the first client finds the
        // link up (SPEC 18).
        self.begin_turn();
        self.cluster_wake();
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
            self.begin_turn();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(&mut readbuf),
                    SIGNALS => {
                        if let Some(signals) = signals.as_deref_mut() {
                            for signal in signals.pending() {
                                if signal == signal_hook::consts::SIGHUP {
                                    self.request_reload();
                                } else {
                                    log::info!("signal received: shutting down");
                                    self.begin_shutdown(&mut readbuf);
                                }
                            }
                        }
                    }
                    WAKER => {
                        if stop.load(Ordering::SeqCst) {
                            self.begin_shutdown(&mut readbuf);
                        }
                        self.reload_wake();
                        self.cluster_wake();
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
            self.cluster_turn();
            self.flush_dirty();
            if self.shutdown_complete() {
                log::info!("shutdown complete");
                return Ok(());
            }
        }
    }

    fn begin_turn(&mut self) {
        self.now = Instant::now();
        self.count_deliveries();
        self.delivered = 0;
        self.delivered_counted = 0;
        self.budget = DELIVERIES_PER_TURN.max(self.open.saturating_mul(DELIVERIES_PER_CONN));
    }

    /// Folds this turn's deliveries so far into `rakit_frames_sent_total`
    /// (once per turn, and before `/metrics` answers: no cost per delivery).
    fn count_deliveries(&mut self) {
        self.metrics.frames_sent += (self.delivered - self.delivered_counted) as u64;
        self.delivered_counted = self.delivered;
    }

    /// Unsent answers beyond which an HTTP connection is not read.
    fn http_queue(&self) -> usize {
        HTTP_QUEUED.min(self.config.max_send_buffer)
    }

    /// The turn's delivery budget is spent: processing pauses until the
    /// queues are flushed.
    fn budget_spent(&self) -> bool {
        self.delivered >= self.budget
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
            self.cluster.as_ref().and_then(|c| c.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The connection a timer was armed for, if it is still there.
    fn live(&mut self, key: usize, serial: u32) -> Option<&mut Conn> {
        self.conns.get_mut(key).filter(|c| c.serial == serial)
    }
}
