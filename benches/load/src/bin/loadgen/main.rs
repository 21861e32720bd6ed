//! The load generator: one thread, one mio poll, many client connections.
//!
//! ```text
//! loadgen echo      --addr A [--conns 100] [--size 20] [--secs 5] [--warmup 1] [--json]
//!                   [--rounds N]
//! loadgen fanout    --addr A [--subs 1000] [--msgs 2000] [--size 64] [--timeout 60]
//!                   [--channel bench]
//! loadgen broadcast --addr A [--subs 1000] [--msgs 2000] [--size 64] [--timeout 60]
//! loadgen idle      --addr A [--conns 10000] [--inflight 100] [--settle-ms 1000]
//! loadgen api       --addr A --token T [--key K] [--subs 1000] [--msgs 480] [--size 24]
//!                   [--concurrency 1,16] [--timeout 60]
//! loadgen latency   --addr A[,B] [--subs 100] [--rate 100] [--secs 10] [--warmup 1]
//! fanout and idle: [--pusher KEY] (subscribers / idle connections speak Pusher protocol 7
//!   on /app/KEY; the fan-out publisher stays a Rakit client on /)
//! common: [--server NAME] [--server-pid PID[,PID2]] [--redis-pid PID] [--deflate] [--chat]
//! (`--deflate`: offer permessage-deflate and inflate what comes compressed;
//!  `--chat`: chat-like filler text instead of one repeated letter)
//! ```
//!
//! Each prints one line `RESULT workload=... server=... key=value ...`.
//! With `--server-pid`, the server's CPU time (utime+stime from
//! /proc/PID/stat) over the measured window and its RSS are included.
//!
//! **Several servers (a cluster).** `--addr A,B` (or `--addr A --addr2 B`):
//! fan-out and broadcast subscribers are spread over the addresses in turn
//! (client k on address k mod n, so 1,000 over two is 500/500) and the
//! publisher connects to the first. `--server-pid PA,PB` (one per address,
//! same order) adds each node's deliveries, last-delivery time and CPU
//! (`n0_*`, `n1_*`); `--redis-pid` adds the Redis server's CPU, and
//! `deliveries_per_cpu_s` counts every listed process, Redis included.
//! `latency` paces one publisher on the first address at `--rate` messages
//! per second and puts its `--subs` subscribers on the last address: with
//! `A,B` it times the path publisher -> A -> Redis -> B -> subscriber.
//! Every run is bounded in time and stops by itself; `valid=0` marks a run
//! whose numbers must not be used (loss, reordering, refused connections).

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use rakit_load::{
    cpu_ms, find, peak_rss_kb, quantile, rss_kb, Args, HttpClient, ReadState, WsClient,
    API_BENCH_KEY,
};

mod api;
mod echo;
mod fanout;
mod idle;
mod latency;

use api::*;
use echo::*;
use fanout::*;
use idle::*;
use latency::*;

const SCRATCH: usize = 256 * 1024;
/// Handshakes in flight at once while a workload sets up its clients.
const SETUP_INFLIGHT: usize = 200;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

struct Common {
    /// The servers: subscribers spread over all, the publisher on the first.
    addrs: Vec<SocketAddr>,
    server: String,
    /// One per address when given (the first is `pid`).
    pids: Vec<u32>,
    pid: Option<u32>,
    redis_pid: Option<u32>,
}

fn main() -> ExitCode {
    let workload = std::env::args().nth(1).unwrap_or_default();
    let args = Args::from_env(2);
    let Some(addr) = args.get("addr") else {
        eprintln!(
            "usage: loadgen echo|fanout|broadcast|idle|api|latency --addr HOST:PORT[,HOST:PORT] [options]"
        );
        return ExitCode::from(2);
    };
    let addrs: Vec<SocketAddr> = addr
        .split(',')
        .chain(args.get("addr2").as_deref())
        .map(|a| {
            a.trim_start_matches("ws://")
                .trim_end_matches('/')
                .parse()
                .expect("--addr: HOST:PORT")
        })
        .collect();
    let pids: Vec<u32> = args
        .get("server-pid")
        .map(|p| {
            p.split(',')
                .map(|p| p.parse().expect("--server-pid"))
                .collect()
        })
        .unwrap_or_default();
    let common = Common {
        addrs,
        server: args.get("server").unwrap_or_else(|| "unknown".into()),
        pid: pids.first().copied(),
        pids,
        redis_pid: args
            .get("redis-pid")
            .map(|p| p.parse().expect("--redis-pid")),
    };
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("loadgen: cannot raise RLIMIT_NOFILE: {e}");
    }
    rakit_load::DEFLATE.store(args.flag("deflate"), std::sync::atomic::Ordering::Relaxed);
    CHAT.store(args.flag("chat"), std::sync::atomic::Ordering::Relaxed);
    let result = match workload.as_str() {
        "echo" => echo(&common, &args),
        "fanout" => fanout(&common, &args, false),
        "broadcast" => fanout(&common, &args, true),
        "idle" => idle(&common, &args),
        "api" => api(&common, &args),
        "latency" => latency(&common, &args),
        other => {
            eprintln!("loadgen: unknown workload {other:?}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(line) => {
            println!("RESULT {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            println!(
                "RESULT workload={workload} server={} valid=0 error={}",
                common.server,
                e.to_string().replace(' ', "_")
            );
            ExitCode::FAILURE
        }
    }
}

/// CPU time of every server process (Redis excluded), in ms.
fn cpu(c: &Common) -> f64 {
    if c.pids.is_empty() {
        return f64::NAN;
    }
    c.pids.iter().map(|&p| cpu_ms(p).unwrap_or(f64::NAN)).sum()
}

