//! The two Redis connections, each on its own thread with blocking IO, so
//! the event loop never waits for Redis:
//!
//! - `rakit-redis-cmd` takes [`Cmd`]s from a **bounded** queue that the loop
//!   fills with `try_send` only, writes everything pending as one pipeline
//!   and reads the replies (the tagged ones go back to the loop);
//! - `rakit-redis-sub` SUBSCRIBEs to the bus and this node's inbox and
//!   passes every message to the loop.
//!
//! Both report to the loop through one bounded queue of [`Inbound`] and the
//! loop's one `mio::Waker`; a flag coalesces wakes, so a burst of messages
//! costs one wake-up.
//!
//! Both queues are bounded twice: by count (their slots) and by bytes
//! ([`OUT_BYTES`], [`IN_BYTES`]), since what fills them (our clients'
//! messages, other nodes' messages) may be up to `max_buffer_size` each. A
//! message beyond either bound is dropped and counted; replies and link
//! changes are never dropped (they answer our own commands). A lost connection is reported ([`Inbound::Down`]) and
//! retried with exponential backoff and jitter (100 ms to 5 s). While the
//! command connection is down, what is queued for it is dropped and counted:
//! messages for other nodes are delivered at most once, never late.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;

use super::endpoint::{Address, Endpoint};
use super::resp::{self, Parser, Value};
use crate::queue_bytes::QueueBytes;

/// Commands waiting for the command connection, at most.
pub const OUT_QUEUE: usize = 16 * 1024;
/// Bytes of the commands waiting for the command connection: beyond it a command is refused
/// (one more may take the queue past it by its own size, see `queue_bytes.rs`).
pub const OUT_BYTES: usize = 32 * 1024 * 1024;
/// Messages from Redis waiting for the loop, at most.
pub const IN_QUEUE: usize = 64 * 1024;
/// Bytes of the messages from Redis waiting for the loop (their payloads).
pub const IN_BYTES: usize = 32 * 1024 * 1024;
/// Commands written as one pipeline, at most...
const PIPELINE: usize = 512;
/// ...and bytes: a pipeline is closed once it holds this many.
const PIPELINE_BYTES: usize = 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reply may take before the connection is deemed dead.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the subscriber looks at its stop and rebuild flags.
const SUB_TICK: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which connection a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Cmd,
    Sub,
}

/// A command for Redis; `tag` non-zero sends its reply back to the loop.
#[derive(Debug)]
pub enum Cmd {
    Run {
        args: Vec<Vec<u8>>,
        tag: u64,
    },
    /// Commands queued together or not at all, and written together (a `MULTI` ... `EXEC`
    /// transaction: half of one would leave the connection inside it). Their replies are not
    /// wanted.
    All(Vec<Vec<Vec<u8>>>),
    /// Everything before it is written; then the thread says so and ends.
    Stop(mpsc::Sender<()>),
}

impl Cmd {
    /// The bytes it holds, as the out queue counts them.
    fn weight(&self) -> usize {
        match self {
            Cmd::Run { args, .. } => weight(args),
            Cmd::All(commands) => commands.iter().map(|args| weight(args)).sum(),
            Cmd::Stop(_) => 0,
        }
    }
}

/// A command's bytes: its arguments and their vectors.
fn weight(args: &[Vec<u8>]) -> usize {
    args.iter()
        .map(|a| a.len() + std::mem::size_of::<Vec<u8>>())
        .sum()
}

/// What the threads tell the loop.
#[derive(Debug)]
pub enum Inbound {
    Up(Side),
    Down(Side),
    /// A pub/sub message's payload (an envelope).
    Message(Vec<u8>),
    /// The reply to a tagged command.
    Reply(u64, Value),
}

/// Counters the threads keep (the loop reads them for `/metrics`).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Commands discarded because the command connection was down.
    pub dropped_out: AtomicU64,
    /// Messages discarded because the loop's inbound queue was full.
    pub dropped_in: AtomicU64,
}

/// What the two connections made of their first try (SPEC 18: a new daemon listens once it
/// knows), as [`Link::first_word`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstWord {
    /// Both connections are up (the subscription included).
    Up,
    /// One of them could not connect: Redis is unreachable, for now.
    Down,
    /// Neither verdict within the time given (a Redis that accepts and does not answer).
    Silent,
}

