//! The load generator: one thread, one mio poll, many client connections.
//!
//! ```text
//! loadgen echo      --addr A [--conns 100] [--size 20] [--secs 5] [--warmup 1]
//! loadgen fanout    --addr A [--subs 1000] [--msgs 2000] [--size 64] [--timeout 60]
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

// ---- echo ----

fn echo(c: &Common, args: &Args) -> io::Result<String> {
    let conns: usize = args.num("conns", 100);
    let size: usize = args.num("size", 20);
    let secs: f64 = args.num("secs", 5.0);
    let warmup: f64 = args.num("warmup", 1.0);
    let msg = padded("", "", "", size);
    let mut poll = Poll::new()?;
    let mut clients = Vec::with_capacity(conns);
    let mut scratch = vec![0u8; SCRATCH];
    // Echo servers send nothing on connect: being open is being ready.
    setup(
        &c.addrs[..1],
        "/",
        true,
        &mut poll,
        &mut clients,
        conns,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, _| false,
    )?;
    let mut sent_at = vec![Instant::now(); conns];
    for (i, cl) in clients.iter_mut().enumerate() {
        cl.queue_text(&msg);
        cl.flush()?;
        sent_at[i] = Instant::now();
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let measure_to = measure_from + Duration::from_secs_f64(secs);
    let mut cpu0 = f64::NAN;
    let mut measuring = false;
    let mut count: u64 = 0;
    let mut bad: u64 = 0;
    let mut lat_ns: Vec<u64> = Vec::with_capacity(4_000_000);
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if !measuring && now >= measure_from {
            measuring = true;
            cpu0 = cpu(c);
        }
        if now >= measure_to {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            let mut got = 0u32;
            let state = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                if m == msg.as_slice() {
                    got += 1;
                } else {
                    bad += 1;
                }
            })?;
            if state == ReadState::Closed {
                return Err(io::Error::other(format!("client {i} closed")));
            }
            if got > 0 {
                let now = Instant::now();
                if measuring && now < measure_to {
                    count += 1;
                    lat_ns.push((now - sent_at[i]).as_nanos() as u64);
                }
                if got > 1 {
                    bad += u64::from(got - 1);
                }
                cl.queue_text(&msg);
                cl.flush()?;
                sent_at[i] = Instant::now();
            }
        }
    }
    let cpu1 = cpu(c);
    let window = secs;
    lat_ns.sort_unstable();
    let lat_us: Vec<u32> = lat_ns.iter().map(|n| (n / 1000) as u32).collect();
    let p50 = quantile(&lat_us, 0.50);
    let p99 = quantile(&lat_us, 0.99);
    let cpu_used = cpu1 - cpu0;
    let rss = c.pid.and_then(rss_kb).unwrap_or(0);
    Ok(format!(
        "workload=echo server={} conns={conns} size={size} secs={window} msgs={count} \
         msgs_per_s={:.0} p50_us={p50} p99_us={p99} cpu_ms={:.0} cpu_ns_per_msg={:.0} \
         rss_kb={rss} bad={bad} valid={}",
        c.server,
        count as f64 / window,
        cpu_used,
        cpu_used * 1e6 / count.max(1) as f64,
        u8::from(bad == 0 && count > 0),
    ))
}

// ---- fan-out (channel) and broadcast ----

/// Where a receiver stands in the sequence.
#[derive(Clone, Copy)]
struct Track {
    next: u32,
    errors: u32,
}

