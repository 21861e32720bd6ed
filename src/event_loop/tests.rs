//! Unit tests of the loop over real sockets.

use super::*;
use crate::server::Server;
use rakit_protocol::{encode_masked, FrameHeader, OpCode};
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
    // 800 sockets in this process (both ends): more than a soft limit of 1024
    // leaves room for, with the other tests running beside this one.
    rlimit::increase_nofile_limit(u64::MAX).expect("raising RLIMIT_NOFILE");
    let subs = 400;
    let msgs = DELIVERIES_PER_TURN * 3 / 2 / subs;
    let config = Config {
        port: 0,
        presence: false,
        logging_enabled: false,
        // The publisher floods on purpose: no message limit.
        limits: crate::config::LimitsConfig::off(),
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
