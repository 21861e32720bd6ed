//! The event loop's work against hostile clients (issue 16): what a client
//! controls (its compression window, its TLS records, its compressed
//! messages) must not multiply the loop's work or monopolise a turn.

mod common;

use std::net::TcpStream;

use common::api::{api_table, command, once, scrape, value_of};
use common::*;
use rakit_protocol::deflate::Inflater;
use rakit_protocol::OpCode;
use serde_json::{json, Value};

/// Compressions so far (`rakit_compressions_total`).
#[track_caller]
fn compressions(daemon: &Daemon) -> f64 {
    let text = scrape(daemon.addr, None);
    value_of(&text, "rakit_compressions_total")
        .unwrap_or_else(|| panic!("no rakit_compressions_total:\n{text}"))
}

/// A raw connection to `path` that agreed permessage-deflate with
/// `server_max_window_bits = bits`, past its 101.
#[track_caller]
fn deflate_client(daemon: &Daemon, path: &str, bits: u8) -> TcpStream {
    let offer =
        format!("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits={bits}\r\n");
    let (s, head) = raw_handshake(daemon, &upgrade_request(path, &offer));
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.contains(&format!("server_max_window_bits={bits}\r\n")),
        "{head}"
    );
    s
}

/// A raw Rakit client that agreed permessage-deflate (15 bits), subscribed
/// to `channel`.
#[track_caller]
fn subscriber(daemon: &Daemon, channel: &str) -> TcpStream {
    let mut s = deflate_client(daemon, "/", 15);
    assert_eq!(next_json(&mut s)["type"], "welcome");
    let subscribe = json!({"event":"subscribe","channel":channel}).to_string();
    send_frame(&mut s, true, OpCode::Text, subscribe.as_bytes());
    assert_eq!(next_json(&mut s)["type"], "subscribed");
    s
}

/// The next text message on a raw deflate connection, inflated if it was
/// compressed, parsed as JSON.
#[track_caller]
fn next_json(s: &mut TcpStream) -> Value {
    loop {
        let f = read_frame(s);
        let text = match f.byte0 {
            0x81 => f.payload,
            0xc1 => {
                let mut out = Vec::new();
                Inflater::default()
                    .inflate(&f.payload, 1 << 24, &mut out)
                    .unwrap();
                out
            }
            0x89 | 0x8a => continue,
            other => panic!("unexpected frame {other:#x}"),
        };
        return serde_json::from_slice(&text).unwrap();
    }
}

/// Reads until the message of type `ty`, which must have arrived
/// compressed.
#[track_caller]
fn next_compressed(s: &mut TcpStream, ty: &str) -> Value {
    loop {
        let f = read_frame(s);
        if f.byte0 == 0x81 {
            continue;
        }
        assert_eq!(f.byte0, 0xc1, "a compressed text frame");
        let mut out = Vec::new();
        Inflater::default()
            .inflate(&f.payload, 1 << 24, &mut out)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        if v["type"] == ty || v["event"] == ty {
            return v;
        }
    }
}

/// A broadcast is compressed once per window size among its recipients,
/// whatever their order: clients alternating `server_max_window_bits` 9 and
/// 10 cost two compressions, not one per client.
#[test]
fn a_broadcast_is_compressed_once_per_window_size() {
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\ncompression = true\n{}",
            api_table()
        ),
        &[],
    );
    let mut clients: Vec<TcpStream> = (0..8)
        .map(|i| {
            let mut s = deflate_client(&daemon, "/", 9 + (i % 2));
            assert_eq!(next_json(&mut s)["type"], "welcome");
            s
        })
        .collect();
    let before = compressions(&daemon);
    let message = "all work and no play makes a dull broadcast ".repeat(50);
    let r = once(
        daemon.addr,
        &command(&json!({"command":"broadcast","message":message}).to_string()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    for s in &mut clients {
        let v = next_compressed(s, "message");
        assert_eq!(v["message"], message.as_str());
    }
    assert_eq!(compressions(&daemon) - before, 2.0, "two window sizes");
}

/// A channel with Rakit and Pusher subscribers in alternation: each dialect
/// has its own frame, and each frame is compressed once (not once per
/// subscriber, as when only the last frame compressed was remembered).
#[test]
fn alternating_dialects_are_compressed_once_per_frame() {
    let daemon = Daemon::start(
        &format!(
            "logging_level = \"warn\"\npresence = false\ncompression = true\n{}\
             [pusher]\napp_id = \"4242\"\nkey = \"app-key\"\nsecret = \"pusher-test-secret-0123456789\"\n",
            api_table()
        ),
        &[],
    );
    let mut rakit = Vec::new();
    let mut pusher = Vec::new();
    for _ in 0..4 {
        rakit.push(subscriber(&daemon, "news"));
        let mut p = deflate_client(
            &daemon,
            "/app/app-key?protocol=7&client=js&version=8.6.0",
            15,
        );
        assert_eq!(next_json(&mut p)["event"], "pusher:connection_established");
        send_frame(
            &mut p,
            true,
            OpCode::Text,
            br#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
        );
        assert_eq!(
            next_json(&mut p)["event"],
            "pusher_internal:subscription_succeeded"
        );
        pusher.push(p);
    }
    let before = compressions(&daemon);
    let message = "news that compresses well, ".repeat(40);
    let r = once(
        daemon.addr,
        &command(
            &json!({"command":"broadcast_to_channel","channel":"news","message":message})
                .to_string(),
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    for s in &mut rakit {
        assert_eq!(next_compressed(s, "channel")["data"], message.as_str());
    }
    for s in &mut pusher {
        let v = next_compressed(s, "message");
        assert_eq!(v["channel"], "news");
    }
    assert_eq!(compressions(&daemon) - before, 2.0, "one per dialect");
}

/// Compressed messages that inflate to `max_buffer_size` each cost the loop
/// their inflated size, not their few bytes on the wire: a client's burst
/// of them is inflated a bounded amount per turn, so a message another
/// client sends meanwhile is delivered before the burst is through. Before,
/// a read of 40 KB could ask for 40 MB of inflating in one go.
#[test]
fn compressed_bombs_are_inflated_a_bounded_amount_per_turn() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\npresence = false\ncompression = true\n\
         max_buffer_size = 1048576\nmax_send_buffer = 16777216\n",
        &[],
    );
    let mut attacker = subscriber(&daemon, "c");
    let (mut victim, _) = daemon.client();
    // 40 pings of 1 MB each, about 1 KB each compressed.
    let ping = format!(r#"{{"ping":"{}"}}"#, "a".repeat(1_048_000));
    let mut payload = Vec::new();
    rakit_protocol::deflate::Deflater::new(9).compress(
        &rakit_protocol::deflate::Params {
            server_max_window_bits: 15,
            server_bits_requested: false,
        },
        ping.as_bytes(),
        &mut payload,
    );
    let mut frame = Vec::new();
    rakit_protocol::encode_masked(&mut frame, true, OpCode::Text, &payload, [1, 2, 3, 4]);
    frame[0] |= 0x40;
    assert!(frame.len() < 2048, "{}", frame.len());
    const N: usize = 40;
    {
        use std::io::Write;
        attacker.write_all(&frame.repeat(N)).unwrap();
    }
    send_json(
        &mut victim,
        &json!({"event":"message","channel":"c","data":"meanwhile"}),
    );
    let mut pongs = 0;
    loop {
        let v = next_json(&mut attacker);
        match v["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("channel") => break,
            _ => panic!("{v}"),
        }
    }
    assert!(
        pongs < N,
        "the other client's message came after all {N} bombs were inflated"
    );
}