fn seq_of(m: &[u8]) -> Option<u32> {
    let at = m.iter().position(|&b| b == b'#')?;
    let mut v: u32 = 0;
    for &b in m.get(at + 1..at + 7)? {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

fn client_id_of(m: &[u8]) -> Option<String> {
    let key = b"\"client_id\":\"";
    let at = find(m, key)? + key.len();
    let end = m[at..].iter().position(|&b| b == b'"')? + at;
    Some(String::from_utf8_lossy(&m[at..end]).into_owned())
}

fn fanout(c: &Common, args: &Args, broadcast: bool) -> io::Result<String> {
    let subs: usize = args.num("subs", 1000);
    let msgs: u32 = args.num("msgs", 2000);
    let size: usize = args.num("size", 64);
    let timeout: f64 = args.num("timeout", 60.0);
    let pusher = args.get("pusher").filter(|_| !broadcast);
    let workload = match (broadcast, &pusher) {
        (true, _) => "broadcast",
        (false, None) => "fanout",
        (false, Some(_)) => "pusher-fanout",
    };
    let channel = "bench";
    let mut poll = Poll::new()?;
    let mut clients: Vec<WsClient> = Vec::with_capacity(subs + 1);
    let mut scratch = vec![0u8; SCRATCH];

    // Subscribers: subscribed (channel) or welcomed (broadcast).
    let subscribe = format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#);
    if let Some(key) = &pusher {
        // Pusher protocol 7: connection_established, then pusher:subscribe;
        // ready on pusher_internal:subscription_succeeded.
        let psub = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#);
        setup_with(
            &c.addrs,
            &pusher_path(key),
            false,
            &mut poll,
            &mut clients,
            subs,
            &mut scratch,
            &mut |_, _| {},
            &mut |_, m, cl| {
                if find(m, b"pusher:connection_established").is_some() {
                    cl.queue_text(psub.as_bytes());
                    false
                } else {
                    find(m, b"pusher_internal:subscription_succeeded").is_some()
                }
            },
        )?;
    } else {
        setup(
            &c.addrs,
            "/",
            false,
            &mut poll,
            &mut clients,
            subs,
            &mut scratch,
            &mut |_, cl| {
                if !broadcast {
                    cl.queue_text(subscribe.as_bytes());
                }
            },
            &mut |_, m| {
                if broadcast {
                    find(m, b"\"welcome\"").is_some()
                } else {
                    find(m, b"\"subscribed\"").is_some()
                }
            },
        )?;
    }
    // The publisher: its client id from the welcome.
    let mut pub_id = String::new();
    setup(
        &c.addrs[..1],
        "/",
        false,
        &mut poll,
        &mut clients,
        1,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| {
            if find(m, b"\"welcome\"").is_some() {
                pub_id = client_id_of(m).unwrap_or_default();
                true
            } else {
                false
            }
        },
    )?;
    if pub_id.is_empty() {
        return Err(io::Error::other("no client_id in the publisher's welcome"));
    }
    let publisher = subs;
    // Receivers: the subscribers, and for a broadcast the publisher too.
    let receivers = if broadcast { subs + 1 } else { subs };
    let mut track = vec![Track { next: 0, errors: 0 }; subs + 1];
    let expected = receivers as u64 * u64::from(msgs);

    // Every message is `size` bytes of client JSON with "#NNNNNN#" in it.
    for seq in 0..msgs {
        let body = format!("#{seq:06}#");
        let text = if broadcast {
            padded(r#"{"message":""#, &body, r#""}"#, size)
        } else {
            padded(
                &format!(r#"{{"event":"message","channel":"{channel}","data":""#),
                &body,
                r#""}"#,
                size,
            )
        };
        clients[publisher].queue_text(&text);
    }
    // Subscriber i is on node i % nodes; per node: deliveries, last one.
    let nodes = c.addrs.len();
    let mut node_delivered = vec![0u64; nodes];
    let mut node_last = vec![None::<Instant>; nodes];
    let (each0, redis0) = cpu_each(c);
    let cpu0 = cpu(c);
    let self0 = cpu_ms(std::process::id()).unwrap_or(f64::NAN);
    let t0 = Instant::now();
    clients[publisher].flush()?;
    let mut published_at = (clients[publisher].pending() == 0).then(Instant::now);
    let deadline = t0 + Duration::from_secs_f64(timeout);
    let mut delivered: u64 = 0;
    let mut last = t0;
    let mut id_errors = 0u64;
    let mut closed = 0u64;
    let mut events = Events::with_capacity(1024);
    while delivered < expected && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
                if i == publisher && published_at.is_none() && cl.pending() == 0 {
                    published_at = Some(Instant::now());
                }
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            if i == publisher && !broadcast {
                // The publisher is no subscriber: nothing should come.
                let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                    if seq_of(m).is_some() {
                        id_errors += 1;
                    }
                })?;
                closed += u64::from(st == ReadState::Closed);
                continue;
            }
            let t = &mut track[i];
            let mut got = 0u64;
            let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                let Some(seq) = seq_of(m) else {
                    return; // presence or another control message
                };
                if seq != t.next {
                    t.errors += 1;
                }
                let from_publisher = if pusher.is_some() {
                    // Pusher frame: event `message` on the channel, the
                    // Rakit data as a JSON string.
                    find(m, b"\"event\":\"message\"").is_some()
                } else {
                    client_id_of(m).as_deref() == Some(pub_id.as_str())
                };
                if seq == 0 && !from_publisher {
                    id_errors += 1;
                }
                t.next = seq + 1;
                got += 1;
            })?;
            if st == ReadState::Closed {
                closed += 1;
            }
            if got > 0 {
                delivered += got;
                last = Instant::now();
                let node = if i == publisher { 0 } else { i % nodes };
                node_delivered[node] += got;
                node_last[node] = Some(last);
            }
        }
    }
    let cpu1 = cpu(c);
    let (each1, redis1) = cpu_each(c);
    let self1 = cpu_ms(std::process::id()).unwrap_or(f64::NAN);
    let rss = c.pid.and_then(rss_kb).unwrap_or(0);
    let order_errors: u64 = track.iter().map(|t| u64::from(t.errors)).sum();
    let incomplete = track[..receivers].iter().filter(|t| t.next != msgs).count();
    let secs = (last - t0).as_secs_f64();
    let valid = delivered == expected && order_errors == 0 && incomplete == 0 && id_errors == 0;
    let cpu_used = cpu1 - cpu0;
    let mut line = format!(
        "workload={workload} server={} nodes={nodes} receivers={receivers} msgs={msgs} size={size} \
         delivered={delivered} expected={expected} lost={} order_errors={order_errors} \
         incomplete={incomplete} id_errors={id_errors} closed={closed} secs={secs:.3} \
         publish_s={:.3} deliveries_per_s={:.0} cpu_ms={cpu_used:.0} cpu_ns_per_delivery={:.0} \
         client_cpu_ms={:.0} rss_kb={rss} wire_bytes={} valid={}",
        c.server,
        expected.saturating_sub(delivered),
        published_at.map_or(f64::NAN, |p| (p - t0).as_secs_f64()),
        delivered as f64 / secs.max(1e-9),
        cpu_used * 1e6 / delivered.max(1) as f64,
        self1 - self0,
        rakit_load::WIRE_BYTES.load(std::sync::atomic::Ordering::Relaxed),
        u8::from(valid),
    );
    if nodes > 1 {
        for (j, (&n, l)) in node_delivered.iter().zip(&node_last).enumerate() {
            let s = l.map_or(f64::NAN, |l| (l - t0).as_secs_f64());
            line += &format!(" n{j}_delivered={n} n{j}_secs={s:.3}");
            if let (Some(a), Some(b)) = (each0.get(j), each1.get(j)) {
                let used = b - a;
                line += &format!(
                    " n{j}_cpu_ms={used:.0} n{j}_cpu_ns_per_delivery={:.0} n{j}_peak_rss_kb={}",
                    used * 1e6 / n.max(1) as f64,
                    c.pids.get(j).and_then(|&p| peak_rss_kb(p)).unwrap_or(0)
                );
            }
        }
    }
    // Deliveries per CPU-second of every server process (and of Redis).
    let redis_used = redis1 - redis0;
    if let Some(p) = c.redis_pid {
        line += &format!(
            " redis_cpu_ms={redis_used:.0} redis_peak_rss_kb={}",
            peak_rss_kb(p).unwrap_or(0)
        );
    }
    let all = cpu_used + if redis_used.is_nan() { 0.0 } else { redis_used };
    line += &format!(
        " deliveries_per_cpu_s={:.0} deliveries_per_cpu_s_no_redis={:.0}",
        delivered as f64 * 1e3 / all,
        delivered as f64 * 1e3 / cpu_used
    );
    Ok(line)
}

