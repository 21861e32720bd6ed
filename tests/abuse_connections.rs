//! SPEC section 17 over real sockets, for connections: open WebSocket connections per client
//! address and per session user, new handshakes per address per second (HTTP 429 with
//! `Retry-After`, counted), `trusted_proxies` with `X-Forwarded-For` (the right-most entry that
//! is not a trusted proxy; IPv6 per /64; hostile headers), and the client address in the log.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::abuse::{header, metric, upgrade};
use common::api::once;
use common::msg::cli_token;
use common::{expect_gone, Daemon, WAIT};
use tungstenite::Message;

const SECRET: &str = "abuse-connections-secret";

fn daemon(limits: &str) -> Daemon {
    Daemon::start(
        &format!(
            "logging_level = \"info\"\npresence = false\nmax_handshake_size = 262144\n\
             [session]\nsecret = \"{SECRET}\"\n[limits]\n{limits}"
        ),
        &[],
    )
}

/// A refusal over a limit: 429, `Retry-After` in whole seconds, a one-line body, and the
/// connection closed.
#[track_caller]
fn assert_429(daemon: &Daemon, path: &str, extra: &str) -> u64 {
    let (status, head, mut s) = upgrade(daemon, path, extra);
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
    let retry: u64 = header(&head, "Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head}"));
    assert!(retry >= 1, "{head}");
    let len: usize = header(&head, "Content-Length").unwrap().parse().unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("closed after the body");
    assert_eq!(body.len(), len);
    assert!(!body.contains(&b'\n'), "{body:?}");
    retry
}

#[track_caller]
fn assert_101(daemon: &Daemon, path: &str, extra: &str) -> std::net::TcpStream {
    let (status, head, s) = upgrade(daemon, path, extra);
    assert_eq!(status, 101, "{head}");
    s
}

