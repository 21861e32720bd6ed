//! The HTTP upgrade decoder fed in pieces, as a daemon reads a socket.
//!
//! Byte 0 picks the mode.
//!
//! - Below 0x80, **raw**: byte 0 picks the limits, bytes 1..5 the chunk
//!   sizes (0 = all the rest), byte 5 a daemon-side refusal; the rest is the
//!   bytes a client sends. Checked: one decoder across calls agrees with a
//!   fresh decoder given the whole buffer at once, and with
//!   `Connection::new` fed the same pieces; a request is produced only when
//!   the buffer holds a blank line (after CRLF or bare LF line ends), and
//!   ends just past the first one; `consumed <= len`; every refusal has one
//!   of the statuses we send and is well-formed HTTP whose Content-Length is
//!   the body.
//! - From 0x80, **generated**: the rest drives the building of a valid
//!   upgrade request: headers shuffled and re-cased, each line ended by CRLF
//!   or a bare LF, extra and repeatable headers, values padded with
//!   whitespace, split at arbitrary points, maybe followed by frame bytes.
//!   It must be accepted: nothing until its last byte, then exactly its
//!   fields, `validate()` giving the accept key computed here from SHA-1,
//!   and `accept` writing the 101 response with it.
//!
//! In both modes, every request's `X-Forwarded-For` (repeats joined, as
//! hostile as the input makes it) goes through the daemon's client-address
//! walk (`rakit::limits::TrustedProxies`, SPEC section 17) from a peer and
//! a proxy list the input picks: never a panic, and the answer is the peer
//! or an entry of the header's last 32, with only trusted proxies (or empty
//! elements) to its right.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::arbitrary::{Result as ArbResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use rakit::limits::address::{canonical, parse_entry, MAX_HOPS};
use rakit::limits::TrustedProxies;
use rakit_protocol::handshake::{accept_key, write_refusal, Decoder};
use rakit_protocol::{Connection, Event, HandshakeError, Limits, Request, State};
use sha1::{Digest, Sha1};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const STATUSES: [u16; 8] = [400, 401, 403, 405, 426, 429, 431, 503];

const ALL_ERRORS: [HandshakeError; 16] = [
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
    HandshakeError::TooManyRequests {
        reason: "too many connections from this address",
        retry_after: 5,
    },
];

/// Proxy lists the input picks from: none, one address, ranges of both families, everything.
const PROXIES: [&[&str]; 4] = [
    &[],
    &["127.0.0.1"],
    &["10.0.0.0/8", "::1", "fd00::/8", "::ffff:192.168.0.0/112"],
    &["0.0.0.0/0", "::/0"],
];

/// The client address of `req` from a peer and a proxy list picked by `seed`, with the walk's
/// promises checked.
fn check_client_address(req: &Request, seed: &[u8]) {
    let pick = seed.first().copied().unwrap_or(0);
    let list: Vec<String> = PROXIES[usize::from(pick) % PROXIES.len()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let proxies = TrustedProxies::parse(&list).expect("valid lists");
    let mut raw = [0u8; 16];
    for (i, b) in seed.iter().skip(1).take(16).enumerate() {
        raw[i] = *b;
    }
    let peer = match pick / 4 % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        1 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        2 => IpAddr::V4(Ipv4Addr::new(10, raw[0], raw[1], raw[2])),
        _ => IpAddr::V6(Ipv6Addr::from(raw)),
    };
    let header = req.forwarded_for.as_deref();
    let client = proxies.client_address(peer, header);
    let peer = canonical(peer);
    if !proxies.contains(peer) || header.is_none() {
        assert_eq!(client, peer);
        return;
    }
    if client == peer {
        return;
    }
    // An entry among the last MAX_HOPS, with nothing but trusted proxies or empty elements
    // after it (and if it is trusted itself, the walk ran out of entries or hops).
    let entries: Vec<&str> = header.unwrap().split(',').rev().take(MAX_HOPS).collect();
    let at = entries
        .iter()
        .position(|e| parse_entry(e.trim_matches([' ', '\t'])).map(canonical) == Some(client))
        .unwrap_or_else(|| panic!("{client} is not in {header:?}"));
    for e in &entries[..at] {
        let e = e.trim_matches([' ', '\t']);
        assert!(
            e.is_empty() || parse_entry(e).is_some_and(|ip| proxies.contains(ip)),
            "{e:?} before {client} in {header:?}"
        );
    }
}

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
    if status == 429 {
        let retry = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
            });
        assert!(retry.is_some_and(|r| r >= 1), "{err:?}");
    }
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
    match data.first() {
        Some(mode) if mode & 0x80 != 0 => {
            // Err only when the input cannot build a request: nothing to check.
            if generated(&data[1..]).is_err() {
                return;
            }
        }
        _ => raw(data),
    }
});