// ---- api: the backend HTTP API, and the same commands from a WebSocket admin ----

/// How a phase of the `api` workload publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `POST /api/commands` from `conc` keep-alive HTTP clients, one request
    /// in flight on each.
    Http,
    /// The same command objects from one WebSocket admin, at most `conc`
    /// unacknowledged.
    Ws,
}

/// The connections of the `api` workload: subscribers at tokens
/// `0..subs`, the admin at `subs`, HTTP clients from `subs + 1`.
struct ApiWorld {
    poll: Poll,
    ws: Vec<WsClient>,
    http: Vec<HttpClient>,
    subs: usize,
    key: String,
    size: usize,
    scratch: Vec<u8>,
}

/// What one phase measured.
struct Phase {
    name: String,
    commands: u64,
    delivered: u64,
    expected: u64,
    order_errors: u64,
    /// (subscriber, publisher) pairs that did not get all of that
    /// publisher's commands.
    incomplete: u64,
    /// Failed or missing answers, and unexpected messages to the admin.
    bad: u64,
    /// First command sent to last answer (HTTP response or ack).
    answer_secs: f64,
    /// First command sent to last delivery.
    delivery_secs: f64,
    cpu_ms: f64,
}

impl Phase {
    fn fields(&self) -> String {
        let n = &self.name;
        format!(
            "{n}_cmds={} {n}_cmds_per_s={:.0} {n}_deliveries_per_s={:.0} {n}_cpu_us_per_cmd={:.1} \
             {n}_lost={} {n}_order_errors={} {n}_incomplete={} {n}_bad={}",
            self.commands,
            self.commands as f64 / self.answer_secs.max(1e-9),
            self.delivered as f64 / self.delivery_secs.max(1e-9),
            self.cpu_ms * 1e3 / self.commands.max(1) as f64,
            self.expected.saturating_sub(self.delivered),
            self.order_errors,
            self.incomplete,
            self.bad,
        )
    }