/// CPU time of each server process, then Redis's (NaN without `--redis-pid`).
fn cpu_each(c: &Common) -> (Vec<f64>, f64) {
    (
        c.pids
            .iter()
            .map(|&p| cpu_ms(p).unwrap_or(f64::NAN))
            .collect(),
        c.redis_pid.and_then(cpu_ms).unwrap_or(f64::NAN),
    )
}

/// Chat-like filler (`--chat`): words from a small vocabulary in a fixed
/// pseudo-random order, which compresses about as well as real chat text
/// (the default filler, one repeated letter, compresses far better).
static CHAT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn filler(len: usize) -> String {
    if !CHAT.load(std::sync::atomic::Ordering::Relaxed) {
        return "x".repeat(len);
    }
    const WORDS: [&str; 24] = [
        "hello", "the", "order", "shipped", "today", "and", "we", "will", "see", "you", "at",
        "meeting", "room", "about", "new", "release", "thanks", "for", "quick", "reply", "ok",
        "great", "news", "team",
    ];
    let mut s = String::with_capacity(len + 16);
    let mut x: u32 = 0x2545_f491;
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.push_str(WORDS[(x % WORDS.len() as u32) as usize]);
        s.push(' ');
    }
    s.truncate(len);
    s
}

/// A text payload of exactly `size` bytes built around `prefix` and `suffix`.
fn padded(prefix: &str, body: &str, suffix: &str, size: usize) -> Vec<u8> {
    let fixed = prefix.len() + body.len() + suffix.len();
    assert!(
        fixed <= size,
        "--size {size} is too small for {prefix}{body}{suffix}"
    );
    let mut s = String::with_capacity(size);
    s.push_str(prefix);
    s.push_str(body);
    s.push_str(&filler(size - fixed));
    s.push_str(suffix);
    s.into_bytes()
}

/// Connects `n` clients with at most `SETUP_INFLIGHT` handshakes at once;
/// `ready(i, payload)` is told of each message and returns true once client
/// `i` is ready (or, with `ready_on_open`, the 101 makes it ready);
/// `on_open(i, client)` may queue the first message.
/// Client k of this batch connects to `addrs[k % addrs.len()]`.
#[allow(clippy::too_many_arguments)]
fn setup(
    addrs: &[SocketAddr],
    path: &str,
    ready_on_open: bool,
    poll: &mut Poll,
    clients: &mut Vec<WsClient>,
    n: usize,
    scratch: &mut [u8],
    on_open: &mut dyn FnMut(usize, &mut WsClient),
    ready: &mut dyn FnMut(usize, &[u8]) -> bool,
) -> io::Result<()> {
    setup_with(
        addrs,
        path,
        ready_on_open,
        poll,
        clients,
        n,
        scratch,
        on_open,
        &mut |i, m, _| ready(i, m),
    )
}

/// [`setup`] whose `ready` may also answer on the client (flushed after).
#[allow(clippy::too_many_arguments)]
fn setup_with(
    addrs: &[SocketAddr],
    path: &str,
    ready_on_open: bool,
    poll: &mut Poll,
    clients: &mut Vec<WsClient>,
    n: usize,
    scratch: &mut [u8],
    on_open: &mut dyn FnMut(usize, &mut WsClient),
    ready: &mut dyn FnMut(usize, &[u8], &mut WsClient) -> bool,
) -> io::Result<()> {
    let base = clients.len();
    let mut ready_count = 0;
    let mut is_ready = vec![false; n];
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while ready_count < n {
        while clients.len() - base < n && clients.len() - base - ready_count < SETUP_INFLIGHT {
            let k = clients.len() - base;
            clients.push(open_client_at(
                poll,
                addrs[k % addrs.len()],
                clients.len(),
                path,
            )?);
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "setup timed out: {ready_count} of {n} clients ready"
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                let was_open = cl.open;
                let mut msgs: Vec<Vec<u8>> = Vec::new();
                let state = cl.read_ready(scratch, &mut || {}, &mut |m| msgs.push(m.to_vec()))?;
                if !was_open && cl.open {
                    on_open(i, cl);
                    cl.flush()?;
                    if ready_on_open {
                        is_ready[i - base] = true;
                        ready_count += 1;
                    }
                }
                for m in msgs {
                    let k = i - base;
                    if !is_ready[k] && ready(i, &m, cl) {
                        is_ready[k] = true;
                        ready_count += 1;
                    }
                }
                cl.flush()?;
                if state == ReadState::Closed {
                    return Err(io::Error::other(format!("client {i} closed during setup")));
                }
            }
        }
    }
    Ok(())
}

/// The upgrade path of a Pusher protocol 7 client (as pusher-js 8 sends it).
fn pusher_path(key: &str) -> String {
    format!("/app/{key}?protocol=7&client=js&version=8.6.0")
}

/// Connects client `i`, registers it under `Token(i)` and sends its upgrade
/// request for `path`.
fn open_client_at(poll: &Poll, addr: SocketAddr, i: usize, path: &str) -> io::Result<WsClient> {
    let mut cl = WsClient::connect_path(addr, i as u32, path)?;
    poll.registry().register(
        &mut cl.stream,
        Token(i),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    cl.flush()?;
    Ok(cl)
}

/// One readiness event for an idle client: flush what it owes, read (and
/// ignore) what came. False once the connection failed or closed.
fn service_idle(cl: &mut WsClient, readable: bool, scratch: &mut [u8]) -> bool {
    if cl.flush().is_err() {
        return false;
    }
    !readable
        || matches!(
            cl.read_ready(scratch, &mut || {}, &mut |_| {}),
            Ok(ReadState::Blocked)
        )
}
