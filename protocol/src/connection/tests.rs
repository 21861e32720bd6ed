//! The state machine driven with in-memory bytes, as a client would send them.

use super::*;
use crate::frame::encode_masked;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn limits() -> Limits {
    Limits {
        max_message_size: 1000,
        ..Limits::default()
    }
}

fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_masked(&mut out, fin, opcode, payload, KEY);
    out
}

/// What a whole input produced, events owned so they outlive the buffer.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Compressed(bool, Vec<u8>),
}

/// Feeds `input` to `conn` as one buffer; returns the events, the bytes to
/// write, and the error that ended it, if any.
fn drive(conn: &mut Connection, input: &[u8]) -> (Vec<Seen>, Vec<u8>, Option<Error>) {
    let mut buf = input.to_vec();
    let mut pos = 0;
    let mut seen = Vec::new();
    let mut out = Vec::new();
    loop {
        match conn.read(&mut buf[pos..], &mut out) {
            Ok((0, None)) => return (seen, out, None),
            Ok((n, ev)) => {
                pos += n;
                match ev {
                    None => {}
                    Some(Event::Text(t)) => seen.push(Seen::Text(t.to_owned())),
                    Some(Event::Binary(b)) => seen.push(Seen::Binary(b.to_vec())),
                    Some(Event::Ping(b)) => seen.push(Seen::Ping(b.to_vec())),
                    Some(Event::Pong(b)) => seen.push(Seen::Pong(b.to_vec())),
                    Some(Event::Close(c)) => {
                        seen.push(Seen::Close(c.map(|(code, r)| (code, r.to_owned()))))
                    }
                    Some(Event::Compressed { text, payload }) => {
                        seen.push(Seen::Compressed(text, payload.to_vec()))
                    }
                    Some(Event::Request(_)) => panic!("request in open state"),
                }
            }
            Err(e) => return (seen, out, Some(e)),
        }
    }
}

#[track_caller]
fn fails_with(input: &[u8], expected: ProtocolError, code: u16) {
    let mut conn = Connection::open(limits());
    let (_, out, err) = drive(&mut conn, input);
    assert_eq!(err, Some(Error::Protocol(expected.clone())));
    assert_eq!(expected.close_code(), code);
    assert_eq!(conn.state(), State::Closed);
    // The close frame with that code was written.
    assert_eq!(out[0], 0x88, "{out:x?}");
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), code);
}

