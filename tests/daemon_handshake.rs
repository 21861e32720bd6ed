//! The HTTP upgrade over real sockets (SPEC section 3): every refusal is well-formed HTTP and
//! touches no connected client; health check, subprotocols, a request split into 1-byte segments,
//! and the connection limit.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    http, raw_handshake, raw_ws, read_frame, send_frame, status_of, upgrade_request, Client,
    Daemon, WAIT,
};
use rakit_protocol::OpCode;
use tungstenite::Message;

const ECHO: &str = "logging_level = \"warn\"\n";

/// A parsed HTTP response: status, headers (names lowercased), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[track_caller]
fn parse_response(raw: &str) -> Response {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers: {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
    let headers = lines
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Response {
        status: status_of(raw),
        headers,
        body: body.to_owned(),
    }
}

/// Sends `request` on a new connection and checks that it is refused with
/// `status` as well-formed HTTP: Content-Length equal to the body, Connection:
/// close, a one-line body, and the server closing the connection after it.
#[track_caller]
fn assert_refused(daemon: &Daemon, request: &[u8], status: u16) -> Response {
    let raw = http(daemon, request);
    let what = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
    let resp = parse_response(&raw);
    assert_eq!(resp.status, status, "{what:?}: {raw}");
    let length: usize = resp
        .header("content-length")
        .unwrap_or_else(|| panic!("{what:?}: no Content-Length: {raw}"))
        .parse()
        .unwrap();
    assert_eq!(length, resp.body.len(), "{what:?}: {raw}");
    assert!(
        resp.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "{what:?}: {raw}"
    );
    assert!(
        !resp.body.trim().is_empty() && !resp.body.trim_end().contains('\n'),
        "{what:?}: body is not one line: {:?}",
        resp.body
    );
    resp
}

/// The status of a handshake that is expected to be answered (101 keeps the socket open).
#[track_caller]
fn handshake_status(daemon: &Daemon, request: &[u8]) -> u16 {
    status_of(&raw_handshake(daemon, request).1)
}

#[track_caller]
fn echo_client(daemon: &Daemon) -> Client {
    daemon.ws_at("/")
}

#[track_caller]
fn assert_echoes(ws: &mut Client, text: &str) {
    ws.send(Message::Text(text.to_owned())).expect("send");
    match common::read(ws).expect("read") {
        Message::Text(t) => assert_eq!(t, text),
        other => panic!("expected the echo, got {other:?}"),
    }
}

fn request_without(header: &str) -> Vec<u8> {
    let full = String::from_utf8(upgrade_request("/", "")).unwrap();
    full.split("\r\n")
        .filter(|l| !l.starts_with(header))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

fn request_with(replace: &str, by: &str) -> Vec<u8> {
    let full = String::from_utf8(upgrade_request("/", "")).unwrap();
    assert!(full.contains(replace));
    full.replace(replace, by).into_bytes()
}

#[test]
fn malformed_requests_get_400_and_disturb_no_client() {
    let daemon = Daemon::start(ECHO, &["--echo"]);
    let mut ws = echo_client(&daemon);
    assert_echoes(&mut ws, "before");
    let cases: Vec<Vec<u8>> = vec![
        b"\x16\x03\x01\x02\x00garbage\r\n\r\n".to_vec(),
        b"hello there\r\n\r\n".to_vec(),
        request_without("Upgrade:"),
        request_with("Upgrade: websocket", "Upgrade: h2c"),
        request_without("Connection:"),
        request_with("Connection: Upgrade", "Connection: keep-alive"),
        request_without("Sec-WebSocket-Key:"),
        request_with("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
        request_with("dGhlIHNhbXBsZSBub25jZQ==", "not base64!!"),
        request_without("Sec-WebSocket-Version:"),
        request_with("HTTP/1.1", "HTTP/1.0"),
        request_without("Host:"),
    ];
    for request in &cases {
        assert_refused(&daemon, request, 400);
    }
    assert_echoes(&mut ws, "after");
}

#[test]
fn post_gets_405_with_allow() {
    let daemon = Daemon::start(ECHO, &["--echo"]);
    let resp = assert_refused(&daemon, &request_with("GET /", "POST /"), 405);
    assert_eq!(resp.header("allow"), Some("GET"));
}

#[test]
fn version_8_gets_426_naming_version_13() {
    let daemon = Daemon::start(ECHO, &["--echo"]);
    let resp = assert_refused(
        &daemon,
        &request_with("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        426,
    );
    assert_eq!(resp.header("sec-websocket-version"), Some("13"));
}

#[test]
fn oversized_request_gets_431() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nmax_handshake_size = 1024\n",
        &["--echo"],
    );
    let mut ws = echo_client(&daemon);
    // Complete but too large, and too large without an end in sight.
    let pad = format!("X-Pad: {}\r\n", "a".repeat(1100));
    assert_refused(&daemon, &upgrade_request("/", &pad), 431);
    let endless = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "a".repeat(2000));
    assert_refused(&daemon, endless.as_bytes(), 431);
    // Just under the limit is fine.
    let fits = upgrade_request("/", "");
    let room = 1024 - fits.len() - "X-Pad: \r\n".len();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(room));
    let request = upgrade_request("/", &pad);
    assert_eq!(request.len(), 1024);
    assert_eq!(handshake_status(&daemon, &request), 101);
    assert_echoes(&mut ws, "still here");
}