    fn valid(&self) -> bool {
        self.delivered == self.expected
            && self.order_errors == 0
            && self.incomplete == 0
            && self.bad == 0
    }
}

impl ApiWorld {
    /// The command with sequence number `seq`: a `broadcast_to_channel` to
    /// `c` whose message is `size` bytes with `#NNNNNN#` in it.
    fn command(&self, seq: u32) -> Vec<u8> {
        let message = padded("", &format!("#{seq:06}#"), "", self.size);
        let message = String::from_utf8(message).expect("ASCII");
        format!(r#"{{"command":"broadcast_to_channel","channel":"c","message":"{message}"}}"#)
            .into_bytes()
    }

    fn post(&self, seq: u32) -> Vec<u8> {
        let body = self.command(seq);
        let mut req = format!(
            "POST /api/commands HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.key,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        req
    }

    /// Publishes `msgs` commands (rounded down to a multiple of the
    /// publishers) numbered from `base`, and waits for every answer and every
    /// delivery. Publisher `p`'s `j`-th command is `base + j * P + p`; every
    /// subscriber must get each exactly once, each publisher's in order.
    fn phase(
        &mut self,
        c: &Common,
        via: Via,
        conc: usize,
        msgs: u32,
        base: u32,
        timeout: f64,
    ) -> io::Result<Phase> {
        let subs = self.subs;
        let admin = subs;
        let publishers = if via == Via::Http { conc } else { 1 };
        let per_pub = msgs / publishers as u32;
        let total = per_pub * publishers as u32;
        let seq = |p: usize, j: u32| base + j * publishers as u32 + p as u32;
        let mut next = vec![0u32; subs * publishers];
        let mut sent = vec![0u32; publishers];
        let (mut answered, mut in_flight) = (0u32, 0usize);
        let (mut delivered, mut order_errors, mut bad) = (0u64, 0u64, 0u64);
        let expected = subs as u64 * u64::from(total);
        let mut scratch = std::mem::take(&mut self.scratch);
        let cpu0 = cpu(c);
        let t0 = Instant::now();
        let (mut last_answer, mut last_delivery) = (t0, t0);
        if via == Via::Http {
            // Keep-alive connections for this phase only (an idle one would be
            // closed after the daemon's handshake_timeout).
            for k in 0..conc {
                let mut cl = HttpClient::connect(c.addrs[0])?;
                self.poll.registry().register(
                    &mut cl.stream,
                    Token(subs + 1 + k),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                self.http.push(cl);
            }
        }
        match via {
            Via::Http => {
                for (k, sent) in sent.iter_mut().enumerate() {
                    let req = self.post(seq(k, 0));
                    self.http[k].queue(&req);
                    self.http[k].flush()?;
                    *sent = 1;
                }
            }
            Via::Ws => {
                while in_flight < conc && sent[0] < per_pub {
                    let cmd = self.command(seq(0, sent[0]));
                    self.ws[admin].queue_text(&cmd);
                    sent[0] += 1;
                    in_flight += 1;
                }
                self.ws[admin].flush()?;
            }
        }
        let deadline = t0 + Duration::from_secs_f64(timeout);
        let mut events = Events::with_capacity(1024);
        while (answered < total || delivered < expected) && Instant::now() < deadline {
            self.poll
                .poll(&mut events, Some(Duration::from_millis(100)))?;
            for ev in events.iter() {
                let i = ev.token().0;
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                if i < subs {
                    let cl = &mut self.ws[i];
                    if ev.is_writable() {
                        cl.flush()?;
                    }
                    if !readable {
                        continue;
                    }
                    let mut got = 0;
                    let next = &mut next[i * publishers..(i + 1) * publishers];
                    let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                        let Some(s) = seq_of(m) else { return };
                        let Some(rel) = s.checked_sub(base) else {
                            order_errors += 1;
                            return;
                        };
                        let (p, j) = (rel as usize % publishers, rel / publishers as u32);
                        if next[p] != j {
                            order_errors += 1;
                        }
                        next[p] = j + 1;
                        got += 1;
                    })?;
                    if st == ReadState::Closed {
                        return Err(io::Error::other(format!("subscriber {i} closed")));
                    }
                    if cl.pending() > 0 {
                        // A pong to a keep-alive ping.
                        cl.flush()?;
                    }
                    if got > 0 {
                        delivered += got;
                        last_delivery = Instant::now();
                    }
                } else if i == admin {
                    if ev.is_writable() {
                        self.ws[admin].flush()?;
                    }
                    if !readable {
                        continue;
                    }
                    let mut acks = 0u32;
                    let st = self.ws[admin].read_ready(&mut scratch, &mut || {}, &mut |m| {
                        if find(m, b"\"ack\"").is_some() {
                            acks += 1;
                        } else {
                            bad += 1;
                        }
                    })?;
                    if st == ReadState::Closed {
                        return Err(io::Error::other("the admin was closed"));
                    }
                    if acks > 0 {
                        answered += acks;
                        in_flight = in_flight.saturating_sub(acks as usize);
                        last_answer = Instant::now();
                        while via == Via::Ws && in_flight < conc && sent[0] < per_pub {
                            let cmd = self.command(seq(0, sent[0]));
                            self.ws[admin].queue_text(&cmd);
                            sent[0] += 1;
                            in_flight += 1;
                        }
                    }
                    // Commands, or a pong to a keep-alive ping.
                    self.ws[admin].flush()?;
                } else {
                    let k = i - subs - 1;
                    if ev.is_writable() {
                        self.http[k].flush()?;
                    }
                    if !readable {
                        continue;
                    }
                    let mut answers = 0u32;
                    let st = self.http[k].read_ready(&mut scratch, &mut |status, body| {
                        if status != 200 || body != br#"{"ok":true}"# {
                            bad += 1;
                        }
                        answers += 1;
                    })?;
                    if answers > 0 {
                        answered += answers;
                        last_answer = Instant::now();
                        if k < publishers && sent[k] < per_pub {
                            let req = self.post(seq(k, sent[k]));
                            self.http[k].queue(&req);
                            sent[k] += 1;
                        }
                        self.http[k].flush()?;
                    }
                    if st == ReadState::Closed {
                        return Err(io::Error::other(format!("HTTP client {k} was closed")));
                    }
                }
            }
        }
        let cpu1 = cpu(c);
        for mut cl in self.http.drain(..) {
            self.poll.registry().deregister(&mut cl.stream)?;
        }
        if answered < total || delivered < expected {
            eprintln!(
                "loadgen api: {via:?} x{conc} timed out: {answered} of {total} answered, \
                 {delivered} of {expected} delivered, sent {sent:?}"
            );
        }
        self.scratch = scratch;
        let incomplete = next.iter().filter(|&&n| n != per_pub).count() as u64;
        let name = match via {
            Via::Http => format!("api{conc}"),
            Via::Ws => format!("ws{conc}"),
        };
        Ok(Phase {
            name,
            commands: u64::from(answered),
            delivered,
            expected,
            order_errors,
            incomplete,
            bad: bad + u64::from(total - answered.min(total)),
            answer_secs: (last_answer - t0).as_secs_f64(),
            delivery_secs: (last_delivery - t0).as_secs_f64(),
            cpu_ms: cpu1 - cpu0,
        })
    }
}