fn raw(data: &[u8]) {
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
                check_client_address(&req, bytes);
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
}

// ---- Generated mode: valid requests, built from the input ----

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Request-target characters (RFC 3986 unreserved, some sub-delims, `/`).
const PATH: &[u8] = b"abcxyzABC0189-._~/!$&'()*+,;=:@%";
/// Field-value characters: visible ASCII and spaces.
const VALUE: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCXYZ[\\]^_`abcxyz{|}~";
const SUPPORTED: [&str; 2] = ["chat", "superchat"];

/// The accept key as RFC 6455 section 1.3 defines it, computed here.
fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// `s` with the case of each letter picked by the input.
fn recase(u: &mut Unstructured<'_>, s: &str) -> ArbResult<String> {
    s.chars()
        .map(|c| {
            Ok(if u.arbitrary()? {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            })
        })
        .collect()
}

/// 1 to `max` characters of `set`.
fn word(u: &mut Unstructured<'_>, set: &[u8], max: usize) -> ArbResult<String> {
    let n = u.int_in_range(1..=max)?;
    (0..n).map(|_| Ok(char::from(*u.choose(set)?))).collect()
}

/// A line end: CRLF or a bare LF.
fn eol(u: &mut Unstructured<'_>) -> ArbResult<&'static str> {
    Ok(if u.arbitrary()? { "\r\n" } else { "\n" })
}

/// Appends a list header's value the way the decoder joins repeats.
fn join(slot: &mut Option<String>, value: &str, sep: &str) {
    match slot {
        Some(v) => {
            v.push_str(sep);
            v.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// A valid upgrade request (its bytes, where its head ends) and the
/// request the decoder must make of it.
fn build(u: &mut Unstructured<'_>) -> ArbResult<(Vec<u8>, usize, Request)> {
    let key = STANDARD.encode(u.arbitrary::<[u8; 16]>()?);
    let mut want = Request {
        method: "GET".into(),
        http_minor: 1,
        websocket_headers: true,
        ..Request::default()
    };
    let mut target = String::from("/");
    if u.arbitrary()? {
        target.push_str(&word(u, PATH, 40)?);
    }
    want.path = target.clone();
    if u.arbitrary()? {
        let query = word(u, PATH, 40)?;
        target.push('?');
        target.push_str(&query);
        want.query = Some(query);
    }

    // (canonical name, value); shuffled below.
    let mut headers: Vec<(&str, String)> = Vec::new();
    let mut host = word(u, ALNUM, 20)?;
    if u.arbitrary()? {
        host.push_str(&format!(":{}", u.arbitrary::<u16>()?));
    }
    headers.push(("Host", host));
    let websocket = recase(u, "websocket")?;
    let upgrade = match u.int_in_range(0..=2)? {
        0 => websocket,
        1 => format!("h2c, {websocket}"),
        _ => format!("{websocket} ,HTTP/2.0"),
    };
    headers.push(("Upgrade", upgrade));
    let token = recase(u, "upgrade")?;
    let connection = match u.int_in_range(0..=2)? {
        0 => token,
        1 => format!("keep-alive, {token}"),
        _ => format!("{token},close"),
    };
    headers.push(("Connection", connection));
    headers.push(("Sec-WebSocket-Key", key.clone()));
    headers.push(("Sec-WebSocket-Version", "13".into()));
    if u.arbitrary()? {
        headers.push(("Origin", format!("https://{}", word(u, ALNUM, 20)?)));
    }
    for i in 0..u.int_in_range(0..=3)? {
        headers.push(("Cookie", format!("c{i}={}", word(u, ALNUM, 10)?)));
    }
    for _ in 0..u.int_in_range(0..=3)? {
        let mut offered = Vec::new();
        for _ in 0..u.int_in_range(1..=3)? {
            offered.push(match u.int_in_range(0..=3)? {
                0 => "chat".to_owned(),
                1 => "superchat".to_owned(),
                _ => word(u, ALNUM, 8)?,
            });
        }
        headers.push(("Sec-WebSocket-Protocol", offered.join(", ")));
    }
    for _ in 0..u.int_in_range(0..=2)? {
        let ext = match u.int_in_range(0..=2)? {
            0 => "permessage-deflate; client_max_window_bits".to_owned(),
            1 => "permessage-deflate; server_no_context_takeover".to_owned(),
            _ => word(u, ALNUM, 12)?,
        };
        headers.push(("Sec-WebSocket-Extensions", ext));
    }
    if u.arbitrary()? {
        headers.push(("Authorization", format!("Bearer {}", word(u, ALNUM, 32)?)));
    }
    if u.arbitrary()? {
        let zeros = "0".repeat(u.int_in_range(0..=2)?);
        headers.push((
            "Content-Length",
            format!("{zeros}{}", u.arbitrary::<u64>()?),
        ));
    }
    for _ in 0..u.int_in_range(0..=2)? {
        let coding = *u.choose(&["gzip", "chunked", "identity"])?;
        headers.push(("Transfer-Encoding", coding.to_owned()));
    }
    if u.ratio(1, 8)? {
        headers.push(("Sec-WebSocket-Fuzz", word(u, ALNUM, 8)?));
    }
    for _ in 0..u.int_in_range(0..=10)? {
        headers.push(("X-Fuzz", word(u, VALUE, 60)?));
    }
    for _ in 0..u.int_in_range(0..=3)? {
        let mut hops = Vec::new();
        for _ in 0..u.int_in_range(0..=6)? {
            hops.push(match u.int_in_range(0..=6)? {
                0 => Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?).to_string(),
                1 => Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?).to_string(),
                2 => format!("10.0.0.{}", u.arbitrary::<u8>()?),
                3 => format!(
                    "[{}]:{}",
                    Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?),
                    u.arbitrary::<u16>()?
                ),
                4 => format!("127.0.0.1:{}", u.arbitrary::<u16>()?),
                5 => String::new(),
                _ => word(u, VALUE, 20)?.replace(',', ""),
            });
        }
        headers.push(("X-Forwarded-For", hops.join(",")));
    }
    // Shuffle (Fisher-Yates).
    for i in (1..headers.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        headers.swap(i, j);
    }

    let mut text = format!("GET {target} HTTP/1.1{}", eol(u)?);
    for (name, value) in &headers {
        let pad = ["", " ", "\t", "  "];
        let (before, after) = (*u.choose(&pad)?, *u.choose(&pad)?);
        text.push_str(&format!(
            "{}:{before}{value}{after}{}",
            recase(u, name)?,
            eol(u)?
        ));
        let value = value.trim();
        match *name {
            "Host" => want.host = Some(value.into()),
            "Upgrade" => want.upgrade = Some(value.into()),
            "Connection" => want.connection = Some(value.into()),
            "Sec-WebSocket-Key" => want.key = Some(value.into()),
            "Sec-WebSocket-Version" => want.version = Some(value.into()),
            "Origin" => want.origin = Some(value.into()),
            "Authorization" => want.authorization = Some(value.into()),
            "Content-Length" => want.content_length = Some(value.parse().unwrap()),
            "Cookie" => join(&mut want.cookie, value, "; "),
            "Transfer-Encoding" => join(&mut want.transfer_encoding, value, ", "),
            "X-Forwarded-For" if !value.is_empty() => join(&mut want.forwarded_for, value, ", "),
            "Sec-WebSocket-Extensions" => join(&mut want.extensions, value, ", "),
            "Sec-WebSocket-Protocol" => want
                .protocols
                .extend(value.split(',').map(|p| p.trim().to_owned())),
            _ => {}
        }
    }
    text.push_str(eol(u)?);
    let head_len = text.len();
    let mut bytes = text.into_bytes();
    // What may follow the request: the client's first frames.
    let n = u.int_in_range(0..=20)?.min(u.len());
    bytes.extend_from_slice(u.bytes(n)?);
    Ok((bytes, head_len, want))
}

fn generated(data: &[u8]) -> ArbResult<()> {
    let mut u = Unstructured::new(data);
    let (bytes, head_len, want) = build(&mut u)?;
    let limits = Limits::default();
    assert!(head_len <= limits.max_handshake_size);

    // Fed in pieces to one decoder and one connection, as the daemon reads.
    let mut decoder = Decoder::default();
    let mut conn = Connection::new(limits);
    let mut buf = Vec::new();
    let mut rest = &bytes[..];
    let (req, event) = loop {
        let n = if u.is_empty() || rest.len() <= 1 {
            rest.len()
        } else {
            u.int_in_range(1..=rest.len())?
        };
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut input = buf.clone();
        let mut out = Vec::new();
        let result = decoder.decode(&buf, &limits);
        let conn_result = conn.read(&mut input, &mut out).map(|(n, ev)| match ev {
            Some(Event::Request(r)) => (n, Some(*r)),
            None => (n, None),
            Some(other) => panic!("{other:?} from a handshaking connection"),
        });
        assert!(out.is_empty());
        if buf.len() < head_len {
            assert_eq!(result, Ok(None), "done before the end of the head");
            assert_eq!(conn_result, Ok((0, None)));
            assert!(!rest.is_empty());
            continue;
        }
        let (req, consumed) = match result {
            Ok(Some(found)) => found,
            other => panic!(
                "valid request not decoded: {other:?}\n{:?}",
                String::from_utf8_lossy(&bytes[..head_len])
            ),
        };
        assert_eq!(consumed, head_len, "the head ends at its blank line");
        break (req, conn_result);
    };
    assert_eq!(req, want);
    assert_eq!(event, Ok((head_len, Some(want.clone()))));
    check_client_address(&req, u.bytes(u.len().min(17))?);
    assert!(req.is_upgrade() && req.attempts_upgrade());

    // The 101 path: the accept key RFC 6455 derives from the key sent.
    let key = want.key.as_deref().unwrap();
    let accept = req.validate().expect("a valid request is accepted");
    assert_eq!(accept, expected_accept(key));
    assert_eq!(accept, accept_key(key.as_bytes()));
    let supported: Vec<String> = SUPPORTED.iter().map(|s| s.to_string()).collect();
    let protocol = req.select_protocol(&supported);
    let first_supported = want
        .protocols
        .iter()
        .find(|p| SUPPORTED.contains(&p.as_str()))
        .map(String::as_str);
    assert_eq!(protocol, first_supported);

    let mut out = Vec::new();
    conn.accept(&accept, protocol, &mut out);
    assert_eq!(conn.state(), State::Open);
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut resp = httparse::Response::new(&mut headers);
    assert_eq!(resp.parse(&out), Ok(httparse::Status::Complete(out.len())));
    assert_eq!((resp.version, resp.code), (Some(1), Some(101)));
    let header = |name: &str| {
        let mut values = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name));
        let value = values.next().map(|h| std::str::from_utf8(h.value).unwrap());
        assert!(values.next().is_none(), "{name} twice");
        value
    };
    assert_eq!(
        header("Sec-WebSocket-Accept"),
        Some(expected_accept(key).as_str())
    );
    assert_eq!(header("Sec-WebSocket-Protocol"), protocol);
    assert!(header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    assert!(header("Connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")));
    Ok(())
}
