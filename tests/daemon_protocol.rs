//! RFC 6455 framing over real sockets (SPEC section 6), with hand-built client frames and
//! hand-parsed server frames, against the daemon in echo mode.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{expect_close, expect_eof, raw_ws, read_frame, send_frame, Daemon};
use rakit_protocol::OpCode;

/// Echo mode with a small message limit.
fn daemon() -> Daemon {
    Daemon::start(
        "logging_level = \"warn\"\nmax_buffer_size = 1024\n",
        &["--echo"],
    )
}

/// A masked frame with `byte0` written as given (reserved bits and opcodes included).
fn masked_raw(byte0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rakit_protocol::encode_masked(&mut out, true, OpCode::Binary, payload, [1, 2, 3, 4]);
    out[0] = byte0;
    out
}

fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rakit_protocol::encode_masked(&mut out, fin, opcode, payload, [9, 8, 7, 6]);
    out
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// On a new connection, sends `bytes` and expects a close frame with `code`, then TCP close.
#[track_caller]
fn assert_closes(daemon: &Daemon, case: &str, bytes: &[u8], code: u16) {
    let mut s = raw_ws(daemon);
    s.write_all(bytes).unwrap();
    let frame = read_frame(&mut s);
    assert!(!frame.masked, "{case}: server frame masked");
    assert_eq!(frame.byte0, 0x88, "{case}: {frame:?}");
    assert_eq!(frame.close_code(), code, "{case}: {frame:?}");
    assert!(
        std::str::from_utf8(&frame.payload[2..]).is_ok(),
        "{case}: reason not UTF-8"
    );
    expect_eof(&mut s);
}

#[track_caller]
fn assert_echo(s: &mut TcpStream, byte0: u8, payload: &[u8]) {
    let frame = read_frame(s);
    assert!(!frame.masked);
    assert_eq!(
        (frame.byte0, frame.payload.as_slice()),
        (byte0, payload),
        "{frame:?}"
    );
}

#[test]
fn framing_violations_close_1002() {
    let daemon = daemon();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", vec![0x81, 0x02, b'h', b'i']),
        ("RSV1", masked_raw(0x80 | 0x40 | 0x1, b"hi")),
        ("RSV2", masked_raw(0x80 | 0x20 | 0x2, b"hi")),
        ("RSV3", masked_raw(0x80 | 0x10 | 0x1, b"hi")),
        ("reserved data opcode 0x3", masked_raw(0x83, b"hi")),
        ("reserved control opcode 0xB", masked_raw(0x8B, b"")),
        ("fragmented ping", masked(false, OpCode::Ping, b"p")),
        (
            "ping of 126 bytes",
            masked(true, OpCode::Ping, &[b'p'; 126]),
        ),
        (
            "continuation without start",
            masked(true, OpCode::Continuation, b"x"),
        ),
        (
            "text while a message is in progress",
            concat(&[
                masked(false, OpCode::Text, b"a"),
                masked(true, OpCode::Text, b"b"),
            ]),
        ),
        // 16-bit length for a 5-byte payload.
        ("non-minimal length", {
            let mut f = vec![0x81, 0x80 | 126, 0, 5, 0, 0, 0, 0];
            f.extend_from_slice(b"hello");
            f
        }),
    ];
    for (case, bytes) in &cases {
        assert_closes(&daemon, case, bytes, 1002);
    }
}

#[test]
fn invalid_utf8_closes_1007() {
    let daemon = daemon();
    assert_closes(
        &daemon,
        "invalid text",
        &masked(true, OpCode::Text, b"ok\xff\xfe"),
        1007,
    );
    // The fragment that breaks UTF-8 fails the connection before the final one arrives.
    assert_closes(
        &daemon,
        "invalid first fragment",
        &masked(false, OpCode::Text, b"ab\xc3\x28"),
        1007,
    );
    assert_closes(
        &daemon,
        "invalid middle fragment",
        &concat(&[
            masked(false, OpCode::Text, b"ab"),
            masked(false, OpCode::Continuation, b"\xed\xa0\x80"),
        ]),
        1007,
    );
    // A character split across fragments is fine.
    let mut s = raw_ws(&daemon);
    s.write_all(&concat(&[
        masked(false, OpCode::Text, b"caf\xc3"),
        masked(true, OpCode::Continuation, b"\xa9"),
    ]))
    .unwrap();
    assert_echo(&mut s, 0x81, "café".as_bytes());
    // A truncated character at the end is not.
    assert_closes(
        &daemon,
        "truncated final fragment",
        &concat(&[
            masked(false, OpCode::Text, b"caf"),
            masked(true, OpCode::Continuation, b"\xc3"),
        ]),
        1007,
    );
}