/// Polls `f` (a handshake) until it succeeds, at most `WAIT`: a close is processed
/// asynchronously.
#[track_caller]
fn eventually_101(daemon: &Daemon, path: &str, extra: &str) -> std::net::TcpStream {
    let until = Instant::now() + WAIT;
    loop {
        let (status, head, s) = upgrade(daemon, path, extra);
        if status == 101 {
            return s;
        }
        assert_eq!(status, 429, "{head}");
        assert!(Instant::now() < until, "still refused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn open_connections_per_address() {
    let daemon = daemon("max_connections_per_ip = 3\n");
    let mut open: Vec<_> = (0..3).map(|_| daemon.client().0).collect();
    // One of them must close first: a few seconds, not the rate limit's one.
    assert_eq!(assert_429(&daemon, "/", ""), 5);
    // HTTP requests are not WebSocket connections: never counted, never refused.
    for _ in 0..5 {
        assert_eq!(
            once(daemon.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status,
            200
        );
    }
    assert_eq!(
        metric(
            daemon.addr,
            "rakit_handshake_refusals_total{status=\"429\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(daemon.addr, "rakit_rate_limited_total{kind=\"ip\"}"),
        1.0
    );
    // One leaves: room for one more.
    let mut gone = open.pop().unwrap();
    gone.close(None).unwrap();
    expect_gone(&mut gone);
    let _back = eventually_101(&daemon, "/", "");
    assert_429(&daemon, "/", "");
}

#[test]
fn new_handshakes_per_address_per_second() {
    let daemon = daemon("connections_per_ip_per_second = 2\n");
    let _a = assert_101(&daemon, "/", "");
    let _b = assert_101(&daemon, "/", "");
    let started = Instant::now();
    let retry = assert_429(&daemon, "/", "");
    assert_eq!(retry, 1, "the next token comes within a second");
    // Closing does not give tokens back: the rate is of handshakes, not of open connections.
    drop((_a, _b));
    // Half a second (one token at 2 a second) after the refusal's instant, at the latest.
    let _c = eventually_101(&daemon, "/", "");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(metric(daemon.addr, "rakit_rate_limited_total{kind=\"ip\"}") >= 1.0);
}

#[test]
fn open_connections_per_user() {
    let daemon = daemon("max_connections_per_user = 2\n");
    let ann = cli_token(SECRET, "42", "Ann", None, false, 600);
    let bob = cli_token(SECRET, "43", "Bob", None, false, 600);
    let path = format!("/?token={ann}");
    let (mut first, _) = daemon.client_at(&path);
    let _second = daemon.client_at(&path);
    assert_eq!(assert_429(&daemon, &path, ""), 5);
    // Another user, and guests, are not affected.
    let _bob = daemon.client_at(&format!("/?token={bob}"));
    let _guests: Vec<_> = (0..3).map(|_| daemon.client()).collect();
    assert_eq!(
        metric(daemon.addr, "rakit_rate_limited_total{kind=\"user\"}"),
        1.0
    );
    assert_eq!(
        metric(
            daemon.addr,
            "rakit_handshake_refusals_total{status=\"429\"}"
        ),
        1.0
    );
    first.close(None).unwrap();
    expect_gone(&mut first);
    let _again = eventually_101(&daemon, &path, "");
}

fn xff(value: &str) -> String {
    format!("X-Forwarded-For: {value}\r\n")
}

/// Behind a trusted proxy the client is the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy; what a client writes into the header itself is not believed; IPv6 counts
/// per /64; and the log says who connected.
#[test]
fn behind_a_trusted_proxy_the_forwarded_address_counts() {
    let daemon =
        daemon("max_connections_per_ip = 1\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n");
    let _a = assert_101(&daemon, "/", &xff("203.0.113.5"));
    assert_429(&daemon, "/", &xff("203.0.113.5"));
    // A forged entry on the left does not help; a trusted hop on the right is skipped.
    assert_429(&daemon, "/", &xff("198.51.100.77, 203.0.113.5"));
    assert_429(&daemon, "/", &xff("203.0.113.5, 10.1.2.3"));
    // Repeated headers are one list, in order.
    assert_429(
        &daemon,
        "/",
        &format!("{}{}", xff("198.51.100.1"), xff("203.0.113.5")),
    );
    let _b = assert_101(&daemon, "/", &xff("203.0.113.5, 198.51.100.6"));
    // IPv6: one /64 is one client.
    let _c = assert_101(&daemon, "/", &xff("2001:db8:1:2::1"));
    assert_429(&daemon, "/", &xff("[2001:db8:1:2:ffff::9]:443"));
    let _d = assert_101(&daemon, "/", &xff("2001:db8:1:3::1"));
    // The proxy itself (no header) is one more client.
    let _e = assert_101(&daemon, "/", "");
    daemon.wait_for_line("from 198.51.100.6");
    daemon.wait_for_line("from 2001:db8:1:3::1");
}

/// Without `trusted_proxies`, `X-Forwarded-For` is anybody's word: ignored.
#[test]
fn from_an_untrusted_peer_the_header_is_ignored() {
    let daemon = daemon("max_connections_per_ip = 1\n");
    let _a = assert_101(&daemon, "/", &xff("203.0.113.5"));
    assert_429(&daemon, "/", &xff("198.51.100.1"));
    daemon.wait_for_line("from 127.0.0.1");
}

/// Hostile headers from a trusted peer: thousands of entries, garbage, IPv6 forms, a header
/// repeated many times. Each is answered (its client being the last address the walk could
/// trust, never a panic), and the daemon serves on.
#[test]
fn hostile_forwarded_headers_are_bounded() {
    let daemon = daemon("max_connections_per_ip = 1000\ntrusted_proxies = [\"127.0.0.0/8\"]\n");
    let many_trusted = (0..5000)
        .map(|i| format!("127.0.{}.{}", i / 250, i % 250))
        .collect::<Vec<_>>()
        .join(", ");
    let repeated: String = (0..90).map(|i| xff(&format!("192.0.2.{i}"))).collect();
    let hostile = [
        xff(&many_trusted),
        xff(&",".repeat(200_000)),
        xff(&"x".repeat(200_000)),
        xff("unknown, _hidden, [::1, ::ffff:999.1.1.1, fe80::1%eth0, 1.2.3.4:99999"),
        xff("\u{7f}"),
        xff(""),
        repeated,
    ];
    let mut open = Vec::new();
    for extra in &hostile {
        let (status, head, s) = upgrade(&daemon, "/", extra);
        assert!(matches!(status, 101 | 400 | 431), "{status}: {head}");
        open.push(s);
    }
    let (mut ws, _) = daemon.client();
    ws.send(Message::Text("{\"ping\":1}".into())).unwrap();
    assert!(matches!(common::read(&mut ws).unwrap(), Message::Text(_)));
}