/// `POST /api/commands` over keep-alive from 1 and from 16 HTTP clients,
/// and the same `broadcast_to_channel` commands from a WebSocket admin (1
/// and 16 unacknowledged), to `--subs` subscribers of one channel that read
/// everything; commands/s (HTTP answers or acks) and deliveries/s per phase.
fn api(c: &Common, args: &Args) -> io::Result<String> {
    let subs: usize = args.num("subs", 1000);
    let msgs: u32 = args.num("msgs", 480);
    let size: usize = args.num("size", 24);
    let timeout: f64 = args.num("timeout", 60.0);
    let key = args.get("key").unwrap_or_else(|| API_BENCH_KEY.to_owned());
    let token = args
        .get("token")
        .ok_or_else(|| io::Error::other("--token: an admin session token is needed"))?;
    let concurrency: Vec<usize> = args
        .get("concurrency")
        .unwrap_or_else(|| "1,16".into())
        .split(',')
        .map(|n| n.parse().expect("--concurrency: numbers"))
        .collect();
    let mut poll = Poll::new()?;
    let mut ws: Vec<WsClient> = Vec::with_capacity(subs + 1);
    let mut scratch = vec![0u8; SCRATCH];
    let subscribe = br#"{"event":"subscribe","channel":"c"}"#;
    setup(
        &c.addrs[..1],
        "/",
        false,
        &mut poll,
        &mut ws,
        subs,
        &mut scratch,
        &mut |_, cl| cl.queue_text(subscribe),
        &mut |_, m| find(m, b"\"subscribed\"").is_some(),
    )?;
    let mut admin_user = false;
    setup(
        &c.addrs[..1],
        &format!("/?token={token}"),
        false,
        &mut poll,
        &mut ws,
        1,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| {
            admin_user = find(m, b"\"user\":{").is_some();
            find(m, b"\"welcome\"").is_some()
        },
    )?;
    if !admin_user {
        return Err(io::Error::other(
            "the admin's welcome has no user: bad --token?",
        ));
    }
    let mut world = ApiWorld {
        poll,
        ws,
        http: Vec::new(),
        subs,
        key,
        size,
        scratch,
    };
    let mut phases = Vec::new();
    let mut base = 0;
    for &conc in &concurrency {
        for via in [Via::Http, Via::Ws] {
            let phase = world.phase(c, via, conc, msgs, base, timeout)?;
            eprintln!(
                "loadgen api: {} {} commands in {:.3} s, deliveries done at {:.3} s",
                phase.name, phase.commands, phase.answer_secs, phase.delivery_secs
            );
            base += phase.commands as u32;
            phases.push(phase);
        }
    }
    let rss = c.pid.and_then(rss_kb).unwrap_or(0);
    let valid = phases.iter().all(Phase::valid);
    let lost: u64 = phases
        .iter()
        .map(|p| p.expected.saturating_sub(p.delivered))
        .sum();
    Ok(format!(
        "workload=api server={} subs={subs} msgs={msgs} size={size} {} lost={lost} rss_kb={rss} valid={}",
        c.server,
        phases.iter().map(Phase::fields).collect::<Vec<_>>().join(" "),
        u8::from(valid),
    ))
}

