//! A hostile-client soak: many clients that follow the protocol but not
//! good manners, at once, against one daemon, while a well-behaved probe
//! measures that it is still served. Bounded in time: `RAKIT_SOAK_SECS`
//! (default 15; run it for 600 before a release:
//! `RAKIT_SOAK_SECS=600 cargo test --release --test soak_hostile -- --nocapture`).
//!
//! At the end: the daemon is alive, every descriptor it held for the
//! clients is released, its peak memory stayed bounded, and every probe got
//! its answer.

mod common;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::abuse::LIMITS_OFF;
use common::{send_frame, upgrade_request, Daemon};
use rakit_protocol::OpCode;

/// Hostile sockets kept open (unread) at most; older ones are closed.
const MAX_KEPT: usize = 400;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd")
        .count()
}

/// A small deterministic generator (no dependency, reproducible runs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rakit_protocol::encode_masked(&mut out, true, opcode, payload, [3, 1, 4, 1]);
    out
}

/// Connects and upgrades; `None` if the daemon refused or dropped it (it
/// may, under this load: that is its right).
fn ws(daemon: &Daemon) -> Option<TcpStream> {
    upgrade(TcpStream::connect(daemon.addr).ok()?)
}

/// [`ws`] with a receive window of a few KiB: the daemon's output backs up
/// at once.
fn ws_small_window(daemon: &Daemon) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.set_recv_buffer_size(8 * 1024).ok()?;
    socket.connect(&daemon.addr.into()).ok()?;
    upgrade(socket.into())
}

fn upgrade(mut s: TcpStream) -> Option<TcpStream> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(&upgrade_request("/", "")).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(s)
}

