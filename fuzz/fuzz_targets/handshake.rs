//! The HTTP upgrade decoder fed in pieces, as a daemon reads a socket.
//!
//! Input: byte 0 picks the limits, bytes 1..5 the chunk sizes (0 = all the
//! rest), byte 5 a daemon-side refusal; the rest is the bytes a client sends.
//!
//! Checked: one decoder across calls agrees with a fresh decoder given the
//! whole buffer at once, and with `Connection::new` fed the same pieces; a
//! request is produced only when the buffer holds a blank line (after CRLF
//! or bare LF line ends), and ends just past the first one; `consumed <= len`; every refusal has one of the
//! statuses we send and is well-formed HTTP whose Content-Length is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rakit_protocol::handshake::{accept_key, write_refusal, Decoder};
use rakit_protocol::{Connection, Event, HandshakeError, Limits, Request, State};

const STATUSES: [u16; 7] = [400, 401, 403, 405, 426, 431, 503];

const ALL_ERRORS: [HandshakeError; 15] = [
    HandshakeError::Malformed,
    HandshakeError::WrongHttpVersion,
    HandshakeError::MethodNotAllowed,
    HandshakeError::MissingHost,
    HandshakeError::MissingUpgrade,
    HandshakeError::MissingConnectionUpgrade,
    HandshakeError::InvalidKey,
    HandshakeError::MissingVersion,
    HandshakeError::UnsupportedVersion,
    HandshakeError::TooLarge,
    HandshakeError::TooManyHeaders,
    HandshakeError::HostNotAllowed,
    HandshakeError::OriginNotAllowed,
    HandshakeError::Unauthorized,
    HandshakeError::ServiceUnavailable,
];

/// Just past the first blank line, CRLF or bare LF (`\n\n`, `\n\r\n`),
/// found the slow way: the shortest prefix that ends in one.
fn first_blank_line(buf: &[u8]) -> Option<usize> {
    (1..=buf.len()).find(|&end| buf[..end].ends_with(b"\n\n") || buf[..end].ends_with(b"\n\r\n"))
}

/// The refusal for `err` is HTTP with the right status and Content-Length.
fn check_refusal(err: &HandshakeError) -> Vec<u8> {
    let status = err.http_status();
    assert!(STATUSES.contains(&status), "{err:?} -> {status}");
    let mut out = Vec::new();
    write_refusal(&mut out, err);
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("refusal for {err:?} is not HTTP: {other:?}"),
    };
    assert_eq!(resp.code, Some(status));
    assert_eq!(resp.version, Some(1));
    let lengths: Vec<usize> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lengths, vec![out.len() - head_len], "{err:?}");
    assert_eq!(&out[head_len..], err.reason().as_bytes());
    out
}

fn check_request(req: &Request, refusal: &HandshakeError) {
    match req.validate() {
        Ok(accept) => {
            assert_eq!(req.method, "GET");
            assert!(req.http_minor >= 1);
            let key = req.key.as_deref().unwrap().trim();
            assert_eq!(accept, accept_key(key.as_bytes()));
            assert_eq!(accept.len(), 28);
            // What the daemon may still refuse an otherwise valid request with.
            check_refusal(refusal);
        }
        Err(e) => {
            check_refusal(&e);
        }
    }
    let supported = vec!["chat".to_owned(), "superchat".to_owned(), String::new()];
    if let Some(p) = req.select_protocol(&supported) {
        assert!(supported.iter().any(|s| s == p));
        assert!(req.protocols.iter().any(|o| o == p));
    }
    if req.protocols.is_empty() {
        assert_eq!(req.select_protocol(&supported), None);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, bytes)) = data.split_first_chunk::<6>() else {
        return;
    };
    let limits = Limits {
        max_handshake_size: [64, 512, 8192][head[0] as usize % 3],
        max_headers: [2, 8, 64, 200][(head[0] as usize / 3) % 4],
        max_message_size: 4096,
    };
    let sizes = [head[1], head[2], head[3], head[4]];
    let refusal = &ALL_ERRORS[head[5] as usize % ALL_ERRORS.len()];

    let mut decoder = Decoder::default();
    let mut conn = Connection::new(limits);
    let mut buf = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = match sizes[i % 4] {
            0 => rest.len(),
            n => (n as usize).min(rest.len()),
        };
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];

        let result = decoder.decode(&buf, &limits);
        // A fresh decoder on the whole buffer must agree: scanning only the
        // new bytes may not change the answer.
        assert_eq!(result, Decoder::default().decode(&buf, &limits));

        // The connection fed the same piece does the same thing.
        let mut out = Vec::new();
        let mut input = buf.clone();
        let conn_result = conn.read(&mut input, &mut out);

        match result {
            Ok(None) => {
                assert_eq!(first_blank_line(&buf), None);
                assert!(buf.len() <= limits.max_handshake_size);
                assert!(matches!(conn_result, Ok((0, None))));
                assert_eq!(conn.state(), State::Handshaking);
                assert!(out.is_empty());
            }
            Ok(Some((req, consumed))) => {
                assert!(consumed <= buf.len());
                assert_eq!(first_blank_line(&buf), Some(consumed));
                assert!(consumed <= limits.max_handshake_size);
                match conn_result {
                    Ok((n, Some(Event::Request(r)))) => {
                        assert_eq!(n, consumed);
                        assert_eq!(*r, req);
                    }
                    other => panic!("connection disagrees: {other:?}"),
                }
                assert_eq!(conn.state(), State::AwaitingDecision);
                assert!(out.is_empty());
                check_request(&req, refusal);
                // Refusing it writes exactly the refusal, then nothing more.
                conn.reject(refusal, &mut out);
                assert_eq!(out, check_refusal(refusal));
                assert_eq!(conn.state(), State::Closed);
                return;
            }
            Err(e) => {
                let written = check_refusal(&e);
                assert_eq!(
                    conn_result,
                    Err(rakit_protocol::connection::Error::Handshake(e))
                );
                assert_eq!(out, written);
                assert_eq!(conn.state(), State::Closed);
                return;
            }
        }
    }
});