// ---- latency: paced publisher, time to each subscriber ----

fn latency(c: &Common, args: &Args) -> io::Result<String> {
    let subs: usize = args.num("subs", 100);
    let rate: f64 = args.num("rate", 100.0);
    let secs: f64 = args.num("secs", 10.0);
    let warmup: f64 = args.num("warmup", 1.0);
    let size: usize = args.num("size", 64);
    let channel = "bench";
    let far = *c.addrs.last().expect("an address");
    let mut poll = Poll::new()?;
    let mut clients: Vec<WsClient> = Vec::with_capacity(subs + 1);
    let mut scratch = vec![0u8; SCRATCH];
    let subscribe = format!(r#"{{"event":"subscribe","channel":"{channel}"}}"#);
    setup(
        &[far],
        "/",
        false,
        &mut poll,
        &mut clients,
        subs,
        &mut scratch,
        &mut |_, cl| cl.queue_text(subscribe.as_bytes()),
        &mut |_, m| find(m, b"\"subscribed\"").is_some(),
    )?;
    setup(
        &c.addrs[..1],
        "/",
        false,
        &mut poll,
        &mut clients,
        1,
        &mut scratch,
        &mut |_, _| {},
        &mut |_, m| find(m, b"\"welcome\"").is_some(),
    )?;
    let publisher = subs;
    let total = ((warmup + secs) * rate).round() as u32;
    let skip = (warmup * rate).round() as u32;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(total as usize);
    let mut track = vec![Track { next: 0, errors: 0 }; subs];
    let mut lat_ns: Vec<u64> = Vec::with_capacity(subs * total as usize);
    let mut delivered: u64 = 0;
    let mut closed = 0u64;
    let mut events = Events::with_capacity(1024);
    let mut cpu0 = f64::NAN;
    let mut redis0 = f64::NAN;
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate);
    let drain_until = t0 + Duration::from_secs_f64(warmup + secs + 2.0);
    let expected = subs as u64 * u64::from(total);
    while delivered < expected && Instant::now() < drain_until {
        let seq = sent_at.len() as u32;
        let now = Instant::now();
        if seq < total && now >= t0 + period * seq {
            if seq == skip {
                cpu0 = cpu(c);
                redis0 = cpu_each(c).1;
            }
            let body = format!("#{seq:06}#");
            let text = padded(
                &format!(r#"{{"event":"message","channel":"{channel}","data":""#),
                &body,
                r#""}"#,
                size,
            );
            let cl = &mut clients[publisher];
            cl.queue_text(&text);
            sent_at.push(Instant::now());
            cl.flush()?;
            continue;
        }
        let next = if seq < total {
            (t0 + period * seq).saturating_duration_since(now)
        } else {
            Duration::from_millis(50)
        };
        poll.poll(&mut events, Some(next))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let cl = &mut clients[i];
            if ev.is_writable() {
                cl.flush()?;
            }
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            if i == publisher {
                let st = cl.read_ready(&mut scratch, &mut || {}, &mut |_| {})?;
                closed += u64::from(st == ReadState::Closed);
                continue;
            }
            let t = &mut track[i];
            let st = cl.read_ready(&mut scratch, &mut || {}, &mut |m| {
                let Some(seq) = seq_of(m) else { return };
                let now = Instant::now();
                if seq != t.next {
                    t.errors += 1;
                }
                t.next = seq + 1;
                delivered += 1;
                if seq >= skip {
                    if let Some(at) = sent_at.get(seq as usize) {
                        lat_ns.push((now - *at).as_nanos() as u64);
                    }
                }
            })?;
            closed += u64::from(st == ReadState::Closed);
        }
    }
    let cpu1 = cpu(c);
    let redis1 = cpu_each(c).1;
    lat_ns.sort_unstable();
    let lat_us: Vec<u32> = lat_ns.iter().map(|n| (n / 1000) as u32).collect();
    let order_errors: u64 = track.iter().map(|t| u64::from(t.errors)).sum();
    let incomplete = track.iter().filter(|t| t.next != total).count();
    let valid = delivered == expected && order_errors == 0 && incomplete == 0 && closed == 0;
    let mean = lat_ns.iter().sum::<u64>() as f64 / lat_ns.len().max(1) as f64 / 1e3;
    Ok(format!(
        "workload=latency server={} nodes={} subs={subs} rate={rate} secs={secs} sent={} \
         delivered={delivered} expected={expected} lost={} order_errors={order_errors} \
         incomplete={incomplete} closed={closed} p50_us={} p90_us={} p99_us={} max_us={} \
         mean_us={mean:.0} cpu_ms={:.0} redis_cpu_ms={:.0} valid={}",
        c.server,
        c.addrs.len(),
        sent_at.len(),
        expected.saturating_sub(delivered),
        quantile(&lat_us, 0.50),
        quantile(&lat_us, 0.90),
        quantile(&lat_us, 0.99),
        lat_us.last().copied().unwrap_or(0),
        cpu1 - cpu0,
        redis1 - redis0,
        u8::from(valid),
    ))
}

