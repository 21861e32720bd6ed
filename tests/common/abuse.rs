//! Helpers of the abuse-limit tests (SPEC section 17, tests/abuse_*.rs), and the `[limits]`
//! table that tests which flood on purpose append to their config.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tungstenite::Message;

use super::api::scrape;
use super::{read_http_head, try_recv_json, Client, Daemon};

/// Appended (last: it opens a table) to the config of a test that floods on purpose: the
/// message and broadcast buckets off (SPEC 17's defaults are on).
pub const LIMITS_OFF: &str = "\n[limits]\nmessages_per_second = 0\nbroadcasts_per_second = 0\n";

/// Queues `texts` and writes them in one go (one TCP write, so the daemon reads them in one
/// turn, at one instant).
#[track_caller]
pub fn pipeline(ws: &mut Client, texts: impl IntoIterator<Item = String>) {
    for text in texts {
        ws.write(Message::Text(text)).expect("queue");
    }
    ws.flush().expect("flush");
}

/// Every JSON message until `quiet` passes without one.
#[track_caller]
pub fn drain_quiet(ws: &mut Client, quiet: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(v) = try_recv_json(ws, quiet, |_| false) {
        got.push(v);
    }
    got
}

/// The `type`s of `msgs`, in order.
pub fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter()
        .map(|v| v["type"].as_str().unwrap_or("?"))
        .collect()
}

/// The value of one series (`name{labels}` exactly as exposed) in `GET /metrics`; 0 when the
/// series is absent (a labelled counter shows only the labels seen).
#[track_caller]
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    let text = scrape(addr, None);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

/// A raw upgrade of `path` with `extra` header lines (each ending in `\r\n`): the status and
/// the response head; the socket stays open (for a 101, as a live connection).
#[track_caller]
pub fn upgrade(daemon: &Daemon, path: &str, extra: &str) -> (u16, String, std::net::TcpStream) {
    let mut s = daemon.tcp();
    s.write_all(&super::upgrade_request(path, extra)).unwrap();
    let head = read_http_head(&mut s);
    (super::status_of(&head), head, s)
}

/// The value of header `name` (case-insensitive) in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A TCP connection to `addr` from the loopback address `from` (`127.0.0.2`, ...: Linux routes
/// all of 127/8 to the loopback), so that one test can be several client addresses.
#[track_caller]
pub fn connect_from(addr: SocketAddr, from: [u8; 4]) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local = SocketAddr::from((from, 0));
    socket.bind(&local.into()).expect("bind a loopback address");
    socket.connect(&addr.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(super::WAIT)).unwrap();
    stream
}
