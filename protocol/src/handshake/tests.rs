//! The upgrade request decoder and its responses, with byte-literal inputs.

use super::*;

const VALID: &[u8] = b"GET /chat?token=abc HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nCookie: a=1\r\nCookie: b=2\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, HandshakeError> {
    Decoder::default().decode(buf, &Limits::default())
}

fn request(raw: &str) -> Request {
    decode(raw.as_bytes()).unwrap().unwrap().0
}

#[test]
fn rfc_1_3_accept_key() {
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn parses_the_fields_the_daemon_decides_on() {
    let (req, n) = decode(VALID).unwrap().unwrap();
    assert_eq!(n, VALID.len());
    assert_eq!(req.path, "/chat");
    assert_eq!(req.query.as_deref(), Some("token=abc"));
    assert_eq!(req.host.as_deref(), Some("server.example.com"));
    assert_eq!(req.origin.as_deref(), Some("http://example.com"));
    assert_eq!(req.cookie.as_deref(), Some("a=1; b=2"));
    assert_eq!(req.protocols, vec!["chat", "superchat"]);
    assert_eq!(req.validate().unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let supported = vec!["superchat".to_owned(), "chat".to_owned()];
    assert_eq!(req.select_protocol(&supported), Some("chat"));
    assert_eq!(req.select_protocol(&[]), None);
}

#[test]
fn every_prefix_is_incomplete() {
    for len in 0..VALID.len() {
        assert_eq!(decode(&VALID[..len]), Ok(None), "prefix of {len} bytes");
    }
}

#[test]
fn byte_at_a_time_with_one_decoder() {
    let mut d = Decoder::default();
    for len in 0..VALID.len() {
        assert_eq!(d.decode(&VALID[..len], &Limits::default()), Ok(None));
    }
    let (req, n) = d.decode(VALID, &Limits::default()).unwrap().unwrap();
    assert_eq!(n, VALID.len());
    assert!(req.validate().is_ok());
}

#[test]
fn trailing_bytes_are_not_consumed() {
    let mut buf = VALID.to_vec();
    buf.extend_from_slice(b"\x81\x80");
    let (_, n) = decode(&buf).unwrap().unwrap();
    assert_eq!(n, VALID.len());
}

#[test]
fn size_limit() {
    let limits = Limits {
        max_handshake_size: 64,
        ..Limits::default()
    };
    let mut d = Decoder::default();
    assert_eq!(d.decode(&[b'a'; 64], &limits), Ok(None));
    assert_eq!(
        d.decode(&[b'a'; 65], &limits),
        Err(HandshakeError::TooLarge)
    );
    assert_eq!(
        Decoder::default().decode(VALID, &limits),
        Err(HandshakeError::TooLarge)
    );
    assert_eq!(HandshakeError::TooLarge.http_status(), 431);
}

#[test]
fn header_count_limit() {
    let limits = Limits {
        max_headers: 3,
        ..Limits::default()
    };
    assert_eq!(
        Decoder::default().decode(VALID, &limits),
        Err(HandshakeError::TooManyHeaders)
    );
    assert_eq!(HandshakeError::TooManyHeaders.http_status(), 431);
}

#[test]
fn garbage_is_malformed() {
    assert_eq!(
        decode(b"\x16\x03\x01\r\n\r\n"),
        Err(HandshakeError::Malformed)
    );
    assert_eq!(
        decode(b"GET / HTTP/1.1\r\nHost\r\n\r\n"),
        Err(HandshakeError::Malformed)
    );
    assert_eq!(
        decode(b"GET / HTTP/2.0\r\n\r\n"),
        Err(HandshakeError::Malformed)
    );
}

const BASE: &str = "Host: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[track_caller]
fn refused(raw: &str, expected: HandshakeError, status: u16) {
    assert_eq!(request(raw).validate(), Err(expected.clone()), "{raw}");
    assert_eq!(expected.http_status(), status);
}

#[test]
fn each_refusal_and_its_status() {
    let ok = format!("GET / HTTP/1.1\r\n{BASE}Sec-WebSocket-Version: 13\r\n\r\n");
    assert!(request(&ok).validate().is_ok());
    refused(
        &format!("POST / HTTP/1.1\r\n{BASE}Sec-WebSocket-Version: 13\r\n\r\n"),
        HandshakeError::MethodNotAllowed,
        405,
    );
    refused(
        &format!("GET / HTTP/1.0\r\n{BASE}Sec-WebSocket-Version: 13\r\n\r\n"),
        HandshakeError::WrongHttpVersion,
        400,
    );
    refused(
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        HandshakeError::MissingHost,
        400,
    );
    refused(
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        HandshakeError::MissingUpgrade,
        400,
    );
    refused(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        HandshakeError::MissingConnectionUpgrade,
        400,
    );
    refused(
        &format!("GET / HTTP/1.1\r\n{BASE}\r\n"),
        HandshakeError::MissingVersion,
        400,
    );
    refused(
        &format!("GET / HTTP/1.1\r\n{BASE}Sec-WebSocket-Version: 8\r\n\r\n"),
        HandshakeError::UnsupportedVersion,
        426,
    );
    refused(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
        HandshakeError::InvalidKey,
        400,
    );
    refused(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        HandshakeError::InvalidKey,
        400,
    );
}

#[test]
fn duplicate_key_is_malformed() {
    let raw = format!(
        "GET / HTTP/1.1\r\n{BASE}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(decode(raw.as_bytes()), Err(HandshakeError::Malformed));
}

#[test]
fn plain_get_is_not_an_upgrade() {
    assert!(!request("GET /health HTTP/1.1\r\nHost: h\r\n\r\n").is_upgrade());
    assert!(request(&format!("GET / HTTP/1.1\r\n{BASE}\r\n")).is_upgrade());
}

/// VALID with every CRLF turned into a bare LF.
fn valid_lf() -> Vec<u8> {
    String::from_utf8(VALID.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes()
}

#[test]
fn end_of_head_is_a_blank_line_after_lf_or_crlf() {
    let cases: &[(&[u8], Option<usize>)] = &[
        (b"a\r\n\r\nb", Some(5)),
        (b"a\n\nb", Some(3)),
        (b"a\n\r\nb", Some(4)),
        (b"a\r\n\nb", Some(4)),
        (b"a\r\n\r", None),
        (b"a\n\rb\n", None),
        (b"a\r\r\n", None),
        (b"a\nb\nc\r\n", None),
        (b"\n\n", Some(2)),
        (b"", None),
    ];
    for (buf, end) in cases {
        assert_eq!(find_end_of_head(buf, 0), *end, "{buf:?}");
    }
    // The first blank line wins.
    assert_eq!(find_end_of_head(b"a\n\nb\r\n\r\n", 0), Some(3));
    assert_eq!(find_end_of_head(b"a\n\n", 4), None);
}

#[test]
fn lf_only_request_is_parsed_like_crlf() {
    let lf = valid_lf();
    let (req, n) = decode(&lf).unwrap().unwrap();
    assert_eq!(n, lf.len());
    assert_eq!(req, decode(VALID).unwrap().unwrap().0);
    assert_eq!(req.validate().unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // Mixed: LF lines, then a CRLF blank line; CRLF lines, then LF.
    let mixed = String::from_utf8(lf.clone()).unwrap();
    let mixed = format!("{}\r\n", &mixed[..mixed.len() - 1]);
    let (req2, n) = decode(mixed.as_bytes()).unwrap().unwrap();
    assert_eq!((req2, n), (req.clone(), mixed.len()));
    let mut mixed = VALID[..VALID.len() - 2].to_vec();
    mixed.push(b'\n');
    assert!(mixed.ends_with(b"\r\n\n"));
    let (req3, n) = decode(&mixed).unwrap().unwrap();
    assert_eq!((req3, n), (req, mixed.len()));
}

#[test]
fn lf_only_trailing_bytes_are_not_consumed() {
    let mut buf = valid_lf();
    let head = buf.len();
    buf.extend_from_slice(b"\n\x81\x80");
    assert_eq!(decode(&buf).unwrap().unwrap().1, head);
}

#[test]
fn malformed_lf_only_request_is_refused() {
    for raw in [
        &b"GET / HTTP/1.1\nHost\n\n"[..],
        b"GET / HTTP/1.1\nHost: h\rX: y\n\n",
        b"GET /\n\n",
        b"\n\n",
    ] {
        assert_eq!(decode(raw), Err(HandshakeError::Malformed), "{raw:?}");
    }
    // Well-formed but not an upgrade: parsed, then refused by validate.
    let req = request("GET / HTTP/1.1\nHost: h\n\n");
    assert_eq!(req.validate(), Err(HandshakeError::MissingUpgrade));
}

#[test]
fn lf_only_every_prefix_and_byte_at_a_time() {
    let lf = valid_lf();
    let mut one = Decoder::default();
    for len in 0..lf.len() {
        assert_eq!(decode(&lf[..len]), Ok(None), "prefix of {len} bytes");
        assert_eq!(one.decode(&lf[..len], &Limits::default()), Ok(None));
    }
    let (_, n) = one.decode(&lf, &Limits::default()).unwrap().unwrap();
    assert_eq!(n, lf.len());
}

#[test]
fn end_of_head_straddling_two_reads() {
    // Every split of every ending, fed to one decoder in two reads.
    let lf = valid_lf();
    let base = &lf[..lf.len() - 1]; // ends with the last header's "\n"
    for ending in [&b"\n"[..], b"\r\n"] {
        for crlf_last_line in [false, true] {
            let mut full = base[..base.len() - 1].to_vec();
            if crlf_last_line {
                full.push(b'\r');
            }
            full.push(b'\n');
            full.extend_from_slice(ending);
            for cut in 0..full.len() {
                let mut d = Decoder::default();
                assert_eq!(d.decode(&full[..cut], &Limits::default()), Ok(None));
                let got = d.decode(&full, &Limits::default());
                assert_eq!(
                    got.map(|r| r.map(|(_, n)| n)),
                    Ok(Some(full.len())),
                    "{cut}"
                );
            }
        }
    }
}

#[test]
fn fields_for_the_http_api_and_extensions() {
    let req = request(
        "POST /api/commands HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer 0123456789abcdef\r\n\
         Content-Length: 42\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: chunked\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
         Sec-WebSocket-Extensions: x-foo; a=\"1,2\"\r\n\r\n",
    );
    assert_eq!(
        req.authorization.as_deref(),
        Some("Bearer 0123456789abcdef")
    );
    assert_eq!(req.content_length, Some(42));
    assert_eq!(req.transfer_encoding.as_deref(), Some("gzip, chunked"));
    assert_eq!(
        req.extensions.as_deref(),
        Some("permessage-deflate; client_max_window_bits, x-foo; a=\"1,2\"")
    );
    let plain = request("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(plain.content_length, Some(0));
    assert_eq!(plain.authorization, None);
    assert_eq!(plain.extensions, None);
    assert_eq!(
        request("GET / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n").content_length,
        Some(u64::MAX)
    );
    // Beyond u64: well-formed, and larger than any limit (413, not 400).
    assert_eq!(
        request("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").content_length,
        Some(u64::MAX)
    );
}

#[test]
fn bad_or_repeated_length_and_repeated_authorization_are_malformed() {
    for header in [
        "Content-Length: 1\r\nContent-Length: 1",
        "Content-Length: 1\r\ncontent-length: 2",
        "Content-Length: +1",
        "Content-Length: -1",
        "Content-Length: 1, 1",
        "Content-Length: 0x10",
        "Content-Length: 1 2",
        "Content-Length:",
        "Authorization: Bearer a\r\nAuthorization: Bearer b",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{header}\r\n\r\n");
        assert_eq!(
            decode(raw.as_bytes()),
            Err(HandshakeError::Malformed),
            "{header}"
        );
    }
    assert_eq!(HandshakeError::Malformed.http_status(), 400);
}

#[test]
fn attempts_upgrade_per_spec_section_14() {
    let attempt = |extra: &str| {
        request(&format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n")).attempts_upgrade()
    };
    assert!(!attempt(""));
    assert!(!attempt(
        "Connection: keep-alive\r\nAuthorization: Bearer x\r\n"
    ));
    assert!(!attempt("X-Sec-WebSocket-Key: x\r\n"));
    for extra in [
        "Upgrade: h2c\r\n",
        "Upgrade:\r\n",
        "Connection: keep-alive, Upgrade\r\n",
        "connection: UPGRADE\r\n",
        "Sec-WebSocket-Key: x\r\n",
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Protocol:\r\n",
        "Sec-WebSocket-Extensions:\r\n",
        "sec-websocket-whatever: 1\r\n",
    ] {
        assert!(attempt(extra), "{extra:?}");
    }
    // A request built by hand, without the decoder's flag.
    let by_hand = Request {
        key: Some("k".into()),
        ..Request::default()
    };
    assert!(by_hand.attempts_upgrade());
    assert!(!by_hand.is_upgrade());
    assert!(!Request::default().attempts_upgrade());
}

#[test]
fn responses_are_well_formed_http() {
    let mut out = Vec::new();
    write_refusal(&mut out, &HandshakeError::UnsupportedVersion);
    let text = String::from_utf8(out).unwrap();
    let body = "unsupported Sec-WebSocket-Version (13 only)";
    assert!(
        text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
    assert!(text.ends_with(&format!("\r\n\r\n{body}")));

    let mut out = Vec::new();
    write_accept(&mut out, "abc=", Some("chat"));
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    );
}

#[test]
fn forwarded_for_headers_are_joined_in_order() {
    let req = request(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n\
         x-forwarded-for:\r\nX-FORWARDED-FOR:  [2001:db8::1]:80 \r\n\r\n",
    );
    assert_eq!(
        req.forwarded_for.as_deref(),
        Some("1.1.1.1, 2.2.2.2, [2001:db8::1]:80")
    );
    assert_eq!(
        request("GET / HTTP/1.1\r\nHost: h\r\n\r\n").forwarded_for,
        None
    );
}

#[test]
fn too_many_requests_says_when_to_retry() {
    let err = HandshakeError::TooManyRequests {
        reason: "too many connections from this address",
        retry_after: 7,
    };
    assert_eq!(err.http_status(), 429);
    let mut out = Vec::new();
    write_refusal(&mut out, &err);
    let text = String::from_utf8(out).unwrap();
    let body = "too many connections from this address";
    assert!(
        text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nRetry-After: 7\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
    assert!(text.ends_with(&format!("\r\n\r\n{body}")));
}
