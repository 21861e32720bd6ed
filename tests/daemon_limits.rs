//! Resource limits and timers over real sockets (SPEC sections 2 and 6): a client that never
//! reads is dropped with bounded memory, a silent peer is pinged then dropped, a client that answers
//! pings stays, and a handshake that never finishes is cut off.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{expect_eof, raw_ws, read_frame, send_frame, Daemon, WAIT};
use rakit_protocol::OpCode;
use tungstenite::Message;

/// One message the slow reader sends: 64 KiB.
const CHUNK: usize = 64 * 1024;
/// Far more than any socket buffers hold: a daemon that never drops the
/// slow reader fails the test when this much has been sent.
const MAX_SENT: usize = 512 * 1024 * 1024;
/// Growth of the daemon's resident memory the test tolerates: the tests
/// below allow 1 MiB messages and 64 KiB of queue, so a connection may hold
/// about 1.2 MiB; the rest is the allocator's slack.
const MAX_GROWTH_KIB: u64 = 4 * 1024;

/// Sends `frame` over and over without reading until the daemon drops the
/// connection (a write fails); returns the bytes sent.
#[track_caller]
fn flood_until_dropped(s: &mut TcpStream, frame: &[u8]) -> usize {
    s.set_write_timeout(Some(WAIT)).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut sent = 0;
    loop {
        match s.write_all(frame) {
            Ok(()) => sent += frame.len(),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionAborted
                ) =>
            {
                return sent
            }
            Err(e) => panic!("after {sent} bytes: {e} (not dropped; the daemon stopped reading?)"),
        }
        assert!(sent < MAX_SENT, "still connected after {sent} bytes");
        assert!(
            Instant::now() < deadline,
            "still connected after {sent} bytes"
        );
    }
}

/// Floods from `slow` (which never reads) and checks that the daemon drops it
/// while its resident memory stays bounded.
#[track_caller]
fn assert_slow_reader_dropped(daemon: &Daemon, mut slow: TcpStream, frame: &[u8]) {
    let pid = daemon.child.id();
    let before = common::vm_rss_kib(pid);
    flood_until_dropped(&mut slow, frame);
    let after = common::vm_rss_kib(pid);
    assert!(
        after.saturating_sub(before) < MAX_GROWTH_KIB,
        "resident memory grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn slow_reader_in_echo_mode_is_dropped_with_memory_bounded() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nmax_send_buffer = 65536\nmax_buffer_size = 1048576\n",
        &["--echo"],
    );
    let mut other = daemon.ws_at("/");
    let slow = raw_ws(&daemon);
    let mut frame = Vec::new();
    rakit_protocol::encode_masked(
        &mut frame,
        true,
        OpCode::Binary,
        &[0x5a; CHUNK],
        [1, 2, 3, 4],
    );
    assert_slow_reader_dropped(&daemon, slow, &frame);
    other.send(Message::Text("still here".into())).unwrap();
    assert_eq!(
        common::read(&mut other).unwrap(),
        Message::Text("still here".into())
    );
}

#[test]
fn slow_reader_of_private_messages_is_dropped_with_memory_bounded() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nmax_send_buffer = 65536\nmax_buffer_size = 1048576\n",
        &[],
    );
    let (mut other, _) = daemon.client();
    let mut slow = raw_ws(&daemon);
    let welcome = read_frame(&mut slow);
    let welcome: serde_json::Value = serde_json::from_slice(&welcome.payload).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // Private messages to itself: only the slow reader gets them.
    let message = serde_json::json!({
        "to": welcome["client_id"],
        "message": "x".repeat(CHUNK),
    })
    .to_string();
    let mut frame = Vec::new();
    rakit_protocol::encode_masked(&mut frame, true, OpCode::Text, message.as_bytes(), [5; 4]);
    assert_slow_reader_dropped(&daemon, slow, &frame);
    common::send_json(&mut other, &serde_json::json!({"ping": 1}));
    assert_eq!(common::recv_type(&mut other, "pong")["type"], "pong");
}