/// Each connection's first report, up (`true`) or down, for [`Link::first_word`].
#[derive(Default)]
struct FirstReports {
    seen: Mutex<[Option<bool>; 2]>,
    changed: Condvar,
}

impl FirstReports {
    fn record(&self, msg: &Inbound) {
        let (side, up) = match msg {
            Inbound::Up(side) => (*side, true),
            Inbound::Down(side) => (*side, false),
            _ => return,
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut seen[side as usize];
        if slot.is_none() {
            *slot = Some(up);
            self.changed.notify_all();
        }
    }
}

/// The loop's side of the threads.
pub struct Link {
    pub out: SyncSender<Cmd>,
    /// Read it through [`Link::next`], which gives a message's bytes back to [`IN_BYTES`].
    pub inbound: Receiver<Inbound>,
    /// Set by the threads when they queue something and wake the loop;
    /// cleared by the loop before it drains [`Link::inbound`].
    pub woken: Arc<AtomicBool>,
    /// Asks the subscriber to drop and rebuild its connection.
    pub rebuild: Arc<AtomicBool>,
    pub counters: Arc<LinkCounters>,
    /// Bytes queued for the command connection ([`OUT_BYTES`]).
    out_bytes: Arc<QueueBytes>,
    /// Bytes of messages queued for the loop ([`IN_BYTES`]).
    in_bytes: Arc<QueueBytes>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    cmd_thread: Option<JoinHandle<()>>,
    first: Arc<FirstReports>,
}

/// What both threads share.
#[derive(Clone)]
struct Shared {
    endpoint: Endpoint,
    inbound: SyncSender<Inbound>,
    waker: Arc<Waker>,
    woken: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    counters: Arc<LinkCounters>,
    out_bytes: Arc<QueueBytes>,
    in_bytes: Arc<QueueBytes>,
    first: Arc<FirstReports>,
}

impl Shared {
    fn wake(&self) {
        if !self.woken.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cluster: cannot wake the event loop: {e}");
            }
        }
    }

    /// Reports something the loop must not miss (blocks while the queue is
    /// full; fails only when the loop is gone).
    fn report(&self, msg: Inbound) -> bool {
        self.first.record(&msg);
        let ok = self.inbound.send(msg).is_ok();
        self.wake();
        ok
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d`, waking early on stop; false when stopping.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(SUB_TICK.min(until.saturating_duration_since(Instant::now())));
        }
        !self.stopped()
    }
}

impl Link {
    /// Starts both threads. `channels` are the pub/sub channels to subscribe to.
    pub fn start(endpoint: Endpoint, channels: Vec<String>, waker: Arc<Waker>) -> io::Result<Link> {
        let (out_tx, out_rx) = mpsc::sync_channel(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::sync_channel(IN_QUEUE);
        let woken = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let rebuild = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(LinkCounters::default());
        let out_bytes = Arc::new(QueueBytes::new(OUT_BYTES));
        let in_bytes = Arc::new(QueueBytes::new(IN_BYTES));
        let first = Arc::new(FirstReports::default());
        let shared = Shared {
            endpoint,
            inbound: in_tx,
            waker: Arc::clone(&waker),
            woken: Arc::clone(&woken),
            stop: Arc::clone(&stop),
            counters: Arc::clone(&counters),
            out_bytes: Arc::clone(&out_bytes),
            in_bytes: Arc::clone(&in_bytes),
            first: Arc::clone(&first),
        };
        let cmd_shared = shared.clone();
        let cmd_thread = std::thread::Builder::new()
            .name("rakit-redis-cmd".into())
            .spawn(move || run_cmd(&cmd_shared, &out_rx))?;
        let sub_rebuild = Arc::clone(&rebuild);
        std::thread::Builder::new()
            .name("rakit-redis-sub".into())
            .spawn(move || run_sub(&shared, &channels, &sub_rebuild))?;
        Ok(Link {
            out: out_tx,
            inbound: in_rx,
            woken,
            rebuild,
            counters,
            out_bytes,
            in_bytes,
            waker,
            stop,
            cmd_thread: Some(cmd_thread),
            first,
        })
    }

    /// Waits, at most `limit`, until both connections are up or one of them could not
    /// connect. Blocks the caller: for the start only, before the loop runs (the reports
    /// themselves stay queued for the loop).
    pub fn first_word(&self, limit: Duration) -> FirstWord {
        let deadline = Instant::now() + limit;
        let mut seen = self.first.seen.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if seen.contains(&Some(false)) {
                return FirstWord::Down;
            }
            if seen.iter().all(|s| *s == Some(true)) {
                return FirstWord::Up;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return FirstWord::Silent;
            }
            seen = self
                .first
                .changed
                .wait_timeout(seen, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Queues a command without waiting; false (and nothing queued) when the
    /// queue is full, by count or by bytes.
    pub fn try_send(&self, args: Vec<Vec<u8>>, tag: u64) -> bool {
        self.queue(Cmd::Run { args, tag })
    }

    /// Queues `commands` as one: all of them, or (false) none.
    pub fn try_send_all(&self, commands: Vec<Vec<Vec<u8>>>) -> bool {
        self.queue(Cmd::All(commands))
    }

    fn queue(&self, cmd: Cmd) -> bool {
        let n = cmd.weight();
        if !self.out_bytes.try_reserve(n) {
            return false;
        }
        match self.out.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.out_bytes.release(n);
                false
            }
        }
    }

    /// The next report of the threads, if one is waiting.
    pub fn next(&self) -> Option<Inbound> {
        let msg = self.inbound.try_recv().ok()?;
        if let Inbound::Message(payload) = &msg {
            self.in_bytes.release(payload.len());
        }
        Some(msg)
    }

    /// Makes the loop come back for what is still queued (it stopped at its budget): the
    /// same wake-up as the threads', so it is not lost if they wake it meanwhile.
    pub fn rearm(&self) {
        self.woken.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("cluster: cannot wake the event loop: {e}");
        }
    }

    /// Bytes of messages waiting for the loop, and of commands waiting for Redis.
    pub fn queued_bytes(&self) -> (usize, usize) {
        (self.in_bytes.held(), self.out_bytes.held())
    }

    /// Lets what is queued go out for up to `grace`, then stops both threads.
    pub fn finish(&mut self, grace: Duration) {
        let (tx, rx) = mpsc::channel();
        let deadline = Instant::now() + grace;
        let mut stop = Cmd::Stop(tx);
        // The queue may be full: retry until the grace time is over.
        while Instant::now() < deadline {
            match self.out.try_send(stop) {
                Ok(()) => {
                    let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                    break;
                }
                Err(TrySendError::Full(back)) => {
                    stop = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        // The command thread is not joined: it may be in a connect or a
        // read bounded by its timeouts, and exits on its own.
        self.cmd_thread.take();
    }
}

#[cfg(test)]
impl Link {
    /// A link without threads, its queue to Redis `out_slots` long: the test holds the ends
    /// the threads would (what the loop queues, and the queue to the loop).
    pub(super) fn detached(
        out_slots: usize,
        waker: Arc<Waker>,
    ) -> (Link, Receiver<Cmd>, SyncSender<Inbound>) {
        let (out, out_rx) = mpsc::sync_channel(out_slots);
        let (in_tx, inbound) = mpsc::sync_channel(IN_QUEUE);
        let link = Link {
            out,
            inbound,
            woken: Arc::new(AtomicBool::new(false)),
            rebuild: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(LinkCounters::default()),
            out_bytes: Arc::new(QueueBytes::new(OUT_BYTES)),
            in_bytes: Arc::new(QueueBytes::new(IN_BYTES)),
            waker,
            stop: Arc::new(AtomicBool::new(false)),
            cmd_thread: None,
            first: Arc::default(),
        };
        (link, out_rx, in_tx)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A connection to Redis, TCP or Unix.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(d)),
            Stream::Unix(s) => s.set_read_timeout(Some(d)),
        }
    }
}

/// A blocking RESP connection: a stream, what was read, and how far it is parsed.
struct Conn {
    stream: Stream,
    /// Read bytes; those before `start` are parsed values already returned.
    buf: Vec<u8>,
    start: usize,
    /// Goes on where the last read left a reply incomplete.
    parser: Parser,
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Conn {
    /// Connects, logs in and selects the database.
    fn open(endpoint: &Endpoint) -> io::Result<Conn> {
        let stream = match &endpoint.address {
            Address::Tcp { host, port } => {
                let mut last = None;
                let mut found = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = found.ok_or_else(|| {
                    last.unwrap_or_else(|| io::Error::other("no address for the Redis host"))
                })?;
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(REPLY_TIMEOUT))?;
                Stream::Tcp(s)
            }
            Address::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_write_timeout(Some(REPLY_TIMEOUT))?;
                Stream::Unix(s)
            }
        };
        stream.set_read_timeout(REPLY_TIMEOUT)?;
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            start: 0,
            parser: Parser::default(),
        };
        let mut hello: Vec<Vec<Vec<u8>>> = Vec::new();
        if let Some(password) = &endpoint.password {
            let mut auth = vec![b"AUTH".to_vec()];
            if let Some(user) = &endpoint.username {
                auth.push(user.clone().into_bytes());
            }
            auth.push(password.clone().into_bytes());
            hello.push(auth);
        }
        if endpoint.db != 0 {
            hello.push(vec![
                b"SELECT".to_vec(),
                endpoint.db.to_string().into_bytes(),
            ]);
        }
        for args in hello {
            conn.send(&[args])?;
            if let Value::Error(e) = conn.read_value()? {
                return Err(io::Error::other(format!("Redis refused: {e}")));
            }
        }
        Ok(conn)
    }

    fn send(&mut self, commands: &[Vec<Vec<u8>>]) -> io::Result<()> {
        let mut out = Vec::new();
        for args in commands {
            resp::encode_command(args, &mut out);
        }
        self.stream.write_all(&out)
    }

    /// The next value; a timeout is an error (`WouldBlock`/`TimedOut`).
    ///
    /// The parser goes on where the last read left it (a big reply costs work linear in its
    /// size), and parsed bytes are dropped once per read, not once per value (a read of many
    /// small replies is not moved once per reply).
    fn read_value(&mut self) -> io::Result<Value> {
        loop {
            let parsed = self
                .parser
                .parse(&self.buf[self.start..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if let Some((value, used)) = parsed {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(value);
            }
            // The value in progress keeps its offsets: they count from `start`.
            self.buf.drain(..self.start);
            self.start = 0;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Exponential backoff with jitter (half to full of the current step).
struct Backoff {
    step: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            step: BACKOFF_MIN,
            seed,
        }
    }

    fn next(&mut self) -> Duration {
        // xorshift64: jitter only, no quality needed.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let step = self.step;
        self.step = (self.step * 2).min(BACKOFF_MAX);
        let ms = step.as_millis() as u64;
        Duration::from_millis(ms / 2 + self.seed % (ms / 2 + 1))
    }

    fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }
}

/// Discards what is queued (the connection is down), counting it; true when
/// a `Stop` was among it (and has been answered).
fn discard(shared: &Shared, rx: &Receiver<Cmd>) -> bool {
    while let Ok(cmd) = rx.try_recv() {
        shared.out_bytes.release(cmd.weight());
        match cmd {
            Cmd::Run { .. } | Cmd::All(_) => {
                shared.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            }
            Cmd::Stop(done) => {
                let _ = done.send(());
                return true;
            }
        }
    }
    false
}

fn run_cmd(shared: &Shared, rx: &Receiver<Cmd>) {
    let mut backoff = Backoff::new();
    // Down is reported once per outage, also when Redis is down at start.
    let mut down = false;
    while !shared.stopped() {
        let mut conn = match Conn::open(&shared.endpoint) {
            Ok(conn) => conn,
            Err(e) => {
                log::debug!("cluster: Redis command connection: {e}");
                if !std::mem::replace(&mut down, true) && !shared.report(Inbound::Down(Side::Cmd)) {
                    return;
                }
                if discard(shared, rx) || !shared.pause(backoff.next()) || discard(shared, rx) {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        if !shared.report(Inbound::Up(Side::Cmd)) {
            return;
        }
        match serve_cmd(shared, rx, &mut conn) {
            Ok(()) => return,
            Err(e) => {
                log::debug!("cluster: Redis command connection lost: {e}");
                down = true;
                if !shared.report(Inbound::Down(Side::Cmd)) || discard(shared, rx) {
                    return;
                }
            }
        }
    }
}

/// Writes what the loop queues until the connection fails (`Err`) or a
/// `Stop` arrives (`Ok`).
fn serve_cmd(shared: &Shared, rx: &Receiver<Cmd>, conn: &mut Conn) -> io::Result<()> {
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(cmd) => cmd,
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopped() {
                    return Ok(());
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        // Encoded as they are taken: the queue's bytes are given back at once, and what is in
        // flight is one pipeline, at most `PIPELINE` commands or about `PIPELINE_BYTES`.
        let mut pipeline = Vec::new();
        let mut tags = Vec::new();
        let mut stop = None;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            shared.out_bytes.release(cmd.weight());
            match cmd {
                Cmd::Run { args, tag } => {
                    resp::encode_command(&args, &mut pipeline);
                    tags.push(tag);
                }
                Cmd::All(commands) => {
                    for args in &commands {
                        resp::encode_command(args, &mut pipeline);
                        tags.push(0);
                    }
                }
                Cmd::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if tags.len() < PIPELINE && pipeline.len() < PIPELINE_BYTES {
                next = rx.try_recv().ok();
            }
        }
        conn.stream.write_all(&pipeline)?;
        drop(pipeline);
        for tag in tags {
            let reply = conn.read_value()?;
            if let Value::Error(e) = &reply {
                log::warn!("cluster: Redis error: {e}");
            }
            if tag != 0 && !shared.report(Inbound::Reply(tag, reply)) {
                return Ok(());
            }
        }
        if let Some(done) = stop {
            let _ = done.send(());
            return Ok(());
        }
    }
}

fn run_sub(shared: &Shared, channels: &[String], rebuild: &AtomicBool) {
    let mut backoff = Backoff::new();
    let mut down = false;
    while !shared.stopped() {
        rebuild.store(false, Ordering::SeqCst);
        let result = Conn::open(&shared.endpoint).and_then(|mut conn| {
            let mut args = vec![b"SUBSCRIBE".to_vec()];
            args.extend(channels.iter().map(|c| c.clone().into_bytes()));
            conn.send(&[args])?;
            for _ in channels {
                match conn.read_value()? {
                    Value::Array(Some(v))
                        if v.first().and_then(Value::as_bytes) == Some(b"subscribe") => {}
                    other => {
                        return Err(io::Error::other(format!(
                            "unexpected SUBSCRIBE reply {other:?}"
                        )))
                    }
                }
            }
            conn.stream.set_read_timeout(SUB_TICK)?;
            backoff.reset();
            down = false;
            if !shared.report(Inbound::Up(Side::Sub)) {
                return Ok(());
            }
            serve_sub(shared, rebuild, &mut conn)
        });
        match result {
            Ok(()) => return,
            Err(e) => {
                log::debug!("cluster: Redis subscriber: {e}");
                if !std::mem::replace(&mut down, true) && !shared.report(Inbound::Down(Side::Sub)) {
                    return;
                }
                if !shared.pause(backoff.next()) {
                    return;
                }
            }
        }
    }
}

/// Passes messages on until the connection fails or a rebuild is asked for
/// (`Err`), or the node stops (`Ok`).
fn serve_sub(shared: &Shared, rebuild: &AtomicBool, conn: &mut Conn) -> io::Result<()> {
    loop {
        if shared.stopped() {
            return Ok(());
        }
        if rebuild.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("rebuilding a silent subscription"));
        }
        let value = match conn.read_value() {
            Ok(v) => v,
            Err(e) if timed_out(&e) => continue,
            Err(e) => return Err(e),
        };
        let Value::Array(Some(mut parts)) = value else {
            continue;
        };
        if parts.len() != 3 || parts[0].as_bytes() != Some(b"message") {
            continue;
        }
        let Some(Value::Bulk(Some(payload))) = parts.pop() else {
            continue;
        };
        let n = payload.len();
        if !shared.in_bytes.try_reserve(n) {
            shared.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
            shared.wake();
            continue;
        }
        match shared.inbound.try_send(Inbound::Message(payload)) {
            Ok(()) => shared.wake(),
            Err(TrySendError::Full(_)) => {
                shared.in_bytes.release(n);
                shared.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
                shared.wake();
            }
            Err(TrySendError::Disconnected(_)) => return Ok(()),
        }
    }
}