#[test]
fn oversized_messages_close_1009() {
    let daemon = daemon();
    // At the limit is fine.
    let mut s = raw_ws(&daemon);
    send_frame(&mut s, true, OpCode::Binary, &[7; 1024]);
    assert_echo(&mut s, 0x82, &[7; 1024]);
    assert_closes(
        &daemon,
        "single frame",
        &masked(true, OpCode::Binary, &[7; 1025]),
        1009,
    );
    assert_closes(
        &daemon,
        "fragmented",
        &concat(&[
            masked(false, OpCode::Text, &[b'a'; 600]),
            masked(false, OpCode::Continuation, &[b'a'; 300]),
            masked(true, OpCode::Continuation, &[b'a'; 200]),
        ]),
        1009,
    );
    // Refused from the header alone: the payload never has to arrive.
    let mut header = masked(true, OpCode::Binary, &[0; 70_000]);
    header.truncate(2 + 8 + 4);
    assert_closes(&daemon, "header of a 70 kB frame", &header, 1009);
}

#[test]
fn invalid_close_frames() {
    let daemon = daemon();
    assert_closes(
        &daemon,
        "1-byte close payload",
        &masked(true, OpCode::Close, &[0x03]),
        1002,
    );
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let payload = code.to_be_bytes();
        assert_closes(
            &daemon,
            &format!("close code {code}"),
            &masked(true, OpCode::Close, &payload),
            1002,
        );
    }
    assert_closes(
        &daemon,
        "close reason not UTF-8",
        &masked(true, OpCode::Close, b"\x03\xe8bad\xff"),
        1007,
    );
}

#[test]
fn close_handshake_echoes_the_code_then_closes_tcp() {
    let daemon = daemon();
    for code in [1000u16, 1001, 3000, 4999] {
        let mut s = raw_ws(&daemon);
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        send_frame(&mut s, true, OpCode::Close, &payload);
        expect_close(&mut s, code);
    }
    // An empty close is answered with a close too.
    let mut s = raw_ws(&daemon);
    send_frame(&mut s, true, OpCode::Close, b"");
    let frame = read_frame(&mut s);
    assert_eq!(frame.byte0, 0x88, "{frame:?}");
    assert!(!frame.masked);
    expect_eof(&mut s);
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let daemon = daemon();
    let mut s = raw_ws(&daemon);
    send_frame(&mut s, true, OpCode::Ping, b"abc");
    assert_echo(&mut s, 0x8A, b"abc");
    send_frame(&mut s, true, OpCode::Ping, b"");
    assert_echo(&mut s, 0x8A, b"");
    let big: Vec<u8> = (0..125).collect();
    send_frame(&mut s, true, OpCode::Ping, &big);
    assert_echo(&mut s, 0x8A, &big);
    // An unsolicited pong is ignored.
    send_frame(&mut s, true, OpCode::Pong, b"x");
    send_frame(&mut s, true, OpCode::Binary, b"\x00\x01");
    assert_echo(&mut s, 0x82, b"\x00\x01");
}

#[test]
fn fragments_with_a_ping_between_are_reassembled() {
    let daemon = daemon();
    let mut s = raw_ws(&daemon);
    s.write_all(&concat(&[
        masked(false, OpCode::Text, b"Hel"),
        masked(true, OpCode::Ping, b"mid"),
        masked(false, OpCode::Continuation, b"l"),
        masked(true, OpCode::Continuation, b"o"),
    ]))
    .unwrap();
    assert_echo(&mut s, 0x8A, b"mid");
    assert_echo(&mut s, 0x81, b"Hello");
    // Binary keeps its opcode; an empty final fragment is fine.
    s.write_all(&concat(&[
        masked(false, OpCode::Binary, b"\x01"),
        masked(true, OpCode::Continuation, b""),
    ]))
    .unwrap();
    assert_echo(&mut s, 0x82, b"\x01");
    // The connection is still usable after both.
    send_frame(&mut s, true, OpCode::Text, b"again");
    assert_echo(&mut s, 0x81, b"again");
}