// ---- idle ----

fn idle(c: &Common, args: &Args) -> io::Result<String> {
    let conns: usize = args.num("conns", 10_000);
    let inflight: usize = args.num("inflight", 100);
    let settle_ms: u64 = args.num("settle-ms", 1000);
    let timeout: f64 = args.num("timeout", 60.0);
    let path = args
        .get("pusher")
        .map_or_else(|| "/".to_owned(), |k| pusher_path(&k));
    let mut poll = Poll::new()?;
    let mut clients: Vec<WsClient> = Vec::with_capacity(conns);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    let rss0 = c.pid.and_then(rss_kb).unwrap_or(0);
    let cpu0 = cpu(c);
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(timeout);
    let mut opened = 0usize;
    let mut closed = 0usize;
    let mut failed = 0usize;
    let mut dead = vec![false; conns];
    let mut handshakes_done = t0;
    while opened + failed < conns {
        while clients.len() < conns && clients.len() - opened - failed < inflight {
            clients.push(open_client_at(&poll, c.addrs[0], clients.len(), &path)?);
        }
        if Instant::now() > deadline {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            if dead[i] {
                continue;
            }
            let cl = &mut clients[i];
            let was_open = cl.open;
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let fail = !service_idle(cl, readable, &mut scratch);
            if !was_open && cl.open {
                opened += 1;
                if opened == conns {
                    handshakes_done = Instant::now();
                }
            }
            if fail {
                dead[i] = true;
                if cl.open {
                    closed += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    let handshake_secs = (handshakes_done - t0).as_secs_f64();
    let cpu1 = cpu(c);
    // Hold them, idle, answering whatever comes (welcome, pings).
    let hold_until = Instant::now() + Duration::from_millis(settle_ms);
    while Instant::now() < hold_until {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            if dead[i] {
                continue;
            }
            let cl = &mut clients[i];
            let fail = !service_idle(cl, true, &mut scratch);
            if fail {
                dead[i] = true;
                closed += 1;
            }
        }
    }
    let rss1 = c.pid.and_then(rss_kb).unwrap_or(0);
    let valid = opened == conns && closed == 0 && failed == 0;
    Ok(format!(
        "workload=idle server={} conns={conns} inflight={inflight} opened={opened} failed={failed} \
         closed={closed} handshake_secs={handshake_secs:.3} handshakes_per_s={:.0} \
         cpu_ms={:.0} cpu_us_per_handshake={:.1} rss_before_kb={rss0} rss_after_kb={rss1} \
         rss_per_conn_b={:.0} valid={}",
        c.server,
        opened as f64 / handshake_secs.max(1e-9),
        cpu1 - cpu0,
        (cpu1 - cpu0) * 1e3 / opened.max(1) as f64,
        (rss1 as f64 - rss0 as f64) * 1024.0 / opened.max(1) as f64,
        u8::from(valid),
    ))
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
