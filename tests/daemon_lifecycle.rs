//! The daemon's life around its clients (SPEC sections 1, 2 and 6): the
//! listen backlog, a graceful SIGTERM that still delivers what is queued, and
//! the keep-alive pings.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::abuse::LIMITS_OFF;
use common::msg::{client, expect_gone, recv_close, recv_type};
use common::{
    raw_ws, read_frame, read_http_head, send_frame, send_json, status_of, upgrade_request,
    wait_exit, Daemon, RawFrame, WAIT,
};
use rakit_protocol::OpCode;
use serde_json::{json, Value};

/// The daemon's listen backlog as the kernel reports it: `ss` shows it as
/// the Send-Q of a listening socket.
#[track_caller]
fn listen_backlog(port: u16) -> u32 {
    let out = Command::new("ss")
        .args(["-ltn", &format!("sport = :{port}")])
        .output()
        .unwrap_or_else(|e| {
            panic!("`ss` (Debian package iproute2) is needed to read the listen backlog: {e}")
        });
    assert!(out.status.success(), "ss failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.first() == Some(&"LISTEN")
                && f.get(3).is_some_and(|a| a.ends_with(&format!(":{port}")))
        })
        .unwrap_or_else(|| panic!("no listening socket on port {port} in: {text}"));
    row[2]
        .parse()
        .unwrap_or_else(|_| panic!("Send-Q in {row:?}"))
}

#[test]
fn the_listen_backlog_holds_a_reconnect_storm() {
    let daemon = Daemon::default_config();
    let backlog = listen_backlog(daemon.addr.port());
    assert!(backlog >= 1024, "listen backlog {backlog}");
}

/// A raw client whose receive buffer is a few KiB, so what the daemon sends
/// it piles up in the daemon rather than in the kernel.
#[track_caller]
fn small_window_client(daemon: &Daemon) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(daemon.addr), Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&daemon.addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&upgrade_request("/", "")).unwrap();
    let head = read_http_head(&mut s);
    assert_eq!(status_of(&head), 101, "{head}");
    s
}

#[track_caller]
fn text_of(frame: &RawFrame) -> Value {
    assert_eq!(frame.byte0, 0x81, "not a whole text frame: {frame:?}");
    serde_json::from_slice(&frame.payload).expect("JSON text")
}

#[test]
fn sigterm_stops_accepting_and_delivers_what_is_queued_before_exit_0() {
    // 200 broadcasts in a row fill the slow client's queue: SPEC 17's buckets off.
    let mut daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\nmax_send_buffer = 8388608\n{LIMITS_OFF}"
        ),
        &[],
    );
    let mut slow = small_window_client(&daemon);
    assert_eq!(text_of(&read_frame(&mut slow))["type"], "welcome");
    let (mut publisher, _) = client(&daemon);
    // 1.6 MB for a client that reads nothing yet. The publisher gets each
    // broadcast too, so once it has the last one, all are queued for `slow`.
    let filler = "q".repeat(8000);
    let count = 200;
    for i in 0..count {
        send_json(&mut publisher, &json!({"message": [i, filler]}));
        assert_eq!(recv_type(&mut publisher, "message")["message"][0], i);
    }

    let status = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // The publisher's close frame shows the shutdown has begun.
    assert_eq!(recv_close(&mut publisher).0, 1001);
    expect_gone(&mut publisher);
    // From now on nobody is let in: the listener is closed when shutdown
    // begins, so a connect is refused (or, should another test have bound
    // the freed port meanwhile, it is not this daemon that answers: checked
    // once the daemon is gone).
    let late = TcpStream::connect(daemon.addr).ok().map(|mut s| {
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&upgrade_request("/", "")).unwrap();
        s
    });

    // Everything queued before the signal arrives, in order, then the close.
    for i in 0..count {
        let v = text_of(&read_frame(&mut slow));
        assert_eq!(v["type"], "message", "{i}");
        assert_eq!(v["message"][0], i);
    }
    let close = read_frame(&mut slow);
    assert_eq!(close.close_code(), 1001);
    send_frame(&mut slow, true, OpCode::Close, &1001u16.to_be_bytes());
    common::expect_eof(&mut slow);

    let status = wait_exit(&mut daemon.child, WAIT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    if let Some(mut late) = late {
        let mut buf = [0u8; 512];
        match late.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(n) => panic!(
                "a connection made after SIGTERM was answered: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) => panic!("a connection made after SIGTERM: {e}"),
        }
    }
}

#[test]
fn ping_interval_0_disables_pings() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nping_interval = 0\nping_timeout = 1\n",
        &["--echo"],
    );
    let mut s = raw_ws(&daemon);
    // Three seconds of silence: several intervals and timeouts of a daemon
    // that took 0 for "ping at once" or for a small interval.
    let silence = Duration::from_secs(3);
    s.set_read_timeout(Some(silence)).unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = loop {
        match s.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match read {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("dropped after {:?} of silence", started.elapsed()),
        Ok(_) => panic!(
            "got a frame (byte {:#04x}) after {:?}",
            byte[0],
            started.elapsed()
        ),
        Err(e) => panic!("{e}"),
    }
    assert!(started.elapsed() >= silence - Duration::from_millis(100));
    // Still open.
    s.set_read_timeout(Some(WAIT)).unwrap();
    send_frame(&mut s, true, OpCode::Text, b"still here");
    assert_eq!(read_frame(&mut s).payload, b"still here");
}

#[test]
fn any_frame_answers_the_servers_ping() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nping_interval = 1\nping_timeout = 2\n",
        &["--echo"],
    );
    let mut s = raw_ws(&daemon);
    // Each ping is answered with a text message, never a pong. Were only a
    // pong an answer, the first ping's timeout would drop the connection
    // about a second after the second ping, before the third.
    for i in 0..3 {
        let ping = read_frame(&mut s);
        assert_eq!(ping.byte0, 0x89, "ping {i}: {ping:?}");
        let text = format!("answer {i}");
        send_frame(&mut s, true, OpCode::Text, text.as_bytes());
        assert_eq!(read_frame(&mut s).payload, text.as_bytes(), "echo {i}");
    }
    send_frame(&mut s, true, OpCode::Text, b"alive");
    assert_eq!(read_frame(&mut s).payload, b"alive");
}