#[test]
fn handshake_then_accept() {
    let mut conn = Connection::new(limits());
    let mut buf = UPGRADE.to_vec();
    let mut out = Vec::new();
    let (n, ev) = conn.read(&mut buf, &mut out).unwrap();
    assert_eq!(n, UPGRADE.len());
    let Some(Event::Request(req)) = ev else {
        panic!("no request")
    };
    assert_eq!(conn.state(), State::AwaitingDecision);
    // Nothing is read while the decision is pending.
    assert_eq!(conn.read(&mut [0x81], &mut out).unwrap(), (0, None));
    let accept = req.validate().unwrap();
    conn.accept(&accept, None, &mut out);
    assert!(conn.is_open());
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(String::from_utf8_lossy(&out).contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[test]
fn handshake_one_byte_at_a_time() {
    let mut conn = Connection::new(limits());
    let mut out = Vec::new();
    for len in 0..UPGRADE.len() {
        let mut buf = UPGRADE[..len].to_vec();
        assert_eq!(conn.read(&mut buf, &mut out).unwrap(), (0, None), "{len}");
    }
    let mut buf = UPGRADE.to_vec();
    assert!(matches!(
        conn.read(&mut buf, &mut out),
        Ok((_, Some(Event::Request(_))))
    ));
    assert!(out.is_empty());
}

#[test]
fn lf_only_handshake_is_answered() {
    // Bare LF line ends: accepted like CRLF, fed one byte at a time.
    let lf = String::from_utf8(UPGRADE.to_vec())
        .unwrap()
        .replace("\r\n", "\n");
    let mut conn = Connection::new(limits());
    let mut out = Vec::new();
    for len in 0..lf.len() {
        let mut buf = lf.as_bytes()[..len].to_vec();
        assert_eq!(conn.read(&mut buf, &mut out).unwrap(), (0, None), "{len}");
    }
    let mut buf = lf.clone().into_bytes();
    let (n, ev) = conn.read(&mut buf, &mut out).unwrap();
    assert_eq!(n, lf.len());
    let Some(Event::Request(req)) = ev else {
        panic!("no request")
    };
    conn.accept(&req.validate().unwrap(), None, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(String::from_utf8_lossy(&out).contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));

    // A malformed one is refused with 400 rather than waited on.
    let mut conn = Connection::new(limits());
    let mut buf = b"GET / HTTP/1.1\nHost\n\n".to_vec();
    let mut out = Vec::new();
    let err = conn.read(&mut buf, &mut out).unwrap_err();
    assert_eq!(err, Error::Handshake(HandshakeError::Malformed));
    assert!(out.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn handshake_refusals_are_written() {
    let mut conn = Connection::new(Limits {
        max_handshake_size: 32,
        ..limits()
    });
    let mut buf = UPGRADE.to_vec();
    let mut out = Vec::new();
    let err = conn.read(&mut buf, &mut out).unwrap_err();
    assert_eq!(err, Error::Handshake(HandshakeError::TooLarge));
    assert!(out.starts_with(b"HTTP/1.1 431 "));
    assert_eq!(conn.state(), State::Closed);

    let mut conn = Connection::new(limits());
    let mut buf = UPGRADE.to_vec();
    let (_, ev) = conn.read(&mut buf, &mut Vec::new()).unwrap();
    assert!(matches!(ev, Some(Event::Request(_))));
    let mut out = Vec::new();
    conn.reject(&HandshakeError::OriginNotAllowed, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(conn.state(), State::Closed);
    // A second decision writes nothing.
    let mut more = Vec::new();
    conn.accept("x", None, &mut more);
    conn.respond(200, "ok", &mut more);
    assert!(more.is_empty());
}

#[test]
fn rfc_5_7_single_frame_masked_text() {
    let mut conn = Connection::open(limits());
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (seen, out, err) = drive(&mut conn, &bytes);
    assert_eq!(seen, vec![Seen::Text("Hello".into())]);
    assert!(out.is_empty() && err.is_none());
}

#[test]
fn rfc_5_7_fragmented_text_and_ping() {
    let mut conn = Connection::open(limits());
    let mut input = frame(false, OpCode::Text, b"Hel");
    input.extend(frame(true, OpCode::Ping, b"Hello"));
    input.extend(frame(true, OpCode::Continuation, b"lo"));
    let (seen, out, err) = drive(&mut conn, &input);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        vec![Seen::Ping(b"Hello".to_vec()), Seen::Text("Hello".into())]
    );
    // "Unmasked Ping request and masked Ping response" (5.7): the pong.
    assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
}

#[test]
fn every_prefix_consumes_nothing() {
    let mut input = frame(true, OpCode::Text, b"Hello");
    input.extend(frame(true, OpCode::Binary, &[9; 300]));
    let first = frame(true, OpCode::Text, b"Hello").len();
    for cut in 0..first {
        let mut conn = Connection::open(limits());
        let mut buf = input[..cut].to_vec();
        assert_eq!(
            conn.read(&mut buf, &mut Vec::new()).unwrap(),
            (0, None),
            "{cut}"
        );
    }
    for cut in first..input.len() {
        let mut conn = Connection::open(limits());
        let (seen, _, err) = drive(&mut conn, &input[..cut]);
        assert_eq!(seen, vec![Seen::Text("Hello".into())], "{cut}");
        assert_eq!(err, None);
    }
}

#[test]
fn binary_and_pong() {
    let mut conn = Connection::open(limits());
    let mut input = frame(true, OpCode::Binary, &[0, 255]);
    input.extend(frame(true, OpCode::Pong, b"p"));
    let (seen, out, _) = drive(&mut conn, &input);
    assert_eq!(
        seen,
        vec![Seen::Binary(vec![0, 255]), Seen::Pong(b"p".to_vec())]
    );
    assert!(out.is_empty());
}

#[test]
fn peer_close_is_echoed_once() {
    let mut conn = Connection::open(limits());
    let mut input = frame(true, OpCode::Close, b"\x03\xe8bye");
    input.extend(frame(true, OpCode::Text, b"after"));
    let (seen, out, err) = drive(&mut conn, &input);
    assert_eq!(seen, vec![Seen::Close(Some((1000, "bye".into())))]);
    assert_eq!(out, [0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(err, None);
    assert_eq!(conn.state(), State::Closed);

    let mut conn = Connection::open(limits());
    let (seen, out, _) = drive(&mut conn, &frame(true, OpCode::Close, b""));
    assert_eq!(seen, vec![Seen::Close(None)]);
    assert_eq!(out, [0x88, 0x00]);
}

#[test]
fn data_after_the_peers_close_is_never_read() {
    // Why there is no "data after close" error: once the peer's close is
    // read the connection is Closed and consumes nothing more.
    let mut conn = Connection::open(limits());
    let mut buf = frame(true, OpCode::Close, b"");
    let after = buf.len();
    buf.extend(frame(true, OpCode::Text, b"late"));
    let mut out = Vec::new();
    let (n, ev) = conn.read(&mut buf, &mut out).unwrap();
    assert_eq!((n, ev), (after, Some(Event::Close(None))));
    let mut rest = buf[after..].to_vec();
    let mut more = Vec::new();
    assert_eq!(conn.read(&mut rest, &mut more).unwrap(), (0, None));
    assert!(more.is_empty());
}

#[test]
fn server_close_waits_for_the_peer() {
    let mut conn = Connection::open(limits());
    let mut out = Vec::new();
    assert!(conn.close(4000, "disconnected by server", &mut out));
    assert_eq!(conn.state(), State::Closing);
    assert_eq!(&out[..4], &[0x88, 24, 0x0f, 0xa0]);
    assert!(!conn.close(1000, "", &mut out), "close is sent once");
    // Data after our close is dropped; the peer's close ends it, unanswered.
    let mut input = frame(true, OpCode::Text, b"late");
    input.extend(frame(true, OpCode::Ping, b""));
    input.extend(frame(true, OpCode::Close, b"\x0f\xa0"));
    let (seen, out, err) = drive(&mut conn, &input);
    assert_eq!(
        seen,
        vec![Seen::Ping(vec![]), Seen::Close(Some((4000, "".into())))]
    );
    assert!(out.is_empty(), "{out:x?}");
    assert_eq!(err, None);
    assert_eq!(conn.state(), State::Closed);
}

/// An open connection on which the server has just sent its close frame.
fn closing() -> Connection {
    let mut conn = Connection::open(limits());
    assert!(conn.close(1001, "", &mut Vec::new()));
    conn
}

#[test]
fn after_our_close_any_data_frame_is_dropped_and_the_handshake_finishes() {
    // Frames the peer wrote before it saw our close: a new fragmented
    // message, a continuation of it, a continuation of nothing, text that
    // is not UTF-8. None is an error; the peer's close still ends it cleanly.
    let sequences: [&[(bool, OpCode, &[u8])]; 4] = [
        &[
            (false, OpCode::Text, b"a"),
            (true, OpCode::Continuation, b"b"),
        ],
        &[(true, OpCode::Continuation, b"x")],
        &[
            (false, OpCode::Binary, b"a"),
            (false, OpCode::Continuation, b"b"),
        ],
        &[
            (true, OpCode::Text, b"\xff"),
            (false, OpCode::Text, b"\xc0"),
        ],
    ];
    for frames in sequences {
        let mut conn = closing();
        let mut input = Vec::new();
        for (fin, op, payload) in frames {
            input.extend(frame(*fin, *op, payload));
        }
        input.extend(frame(true, OpCode::Close, b"\x03\xe8"));
        let (seen, out, err) = drive(&mut conn, &input);
        assert_eq!(err, None, "{frames:?}");
        assert_eq!(
            seen,
            vec![Seen::Close(Some((1000, "".into())))],
            "{frames:?}"
        );
        assert!(out.is_empty(), "{frames:?}: {out:x?}");
        assert_eq!(conn.state(), State::Closed);
    }
}

#[test]
fn after_our_close_a_message_in_progress_may_be_interrupted() {
    let mut conn = Connection::open(limits());
    let (seen, _, err) = drive(&mut conn, &frame(false, OpCode::Text, b"half"));
    assert_eq!((seen, err), (vec![], None));
    assert!(conn.close(1000, "", &mut Vec::new()));
    // A new message where a continuation was due, then more continuations.
    let mut input = frame(true, OpCode::Binary, b"new");
    input.extend(frame(false, OpCode::Continuation, b"more"));
    input.extend(frame(true, OpCode::Ping, b"p"));
    input.extend(frame(true, OpCode::Close, b""));
    let (seen, out, err) = drive(&mut conn, &input);
    assert_eq!(err, None);
    assert_eq!(seen, vec![Seen::Ping(b"p".to_vec()), Seen::Close(None)]);
    assert!(out.is_empty(), "no pong or close after ours: {out:x?}");
}

#[test]
fn after_our_close_mask_and_size_rules_still_hold() {
    // No second close frame is written; the connection is dropped.
    let cases: [(Vec<u8>, ProtocolError); 3] = [
        (vec![0x81, 0x02, b'h', b'i'], ProtocolError::UnmaskedFrame),
        (
            frame(true, OpCode::Continuation, &[0; 1001])[..8].to_vec(),
            ProtocolError::MessageTooBig {
                size: 1001,
                max: 1000,
            },
        ),
        (
            vec![0xc1, 0x80, 1, 2, 3, 4],
            ProtocolError::NonZeroReservedBits,
        ),
    ];
    for (input, expected) in cases {
        let mut conn = closing();
        let (seen, out, err) = drive(&mut conn, &input);
        assert_eq!(err, Some(Error::Protocol(expected)));
        assert!(seen.is_empty() && out.is_empty(), "{out:x?}");
        assert_eq!(conn.state(), State::Closed);
    }
    // Dropped frames are bounded one by one: nothing is gathered.
    let mut conn = Connection::open(limits());
    drive(&mut conn, &frame(false, OpCode::Binary, &[0; 600]));
    assert!(conn.close(1000, "", &mut Vec::new()));
    let mut input = frame(false, OpCode::Continuation, &[0; 600]);
    input.extend(frame(true, OpCode::Continuation, &[0; 1000]));
    input.extend(frame(true, OpCode::Close, b""));
    let (seen, _, err) = drive(&mut conn, &input);
    assert_eq!((seen, err), (vec![Seen::Close(None)], None));
}

#[test]
fn text_half_unmasked_before_our_close_does_not_spoil_the_next_frame() {
    // The first half of a text frame is unmasked in place while open; the
    // rest arrives after our close. The frame is dropped and the frames after
    // it are unmasked from their own start.
    let text = frame(true, OpCode::Text, &[b'a'; 200]);
    let mut conn = Connection::open(limits());
    let mut buf = text[..100].to_vec();
    let mut out = Vec::new();
    assert_eq!(conn.read(&mut buf, &mut out).unwrap(), (0, None));
    assert!(conn.close(1000, "", &mut out));
    buf.extend_from_slice(&text[100..]);
    buf.extend(frame(true, OpCode::Ping, b"ping"));
    let (n, ev) = conn.read(&mut buf, &mut out).unwrap();
    assert_eq!((n, ev), (text.len(), None));
    buf.drain(..n);
    let (_, ev) = conn.read(&mut buf, &mut out).unwrap();
    assert_eq!(ev, Some(Event::Ping(b"ping")));
}

#[test]
fn unmasked_frame_is_1002() {
    fails_with(
        &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'],
        ProtocolError::UnmaskedFrame,
        1002,
    );
}

#[test]
fn header_rules_close_with_1002() {
    fails_with(
        &[0xc1, 0x80, 1, 2, 3, 4],
        ProtocolError::NonZeroReservedBits,
        1002,
    );
    fails_with(
        &[0x83, 0x80, 1, 2, 3, 4],
        ProtocolError::ReservedOpCode(3),
        1002,
    );
    fails_with(
        &frame(false, OpCode::Ping, b""),
        ProtocolError::FragmentedControlFrame,
        1002,
    );
    fails_with(
        &frame(true, OpCode::Ping, &[0; 126]),
        ProtocolError::ControlFrameTooBig,
        1002,
    );
}

#[test]
fn fragmentation_rules() {
    fails_with(
        &frame(true, OpCode::Continuation, b"x"),
        ProtocolError::UnexpectedContinuation,
        1002,
    );
    let mut input = frame(false, OpCode::Text, b"a");
    input.extend(frame(true, OpCode::Text, b"b"));
    fails_with(&input, ProtocolError::ExpectedContinuation, 1002);
    let mut input = frame(false, OpCode::Binary, b"a");
    input.extend(frame(true, OpCode::Binary, b"b"));
    fails_with(&input, ProtocolError::ExpectedContinuation, 1002);
}

#[test]
fn utf8_rules_close_with_1007() {
    fails_with(
        &frame(true, OpCode::Text, b"\xff"),
        ProtocolError::InvalidUtf8,
        1007,
    );
    // Fails on the fragment that breaks it, before the message ends.
    let mut input = frame(false, OpCode::Text, b"ok");
    input.extend(frame(false, OpCode::Continuation, b"\xed\xa0\x80"));
    let mut conn = Connection::open(limits());
    let (_, _, err) = drive(&mut conn, &input);
    assert_eq!(err, Some(Error::Protocol(ProtocolError::InvalidUtf8)));
    fails_with(
        &frame(true, OpCode::Close, b"\x03\xe8\xff"),
        ProtocolError::InvalidCloseReason,
        1007,
    );
}

#[test]
fn close_payload_rules_close_with_1002() {
    fails_with(
        &frame(true, OpCode::Close, b"\x03"),
        ProtocolError::InvalidClosePayload,
        1002,
    );
    fails_with(
        &frame(true, OpCode::Close, b"\x03\xed"),
        ProtocolError::InvalidCloseCode(1005),
        1002,
    );
    fails_with(
        &frame(true, OpCode::Close, b"\x00\x00"),
        ProtocolError::InvalidCloseCode(0),
        1002,
    );
}

#[test]
fn size_rules_close_with_1009() {
    // A single frame over the limit is refused from its header alone.
    let big = frame(true, OpCode::Binary, &[0; 1001]);
    fails_with(
        &big[..8],
        ProtocolError::MessageTooBig {
            size: 1001,
            max: 1000,
        },
        1009,
    );
    // The whole message is capped, not only each frame.
    let mut input = frame(false, OpCode::Text, &[b'a'; 600]);
    input.extend(frame(true, OpCode::Continuation, &[b'a'; 401]));
    fails_with(
        &input,
        ProtocolError::MessageTooBig {
            size: 1001,
            max: 1000,
        },
        1009,
    );
    // Control frames between fragments neither count nor reset the count.
    let mut input = frame(false, OpCode::Binary, &[0; 600]);
    input.extend(frame(true, OpCode::Pong, &[0; 125]));
    input.extend(frame(false, OpCode::Continuation, &[0; 300]));
    input.extend(frame(true, OpCode::Pong, b""));
    input.extend(frame(true, OpCode::Continuation, &[0; 101]));
    fails_with(
        &input,
        ProtocolError::MessageTooBig {
            size: 1001,
            max: 1000,
        },
        1009,
    );
    // Exactly at the limit is fine.
    let mut input = frame(false, OpCode::Text, &[b'a'; 600]);
    input.extend(frame(true, OpCode::Continuation, &[b'a'; 400]));
    let (seen, _, err) = drive(&mut Connection::open(limits()), &input);
    assert_eq!(err, None);
    assert_eq!(seen, vec![Seen::Text("a".repeat(1000))]);
}

#[test]
fn nothing_is_read_after_closed() {
    let mut conn = Connection::open(limits());
    conn.abort();
    let mut buf = frame(true, OpCode::Text, b"x");
    assert_eq!(conn.read(&mut buf, &mut Vec::new()).unwrap(), (0, None));
}

#[test]
fn idle_connection_holds_no_buffer_after_a_fragmented_message() {
    let mut conn = Connection::open(limits());
    let mut input = frame(false, OpCode::Text, &[b'a'; 500]);
    input.extend(frame(true, OpCode::Continuation, b"b"));
    let (seen, _, _) = drive(&mut conn, &input);
    assert_eq!(seen.len(), 1);
    assert!(conn.message.is_empty());
}

#[test]
fn small_state() {
    // The daemon keeps one per connection; keep it lean (permessage-deflate
    // took padding; the handshake decoder's offset is a u32).
    assert!(
        std::mem::size_of::<Connection>() <= 80,
        "{}",
        std::mem::size_of::<Connection>()
    );
}

/// Feeds `input` the way the daemon does: `piece` bytes at a time appended
/// to one buffer that keeps the unconsumed bytes as `read` left them.
fn drive_in_pieces(
    conn: &mut Connection,
    input: &[u8],
    piece: usize,
) -> (Vec<Seen>, Option<Error>, usize) {
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, chunk) in input.chunks(piece).enumerate() {
        buf.extend_from_slice(chunk);
        loop {
            match conn.read(&mut buf, &mut out) {
                Ok((0, None)) => break,
                Ok((n, ev)) => {
                    match ev {
                        Some(Event::Text(t)) => seen.push(Seen::Text(t.to_owned())),
                        Some(Event::Compressed { text, payload }) => {
                            seen.push(Seen::Compressed(text, payload.to_vec()))
                        }
                        _ => {}
                    }
                    buf.drain(..n);
                }
                Err(e) => return (seen, Some(e), i),
            }
        }
    }
    (seen, None, input.len().div_ceil(piece))
}

#[test]
fn text_arriving_in_pieces_is_unmasked_once() {
    let text: String = "κόσμε 𝄞 hello ".repeat(20);
    let mut input = frame(true, OpCode::Text, text.as_bytes());
    input.extend(frame(true, OpCode::Binary, b"bin"));
    input.extend(frame(true, OpCode::Text, b"tail"));
    for piece in [1, 2, 3, 5, 7, 64, 1000] {
        let mut conn = Connection::open(limits());
        let (seen, err, _) = drive_in_pieces(&mut conn, &input, piece);
        assert_eq!(err, None, "piece {piece}");
        assert_eq!(
            seen,
            vec![Seen::Text(text.clone()), Seen::Text("tail".into())],
            "piece {piece}"
        );
    }
}

#[test]
fn invalid_text_fails_before_its_frame_is_whole() {
    let mut payload = vec![b'a'; 500];
    payload[100] = 0xff;
    let input = frame(true, OpCode::Text, &payload);
    let mut conn = Connection::open(limits());
    let (_, err, piece_index) = drive_in_pieces(&mut conn, &input, 50);
    assert_eq!(err, Some(Error::Protocol(ProtocolError::InvalidUtf8)));
    // The frame has 8 header bytes: byte 100 of the payload is in piece 2.
    assert_eq!(piece_index, 2, "failed on the piece with the bad byte");
    assert_eq!(conn.state(), State::Closed);
}

/// An open connection that agreed permessage-deflate.
fn deflating() -> Connection {
    let mut conn = Connection::new(limits());
    let mut buf = UPGRADE.to_vec();
    let mut out = Vec::new();
    let (_, ev) = conn.read(&mut buf, &mut out).unwrap();
    let Some(Event::Request(req)) = ev else {
        panic!("no request")
    };
    let params = crate::deflate::negotiate("permessage-deflate; server_max_window_bits=10");
    conn.accept_with(&req.validate().unwrap(), None, params, &mut out);
    let head = String::from_utf8(out).unwrap();
    assert!(head.contains(
        "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
         client_no_context_takeover; server_max_window_bits=10\r\n"
    ));
    assert_eq!(conn.deflate().unwrap().server_max_window_bits, 10);
    conn
}

/// A client frame with RSV1 set.
fn rsv1(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(fin, opcode, payload);
    f[0] |= 0x40;
    f
}

#[test]
fn compressed_messages_are_handed_out_whole() {
    let mut conn = deflating();
    // Invalid UTF-8 in compressed text is not judged here: it is not text yet.
    let mut input = rsv1(true, OpCode::Text, b"\xff\x01");
    input.extend(rsv1(false, OpCode::Binary, b"ab"));
    input.extend(frame(true, OpCode::Ping, b"p"));
    input.extend(frame(true, OpCode::Continuation, b"cd"));
    input.extend(frame(true, OpCode::Text, b"plain"));
    let (seen, out, err) = drive(&mut conn, &input);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        [
            Seen::Compressed(true, b"\xff\x01".to_vec()),
            Seen::Ping(b"p".to_vec()),
            Seen::Compressed(false, b"abcd".to_vec()),
            Seen::Text("plain".into()),
        ]
    );
    assert_eq!(out, [0x8a, 1, b'p']);
}

#[test]
fn rsv1_rules() {
    // Not agreed: 1002.
    fails_with(
        &rsv1(true, OpCode::Text, b"x"),
        ProtocolError::NonZeroReservedBits,
        1002,
    );
    // Agreed, but on a control frame or a continuation.
    for (input, what) in [
        (rsv1(true, OpCode::Ping, b""), "ping"),
        (
            [
                rsv1(false, OpCode::Text, b"a"),
                rsv1(true, OpCode::Continuation, b"b"),
            ]
            .concat(),
            "continuation",
        ),
    ] {
        let mut conn = deflating();
        let (_, out, err) = drive(&mut conn, &input);
        assert_eq!(
            err,
            Some(Error::Protocol(ProtocolError::MisplacedRsv1)),
            "{what}"
        );
        assert_eq!((out[0], &out[2..4]), (0x88, &[0x03, 0xea][..]), "{what}");
    }
    // RSV2 stays refused.
    let mut conn = deflating();
    let mut f = frame(true, OpCode::Text, b"x");
    f[0] |= 0x20;
    let (_, _, err) = drive(&mut conn, &f);
    assert_eq!(
        err,
        Some(Error::Protocol(ProtocolError::NonZeroReservedBits))
    );
}

#[test]
fn a_text_frame_in_pieces_is_not_validated_when_compressed() {
    let mut conn = deflating();
    let input = rsv1(true, OpCode::Text, &[0xff; 40]);
    let (seen, err, _) = drive_in_pieces(&mut conn, &input, 7);
    assert_eq!(err, None);
    assert_eq!(seen, [Seen::Compressed(true, vec![0xff; 40])]);
}

#[test]
fn fail_writes_the_close_frame() {
    let mut conn = deflating();
    let mut out = Vec::new();
    conn.fail(&ProtocolError::BadCompressedData, &mut out);
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(&out[..4], &[0x88, out[1], 0x03, 0xea]);
    let mut again = Vec::new();
    conn.fail(&ProtocolError::InvalidUtf8, &mut again);
    assert!(again.is_empty());
}