#[test]
fn origin_rules_get_403() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\norigin_required = true\nallowed_origins = [\"https://app.example.com\", \"*.example.com\"]\n",
        &["--echo"],
    );
    let with_origin = |o: &str| upgrade_request("/", &format!("Origin: {o}\r\n"));
    assert_refused(&daemon, &upgrade_request("/", ""), 403);
    for allowed in [
        "https://app.example.com",
        "https://chat.example.com",
        "http://a.b.example.com:8080",
    ] {
        assert_eq!(
            handshake_status(&daemon, &with_origin(allowed)),
            101,
            "{allowed}"
        );
    }
    for refused in [
        "https://example.com",
        "https://evil.com",
        "https://example.com.evil.org",
        "https://badexample.com",
        "null",
    ] {
        assert_refused(&daemon, &with_origin(refused), 403);
    }

    // Without origin_required, a missing Origin passes but a wrong one does not.
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nallowed_origins = [\"https://app.example.com\"]\n",
        &["--echo"],
    );
    assert_eq!(handshake_status(&daemon, &upgrade_request("/", "")), 101);
    assert_refused(&daemon, &with_origin("https://app.example.org"), 403);
}

#[test]
fn host_not_allowed_gets_400() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nallowed_hosts = [\"Chat.Example.com:8443\"]\n",
        &["--echo"],
    );
    let host = |h: &str| request_with("Host: localhost", &format!("Host: {h}"));
    assert_eq!(
        handshake_status(&daemon, &host("chat.example.COM:8443")),
        101
    );
    for refused in ["chat.example.com", "chat.example.com:443", "evil:8443"] {
        assert_refused(&daemon, &host(refused), 400);
    }
}

#[test]
fn health_check_answers_200_ok() {
    let daemon = Daemon::default_config();
    let raw = http(&daemon, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let resp = parse_response(&raw);
    assert_eq!(resp.status, 200, "{raw}");
    assert_eq!(resp.body, "ok");
    assert_eq!(resp.header("content-length"), Some("2"));
}

#[test]
fn first_client_listed_supported_protocol_is_selected() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nsupported_protocols = [\"chat.v2\", \"chat.v1\"]\n",
        &["--echo"],
    );
    let offer = |p: &str| upgrade_request("/", &format!("Sec-WebSocket-Protocol: {p}\r\n"));
    let selected = |head: &str| {
        parse_response(head)
            .header("sec-websocket-protocol")
            .map(str::to_owned)
    };
    let (_s, head) = raw_handshake(&daemon, &offer("other, chat.v1, chat.v2"));
    assert_eq!(status_of(&head), 101, "{head}");
    assert_eq!(selected(&head).as_deref(), Some("chat.v1"), "{head}");
    let (_s, head) = raw_handshake(&daemon, &offer("chat.v2, chat.v1"));
    assert_eq!(selected(&head).as_deref(), Some("chat.v2"), "{head}");
    let (_s, head) = raw_handshake(&daemon, &offer("nope, chat.v3"));
    assert_eq!(status_of(&head), 101, "{head}");
    assert_eq!(selected(&head), None, "{head}");
    let (_s, head) = raw_handshake(&daemon, &upgrade_request("/", ""));
    assert_eq!(selected(&head), None, "{head}");
}

#[test]
fn handshake_in_one_byte_segments() {
    let daemon = Daemon::start(ECHO, &["--echo"]);
    let mut s = daemon.tcp();
    s.set_nodelay(true).unwrap();
    for byte in upgrade_request("/any/path?x=1", "Origin: http://x\r\n") {
        s.write_all(&[byte]).unwrap();
        s.flush().unwrap();
    }
    let head = common::read_http_head(&mut s);
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    send_frame(&mut s, true, OpCode::Text, b"split");
    let frame = read_frame(&mut s);
    assert_eq!(
        (frame.byte0, frame.payload.as_slice()),
        (0x81, &b"split"[..])
    );
}

#[test]
fn bare_lf_requests_are_answered() {
    let daemon = Daemon::start(ECHO, &["--echo"]);
    let lf = String::from_utf8(upgrade_request("/", ""))
        .unwrap()
        .replace("\r\n", "\n");
    let (mut s, head) = raw_handshake(&daemon, lf.as_bytes());
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    send_frame(&mut s, true, OpCode::Text, b"lf");
    assert_eq!(read_frame(&mut s).payload, b"lf");
    // Malformed or not an upgrade: refused at once, not left to time out.
    assert_refused(&daemon, b"GET / HTTP/1.1\nHost\n\n", 400);
    assert_refused(&daemon, b"GET /chat HTTP/1.1\nHost: localhost\n\n", 400);
}

#[test]
fn full_server_gets_503_until_a_slot_frees() {
    let daemon = Daemon::start(
        "logging_level = \"warn\"\nmax_connections = 2\n",
        &["--echo"],
    );
    let mut a = echo_client(&daemon);
    let b = raw_ws(&daemon);
    let resp = assert_refused(&daemon, &upgrade_request("/", ""), 503);
    assert!(!resp.body.is_empty());
    // Twice: a refusal frees nothing and takes no slot.
    assert_refused(&daemon, &upgrade_request("/", ""), 503);
    assert_echoes(&mut a, "still served");

    drop(b);
    // The slot frees once the server notices the close; retry until it has.
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        let (s, head) = raw_handshake(&daemon, &upgrade_request("/", ""));
        match status_of(&head) {
            101 => break s,
            503 if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => panic!("expected 101 once a slot freed, got {other}: {head}"),
        }
    };
    send_frame(&mut c, true, OpCode::Text, b"in");
    assert_eq!(read_frame(&mut c).payload, b"in");
    assert_refused(&daemon, &upgrade_request("/", ""), 503);
    assert_echoes(&mut a, "still served");
}