#[test]
fn ping_flood_without_reading_is_dropped_with_memory_bounded() {
    let daemon = Daemon::start(
        // No presence: its fan-out would trip the router's own check.
        "logging_level = \"warn\"\nmax_send_buffer = 65536\npresence = false\n",
        &[],
    );
    let (mut other, _) = daemon.client();
    let slow = raw_ws(&daemon);
    // Pongs owed to a peer that never reads count against max_send_buffer too.
    let mut pings = Vec::new();
    for _ in 0..512 {
        rakit_protocol::encode_masked(&mut pings, true, OpCode::Ping, &[0x70; 125], [3; 4]);
    }
    assert_slow_reader_dropped(&daemon, slow, &pings);
    common::send_json(&mut other, &serde_json::json!({"ping": 1}));
    assert_eq!(common::recv_type(&mut other, "pong")["type"], "pong");
}

#[test]
fn overflow_with_room_in_the_socket_gets_a_4008_close() {
    let daemon = Daemon::start("logging_level = \"warn\"\nmax_send_buffer = 1024\n", &[]);
    let mut target = raw_ws(&daemon);
    let welcome = read_frame(&mut target);
    let welcome: serde_json::Value = serde_json::from_slice(&welcome.payload).unwrap();
    let (mut sender, _) = daemon.client();
    // One message larger than max_send_buffer overflows in a single turn.
    common::send_json(
        &mut sender,
        &serde_json::json!({"to": welcome["client_id"], "message": "x".repeat(2000)}),
    );
    let close = loop {
        let frame = read_frame(&mut target);
        match frame.byte0 {
            // Presence updates may come first; the message itself is discarded.
            0x81 => assert!(frame.payload.len() < 1024, "the oversized message arrived"),
            _ => break frame,
        }
    };
    assert!(!close.masked);
    assert_eq!(close.close_code(), 4008, "{close:?}");
    expect_eof(&mut target);
    common::send_json(&mut sender, &serde_json::json!({"ping": 1}));
    assert_eq!(common::recv_type(&mut sender, "pong")["type"], "pong");
}

#[test]
fn echo_larger_than_the_send_buffer_gets_a_4008_close() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nmax_send_buffer = 1024\n",
        &["--echo"],
    );
    let mut s = raw_ws(&daemon);
    send_frame(&mut s, true, OpCode::Text, &[b'e'; 1000]);
    assert_eq!(read_frame(&mut s).payload, [b'e'; 1000]);
    send_frame(&mut s, true, OpCode::Text, &[b'e'; 2000]);
    let close = read_frame(&mut s);
    assert!(!close.masked);
    assert_eq!(close.close_code(), 4008, "{close:?}");
    expect_eof(&mut s);
}

#[test]
fn silent_peer_is_pinged_then_dropped() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nping_interval = 1\nping_timeout = 1\n",
        &["--echo"],
    );
    let mut s = raw_ws(&daemon);
    let connected = Instant::now();
    let ping = read_frame(&mut s);
    assert_eq!(ping.byte0, 0x89, "{ping:?}");
    assert!(!ping.masked);
    assert!(
        connected.elapsed() >= Duration::from_millis(500),
        "pinged after {:?}, before the interval",
        connected.elapsed()
    );
    // Never answered: the TCP connection goes (read timeout WAIT bounds the wait).
    expect_eof(&mut s);
    assert!(
        connected.elapsed() < Duration::from_secs(6),
        "dropped after {:?}",
        connected.elapsed()
    );
}

#[test]
fn peer_that_answers_pings_stays_connected() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nping_interval = 1\nping_timeout = 2\n",
        &["--echo"],
    );
    let mut ws = daemon.ws_at("/");
    // Long enough for the ping and pong timers to have dropped a silent peer.
    let pings = common::answer_pings_for(&mut ws, Duration::from_millis(3500));
    assert!(pings >= 2, "{pings} pings in 3.5 s");
    ws.send(Message::Text("alive".into())).unwrap();
    assert_eq!(
        common::read(&mut ws).unwrap(),
        Message::Text("alive".into())
    );
}

#[test]
fn slowloris_handshake_is_dropped() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nhandshake_timeout = 1\n",
        &["--echo"],
    );
    let mut s = daemon.tcp();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .unwrap();
    expect_eof(&mut s);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "dropped after {took:?}");
    assert!(took < Duration::from_secs(5), "dropped after {took:?}");
    // A complete handshake in time is not affected.
    let mut ok = raw_ws(&daemon);
    send_frame(&mut ok, true, OpCode::Text, b"hi");
    assert_eq!(read_frame(&mut ok).payload, b"hi");
}