/// Reads and drops for `d`.
fn drain_for(s: &mut TcpStream, d: Duration) {
    let until = Instant::now() + d;
    let mut buf = [0u8; 16 * 1024];
    s.set_read_timeout(Some(Duration::from_millis(50))).ok();
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// One hostile pattern, run once. The socket it returns is kept open, and
/// never read, until the soak ends: the daemon must let go of it by itself.
fn misbehave(kind: u64, daemon: &Daemon, rng: &mut Rng) -> Option<TcpStream> {
    match kind {
        // Trickles an upgrade request a few bytes at a time, then gives up
        // or finishes it.
        0 => {
            let mut s = TcpStream::connect(daemon.addr).ok()?;
            let req = upgrade_request("/", "X-Slow: yes\r\n");
            let stop_at = rng.below(req.len() as u64 + 1) as usize;
            for chunk in req[..stop_at].chunks(7) {
                s.write_all(chunk).ok()?;
                std::thread::sleep(Duration::from_millis(2));
            }
            Some(s)
        }
        // Floods pings and never reads: dropped with 4008 sooner or later.
        1 => {
            let mut s = ws(daemon)?;
            let batch = frame(OpCode::Ping, &[b'x'; 125]).repeat(256);
            for _ in 0..2000 {
                s.write_all(&batch).ok()?;
            }
            Some(s)
        }
        // Sends pings, then a close frame, with the output backed up, and
        // never reads again.
        2 => {
            let mut s = ws_small_window(daemon)?;
            let batch = frame(OpCode::Ping, &[b'y'; 125]).repeat(512);
            for _ in 0..120 {
                s.write_all(&batch).ok()?;
            }
            let _ = s.write_all(&frame(OpCode::Close, &1000u16.to_be_bytes()));
            std::thread::sleep(Duration::from_millis(rng.below(500)));
            Some(s)
        }
        // Half-closes after a request: reads every reply due.
        3 => {
            let mut s = ws(daemon)?;
            let mut out = frame(OpCode::Text, br#"{"ping":1}"#);
            out.extend(frame(OpCode::Close, &1000u16.to_be_bytes()));
            let _ = s.write_all(&out);
            let _ = s.shutdown(Shutdown::Write);
            drain_for(&mut s, Duration::from_secs(3));
            Some(s)
        }
        // Garbage: random bytes before or after the upgrade.
        4 => {
            let upgraded = rng.below(2) == 0;
            let s = if upgraded {
                ws(daemon)
            } else {
                TcpStream::connect(daemon.addr).ok()
            };
            let mut s = s?;
            let junk: Vec<u8> = (0..rng.below(4096) + 1).map(|_| rng.next() as u8).collect();
            let _ = s.write_all(&junk);
            drain_for(&mut s, Duration::from_millis(200));
            Some(s)
        }
        // Subscribes and publishes fast to a busy channel, reading nothing,
        // then vanishes with a reset.
        5 => {
            let mut s = ws(daemon)?;
            let mut out = frame(OpCode::Text, br#"{"event":"subscribe","channel":"busy"}"#);
            for i in 0..2000 {
                out.extend(frame(
                    OpCode::Text,
                    format!(r#"{{"event":"message","channel":"busy","data":{i}}}"#).as_bytes(),
                ));
            }
            let _ = s.write_all(&out);
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            None
        }
        // Reads slowly but steadily while the channel is busy.
        6 => {
            let mut s = ws(daemon)?;
            let _ = s.write_all(&frame(
                OpCode::Text,
                br#"{"event":"subscribe","channel":"busy"}"#,
            ));
            let until = Instant::now() + Duration::from_secs(2);
            let mut buf = [0u8; 512];
            while Instant::now() < until {
                if s.read(&mut buf).map_or(true, |n| n == 0) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Some(s)
        }
        // Pipelines scrapes and health checks and never reads the answers
        // (the daemon stops reading it once 64 KiB of answers wait).
        8 => {
            let mut s = TcpStream::connect(daemon.addr).ok()?;
            s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
            let requests: Vec<u8> = (0..2000)
                .flat_map(|i| {
                    let path = if i % 2 == 0 { "/metrics" } else { "/health" };
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
                })
                .collect();
            let _ = s.write_all(&requests);
            Some(s)
        }
        // Starts a fragmented message and never finishes it.
        _ => {
            let mut s = ws(daemon)?;
            send_frame(&mut s, false, OpCode::Text, b"{\"message\":");
            drain_for(&mut s, Duration::from_millis(300));
            Some(s)
        }
    }
}

#[test]
fn hostile_clients_cannot_break_the_bounds() {
    let secs: u64 = std::env::var("RAKIT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    // The bounds must hold without SPEC 17's limits too (an operator may turn them off), so
    // they are off: the publishers here really publish.
    let daemon = Daemon::start(
        &format!(
            "logging_enabled = false\nhandshake_timeout = 2\nping_interval = 2\nping_timeout = 2\n\
             presence_interval_ms = 100\nmax_send_buffer = 16777216\n{LIMITS_OFF}"
        ),
        &[],
    );
    let pid = daemon.child.id();
    let baseline = open_fds(pid);
    let daemon = Arc::new(daemon);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let kept = Arc::new(Mutex::new(VecDeque::new()));
    let peak_fds = Arc::new(AtomicU64::new(0));
    let mut actors = Vec::new();
    // A debug build (the test suite's) is several times slower per byte than
    // a release build: fewer attackers keep the probe's bound meaningful
    // on a small, busy machine. The 10-minute release run uses twelve.
    let attackers: u64 = if cfg!(debug_assertions) { 6 } else { 12 };
    for id in 0..attackers {
        let (daemon, stop, rounds, kept) =
            (daemon.clone(), stop.clone(), rounds.clone(), kept.clone());
        actors.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x2545_f491));
            while !stop.load(Ordering::Relaxed) {
                let kind = rng.below(9);
                if let Some(s) = misbehave(kind, &daemon, &mut rng) {
                    let mut kept = kept.lock().unwrap();
                    kept.push_back(s);
                    if kept.len() > MAX_KEPT {
                        kept.pop_front();
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // The probe: a well-behaved client that must be served throughout.
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    let mut peak_rss = 0;
    let (mut probe, _) = daemon.client();
    while start.elapsed() < Duration::from_secs(secs) {
        let sent = Instant::now();
        common::send_text(&mut probe, r#"{"ping":1}"#);
        common::recv_type(&mut probe, "pong");
        worst = worst.max(sent.elapsed());
        probes += 1;
        peak_rss = peak_rss.max(common::vm_rss_kib(pid));
        peak_fds.fetch_max(open_fds(pid) as u64, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for actor in actors {
        actor.join().expect("actor");
    }
    drop(probe);
    // Every hostile client is gone, though the clients still hold their
    // sockets open and read nothing: within the longest timer (ping
    // interval + timeout: 4 s) plus slack.
    let settled = Instant::now();
    while open_fds(pid) > baseline && settled.elapsed() < Duration::from_secs(7) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let end_fds = open_fds(pid);
    let kept_open = kept.lock().unwrap().len();
    eprintln!(
        "soak: {secs} s, {} hostile connections, {probes} probes (worst round trip {worst:?}), \
         peak RSS {peak_rss} KiB, peak descriptors {}, descriptors at the end {end_fds} \
         (baseline {baseline}) with {kept_open} hostile sockets still open",
        rounds.load(Ordering::Relaxed),
        peak_fds.load(Ordering::Relaxed)
    );
    let mut daemon = Arc::try_unwrap(daemon).ok().expect("actors done");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon exited"
    );
    assert_eq!(end_fds, baseline, "descriptors still held after the soak");
    assert!(peak_rss < 512 * 1024, "peak RSS {peak_rss} KiB");
    assert!(
        worst < Duration::from_secs(5),
        "a probe waited {worst:?} for its pong"
    );
    // And it still serves a newcomer.
    let (mut ws, _) = daemon.client();
    common::send_text(&mut ws, r#"{"ping":2}"#);
    common::recv_type(&mut ws, "pong");
    let _ = daemon.child.kill();
}
